"""MS-CLAP (humanclap/backbones/msclap/): the port against msclap's own code, the release file
format, the featurizer's cropping and tokenisation, loading errors, and training + export + reload.

msclap cannot be installed beside humanclap (it pins transformers<5); its outputs on the same random
weights and inputs are stored in tests/fixtures/msclap/ by the script there (which says how to rerun it).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from cli import REPO

from humanclap.backbones.checkpoint_safety import check_model_config
from humanclap.backbones.msclap import (
    VERSIONS,
    MsClapError,
    build_random_msclap,
    from_msclap,
)
from humanclap.backbones.msclap.backbone import TOKENIZER_DIR, random_state_dict
from humanclap.backbones.msclap.model import MsClapModel, small_config
from humanclap.backbones.resolve import resolve_model

sys.path.insert(0, str(REPO / "tests" / "fixtures" / "msclap"))
import msclap_upstream as upstream  # noqa: E402


@pytest.fixture(scope="module", params=["2023", "2022"])
def small(request, tmp_path_factory):
    """A small random export of each release's code path (1 s clips)."""
    directory = tmp_path_factory.mktemp(f"msclap-{request.param}") / "export"
    build_random_msclap(directory, request.param, "small", seed=0)
    return request.param, directory


def _waves(seconds=(0.4, 1.0, 2.5), rate=44_100):
    return [
        np.random.RandomState(i).randn(int(s * rate)).astype(np.float32) * 0.1 * (i + 1)
        for i, s in enumerate(seconds)
    ]


# -- the front end and the port ------------------------------------------------------------------


@pytest.mark.parametrize("rate,fmax", [(32_000, 14_000), (44_100, 14_000)])
def test_the_front_end_is_torchlibrosas(rate, fmax):
    from torchlibrosa.stft import LogmelFilterBank as TheirMel
    from torchlibrosa.stft import Spectrogram as TheirSpectrogram

    from humanclap.backbones.msclap.frontend import LogmelFilterBank, Spectrogram

    theirs = TheirSpectrogram(n_fft=1024, hop_length=320, win_length=1024, window="hann",
                              center=True, pad_mode="reflect", freeze_parameters=True)  # fmt: skip
    their_mel = TheirMel(sr=rate, n_fft=1024, n_mels=64, fmin=50, fmax=fmax, ref=1.0, amin=1e-10,
                         top_db=None, freeze_parameters=True)  # fmt: skip
    ours, our_mel = Spectrogram(1024, 320), LogmelFilterBank(rate, 1024, 64, 50, fmax)
    for their_state, our_state in ((theirs.state_dict(), ours.state_dict()),
                                   (their_mel.state_dict(), our_mel.state_dict())):  # fmt: skip
        assert their_state.keys() == our_state.keys()  # what a checkpoint stores
        for key in their_state:
            torch.testing.assert_close(our_state[key], their_state[key], atol=1e-8, rtol=0)
    waves = torch.from_numpy(np.stack([w[:44_100] for w in _waves((1.0, 1.0))]))
    torch.testing.assert_close(our_mel(ours(waves)), their_mel(theirs(waves)), atol=2e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("version", ["2023", "2022"])
def test_full_size_release_file_embeds_as_msclap_itself_does(version, tmp_path):
    """The full-size random release file, loaded as a download is (file + tokenizer folder), gives
    msclap 1.3.4's embeddings of the same clips and texts (tests/fixtures/msclap/)."""
    reference = np.load(REPO / "tests" / "fixtures" / "msclap" / f"upstream_{version}.npz")
    export = build_random_msclap(tmp_path / "export", version, "full", seed=upstream.SEED)
    weights = export / VERSIONS[version].weights_file
    try:
        backbone = from_msclap(str(weights), tokenizer=str(export / TOKENIZER_DIR))
        parameters = sum(p.numel() for p in backbone.model.parameters())
        audio = backbone.embed_audio(upstream.waves()).numpy()
        text = backbone.embed_text(upstream.TEXTS).numpy()
    finally:
        weights.unlink()  # ~0.6-0.8 GB
    assert parameters == {"2023": 159_439_064, "2022": 196_304_144}[version]  # = msclap's modules
    np.testing.assert_allclose(audio, reference["audio"], atol=1e-5)
    np.testing.assert_allclose(text, reference["text"], atol=1e-5)
    # The comparison can fail: different clips and texts are far apart next to the tolerance.
    for rows in (reference["audio"], reference["text"]):
        distances = np.linalg.norm(rows[:, None] - rows[None], axis=-1)[np.triu_indices(3, 1)]
        assert distances.min() > 100 * 1e-5
    assert backbone.logit_scale.item() == pytest.approx(float(reference["logit_scale"]))


def test_the_full_size_architectures_are_the_releases():
    """Shapes on the meta device (no 600 MB build): widths, depths and the embedding size."""
    with torch.device("meta"):
        gpt, bert = MsClapModel(VERSIONS["2023"]), MsClapModel(VERSIONS["2022"])
    gpt_state, bert_state = gpt.state_dict(), bert.state_dict()
    assert gpt_state["caption_encoder.base.wte.weight"].shape == (50_257, 768)
    assert gpt_state["audio_encoder.base.htsat.layers.3.blocks.1.mlp.fc2.weight"].shape == (
        768,
        3072,
    )
    assert gpt_state["audio_encoder.projection.linear1.weight"].shape == (1024, 768)
    assert bert_state["caption_encoder.base.embeddings.word_embeddings.weight"].shape == (
        30_522,
        768,
    )
    assert bert_state["audio_encoder.base.conv_block6.conv2.weight"].shape == (2048, 2048, 3, 3)
    assert bert_state["audio_encoder.projection.linear1.weight"].shape == (1024, 2048)
    assert sum(1 for k in gpt_state if k.startswith("caption_encoder.base.h.")) == 12 * 12


# -- the featurizer --------------------------------------------------------------------------------


def test_short_clips_are_repeated_and_long_ones_cropped_the_same_way_each_time(small):
    _, export = small
    featurizer = from_msclap(str(export)).featurizer
    samples = featurizer.clip_samples
    assert samples == 44_100  # the small models' 1 s
    short = np.arange(30_000, dtype=np.float32)
    repeated = featurizer.clip(short)["input_features"]
    np.testing.assert_array_equal(repeated, np.concatenate([short, short[: samples - 30_000]]))
    long = np.arange(100_000, dtype=np.float32)
    crop = featurizer.clip(long)["input_features"]
    start = int(crop[0])
    assert 0 <= start < 100_000 - samples
    np.testing.assert_array_equal(crop, long[start : start + samples])
    np.testing.assert_array_equal(featurizer.clip(long)["input_features"], crop)


def test_gpt2_texts_end_with_endoftext_and_read_it(tmp_path):
    export = build_random_msclap(tmp_path / "e", "2023", "small")
    backbone = from_msclap(str(export))
    tokenizer = backbone.featurizer.tokenizer
    assert tokenizer.convert_ids_to_tokens(0) == "!" and tokenizer.pad_token_id == 0  # as GPT-2's
    tokens = backbone.featurizer.text(["a dog barks", "rain falls on the roof while a bell rings"])
    first = tokens["input_ids"][0][tokens["attention_mask"][0].bool()]
    assert tokenizer.convert_ids_to_tokens(first.tolist())[-2:] == ["Ġ", "<|endoftext|>"]
    assert (tokens["input_ids"][0][len(first) :] == 0).all()  # padded with "!"
    # The embedding is read at the last real token, so it does not depend on the batch.
    alone = backbone.embed_text(["a dog barks"])
    together = backbone.embed_text(["a dog barks", "rain falls on the roof while a bell rings"])
    torch.testing.assert_close(alone[0], together[0], atol=1e-6, rtol=0)


def test_bert_texts_get_cls_sep_and_token_types(tmp_path):
    export = build_random_msclap(tmp_path / "e", "2022", "small")
    featurizer = from_msclap(str(export)).featurizer
    tokens = featurizer.text(["a dog barks"])
    assert set(tokens) == {"input_ids", "attention_mask", "token_type_ids"}
    words = featurizer.tokenizer.convert_ids_to_tokens(tokens["input_ids"][0].tolist())
    assert words[0] == "[CLS]" and words[-1] == "[SEP]"
    assert featurizer.max_text_tokens == 100


# -- export, reload, resolve -----------------------------------------------------------------------


def test_export_reloads_identically_and_is_in_the_release_format(small, tmp_path):
    version, export = small
    backbone = from_msclap(str(export))
    again = from_msclap(str(backbone.save_pretrained(tmp_path / "again")))
    waves, texts = _waves(), ["a dog barks", "a bell rings"]
    torch.testing.assert_close(again.embed_audio(waves), backbone.embed_audio(waves))
    torch.testing.assert_close(again.embed_text(texts), backbone.embed_text(texts))
    stored = torch.load(tmp_path / "again" / f"CLAP_weights_{version}.pth", weights_only=True)
    assert set(stored) == {"model"}  # what msclap's CLAPWrapper(model_fp=...) reads
    assert stored["model"].keys() == backbone.model.state_dict().keys()
    record = json.loads((tmp_path / "again" / "msclap_config.json").read_text())
    assert record["config"]["version"] == version and record["tokenizer"] == "tokenizer"


def test_model_argument_takes_an_export_folder_and_a_release_file(small, tmp_path):
    version, export = small
    resolved = resolve_model(str(export))
    assert resolved.kind == "msclap_dir"
    # A release file beside its tokenizer folder named after the text tower (what the hints fetch).
    folder = tmp_path / "msclap"
    folder.mkdir()
    release = folder / f"CLAP_weights_{version}.pth"
    release.symlink_to(export / f"CLAP_weights_{version}.pth")
    with pytest.raises(MsClapError, match="needs its text tower's tokenizer") as error:
        resolve_model(str(release))
    assert f"--local-dir {folder}/{VERSIONS[version].text_model}" in str(error.value)
    (folder / VERSIONS[version].text_model).symlink_to(export / TOKENIZER_DIR)
    with pytest.raises(MsClapError, match="does not fit MS-CLAP"):  # small weights, release config
        resolve_model(str(release))


def test_old_transformers_buffers_in_a_release_are_accepted(tmp_path):
    export = build_random_msclap(tmp_path / "e", "2023", "small")
    path = export / "CLAP_weights_2023.pth"
    state = torch.load(path, weights_only=True)["model"]
    state["caption_encoder.base.h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 8, 8))
    state["caption_encoder.base.h.1.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save({"model": state}, path)
    from_msclap(str(export))


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda s: s.pop("audio_encoder.projection.linear1.weight"), "1 weight of the model is not in the file"),
        (lambda s: s.update(extra=torch.zeros(1)), "1 tensor of the file is not in the model"),
        (lambda s: s.update({"logit_scale": torch.zeros(3)}), "does not fit MS-CLAP 2023"),
    ],
)  # fmt: skip
def test_a_release_file_that_does_not_fit_is_refused_by_name(tmp_path, change, message):
    export = build_random_msclap(tmp_path / "e", "2023", "small")
    path = export / "CLAP_weights_2023.pth"
    state = torch.load(path, weights_only=True)["model"]
    change(state)
    torch.save({"model": state}, path)
    with pytest.raises(MsClapError, match=message) as error:
        from_msclap(str(export))
    assert str(path) in str(error.value)


def test_missing_weights_name_the_commands_that_fetch_them(tmp_path):
    path = tmp_path / "checkpoints" / "msclap" / "CLAP_weights_2022.pth"
    with pytest.raises(MsClapError) as error:
        from_msclap(str(path), version="2022")
    text = str(error.value)
    assert f"hf download microsoft/msclap CLAP_weights_2022.pth --local-dir {path.parent}" in text
    assert "hf download google-bert/bert-base-uncased config.json tokenizer.json" in text
    assert text.endswith("then run the command again.")


def test_other_files_and_versions_are_refused(tmp_path):
    other = tmp_path / "laion.pt"
    torch.save({"state_dict": {"text_branch.x": torch.zeros(1)}}, other)
    with pytest.raises(MsClapError, match="not an MS-CLAP checkpoint.*model=laion_ckpt"):
        from_msclap(str(other))
    export = build_random_msclap(tmp_path / "e", "2023", "small")
    with pytest.raises(MsClapError, match="holds MS-CLAP 2023 weights.*use model=msclap_2023"):
        from_msclap(str(export / "CLAP_weights_2023.pth"), version="2022",
                    tokenizer=str(export / TOKENIZER_DIR))  # fmt: skip
    with pytest.raises(MsClapError, match="version must be one of"):
        from_msclap(str(export), version="2024")
    record = export / "msclap_config.json"
    record.write_text(record.read_text().replace('"tokenizer": "tokenizer"', '"tokenizer": "../x"'))
    with pytest.raises(MsClapError, match="must name a file inside the export folder"):
        from_msclap(str(export))


def test_random_weights_depend_on_the_seed_and_shapes_only():
    """Not on the modules' own initialisation (the torch seed): the reference file stays valid."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        first = MsClapModel(small_config("2023"))
        torch.manual_seed(2)
        second = MsClapModel(small_config("2023"))
    a, b = random_state_dict(first, seed=3), random_state_dict(second, seed=3)
    assert all(torch.equal(a[key], b[key]) for key in a)
    key = "audio_encoder.projection.linear1.weight"
    assert not torch.equal(random_state_dict(first, seed=4)[key], a[key])


def test_a_stored_run_config_may_build_msclap(tmp_path):
    for config in (
        {"_target_": "humanclap.backbones.msclap.from_msclap", "path": "x.pth", "version": 2023},
        {"_target_": "humanclap.backbones.msclap.msclap_random", "version": "2023", "size": "small", "seed": 0},
    ):  # fmt: skip
        check_model_config(config, tmp_path / "run.ckpt")
