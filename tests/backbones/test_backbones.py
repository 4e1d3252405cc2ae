"""ClapBackbone / ClapFeaturizer / from_pretrained / the tiny model, checked against plain transformers.

References are computed with transformers objects only (``ClapModel``, ``ClapProcessor``), never
through humanclap code: the processor's feature extractor and tokenizer, then the model's
submodules audio_model -> audio_projection -> L2 normalisation (text likewise).
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import ClapFeatureExtractor, ClapModel, ClapProcessor

from humanclap.backbones import (
    MAX_LOGIT_SCALE,
    CheckpointNotAvailable,
    ClapBackbone,
    build_tiny_clap,
    from_pretrained,
    tiny_clap,
)
from humanclap.backbones.pretrained import default_processor

SR = 48_000
MAX_SAMPLES = SR  # the tiny model's context: max_length_s=1 at 48 kHz
HOP = 480
TEXTS = [
    "a bright sound",
    "dark",
    "something loud and noisy",
    "a low-pitched hum followed by a whistle",
]
# Observed: <= 2e-7 (the extractor computes the mel in float64 for a batched list, float32 per
# clip in ClapFeaturizer). A wrong feature, projection or normalisation moves rows by > 1e-2.
ATOL = 1e-5


def clip(seconds: float, seed: int, kind: str = "noise") -> np.ndarray:
    n = int(round(seconds * SR))
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return (0.1 * rng.standard_normal(n)).astype(np.float32)
    t = np.arange(n) / SR
    return (0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t)).astype(np.float32)


SHORT = [clip(0.25, 1), clip(0.5, 2, "sine"), clip(0.9, 3)]
LONG = clip(2.5, 4)  # > max length: fused from three crops (fused) or one crop (unfused)


@contextmanager
def eval_mode(module: torch.nn.Module):
    """Inference mode for a module that may belong to a session fixture, restoring its mode after."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was_training)


def hand_audio(model: ClapModel, processor: ClapProcessor, waves, is_longer=None) -> torch.Tensor:
    features = processor.feature_extractor(waves, sampling_rate=SR, return_tensors="pt")
    longer = features["is_longer"] if is_longer is None else is_longer
    with eval_mode(model):
        pooled = model.audio_model(
            input_features=features["input_features"].float(), is_longer=longer
        ).pooler_output
        return F.normalize(model.audio_projection(pooled), dim=-1)


def hand_text(model: ClapModel, processor: ClapProcessor, texts) -> torch.Tensor:
    tokens = processor.tokenizer(texts, padding=True, return_tensors="pt")
    with eval_mode(model):
        pooled = model.text_model(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).pooler_output
        return F.normalize(model.text_projection(pooled), dim=-1)


def check_embedding_matrix(matrix: torch.Tensor, n: int, dim: int) -> None:
    assert matrix.shape == (n, dim)
    assert matrix.dtype == torch.float32
    assert matrix.device.type == "cpu"
    assert not matrix.requires_grad
    assert torch.allclose(matrix.norm(dim=-1), torch.ones(n), atol=1e-5)


# -- the tiny model round trip -------------------------------------------------------------------


def test_tiny_checkpoint_loads_in_plain_transformers_and_matches_hand_embeddings(tmp_path):
    directory = build_tiny_clap(tmp_path / "tiny")
    model = ClapModel.from_pretrained(directory).eval()
    processor = ClapProcessor.from_pretrained(directory)
    assert processor.feature_extractor.sampling_rate == SR
    assert processor.feature_extractor.nb_max_samples == MAX_SAMPLES
    assert not model.config.audio_config.enable_fusion

    backbone = from_pretrained(str(directory))
    assert isinstance(backbone, ClapBackbone)
    assert backbone.sample_rate == SR
    dim = model.config.projection_dim

    audio = backbone.embed_audio(SHORT)
    expected_audio = hand_audio(model, processor, SHORT)
    check_embedding_matrix(audio, len(SHORT), dim)
    assert torch.allclose(audio, expected_audio, atol=ATOL), (audio - expected_audio).abs().max()

    text = backbone.embed_text(TEXTS)
    expected_text = hand_text(model, processor, TEXTS)
    check_embedding_matrix(text, len(TEXTS), dim)
    assert torch.allclose(text, expected_text, atol=ATOL), (text - expected_text).abs().max()

    # The comparison has teeth: different inputs do give different rows.
    assert (audio[0] - audio[1]).abs().max() > 1e-2
    assert (text[0] - text[1]).abs().max() > 1e-2
    # torch tensors are accepted like NumPy arrays; an empty list gives an empty (0, dim) matrix.
    assert torch.allclose(
        backbone.embed_audio([torch.from_numpy(w) for w in SHORT]), audio, atol=1e-6
    )
    assert backbone.embed_audio([]).shape == (0, dim)


def _weights(directory) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def test_tiny_weights_are_a_function_of_the_seed(tmp_path):
    first = _weights(build_tiny_clap(tmp_path / "a", seed=7))
    again = _weights(build_tiny_clap(tmp_path / "b", seed=7))
    other = _weights(build_tiny_clap(tmp_path / "c", seed=8))
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    differing = [k for k in first if not torch.equal(first[k], other[k])]
    assert (
        "audio_projection.linear1.weight" in differing
        and "text_projection.linear1.weight" in differing
    )


def test_building_the_tiny_model_leaves_the_global_rng_alone(tmp_path):
    """A cold cache (the model is built) and a warm one give the caller the same random stream."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_clap(tmp_path / "cold", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_save_pretrained_exports_changed_weights(tmp_path):
    backbone = tiny_clap()  # a fresh object: the session fixtures must stay untouched
    original = backbone.model.text_projection.linear1.weight.detach().clone()
    with torch.no_grad():
        backbone.model.text_projection.linear1.weight[0, 0] += 1.5
        backbone.model.logit_scale_a.fill_(1.25)
    changed = backbone.model.text_projection.linear1.weight.detach().clone()

    out = backbone.save_pretrained(tmp_path / "export")
    plain = ClapModel.from_pretrained(out)  # the exported directory is a transformers checkpoint
    ClapProcessor.from_pretrained(out)
    assert torch.equal(plain.text_projection.linear1.weight, changed)
    assert not torch.equal(plain.text_projection.linear1.weight, original)
    assert plain.logit_scale_a.item() == pytest.approx(1.25)

    reloaded = from_pretrained(str(out))
    exported = reloaded.state_dict()
    assert all(torch.equal(value, exported[key]) for key, value in backbone.state_dict().items())
    assert torch.allclose(reloaded.embed_text(TEXTS), backbone.embed_text(TEXTS), atol=1e-6)


# -- determinism of the fused model ---------------------------------------------------------------


def _global_numpy_state():
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return name, keys.copy(), pos, has_gauss, cached


def _same_numpy_state(a, b) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]


def test_raw_fusion_extractor_flags_a_random_short_clip(tiny_fused_backbone):
    """The reason ClapFeaturizer exists: transformers marks a random clip 'longer' under fusion."""
    extractor = tiny_fused_backbone.featurizer.feature_extractor
    assert all(w.size <= extractor.nb_max_samples for w in SHORT)
    saved = np.random.get_state()
    try:
        flagged = []
        for seed in range(8):
            np.random.seed(seed)
            out = extractor(SHORT, sampling_rate=SR, truncation="fusion", return_tensors="np")
            longer = out["is_longer"].ravel()
            assert longer.sum() == 1  # set although no clip is longer than max_length
            flagged.append(int(np.flatnonzero(longer)[0]))
    finally:
        np.random.set_state(saved)
    assert len(set(flagged)) > 1, flagged  # and which clip gets it depends on the global seed

    # The flag matters: the same short clip embeds differently with is_longer True and False.
    features = tiny_fused_backbone.featurizer.audio(SHORT[:1])
    assert not features["is_longer"].any()
    with eval_mode(tiny_fused_backbone):
        plain = tiny_fused_backbone.audio_embeddings(features)
        fused = tiny_fused_backbone.audio_embeddings(
            {**features, "is_longer": torch.ones(1, 1, dtype=torch.bool)}
        )
    assert (plain - fused).abs().max() > 1e-3


def test_fused_embed_audio_independent_of_batch_and_global_seed(tiny_fused_backbone):
    backbone = tiny_fused_backbone
    alone = torch.cat([backbone.embed_audio([w]) for w in SHORT + [LONG]])
    a, b, c = SHORT
    batches = [  # (clips, index of each clip in `alone`)
        ([a, b, c], [0, 1, 2]),
        ([c, b, a], [2, 1, 0]),
        ([b, c, a], [1, 2, 0]),
        ([LONG, a, b, c], [3, 0, 1, 2]),
        ([a, b, c, LONG], [0, 1, 2, 3]),
        ([a, a, LONG, c], [0, 0, 3, 2]),
    ]
    for seed, (clips, rows) in enumerate(batches):
        np.random.seed(100 + seed)
        before = _global_numpy_state()
        embedded = backbone.embed_audio(clips, batch_size=3)
        assert _same_numpy_state(before, np.random.get_state()), (
            "embed_audio changed numpy's global state"
        )
        assert torch.allclose(embedded, alone[rows], atol=1e-6), (
            seed,
            (embedded - alone[rows]).abs().max(),
        )

    # Short clips are featurized with is_longer=False, i.e. exactly as plain transformers would be
    # with the random flag switched off.
    processor = ClapProcessor(
        feature_extractor=backbone.featurizer.feature_extractor,
        tokenizer=backbone.featurizer.tokenizer,
    )
    for index, wave in enumerate(SHORT):
        expected = hand_audio(
            backbone.model, processor, [wave], is_longer=torch.zeros(1, 1, dtype=torch.bool)
        )
        assert torch.allclose(alone[index : index + 1], expected, atol=ATOL)


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_long_clips_get_deterministic_embeddings(fused, tiny_backbone, tiny_fused_backbone):
    backbone = tiny_fused_backbone if fused else tiny_backbone
    second = clip(3.2, 5)
    np.random.seed(1)
    first_call = backbone.embed_audio([LONG, second])
    np.random.seed(2)
    second_call = backbone.embed_audio([second, LONG])
    # Same rows whatever the global seed and position (with random crops they would differ).
    assert torch.allclose(first_call, second_call.flip(0), atol=1e-6)
    assert (first_call[0] - first_call[1]).abs().max() > 1e-3  # and the two clips are told apart
    assert backbone.featurizer.audio([LONG])["is_longer"].item() is True


def test_featurizer_is_longer_agrees_with_the_extractor(tiny_fused_backbone):
    featurizer = tiny_fused_backbone.featurizer
    assert featurizer.max_samples == MAX_SAMPLES
    lengths = [
        SR // 2,
        MAX_SAMPLES,
        MAX_SAMPLES + 1,
        MAX_SAMPLES + HOP - 1,
        MAX_SAMPLES + HOP,
        int(2.5 * SR),
    ]
    # Hand-computed: longer iff the clip has more mel frames (1 + n // hop) than one window (1 + 48000 // 480).
    expected = [False, False, False, False, True, True]
    waves = [clip(n / SR, i) for i, n in enumerate(lengths)]
    assert [w.size for w in waves] == lengths

    saved = np.random.get_state()
    try:
        raw = featurizer.feature_extractor(
            waves, sampling_rate=SR, truncation="fusion", return_tensors="np"
        )
    finally:
        np.random.set_state(saved)
    # A genuinely longer clip is present, so the extractor adds no random flag.
    assert raw["is_longer"].ravel().tolist() == expected
    assert [featurizer.is_longer(n) for n in lengths] == expected
    assert featurizer.audio(waves)["is_longer"].ravel().tolist() == expected
    features = featurizer.audio(waves)
    assert features["input_features"].shape == (len(lengths), 4, 1 + MAX_SAMPLES // HOP, 64)


# -- input validation ------------------------------------------------------------------------------

BAD_WAVES = {
    "stereo": (np.zeros((2, 4800), dtype=np.float32), "mono 1-D"),
    "empty": (np.zeros(0, dtype=np.float32), "empty"),
    "nan": (np.array([0.0, np.nan, 0.1] * 100, dtype=np.float32), "NaN"),
    "inf": (torch.tensor([0.0, float("inf")] * 100), "infinite"),
}


@pytest.mark.parametrize("kind", BAD_WAVES)
@pytest.mark.parametrize("batch_size", [32, 2])
def test_bad_waveforms_are_refused_naming_the_item(kind, batch_size, tiny_backbone):
    bad, reason = BAD_WAVES[kind]
    waves = [SHORT[0], SHORT[1], bad, SHORT[2]]
    # batch_size=2 puts the bad clip first in its batch: the message must still say item 2.
    with pytest.raises(ValueError, match=rf"waveform 2\b.*{reason}"):
        tiny_backbone.embed_audio(waves, batch_size=batch_size)


@pytest.mark.parametrize(
    "bad", ["", "   ", 3, None, b"bytes"], ids=["empty", "blank", "int", "none", "bytes"]
)
@pytest.mark.parametrize("batch_size", [64, 2])
def test_bad_texts_are_refused_naming_the_item(bad, batch_size, tiny_backbone):
    with pytest.raises(ValueError, match=r"text 2\b"):
        tiny_backbone.embed_text(["bright", "dark", bad, "loud"], batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_one_is_refused(batch_size, tiny_backbone):
    with pytest.raises(ValueError, match="batch_size"):
        tiny_backbone.embed_audio(SHORT, batch_size=batch_size)
    with pytest.raises(ValueError, match="batch_size"):
        tiny_backbone.embed_text(TEXTS, batch_size=batch_size)


def test_batch_size_does_not_change_embeddings(tiny_backbone):
    whole = tiny_backbone.embed_text(TEXTS)
    assert torch.allclose(tiny_backbone.embed_text(TEXTS, batch_size=1), whole, atol=1e-6)
    assert torch.allclose(
        tiny_backbone.embed_audio(SHORT, batch_size=2), tiny_backbone.embed_audio(SHORT), atol=1e-6
    )


# -- from_pretrained errors ------------------------------------------------------------------------


def test_missing_local_path_is_not_available(tmp_path):
    for source in (str(tmp_path / "no-such-checkpoint"), "no-such-checkpoint", "./a/b/c"):
        with pytest.raises(CheckpointNotAvailable, match="does not exist locally"):
            from_pretrained(source)
    assert issubclass(CheckpointNotAvailable, FileNotFoundError)


def test_file_instead_of_directory_points_to_laion_converter(tmp_path):
    checkpoint = tmp_path / "630k-audioset-best.pt"
    checkpoint.write_bytes(b"not a directory")
    with pytest.raises(CheckpointNotAvailable, match="from_laion_checkpoint"):
        from_pretrained(str(checkpoint))


def test_directory_without_config_is_not_available(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointNotAvailable, match="cannot be loaded"):
        from_pretrained(str(tmp_path / "empty"))


def test_uncached_hub_id_fails_fast_offline_with_download_hint():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by conftest
    start = time.monotonic()
    with pytest.raises(CheckpointNotAvailable) as error:
        from_pretrained("humanclap-tests/no-such-model")
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert "hf download humanclap-tests/no-such-model" in message
    assert "checkpoints/no-such-model" in message


def test_processor_with_other_mel_size_is_refused(tmp_path, tiny_backbone):
    directory = build_tiny_clap(tmp_path / "tiny")
    wrong = ClapProcessor(
        feature_extractor=ClapFeatureExtractor(feature_size=80, sampling_rate=SR),
        tokenizer=tiny_backbone.featurizer.tokenizer,
    )
    wrong.save_pretrained(tmp_path / "processor")
    with pytest.raises(ValueError, match="80 mel bins.*expects 64"):
        from_pretrained(str(directory), processor=str(tmp_path / "processor"))
    # The same processor directory with the right mel size loads.
    ClapProcessor(
        feature_extractor=tiny_backbone.featurizer.feature_extractor,
        tokenizer=tiny_backbone.featurizer.tokenizer,
    ).save_pretrained(tmp_path / "right")
    assert from_pretrained(str(directory), processor=str(tmp_path / "right"), name="x").name == "x"


def test_default_processor():
    assert default_processor("sarulab-speech/human-clap-wsce-mae") == "laion/clap-htsat-fused"
    assert default_processor("sarulab-speech/human-clap-mse-mae") == "laion/clap-htsat-fused"
    assert default_processor("laion/clap-htsat-unfused") == "laion/clap-htsat-unfused"
    assert default_processor("checkpoints/mine") == "checkpoints/mine"


# -- training utilities ----------------------------------------------------------------------------


def test_clamp_logit_scale_clamps_both_scales():
    backbone = tiny_clap()
    assert backbone.logit_scale is backbone.model.logit_scale_a
    assert MAX_LOGIT_SCALE == pytest.approx(math.log(100.0))
    for a, t, expected_a, expected_t in [
        (-2.0, 7.0, 0.0, math.log(100.0)),
        (9.0, -0.5, math.log(100.0), 0.0),
        (1.5, 3.0, 1.5, 3.0),
    ]:
        with torch.no_grad():
            backbone.model.logit_scale_a.fill_(a)
            backbone.model.logit_scale_t.fill_(t)
        backbone.clamp_logit_scale()
        assert backbone.model.logit_scale_a.item() == pytest.approx(expected_a)
        assert backbone.model.logit_scale_t.item() == pytest.approx(expected_t)
    assert backbone.model.logit_scale_a.requires_grad


def test_freeze_audio_tower_only():
    backbone = tiny_clap()
    backbone.freeze(audio=True)
    names = dict(backbone.named_parameters())
    audio = [n for n in names if n.startswith(("model.audio_model.", "model.audio_projection."))]
    text = [n for n in names if n.startswith(("model.text_model.", "model.text_projection."))]
    scales = ["model.logit_scale_a", "model.logit_scale_t"]
    assert audio and text and set(audio) | set(text) | set(scales) == set(names)
    assert not any(names[n].requires_grad for n in audio)
    assert all(names[n].requires_grad for n in text + scales)
    assert {id(p) for p in backbone.trainable_parameters()} == {id(names[n]) for n in text + scales}

    # Gradients reach the text tower and the temperature, never the audio tower.
    features = backbone.featurizer.audio(SHORT[:2])
    tokens = backbone.featurizer.text(TEXTS[:2])
    logits = (
        backbone.logit_scale.exp()
        * backbone.text_embeddings(tokens)
        @ backbone.audio_embeddings(features).T
    )
    logits.sum().backward()
    assert all(names[n].grad is None for n in audio)
    assert names["model.text_projection.linear1.weight"].grad.abs().sum() > 0
    assert names["model.logit_scale_a"].grad is not None

    backbone.freeze()  # nothing frozen
    assert all(p.requires_grad for p in backbone.parameters())


def test_a_single_string_is_refused_not_split_into_characters(tiny_backbone):
    with pytest.raises(TypeError, match="single string"):
        tiny_backbone.embed_text("a bright sound")


def test_tokenising_equals_the_tokenizers_batch_call_whatever_was_tokenised_before(tiny_backbone):
    """``featurizer.text`` keeps each text's ids and pads them itself: the same tensors as the
    tokenizer's own padded batch call, for every batch, in any order, long texts cut at 77 tokens."""
    featurizer = tiny_backbone.featurizer
    texts = [
        "a dog barks",
        "rain " * 100,
        "x",
        "Ünïcode — 🎵 sound",
        "  spaced   out  ",
        "a dog barks",
    ]
    for batch in (texts, texts[2:3], texts[::-1], ["x", "a dog barks"]):
        mine = featurizer.text(batch)
        reference = featurizer.tokenizer(
            batch, padding=True, truncation=True, max_length=77, return_tensors="pt"
        )
        assert torch.equal(mine["input_ids"], reference["input_ids"])
        assert torch.equal(mine["attention_mask"], reference["attention_mask"])
    assert (
        mine["input_ids"].dtype == torch.long
        and max(len(v) for v in featurizer._token_ids.values()) == 77
    )
