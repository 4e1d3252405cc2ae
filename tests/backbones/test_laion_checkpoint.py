"""LAION-CLAP ``.pt`` -> transformers ClapModel: same embeddings as laion_clap's own CLAP_Module.

laion_clap is used unmodified and offline. It loads ``roberta-base``, ``bert-base-uncased`` and
``facebook/bart-base`` tokenizers when imported and a ``roberta-base`` RobertaModel in
``CLAP_Module.__init__``; transformers resolves those names as directories relative to the working
directory first, so the fixture writes small offline-built stand-ins there and imports laion_clap
from inside it. The HTSAT-tiny audio tower is full size (laion hard-codes it); the RoBERTa text
tower has one layer but the 768 width laion's text projection hard-codes. Both towers get seeded
random weights, including BatchNorm statistics and the two logit scales.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    BertTokenizer,
    ClapFeatureExtractor,
    RobertaConfig,
    RobertaModel,
    RobertaTokenizer,
)

from humanclap.backbones import CheckpointNotAvailable, from_laion_checkpoint, from_pretrained
from humanclap.backbones.laion_checkpoint import (
    _feature_extractor,
    convert_laion_checkpoint,
    convert_laion_state_dict,
    laion_to_clap_config,
    read_laion_state_dict,
)

# One pytest-xdist worker (`--dist loadgroup`) runs this module: the `laion` checkpoint is built once.
pytestmark = pytest.mark.xdist_group("test_laion_checkpoint")
SR = 48_000
# On unit-norm embeddings. Observed here: <= 1.1e-7 (float32 rounding: torch vs NumPy STFT, kernel
# order; in float64 the converted model equals laion's to 1e-16). 1e-5 still catches e.g. RoBERTa's
# layer_norm_eps left at ClapTextConfig's 1e-12 instead of 1e-5 (7.7e-5).
ATOL = 1e-5

_WORDS = """a an the of and with dog barks bird chirps rain falls on metal roof car engine running
water flowing loud quiet bright dark warm harsh soft piano guitar violin drum bell siren man woman
speaks laughing crowd wind blowing door closes footsteps distant near high low pitched tone""".split()

TEXTS = [
    "a dog barks",
    "rain falls on a metal roof while a distant siren is blowing",
    "Bright piano tone, then a low drum and laughing crowd!",
    "zebra xylophone",  # out-of-vocabulary words: byte-level pieces
]


def _fake_hub(root: Path) -> Path:
    """./roberta-base (tokenizer + 1-layer RobertaModel), ./bert-base-uncased, ./facebook/bart-base."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        _WORDS + [" " + word for word in _WORDS],
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    (root / "bpe").mkdir()
    bpe.save_model(str(root / "bpe"))
    bpe_files = dict(
        vocab=str(root / "bpe" / "vocab.json"), merges=str(root / "bpe" / "merges.txt")
    )
    roberta = RobertaTokenizer(**bpe_files, model_max_length=512)
    roberta.save_pretrained(root / "roberta-base")
    RobertaTokenizer(**bpe_files).save_pretrained(
        root / "facebook" / "bart-base"
    )  # BartTokenizer is the same class
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    BertTokenizer(vocab={token: i for i, token in enumerate(specials + _WORDS)}).save_pretrained(
        root / "bert-base-uncased"
    )
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(roberta),
        hidden_size=768,
        num_hidden_layers=1,
        num_attention_heads=12,
        intermediate_size=96,
        max_position_embeddings=80,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )  # as roberta-base
    RobertaModel(config, add_pooling_layer=True).save_pretrained(root / "roberta-base")
    return root / "roberta-base"


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Seeded, clearly non-default values for every learned tensor and BatchNorm statistic."""
    generator = torch.Generator().manual_seed(seed)

    def noise(tensor, scale):
        return scale * torch.randn(tensor.shape, generator=generator)

    with torch.no_grad():
        for name, tensor in model.state_dict().items():  # shares storage with the model
            if (
                not tensor.is_floating_point()
                or "_extractor." in name
                or name.endswith("attn_mask")
            ):
                continue  # fixed STFT / mel front end and shifted-window masks: not learned
            if name.endswith("running_mean"):
                tensor.copy_(noise(tensor, 0.5))
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 1.5 + 0.5)
            elif name == "logit_scale_a":
                tensor.fill_(np.log(1 / 0.05))
            elif name == "logit_scale_t":
                tensor.fill_(np.log(1 / 0.09))
            elif tensor.dim() == 1 and name.endswith("weight"):  # LayerNorm / BatchNorm gains
                tensor.copy_(1.0 + noise(tensor, 0.2))
            else:
                tensor.add_(noise(tensor, 0.02))


def _save_laion(clap_module, path: Path, position_ids: bool) -> Path:
    """A checkpoint as LAION's training script writes it (DDP-prefixed, with epoch and optimizer)."""
    state = dict(clap_module.model.state_dict())
    if position_ids:  # transformers < 4.31 saved RobertaEmbeddings.position_ids
        positions = state["text_branch.embeddings.position_embeddings.weight"].shape[0]
        state["text_branch.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    torch.save(
        {
            "epoch": 1,
            "name": "test",
            "state_dict": {"module." + key: value for key, value in state.items()},
            "optimizer": {
                "state": {},
                "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.99), "params": [0, 1]}],
            },
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def laion(tmp_path_factory):
    root = tmp_path_factory.mktemp("laion")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setattr(
            sys, "path", list(sys.path)
        )  # laion_clap appends its package dir; undone on exit
        tokenizer = _fake_hub(root)
        import laion_clap
        from laion_clap.training.data import float32_to_int16, int16_to_float32

        modules = {}
        for seed, fused in enumerate((False, True)):
            modules[fused] = laion_clap.CLAP_Module(
                enable_fusion=fused, amodel="HTSAT-tiny", tmodel="roberta", device="cpu"
            )
            _randomise(modules[fused].model, seed=seed + 1)
    files = {
        False: _save_laion(modules[False], root / "unfused.pt", position_ids=True),
        True: _save_laion(modules[True], root / "fused.pt", position_ids=False),
    }
    # laion's own loader reads our file back (it insists on position_ids being present)
    modules[False].load_ckpt(str(files[False]), verbose=False)
    yield SimpleNamespace(
        modules=modules,
        files=files,
        tokenizer=tokenizer,
        root=root,
        quantise=lambda wave: int16_to_float32(float32_to_int16(wave)),
    )
    for path in files.values():  # ~130 MB each; pytest keeps the last runs' temporary directories
        path.unlink()


@pytest.fixture
def scratch(tmp_path):
    """tmp_path, emptied afterwards: the tests that use it write full-size checkpoints."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="module")
def ours(laion):
    return {
        fused: from_laion_checkpoint(laion.files[fused], tokenizer=str(laion.tokenizer))
        for fused in (False, True)
    }


def _clips(quantise, lengths):
    """Tones plus noise, quantised to a fixed point of laion's int16 round trip."""
    rng = np.random.default_rng(0)
    clips = []
    for index, length in enumerate(lengths):
        t = np.arange(length) / SR
        wave = (
            0.3 * np.sin(2 * np.pi * (220 * (index + 1)) * t) + 0.05 * rng.standard_normal(length)
        ).astype(np.float32)
        for _ in range(5):  # float32 -> int16 truncates, so one round trip is not always idempotent
            quantised = quantise(wave)
            if np.array_equal(quantised, wave):
                break
            wave = quantised
        assert np.array_equal(quantise(wave), wave)
        clips.append(wave)
    return clips


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a.float() - b.float()).abs().max().item()


# -- equality with laion_clap --------------------------------------------------------------------


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_text_embeddings_match_laion(laion, ours, fused):
    expected = laion.modules[fused].get_text_embedding(TEXTS, use_tensor=True).detach()
    actual = ours[fused].embed_text(TEXTS)
    print(
        f"text max abs diff ({'fused' if fused else 'unfused'}): {_max_diff(actual, expected):.2e}"
    )
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_audio_embeddings_match_laion(laion, ours, fused):
    # Up to 10 s both repeat-pad, and neither marks a clip "longer" (laion's eval path does not).
    lengths = [SR, 333_333, 10 * SR]
    if not fused:
        # Longer clips are cropped at np.random.randint(0, overflow + 1): laion draws it for its only
        # long clip right after this seed, ClapFeaturizer under seed 0 for each clip. (Fused models
        # differ for long clips: laion shrinks the full mel with torchvision's antialiased Resize,
        # transformers with plain bilinear interpolation.)
        lengths.append(12 * SR + 1234)
    clips = _clips(laion.quantise, lengths)
    state = np.random.get_state()
    np.random.seed(0)
    try:
        expected = torch.from_numpy(laion.modules[fused].get_audio_embedding_from_data(clips))
    finally:
        np.random.set_state(state)
    actual = ours[fused].embed_audio(clips)
    print(
        f"audio max abs diff ({'fused' if fused else 'unfused'}): {_max_diff(actual, expected):.2e}"
    )
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


def test_fusion_branch_matches_laion(laion, ours):
    """The fusion weights (mel_conv2d, AFF) only act on clips marked longer: compare on equal inputs."""
    backbone = ours[True]
    features = backbone.featurizer.audio(_clips(laion.quantise, [11 * SR, 14 * SR]))
    is_longer = torch.tensor([[True], [False]])
    assert features["input_features"].shape[1] == 4
    batch = [
        {"mel_fusion": mel, "longer": longer}
        for mel, longer in zip(features["input_features"], is_longer)
    ]
    with torch.no_grad():
        expected = laion.modules[True].model.eval().get_audio_embedding(batch)
        actual = backbone.eval().audio_embeddings({**features, "is_longer": is_longer})
    print(f"fusion branch max abs diff: {_max_diff(actual, expected):.2e}")
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_logit_scales_are_converted(laion, ours, fused):
    reference = laion.modules[fused].model
    assert ours[fused].model.logit_scale_a.item() == reference.logit_scale_a.item()
    assert ours[fused].model.logit_scale_t.item() == reference.logit_scale_t.item()
    assert ours[fused].logit_scale.item() == pytest.approx(np.log(1 / 0.05))


def test_inferred_config(ours):
    for fused, backbone in ours.items():
        audio, text = backbone.model.config.audio_config, backbone.model.config.text_config
        assert (
            audio.patch_embeds_hidden_size,
            list(audio.depths),
            list(audio.num_attention_heads),
        ) == (96, [2, 2, 6, 2], [4, 8, 16, 32])
        assert (audio.window_size, audio.hidden_size, audio.num_mel_bins, audio.spec_size) == (
            8,
            768,
            64,
            256,
        )
        assert audio.enable_fusion == fused and audio.fusion_type == ("aff_2d" if fused else None)
        assert (
            text.hidden_size,
            text.num_hidden_layers,
            text.num_attention_heads,
            text.intermediate_size,
        ) == (768, 1, 12, 96)
        assert backbone.model.config.projection_dim == 512
        assert backbone.featurizer.enable_fusion == fused
        extractor = backbone.featurizer.feature_extractor
        assert (
            extractor.sampling_rate,
            extractor.hop_length,
            extractor.fft_window_size,
            extractor.nb_max_samples,
            extractor.frequency_min,
            extractor.frequency_max,
        ) == (48_000, 480, 1024, 480_000, 50, 14_000)
        assert all(
            parameter.requires_grad for parameter in backbone.model.parameters()
        )  # trainable as loaded
    assert ours[False].name == "unfused"


@pytest.mark.slow
def test_fft_size_is_read_from_the_checkpoint(laion, scratch, monkeypatch):
    """HTSAT-tiny-win-1536 differs from HTSAT-tiny only in its 1536-sample STFT."""
    import laion_clap

    monkeypatch.chdir(laion.root)  # CLAP_Module loads ./roberta-base
    reference = laion_clap.CLAP_Module(
        enable_fusion=False, amodel="HTSAT-tiny-win-1536", tmodel="roberta", device="cpu"
    )
    _randomise(reference.model, seed=3)
    backbone = from_laion_checkpoint(
        _save_laion(reference, scratch / "win1536.pt", position_ids=False),
        tokenizer=str(laion.tokenizer),
    )
    assert backbone.featurizer.feature_extractor.fft_window_size == 1536
    clips = _clips(laion.quantise, [2 * SR])
    expected = torch.from_numpy(reference.get_audio_embedding_from_data(clips))
    torch.testing.assert_close(backbone.embed_audio(clips), expected, atol=ATOL, rtol=0)


def test_foreign_mel_filterbank_is_refused(unfused_weights):
    state_dict, config = unfused_weights
    other = ClapFeatureExtractor(
        frequency_max=8_000
    ).mel_filters_slaney  # a model trained on other mels
    with pytest.raises(ValueError, match="mel filterbank"):
        _feature_extractor(
            {**state_dict, "audio_branch.logmel_extractor.melW": torch.from_numpy(other)}, config
        )


def test_text_num_heads_override(laion):
    state_dict = read_laion_state_dict(laion.files[False])
    assert laion_to_clap_config(state_dict, text_num_heads=8).text_config.num_attention_heads == 8
    with pytest.raises(ValueError, match="not divisible"):
        laion_to_clap_config(state_dict, text_num_heads=7)


# -- formats and round trip ----------------------------------------------------------------------


def test_position_ids_present_or_absent(laion, scratch):
    with_ids = read_laion_state_dict(laion.files[False])
    without = read_laion_state_dict(
        _save_laion(laion.modules[False], scratch / "plain.pt", position_ids=False)
    )
    assert "text_branch.embeddings.position_ids" not in with_ids
    assert sorted(with_ids) == sorted(without)
    assert all(torch.equal(with_ids[key], without[key]) for key in with_ids)


def test_bare_state_dict_without_module_prefix(laion, scratch):
    path = scratch / "bare.pt"
    torch.save(dict(laion.modules[False].model.state_dict()), path)
    bare, wrapped = read_laion_state_dict(path), read_laion_state_dict(laion.files[False])
    assert sorted(bare) == sorted(wrapped)
    assert all(torch.equal(bare[key], wrapped[key]) for key in bare)


@pytest.mark.slow
def test_converted_directory_round_trip(laion, ours, scratch):
    directory = convert_laion_checkpoint(
        laion.files[True], scratch / "converted", tokenizer=str(laion.tokenizer)
    )
    reloaded = from_pretrained(str(directory))
    assert reloaded.featurizer.enable_fusion
    expected = ours[True].model.state_dict()
    assert all(
        torch.equal(value, expected[key]) for key, value in reloaded.model.state_dict().items()
    )
    clips = _clips(laion.quantise, [2 * SR])
    assert torch.equal(reloaded.embed_audio(clips), ours[True].embed_audio(clips))
    assert torch.equal(reloaded.embed_text(TEXTS), ours[True].embed_text(TEXTS))


# -- bad inputs ----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "630k-audioset-best.pt"
    with pytest.raises(CheckpointNotAvailable, match="630k-audioset-best.pt"):
        from_laion_checkpoint(path)


@pytest.mark.parametrize(
    "content",
    [
        [1, 2, 3],
        {"epoch": 3, "state_dict": {"encoder.weight": torch.zeros(2)}},
        {"epoch": 3, "note": "no weights"},
    ],
    ids=["list", "no-branches", "not-tensors"],
)
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match="other.pt"):
        read_laion_state_dict(path)


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pt"):
        read_laion_state_dict(path)


class _MakesDirectoryWhenUnpickled:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def test_pickled_objects_are_refused_not_executed(tmp_path):
    path, marker = tmp_path / "with_code.pt", tmp_path / "unpickled"
    torch.save(
        {
            "state_dict": {"audio_branch.x": torch.zeros(1)},
            "args": _MakesDirectoryWhenUnpickled(marker),
        },
        path,
    )
    with pytest.raises(ValueError, match="with_code.pt.*weights-only"):
        read_laion_state_dict(path)
    assert not marker.exists()


@pytest.fixture(scope="module")
def unfused_weights(laion):
    state_dict = read_laion_state_dict(laion.files[False])
    return state_dict, laion_to_clap_config(state_dict)


def test_missing_weight_is_named(unfused_weights):
    state_dict, config = unfused_weights
    state_dict = dict(state_dict)
    del state_dict["audio_branch.layers.2.blocks.3.mlp.fc1.bias"]
    with pytest.raises(ValueError, match="does not fill") as error:
        convert_laion_state_dict(state_dict, config)
    message = str(error.value)
    assert "audio_model.audio_encoder.layers.2.blocks.3.intermediate.dense.bias" in message
    assert "audio_branch.layers.2.blocks.3.mlp.fc1.bias" in message
    assert message.count("\n    ") == 1  # nothing else is reported


@pytest.mark.parametrize(
    "extra",
    [
        "audio_branch.layers.0.blocks.0.attn.extra_gate",
        "audio_branch.extra.weight",
        "text_branch.encoder.layer.5.output.dense.weight",
        "decoder.weight",
    ],
)
def test_unknown_weight_is_named(unfused_weights, extra):
    state_dict, config = unfused_weights
    with pytest.raises(ValueError, match="no ClapModel weight takes") as error:
        convert_laion_state_dict({**state_dict, extra: torch.zeros(3)}, config)
    assert extra in str(error.value)
    assert str(error.value).count("\n    ") == 1


def test_shape_mismatch_is_named(unfused_weights):
    state_dict, config = unfused_weights
    key = "audio_projection.2.bias"
    with pytest.raises(ValueError, match="shape mismatches") as error:
        convert_laion_state_dict({**state_dict, key: torch.zeros(7)}, config)
    assert key in str(error.value)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"text_branch.embeddings.token_type_embeddings.weight": torch.zeros(2, 768)}, "BERT"),
        ({"text_branch.shared.weight": torch.zeros(4, 768)}, "BART"),
        (
            {
                "text_branch.embeddings.word_embeddings.weight": None,
                "text_branch.resblocks.0.attn.in_proj_weight": torch.zeros(3, 3),
            },
            "not a RoBERTa",
        ),
        (
            {
                "audio_branch.patch_embed.proj.weight": None,
                "audio_branch.conv_block1.conv1.weight": torch.zeros(1),
            },
            "PANN",
        ),
        (
            {
                "audio_branch.patch_embed.fusion_model.local_att2.0.weight": torch.zeros(1),
                "audio_branch.patch_embed.mel_conv2d.weight": torch.zeros(1),
            },
            "aff_2d",
        ),
    ],
)
def test_unsupported_branches(unfused_weights, change, message):
    state_dict = dict(unfused_weights[0])
    for key, value in change.items():
        if value is None:
            del state_dict[key]
        else:
            state_dict[key] = value
    with pytest.raises(ValueError, match=message):
        laion_to_clap_config(state_dict)


def test_unreachable_tokenizer_explains_offline_use(laion):
    with pytest.raises(CheckpointNotAvailable, match="hf download FacebookAI/roberta-base"):
        from_laion_checkpoint(laion.files[False])  # default 'roberta-base', no network here


# -- the evaluate CLI on a LAION .pt next to a transformers directory ---------------------------------


def test_evaluate_laion_pt_and_transformers_dir_side_by_side(laion, compose_evaluate, tmp_path):
    """metrics.json, report and PNGs for both checkpoints; the LAION model's relevance numbers equal
    those computed from laion_clap's own CLAP_Module embeddings (scipy, no humanclap code)."""
    import json

    import scipy.stats
    from matplotlib.image import imread

    from humanclap.backbones import tiny_clap
    from humanclap.data.synthetic.sounds import synthetic_pairs
    from humanclap.evaluate import evaluate

    tiny_dir = tiny_clap(seed=3).save_pretrained(tmp_path / "tiny-hf")
    cfg = compose_evaluate(
        f"models=[{tiny_dir},{laion.files[False]}]",
        f"laion_tokenizer={laion.tokenizer}",
        "data.pairs.n_sounds=20",
        "data.pairs.texts_per_sound=2",
        "progress=false",
    )
    evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    document = json.loads((out / "metrics.json").read_text())
    assert list(document["models"]) == ["tiny-hf", "unfused.pt"]
    assert document["models"]["unfused.pt"]["kind"] == "laion_pt"
    assert document["models"]["tiny-hf"]["kind"] == "transformers_dir"
    report = (out / "report.md").read_text()
    for name in ("tiny-hf", "unfused.pt"):
        assert f"| {name} |" in report
        pngs = sorted((out / "figures" / name).glob("*.png"))
        assert [p.name for p in pngs] == [
            "relevance-clapscore_range.png",
            "relevance-relevance_scatter.png",
        ]
        assert all(imread(p).std() > 0 for p in pngs)

    pairs = synthetic_pairs(n_sounds=20, texts_per_sound=2, test_fraction=0.2, seed=0).select(
        "test"
    )
    clips = sorted({p.audio for p in pairs})
    texts = sorted({p.text for p in pairs})
    module = laion.modules[False]
    audio = dict(
        zip(clips, module.get_audio_embedding_from_data([pairs.load_audio(c, SR) for c in clips]))
    )
    text = dict(zip(texts, module.get_text_embedding(texts)))
    clapscore = np.array([max(float(np.dot(audio[p.audio], text[p.text])), 0.0) for p in pairs])
    human = np.array([p.score for p in pairs])
    metrics = document["models"]["unfused.pt"]["metrics"]["relevance"]
    assert metrics["n"] == len(pairs) == 8
    assert metrics["mse"] == pytest.approx(np.mean((clapscore - human) ** 2), abs=1e-5)
    if clapscore.std() > 0:
        assert metrics["lcc"] == pytest.approx(
            scipy.stats.pearsonr(clapscore, human).statistic, abs=1e-4
        )
        assert metrics["srcc"] == pytest.approx(
            scipy.stats.spearmanr(clapscore, human).statistic, abs=1e-6
        )
    else:
        assert metrics["srcc"] is None  # constant CLAPScores: undefined, written as null
    print("LAION relevance on 8 synthetic pairs:", {k: metrics[k] for k in ("srcc", "lcc", "mse")})
