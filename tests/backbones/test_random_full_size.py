"""``model=clap_htsat_random`` / ``clap_htsat_unfused_random``: the released checkpoints' exact
configuration and processor, checked field by field without building the 600 MB model (shapes on
the meta device); the build itself, training and evaluation are in
tests/integration/test_full_size.py (slow)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from transformers import ClapFeatureExtractor, ClapModel

from humanclap.backbones import random_full_size
from humanclap.backbones.checkpoint_safety import MODEL_BUILDERS, check_model_config
from humanclap.backbones.random_full_size import NAME, clap_htsat_configs
from humanclap.backbones.tiny import build_tiny_clap
from humanclap.runs.model_card import model_card

# laion/clap-htsat-fused at revision 365dea6ef167 as public code that loads it validates it
# (config.json and preprocessor_config.json; see humanclap/backbones/random_full_size.py), minus the
# keys transformers no longer reads (enable_patch_fusion, fusion_num_hidden_layers,
# projection_hidden_size) and the preprocessor's processor_class (the processor's file now).
RELEASED_CONFIG = {
    ("projection_dim",): 512,
    ("projection_hidden_act",): "relu",
    ("hidden_size",): 768,
    ("num_hidden_layers",): 16,
    ("logit_scale_init_value",): pytest.approx(1 / 0.07),
    ("text_config", "vocab_size"): 50265,
    ("text_config", "hidden_size"): 768,
    ("text_config", "intermediate_size"): 3072,
    ("text_config", "num_hidden_layers"): 12,
    ("text_config", "num_attention_heads"): 12,
    ("text_config", "max_position_embeddings"): 514,
    ("text_config", "type_vocab_size"): 1,
    ("text_config", "projection_dim"): 512,
    ("text_config", "pad_token_id"): 1,
    ("text_config", "bos_token_id"): 0,
    ("text_config", "eos_token_id"): 2,
}
RELEASED_AUDIO_CONFIG = {
    "window_size": 8,
    "num_mel_bins": 64,
    "spec_size": 256,
    "hidden_act": "gelu",
    "patch_size": 4,
    "patch_stride": [4, 4],
    "num_classes": 527,
    "hidden_size": 768,
    "projection_dim": 512,
    "depths": [2, 2, 6, 2],
    "num_attention_heads": [4, 8, 16, 32],
    "hidden_dropout_prob": 0.1,
    "fusion_type": None,
    "patch_embed_input_channels": 1,
    "flatten_patch_embeds": True,
    "patch_embeds_hidden_size": 96,
    "enable_patch_layer_norm": True,
    "drop_path_rate": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "qkv_bias": True,
    "mlp_ratio": 4.0,
    "aff_block_r": 4,
    "num_hidden_layers": 4,
    "projection_hidden_act": "relu",
    "layer_norm_eps": 1e-5,
    "initializer_factor": 1.0,
}
RELEASED_PREPROCESSOR = {
    "chunk_length_s": 10,
    "feature_extractor_type": "ClapFeatureExtractor",
    "feature_size": 64,
    "fft_window_size": 1024,
    "frequency_max": 14000,
    "frequency_min": 50,
    "hop_length": 480,
    "max_length_s": 10,
    "n_fft": 1024,
    "nb_frequency_bins": 513,
    "nb_max_frames": 1000,
    "nb_max_samples": 480000,
    "padding": "repeatpad",
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": False,
    "sampling_rate": 48000,
    "top_db": None,
}
# Parameters of ClapModel for each config (the fused one: 153.5 M) and the number of audio_model.*
# tensors, which for the fused model is the count found in the released model.safetensors.
PARAMETERS = {True: 153_507_530, False: 153_492_890}
AUDIO_TENSORS = {True: 266, False: 236}

FUSION = pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])


def _value(config: dict, path: tuple[str, ...]):
    for key in path:
        config = config[key]
    return config


@FUSION
def test_the_config_is_the_released_one_field_by_field(fused):
    config, _ = clap_htsat_configs(fused)
    document = config.to_dict()
    for path, expected in RELEASED_CONFIG.items():
        assert _value(document, path) == expected, path
    audio = document["audio_config"]
    assert {key: audio[key] for key in RELEASED_AUDIO_CONFIG} == RELEASED_AUDIO_CONFIG
    assert audio["enable_fusion"] is fused


@FUSION
def test_the_model_has_the_released_shapes(fused):
    config, _ = clap_htsat_configs(fused)
    with torch.device("meta"):  # shapes only: no 600 MB of weights
        model = ClapModel(config)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[fused]
    assert round(PARAMETERS[True] / 1e6, 1) == 153.5
    state = model.state_dict()
    assert sum(key.startswith("audio_model.") for key in state) == AUDIO_TENSORS[fused]
    assert state["text_model.embeddings.word_embeddings.weight"].shape == (50265, 768)
    assert state["audio_projection.linear2.weight"].shape == (512, 512)
    assert state["text_projection.linear1.weight"].shape == (512, 768)


@FUSION
def test_the_feature_extractor_is_the_released_one(fused):
    _, arguments = clap_htsat_configs(fused)
    extractor = ClapFeatureExtractor(**arguments)
    saved = extractor.to_dict()  # what preprocessor_config.json holds, without the mel filters
    expected = {**RELEASED_PREPROCESSOR, "truncation": "fusion" if fused else "rand_trunc"}
    assert {key: saved[key] for key in expected} == expected
    assert set(saved) - set(expected) <= {"mel_filters", "mel_filters_slaney"}
    ten_seconds = np.zeros(480_000, dtype=np.float32) + 0.01
    features = extractor(ten_seconds, sampling_rate=48_000, return_tensors="np")
    assert features["input_features"].shape == (1, 4 if fused else 1, 1001, 64)


def test_the_recipes_compose_to_the_builder_with_the_paper_schedule(compose_train):
    for model, fused in (("clap_htsat_random", True), ("clap_htsat_unfused_random", False)):
        cfg = compose_train(f"model={model}", "seed=3")
        assert OmegaConf.to_container(cfg.model, resolve=True) == {
            "_target_": "humanclap.backbones.clap_htsat_random",
            "enable_fusion": fused,
            "seed": 3,
        }
        # A checkpoint of a run on it stores this config, which the allow-list accepts.
        check_model_config(OmegaConf.to_container(cfg.model, resolve=True), f"{model}.ckpt")
        assert cfg.optimizer.lr == pytest.approx(1e-5) and cfg.trainer.max_epochs == 50
    assert MODEL_BUILDERS["humanclap.backbones.clap_htsat_random"].function == "clap_htsat_random"


def test_built_once_into_the_cache_named_and_announced_as_random(tmp_path, monkeypatch, caplog):
    """The caching, naming and warnings, with a tiny model built in place of the 600 MB one."""
    monkeypatch.setenv("HUMANCLAP_CACHE", str(tmp_path))
    builds = []

    def tiny_instead(directory, enable_fusion=True, seed=0):
        builds.append((enable_fusion, seed))
        return build_tiny_clap(directory, seed=seed, enable_fusion=enable_fusion)

    monkeypatch.setattr(random_full_size, "build_clap_htsat_random", tiny_instead)
    with caplog.at_level(logging.WARNING, logger=random_full_size.__name__):
        first = random_full_size.clap_htsat_random(enable_fusion=True, seed=0)
        again = random_full_size.clap_htsat_random(enable_fusion=True, seed=0)
    assert builds == [(True, 0)]  # the second call loads the cached directory
    (directory,) = tmp_path.iterdir()  # no scratch directory left behind
    assert directory.name.startswith("clap-htsat-fused-random-")
    assert first.name == again.name == NAME[True] == "clap-htsat-fused-random"
    warnings = [record.getMessage() for record in caplog.records]
    assert [message.split(" ", 1)[0] for message in warnings] == ["Building", "Loading"]
    assert all("NOT pretrained" in message for message in warnings)
    random_full_size.clap_htsat_random(enable_fusion=False, seed=0)
    assert {path.name.rsplit("-", 1)[0] for path in tmp_path.iterdir()} == {
        "clap-htsat-fused-random",
        "clap-htsat-unfused-random",
    }


@pytest.mark.parametrize(
    "overrides", [["model=clap_htsat_random"], ["model=tiny"]], ids=["full-size", "tiny"]
)
def test_the_model_card_says_the_base_model_is_not_pretrained(compose_train, overrides):
    summary = {"metric": "relevance/srcc", "exported": 0.1, "exported_epoch": 0}
    card = model_card("checkpoints/x", compose_train(*overrides), summary, False, "last epoch")
    (line,) = [line for line in card.splitlines() if line.startswith("**Not pretrained**")]
    assert "random weights" in line
    pretrained = compose_train("model=laion_htsat_fused")
    assert "Not pretrained" not in model_card("x", pretrained, summary, False, "last epoch")
