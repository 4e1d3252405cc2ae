"""CLaMP 3 (humanclap/backbones/clamp3/): the port against CLaMP 3's own code, the release layout
(file + MERT folder + tokenizer folder), the featurizer's chunking and segments, loading errors, and
training + export + reload.

CLaMP 3 is a script collection pinned to transformers 4.40; its outputs on the same random weights and
inputs, and its modules' key/shape manifest, are stored in tests/fixtures/clamp3/ by the script there
(which says how to rerun it).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from cli import REPO

from humanclap.backbones.checkpoint_safety import check_model_config
from humanclap.backbones.clamp3 import (
    RELEASE,
    Clamp3Error,
    build_random_clamp3,
    from_clamp3,
)
from humanclap.backbones.clamp3.backbone import (
    MERT_FOLDER,
    RELEASE_FILE,
    TEXT_FOLDER,
    random_state_dict,
)
from humanclap.backbones.clamp3.model import Clamp3Model, build_mert, segments, small_config
from humanclap.backbones.resolve import resolve_model

FIXTURES = REPO / "tests" / "fixtures" / "clamp3"
sys.path.insert(0, str(FIXTURES))
import clamp3_upstream as upstream  # noqa: E402


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """The small random export of the release's code path (the fixture script's)."""
    return build_random_clamp3(tmp_path_factory.mktemp("clamp3") / "export", "small", seed=0)


@pytest.fixture(scope="module")
def small(export):
    return from_clamp3(str(export))


def release_layout(export, folder, symbolic=True):
    """``checkpoints/clamp3/`` as the fetch commands lay it out, from an export: the release file
    (with a symbolic tower and optimizer state, as released), ``MERT-v1-95M/``, ``xlm-roberta-base/``."""
    folder.mkdir(parents=True, exist_ok=True)
    state = torch.load(export / "weights_clamp3_small.pth", weights_only=True)["model"]
    shapes = json.loads((FIXTURES / "manifest.json").read_text())["small_symbolic"]
    if symbolic:
        state.update({key: torch.zeros(shape) for key, shape in shapes.items()})
    optimizer = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-5}]}
    torch.save({"model": state, "optimizer": optimizer, "lr_sched": {}, "epoch": 3,
                "best_epoch": 3, "min_eval_loss": 1.5, "modality": "audio"}, folder / RELEASE_FILE)  # fmt: skip
    (folder / MERT_FOLDER).symlink_to(export / "mert")
    (folder / TEXT_FOLDER).symlink_to(export / "tokenizer")
    return folder / RELEASE_FILE


# -- the port ---------------------------------------------------------------------------------------


def test_the_release_layout_embeds_as_clamp3_itself_does(export, tmp_path):
    """The small random model, loaded as a download is (release file with its symbolic tower and
    optimizer state + MERT folder + tokenizer folder), gives CLaMP 3's own embeddings
    (tests/fixtures/clamp3/: extract_mert.py + extract_clamp3.py code paths)."""
    reference = np.load(FIXTURES / "upstream_small.npz")
    backbone = from_clamp3(str(release_layout(export, tmp_path / "clamp3")))
    assert backbone.logit_scale.item() == 0.0  # CLaMP 3's LOGIT_SCALE = 1
    clips = backbone.featurizer.audio(upstream.waves())
    assert (
        (clips["chunk_lengths"] > 0).sum(-1).tolist()
        == reference["chunks"].tolist()
        == [1, 3, 2, 9]
    )
    audio = backbone.embed_audio(upstream.waves()).numpy()
    text = backbone.embed_text(upstream.TEXTS).numpy()
    np.testing.assert_allclose(audio, reference["audio"], atol=1e-5)
    np.testing.assert_allclose(text, reference["text"], atol=1e-5)
    assert backbone.featurizer.text(upstream.TEXTS)["segment_weights"][2].tolist()[1] > 0
    # The comparison can fail: different clips and texts are far apart next to the tolerance.
    for rows in (reference["audio"], reference["text"]):
        n = len(rows)
        distances = np.linalg.norm(rows[:, None] - rows[None], axis=-1)[np.triu_indices(n, 1)]
        assert distances.min() > 100 * 1e-5


def test_the_full_size_architecture_is_the_releases():
    """Keys and shapes on the meta device (no 1.8 GB build) = CLaMP 3's own CLaMP3Model without its
    symbolic tower (manifest.json), and MERT-v1-95M's 211 tensors / 94.37 M parameters."""
    manifest = json.loads((FIXTURES / "manifest.json").read_text())["release"]
    symbolic = {k for k in manifest if k.startswith(("symbolic_model.", "symbolic_proj."))}
    assert len(manifest) == 605 and len(symbolic) == 203
    with torch.device("meta"):
        model, mert = Clamp3Model(RELEASE), build_mert(RELEASE.mert)
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert ours == {k: v for k, v in manifest.items() if k not in symbolic}
    assert sum(v.numel() for v in model.state_dict().values()) == 364_972_032  # 365.0 M
    assert len(mert.state_dict()) == 211
    assert sum(p.numel() for p in mert.parameters()) == pytest.approx(94.37e6, rel=1e-3)


def test_segments_are_cut_as_upstream_cuts_them():
    assert segments(5, 128) == [(0, 5, 5)]
    assert segments(128, 128) == [(0, 128, 128)]
    assert segments(130, 128) == [(0, 128, 128), (2, 130, 2)]  # the last: the final 128
    assert segments(256, 128) == [(0, 128, 128), (128, 256, 128)]


# -- the featurizer -------------------------------------------------------------------------------


def test_clips_are_normalised_whole_then_cut_into_5_s_chunks(small):
    featurizer = small.featurizer
    assert featurizer.sample_rate == 24_000 and featurizer.chunk_samples == 120_000
    wave = np.random.RandomState(0).randn(int(12.5 * 24_000)).astype(np.float32) * 3 + 1
    clip = featurizer.clip(wave)
    assert clip["chunk_lengths"].tolist() == [120_000, 120_000, 60_000]  # a 2.5 s last chunk kept
    assert clip["input_features"].shape == (3, 120_000)
    whole = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)  # over the whole track
    np.testing.assert_allclose(clip["input_features"][2, :60_000], whole[240_000:], atol=1e-6)
    assert (clip["input_features"][2, 60_000:] == 0).all()
    # A last chunk under 1 s is dropped (but counts in the normalisation); exactly 1 s is kept.
    assert featurizer.clip(wave[: int(10.4 * 24_000)])["chunk_lengths"].tolist() == [120_000] * 2
    assert featurizer.clip(wave[:144_000])["chunk_lengths"].tolist() == [120_000, 24_000]
    # A clip shorter than 1 s (upstream: no chunk, no embedding) is repeated to one 1 s chunk.
    short = featurizer.clip(wave[:10_000])
    assert short["chunk_lengths"].tolist() == [24_000]
    tiled = np.tile(wave[:10_000], 3)[:24_000]
    np.testing.assert_allclose(short["input_features"][0, :24_000],
                               (tiled - tiled.mean()) / np.sqrt(tiled.var() + 1e-7), atol=1e-6)  # fmt: skip
    batch = featurizer.collate([short, clip])
    assert batch["input_features"].shape == (2, 3, 120_000)
    assert batch["chunk_lengths"].tolist() == [[24_000, 0, 0], [120_000, 120_000, 60_000]]


def test_texts_are_deduplicated_in_order_and_cut_into_segments(small):
    featurizer = small.featurizer
    tokenizer = featurizer.tokenizer
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(4)] == [
        "<s>",
        "<pad>",
        "</s>",
        "<unk>",
    ]
    assert (
        featurizer.token_ids("a dog\na bell\na dog\n\n")
        == tokenizer("a dog</s>a bell")["input_ids"]
    )
    long = " ".join(["bright warm tone"] * 30)
    ids = featurizer.token_ids(long)
    assert 128 < len(ids) < 256
    tokens = featurizer.text(["a dog barks", long])
    assert tokens["input_ids"].shape == (2, 2, 128)  # always padded to the segment length
    assert tokens["segment_weights"].tolist() == [[len(featurizer.token_ids("a dog barks")), 0],
                                                  [128, len(ids) - 128]]  # fmt: skip
    assert tokens["input_ids"][1, 1].tolist() == ids[-128:]  # the last segment: the final 128 ids
    assert (tokens["input_ids"][0, 0, tokens["attention_mask"][0, 0] == 0] == 1).all()  # <pad>
    with pytest.raises(ValueError, match="text 1: expected a non-empty string"):
        featurizer.text(["a", "  "])


def test_a_clips_embedding_does_not_depend_on_its_batch(small):
    """Chunks run at their own length (HuBERT's GroupNorm over time), texts are padded to 128."""
    waves = upstream.waves()[:3] + [np.ones(5000, dtype=np.float32)]
    together = small.embed_audio(waves)
    alone = torch.cat([small.embed_audio([wave]) for wave in waves])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)
    assert torch.isfinite(together).all()
    texts = ["a dog barks", upstream.TEXTS[2], "rain"]
    torch.testing.assert_close(small.embed_text(texts),
                               torch.cat([small.embed_text([t]) for t in texts]), atol=1e-6, rtol=0)  # fmt: skip


# -- export, loading and errors ---------------------------------------------------------------------


def test_export_reloads_to_the_same_embeddings_and_keeps_the_temperature(small, tmp_path):
    with torch.no_grad():
        small.logit_scale.fill_(1.25)
    try:
        again = from_clamp3(str(small.save_pretrained(tmp_path / "again")))
    finally:
        with torch.no_grad():
            small.logit_scale.fill_(0.0)
    waves, texts = upstream.waves()[:2], ["a dog barks", "a bell rings"]
    torch.testing.assert_close(again.embed_audio(waves), small.embed_audio(waves), atol=0, rtol=0)
    torch.testing.assert_close(again.embed_text(texts), small.embed_text(texts), atol=0, rtol=0)
    assert again.logit_scale.item() == 1.25
    stored = torch.load(tmp_path / "again" / "weights_clamp3_small.pth", weights_only=True)
    assert set(stored) == {"model"}  # what CLaMP 3's load_state_dict(checkpoint['model']) reads
    assert stored["model"].keys() == small.model.state_dict().keys()  # no temperature, no MERT
    record = json.loads((tmp_path / "again" / "clamp3_config.json").read_text())
    assert record["logit_scale"] == 1.25 and record["mert"] == "mert"


def test_model_argument_takes_an_export_folder_and_a_release_file(export, tmp_path):
    assert resolve_model(str(export)).kind == "clamp3_dir"
    resolved = resolve_model(str(release_layout(export, tmp_path / "clamp3")))
    assert resolved.kind == "clamp3_pth"
    assert type(resolved.backbone).__name__ == "Clamp3Backbone"


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda s: s.pop("audio_model.pooler.dense.bias"), "1 weight of the model is not in the file"),
        (lambda s: s.update({"text_model.extra": torch.zeros(1)}), "1 tensor of the file is not in the model"),
        (lambda s: s.update({"text_proj.bias": torch.zeros(3)}), "does not fit CLaMP 3"),
    ],
)  # fmt: skip
def test_a_release_file_that_does_not_fit_is_refused_by_name(export, tmp_path, change, message):
    path = release_layout(export, tmp_path / "clamp3")
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint["model"])
    torch.save(checkpoint, path)
    with pytest.raises(Clamp3Error, match=message) as error:
        from_clamp3(str(path))
    assert str(path) in str(error.value)


def test_only_the_symbolic_tower_is_dropped(export, tmp_path, caplog):
    path = release_layout(export, tmp_path / "clamp3")
    with caplog.at_level("INFO"):
        from_clamp3(str(path))
    assert "11 symbolic-tower tensors" in caplog.text or "symbolic-tower tensors" in caplog.text
    bare = release_layout(export, tmp_path / "bare", symbolic=False)  # also fine without it
    from_clamp3(str(bare))


def test_missing_files_name_the_commands_that_fetch_them(export, tmp_path):
    path = tmp_path / "checkpoints" / "clamp3" / RELEASE_FILE
    with pytest.raises(Clamp3Error) as error:
        from_clamp3(str(path))
    text = str(error.value)
    assert f"hf download sander-wood/clamp3 {RELEASE_FILE} --local-dir {path.parent}" in text
    assert (
        f"hf download m-a-p/MERT-v1-95M config.json pytorch_model.bin --local-dir {path.parent}/MERT-v1-95M"
        in text
    )
    tokenizer = '--include "*.json" --include sentencepiece.bpe.model'
    assert (
        f"hf download FacebookAI/xlm-roberta-base {tokenizer} --local-dir {path.parent}/xlm-roberta-base"
        in text
    )
    assert text.endswith("then run the command again.")
    release = release_layout(export, tmp_path / "c")
    (release.parent / MERT_FOLDER).unlink()
    with pytest.raises(
        Clamp3Error,
        match=r"(?s)MERT-v1-95M/config.json' does not exist.*hf download m-a-p/MERT-v1-95M",
    ):
        from_clamp3(str(release))
    (release.parent / TEXT_FOLDER).unlink()
    with pytest.raises(
        Clamp3Error,
        match=r"(?s)xlm-roberta-base/config.json' does not exist.*hf download FacebookAI",
    ):
        from_clamp3(str(release))


def test_a_mert_that_is_not_mert_v1_95m_is_refused(export, tmp_path):
    release = release_layout(export, tmp_path / "clamp3")
    mert = tmp_path / "mert"
    mert.mkdir()
    (mert / "pytorch_model.bin").symlink_to(export / "mert" / "pytorch_model.bin")
    config = json.loads((export / "mert" / "config.json").read_text())
    for key, value in (
        ("feature_extractor_cqt", True),
        ("do_stable_layer_norm", True),
        ("deepnorm", True),
    ):
        (mert / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(
            Clamp3Error, match=f"MERT's {key} is True, but CLaMP 3 uses MERT-v1-95M"
        ):
            from_clamp3(str(release), mert=str(mert))
    state = torch.load(export / "mert" / "pytorch_model.bin", weights_only=True)
    state["label_embs_concat"] = torch.zeros(2)
    (mert / "pytorch_model.bin").unlink()
    torch.save(state, mert / "pytorch_model.bin")
    (mert / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        Clamp3Error, match=r"1 tensor of the file is not in the model \(label_embs_concat\)"
    ):
        from_clamp3(str(release), mert=str(mert))


def test_other_files_are_refused(tmp_path, export):
    other = tmp_path / "laion.pt"
    torch.save({"state_dict": {"text_branch.x": torch.zeros(1)}}, other)
    (tmp_path / TEXT_FOLDER).symlink_to(export / "tokenizer")
    with pytest.raises(Clamp3Error, match="not a CLaMP 3 checkpoint"):
        from_clamp3(str(other))
    with pytest.raises(Clamp3Error, match="folder without clamp3_config.json"):
        from_clamp3(str(tmp_path))


def test_random_weights_depend_on_the_seed_and_shapes_only():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        first = Clamp3Model(small_config())
        torch.manual_seed(2)
        second = Clamp3Model(small_config())
    a, b = random_state_dict(first, seed=3), random_state_dict(second, seed=3)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not torch.equal(
        random_state_dict(first, seed=4)["audio_proj.weight"], a["audio_proj.weight"]
    )


def test_a_stored_run_config_may_build_clamp3(tmp_path):
    for config in (
        {"_target_": "humanclap.backbones.clamp3.from_clamp3", "path": "x.pth", "mert": "m", "tokenizer": "t"},
        {"_target_": "humanclap.backbones.clamp3.clamp3_random", "size": "small", "seed": 0},
    ):  # fmt: skip
        check_model_config(config, tmp_path / "run.ckpt")


def test_mert_never_trains_and_the_unreached_weights_are_frozen(export):
    """MERT is no tower's: frozen and in eval mode whatever is frozen or trained; the poolers and the
    audio BERT's unused word embedding are left to ``unused_parameters`` (the gradient test of every
    family is tests/backbones/test_families.py)."""
    backbone = from_clamp3(str(export))
    backbone.train()
    assert not backbone.mert.training and backbone.model.audio_model.training
    assert all(not p.requires_grad for p in backbone.mert.parameters())
    backbone.freeze(audio=False, text=False)
    assert all(not p.requires_grad for p in backbone.mert.parameters())
    unused = {id(p) for p in backbone.unused_parameters()}
    names = [n for n, p in backbone.named_parameters() if id(p) in unused]
    assert any("pooler" in n for n in names)
    assert any("audio_model.embeddings.word_embeddings" in n for n in names)
