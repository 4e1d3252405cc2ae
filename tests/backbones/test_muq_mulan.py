"""MuQ-MuLan (humanclap/backbones/muq/): the port against the ``muq`` package's own outputs, the
release's layout, the featurizer's clips and tokens, loading errors, and training + export + reload.

``muq`` cannot run beside humanclap (x_clip/torchvision, and a forward pass that breaks under
transformers 5); its outputs on the same random weights and inputs, and the full-size release's
key/shape list, are stored in tests/fixtures/muq_mulan/ by the script there (which says how to rerun it).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from cli import REPO

from humanclap.backbones.checkpoint_safety import check_model_config
from humanclap.backbones.muq import (
    RELEASE,
    MuQMuLan,
    MuqMulanError,
    from_muq_mulan,
    small_config,
)
from humanclap.backbones.muq.backbone import (
    TOKENIZER_DIR,
    WEIGHTS_FILE,
    random_backbone,
    random_state_dict,
)
from humanclap.backbones.muq.featurizer import all_clips
from humanclap.backbones.resolve import resolve_model

FIXTURES = REPO / "tests" / "fixtures" / "muq_mulan"
sys.path.insert(0, str(FIXTURES))
import muq_mulan_upstream as upstream  # noqa: E402


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small random model as a release folder (config.json, pytorch_model.bin, tokenizer and
    tower configs) and as an export folder."""
    root = tmp_path_factory.mktemp("muq")
    backbone = random_backbone("small", seed=upstream.SEED)
    return backbone.save_release(root / "release"), backbone.save_pretrained(root / "export")


def _waves(seconds=(0.4, 1.0, 12.5), rate=24_000):
    return [
        np.random.RandomState(i).randn(int(s * rate)).astype(np.float32) * 0.1 * (i + 1)
        for i, s in enumerate(seconds)
    ]


# -- the port against upstream ---------------------------------------------------------------------


def test_a_release_folder_embeds_as_muq_itself_does(small):
    """Loaded as a download is (config.json + pytorch_model.bin + tokenizer folder), the small random
    model gives the ``muq`` package's embeddings of the same waves (a 12.5 s file: two clips, the
    second wrapped to the start) and texts (each embedded alone, as upstream must)."""
    release, _ = small
    reference = np.load(FIXTURES / "upstream_small.npz")
    backbone = resolve_model(str(release)).backbone
    tokens = backbone.featurizer.text(upstream.TEXTS)["input_ids"].numpy()
    np.testing.assert_array_equal(tokens, reference["input_ids"])  # pad id 1 after </s>, as XLM-R
    audio = backbone.embed_audio(upstream.waves()).numpy()
    text = backbone.embed_text(upstream.TEXTS).numpy()
    np.testing.assert_allclose(audio, reference["audio"], atol=1e-5)
    np.testing.assert_allclose(text, reference["text"], atol=1e-5)
    # The comparison can fail: different clips and texts are far apart next to the tolerance.
    for rows in (reference["audio"], reference["text"]):
        distances = np.linalg.norm(rows[:, None] - rows[None], axis=-1)[np.triu_indices(3, 1)]
        assert distances.min() > 100 * 1e-5
    assert reference["audio_norm"][0] < 1 - 1e-4  # upstream's mean of two clips, renormalised here
    assert backbone.logit_scale.item() == pytest.approx(float(reference["temperatures"].item()))


def test_the_full_size_layout_is_the_releases():
    """On the meta device (no 2.8 GB build): every key and shape of the ``muq`` package's full-size
    model (tests/fixtures/muq_mulan/release_manifest.json), 709 M values."""
    manifest = json.loads((FIXTURES / "release_manifest.json").read_text())
    with torch.device("meta"):
        model = MuQMuLan(RELEASE)
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert ours == manifest
    assert sum(int(np.prod(shape)) for shape in ours.values()) == 709_345_229
    assert len(ours) == 815


def test_the_front_end_is_torchaudios():
    import torchaudio  # a core dependency

    from humanclap.backbones.muq.frontend import MelSTFT

    waves = torch.from_numpy(np.stack([w[:48_000] for w in _waves((2.0, 2.0))]))
    theirs = torchaudio.transforms.AmplitudeToDB()(
        torchaudio.transforms.MelSpectrogram(
            sample_rate=24_000, n_fft=2048, hop_length=240, n_mels=128
        )(waves)
    )
    torch.testing.assert_close(MelSTFT()(waves), theirs, atol=1e-4, rtol=0)


# -- the featurizer --------------------------------------------------------------------------------


def test_clips_are_upstreams_consecutive_ten_seconds_with_the_remainder_wrapped():
    delta = 10
    wave = np.arange(25, dtype=np.float32)
    clips = all_clips(wave, delta)
    np.testing.assert_array_equal(clips[0], np.arange(10))
    np.testing.assert_array_equal(clips[1], np.arange(10, 20))
    # _get_all_clips: cat(audio[20:], audio[0:10 - 5]) -> the file's start, not the remainder's
    np.testing.assert_array_equal(clips[2], [20, 21, 22, 23, 24, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(
        all_clips(np.arange(20, dtype=np.float32), delta), [np.arange(10), np.arange(10, 20)]
    )
    np.testing.assert_array_equal(
        all_clips(np.arange(7, dtype=np.float32), delta)[0], [0, 1, 2, 3, 4, 5, 6, 0, 1, 2]
    )
    # Shorter than half a clip: repeated to fill it (upstream returns a clip of twice the length).
    np.testing.assert_array_equal(
        all_clips(np.arange(3, dtype=np.float32), delta)[0], [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    )


def test_collate_pads_files_to_the_most_clips_and_masks_the_padding(small):
    _, export = small
    featurizer = from_muq_mulan(str(export)).featurizer
    assert featurizer.sample_rate == 24_000 and featurizer.clip_samples == 240_000
    batch = featurizer.audio(_waves())
    assert batch["input_values"].shape == (3, 2, 240_000)
    assert batch["clip_mask"].tolist() == [[True, False], [True, False], [True, True]]
    assert (batch["input_values"][0, 1] == 0).all()
    assert featurizer.describe()["samples"] == 240_000


def test_texts_are_xlm_r_tokens_cut_at_the_towers_length_and_batch_independent(small):
    _, export = small
    backbone = from_muq_mulan(str(export))
    featurizer = backbone.featurizer
    tokens = featurizer.text(["a dog barks"])
    ids = tokens["input_ids"][0].tolist()
    assert ids[0] == 0 and ids[-1] == 2 and featurizer.tokenizer.pad_token_id == 1
    assert featurizer.max_text_tokens == 128  # the small XLM-R's 130 positions - 2
    long = featurizer.text([" ".join(["dog"] * 400)])
    assert long["input_ids"].shape[1] == 128
    backbone.embed_text([" ".join(["dog"] * 400)])  # upstream would fail in XLM-R
    alone = backbone.embed_text(["a dog barks"])
    together = backbone.embed_text(["a dog barks", "rain falls on the roof while a bell rings"])
    torch.testing.assert_close(alone[0], together[0], atol=1e-6, rtol=0)


# -- export, reload, resolve -----------------------------------------------------------------------


def test_export_reloads_identically_and_is_in_the_release_format(small, tmp_path):
    release, export = small
    backbone = from_muq_mulan(str(release))
    again = from_muq_mulan(str(backbone.save_pretrained(tmp_path / "again")))
    waves, texts = _waves(), ["a dog barks", "a bell rings"]
    torch.testing.assert_close(
        again.embed_audio(waves), backbone.embed_audio(waves), atol=0, rtol=0
    )
    torch.testing.assert_close(again.embed_text(texts), backbone.embed_text(texts), atol=0, rtol=0)
    stored = torch.load(tmp_path / "again" / WEIGHTS_FILE, weights_only=True)
    assert stored.keys() == torch.load(release / WEIGHTS_FILE, weights_only=True).keys()
    assert stored["mulan.contrast.temperatures"].shape == (1, 1, 1)  # as upstream stores it
    record = json.loads((tmp_path / "again" / "muq_mulan_config.json").read_text())
    assert record["tokenizer"] == TOKENIZER_DIR and record["config"]["mulan"]["clip_secs"] == 10
    assert resolve_model(str(export)).kind == "muq_mulan_dir"


def test_legacy_xlm_r_buffers_in_a_release_are_accepted(small, tmp_path):
    release, _ = small
    folder = tmp_path / "release"
    _copy_release(release, folder)
    state = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    state["mulan.text.model.embeddings.position_ids"] = torch.arange(130)[None]
    torch.save(state, folder / WEIGHTS_FILE)
    from_muq_mulan(str(folder))


def _copy_release(release, folder):
    import shutil

    shutil.copytree(release, folder)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda s: s.pop("mulan.audio_to_latents.weight"), "1 weight of the model is not in the file"),
        (lambda s: s.update(extra=torch.zeros(1)), "1 tensor of the file is not in the model"),
        (lambda s: s.update({"mulan.contrast.temperatures": torch.zeros(3)}), "does not fit this MuQ-MuLan"),
    ],
)  # fmt: skip
def test_a_weights_file_that_does_not_fit_is_refused_by_name(small, tmp_path, change, message):
    release, _ = small
    folder = tmp_path / "release"
    _copy_release(release, folder)
    state = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    change(state)
    torch.save(state, folder / WEIGHTS_FILE)
    with pytest.raises(MuqMulanError, match=message) as error:
        from_muq_mulan(str(folder))
    assert str(folder / WEIGHTS_FILE) in str(error.value)


def test_the_release_config_is_read_and_validated(small, tmp_path):
    release, _ = small
    folder = tmp_path / "release"
    _copy_release(release, folder)
    config = json.loads((folder / "config.json").read_text())
    config["mulan"]["sigmoid_contrastive_loss"] = True
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MuqMulanError, match="sigmoid and hierarchical"):
        from_muq_mulan(str(folder))
    del config["audio_transformer"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MuqMulanError, match=r"lacks the section\(s\) \['audio_transformer'\]"):
        from_muq_mulan(str(folder))
    config = json.loads((release / "config.json").read_text())
    config["audio_transformer"]["tf_depth"] = "8"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MuqMulanError, match="'audio_transformer.tf_depth' must be int"):
        from_muq_mulan(str(folder))
    config["audio_transformer"]["tf_depth"] = 3  # valid, but not the file's depth
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MuqMulanError, match="of the model (is|are) not in the file"):
        from_muq_mulan(str(folder))


def test_missing_files_name_the_commands_that_fetch_them(small, tmp_path):
    folder = tmp_path / "checkpoints" / "muq_mulan"
    with pytest.raises(MuqMulanError) as error:
        from_muq_mulan(str(folder))
    text = str(error.value)
    assert (
        f"hf download OpenMuQ/MuQ-MuLan-large config.json pytorch_model.bin --local-dir {folder}"
        in text
    )
    assert (f'hf download FacebookAI/xlm-roberta-base --include "*.json" --include '
            f"sentencepiece.bpe.model --local-dir {folder}/xlm-roberta-base") in text  # fmt: skip
    assert text.endswith("then run the command again.")
    release, _ = small
    _copy_release(release, folder)
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(MuqMulanError, match="has no pytorch_model.bin"):
        from_muq_mulan(str(folder))
    _copy_release(release, tmp_path / "other")
    import shutil

    shutil.rmtree(tmp_path / "other" / "xlm-roberta-base")
    with pytest.raises(MuqMulanError, match="needs its text tower's tokenizer") as error:
        from_muq_mulan(str(tmp_path / "other"))
    assert f"--local-dir {tmp_path / 'other' / 'xlm-roberta-base'}" in str(error.value)


def test_other_folders_and_records_are_refused(small, tmp_path):
    clap = tmp_path / "clap"
    clap.mkdir()
    (clap / "config.json").write_text(json.dumps({"text_config": {}, "audio_config": {}}))
    (clap / WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(MuqMulanError, match="is not MuQ-MuLan's config.json"):
        from_muq_mulan(str(clap))
    from humanclap.backbones.muq import is_muq_mulan_directory

    assert not is_muq_mulan_directory(clap)
    _, export = small
    copy = tmp_path / "export"
    _copy_release(export, copy)
    record = copy / "muq_mulan_config.json"
    record.write_text(record.read_text().replace('"tokenizer": "tokenizer"', '"tokenizer": "../x"'))
    with pytest.raises(MuqMulanError, match="must name a file inside the export folder"):
        from_muq_mulan(str(copy))


def test_random_weights_depend_on_the_seed_and_shapes_only():
    """Not on the modules' own initialisation (the torch seed): the reference file stays valid."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        first = MuQMuLan(small_config())
        torch.manual_seed(2)
        second = MuQMuLan(small_config())
    a, b = random_state_dict(first, seed=3), random_state_dict(second, seed=3)
    assert all(torch.equal(a[key], b[key]) for key in a)
    key = "mulan.audio_to_latents.weight"
    assert not torch.equal(random_state_dict(first, seed=4)[key], a[key])


def test_a_stored_run_config_may_build_muq_mulan(tmp_path):
    for config in (
        {"_target_": "humanclap.backbones.muq.from_muq_mulan", "path": "checkpoints/muq_mulan", "tokenizer": None},
        {"_target_": "humanclap.backbones.muq.muq_mulan_random", "size": "small", "seed": 0},
    ):  # fmt: skip
        check_model_config(config, tmp_path / "run.ckpt")


def test_the_weights_no_embedding_reaches_are_frozen(small):
    """MuQ's head, cls token, positional conv, the aggregator and XLM-R's pooler (the gradient test of
    every family is tests/backbones/test_families.py)."""
    _, export = small
    backbone = from_muq_mulan(str(export))
    unused = {id(p) for p in backbone.unused_parameters()}
    names = [n for n, p in backbone.named_parameters() if id(p) in unused]
    assert any("pos_conv_embed" in n for n in names) and any("aggregator" in n for n in names)
    assert any("pooler" in n for n in names)
