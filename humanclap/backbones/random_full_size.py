"""``model=clap_htsat_random`` / ``model=clap_htsat_unfused_random``: a full-size CLAP with random
weights, built offline. **Not pretrained**: its embeddings and scores mean nothing.

The model has exactly the configuration (every shape) of ``laion/clap-htsat-fused`` or
``laion/clap-htsat-unfused`` - HTSAT audio tower (Swin, depths 2-2-6-2, 768 wide), RoBERTa-base
text tower (12 layers, 768 wide, vocabulary 50265), 512-d projections; 153,507,530 parameters
fused, 153,492,890 unfused - and the ``ClapFeatureExtractor`` of their ``preprocessor_config.json``
(48 kHz, 10 s = 480,000 samples, 64 mel bins, hop 480, FFT 1024, 50-14,000 Hz, ``repeatpad``;
``fusion`` truncation for the fused model, ``rand_trunc`` for the unfused one). It costs what the
real model costs (memory, step time, featurisation), so it is the model for end-to-end smoke tests
of the paper-size setup and for benchmarks on machines that cannot download the weights.

Like ``model=tiny`` (:mod:`humanclap.backbones.tiny`), it is written once with ``save_pretrained``
into ``$HUMANCLAP_CACHE`` (a directory per recipe digest, ~615 MB of safetensors, atomic rename)
and loaded back through :func:`humanclap.backbones.from_pretrained`, the path a downloaded
checkpoint takes. The tokenizer is a byte-level BPE trained on tiny's embedded word list (RoBERTa's
special tokens at ids 0..4, ~760 tokens): clearly not roberta-base's vocabulary, which is
fine for smoke tests and benchmarks (ids stay below the 50265-row embedding table, which keeps its
full size). The backbone is named ``clap-htsat-fused-random`` / ``clap-htsat-unfused-random`` and
every build and load logs a warning that it is not pretrained.

Sources for the configuration (the hub files cannot be downloaded here):

* transformers' ``convert_clap_original_pytorch_to_hf.py`` as of the release of these checkpoints
  (2023) built the converted model as ``ClapConfig()`` with only ``audio_config.enable_fusion``
  changed: the defaults of ``ClapAudioConfig`` / ``ClapTextConfig`` / ``ClapConfig`` are those
  checkpoints' configs. They are spelled out below rather than inherited, so a later change of a
  transformers default cannot change this model.
* Public code that pins ``laion/clap-htsat-fused`` at revision ``365dea6ef167`` and validates its
  ``config.json`` and ``preprocessor_config.json`` field by field (found with the code search of
  GitHub): audio ``enable_fusion: true``, ``fusion_type: null``, ``hidden_dropout_prob: 0.1``,
  ``attention_probs_dropout_prob: 0.0``, ``depths [2, 2, 6, 2]``, heads ``[4, 8, 16, 32]``,
  ``patch_embeds_hidden_size 96``, ``spec_size 256``, ``window_size 8``, ``mlp_ratio 4.0``; text
  ``vocab_size 50265``, ``max_position_embeddings 514``, ``type_vocab_size 1``; top level
  ``projection_dim 512``, ``num_hidden_layers 16``; 266 ``audio_model.*`` tensors in
  ``model.safetensors`` (this config gives 266, see tests/backbones/test_random_full_size.py); and
  the preprocessor fields copied in :data:`FEATURE_EXTRACTOR` (plus ``processor_class``). The hub
  config also carries keys transformers no longer reads (``enable_patch_fusion``,
  ``fusion_num_hidden_layers``, ``projection_hidden_size``); they are left out.
* The unfused preprocessor: the same file with ``truncation: rand_trunc``. transformers'
  integration test (tests/models/clap/test_modeling_clap.py ``test_integration_unfused``) calls the
  ``laion/clap-htsat-unfused`` processor without a truncation argument and feeds the result to the
  unfused model, whose patch embedding takes one channel; ``fusion`` truncation always stacks four,
  so the file's default must be ``rand_trunc``.
  (:class:`~humanclap.backbones.featurizer.ClapFeaturizer` chooses the truncation from
  ``enable_fusion`` in any case.)
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch
from transformers import (
    ClapAudioConfig,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapTextConfig,
)

from humanclap.backbones.clap import ClapBackbone
from humanclap.backbones.featurizer import ClapFeaturizer
from humanclap.backbones.pretrained import from_pretrained
from humanclap.backbones.tiny import build_once, recipe_directory, train_tokenizer

log = logging.getLogger(__name__)

FULL_SIZE_VERSION = 1  # bump when the recipe below changes, so cached builds are rebuilt

ARCHITECTURE = {True: "laion/clap-htsat-fused", False: "laion/clap-htsat-unfused"}
"""The released checkpoint each variant copies (architecture and processor), by enable_fusion."""

NAME = {True: "clap-htsat-fused-random", False: "clap-htsat-unfused-random"}
"""The backbone's name in logs and reports: says it is random."""

TOKENIZER_VOCABULARY = 1024
"""At most this many BPE tokens (tiny's word list yields fewer); the embedding keeps 50265 rows."""

AUDIO_CONFIG = dict(
    window_size=8,
    num_mel_bins=64,
    spec_size=256,
    hidden_act="gelu",
    patch_size=4,
    patch_stride=[4, 4],
    num_classes=527,
    hidden_size=768,
    projection_dim=512,
    depths=[2, 2, 6, 2],
    num_attention_heads=[4, 8, 16, 32],
    hidden_dropout_prob=0.1,
    fusion_type=None,
    patch_embed_input_channels=1,
    flatten_patch_embeds=True,
    patch_embeds_hidden_size=96,
    enable_patch_layer_norm=True,
    drop_path_rate=0.0,
    attention_probs_dropout_prob=0.0,
    qkv_bias=True,
    mlp_ratio=4.0,
    aff_block_r=4,
    num_hidden_layers=4,
    projection_hidden_act="relu",
    layer_norm_eps=1e-5,
    initializer_factor=1.0,
)
"""``audio_config`` of both checkpoints, except ``enable_fusion`` (set per variant)."""

TEXT_CONFIG = dict(
    vocab_size=50265,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=514,
    type_vocab_size=1,
    initializer_factor=1.0,
    layer_norm_eps=1e-12,
    projection_dim=512,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    projection_hidden_act="relu",
)
"""``text_config`` of both checkpoints: RoBERTa-base's shapes."""

CLAP_CONFIG = dict(
    logit_scale_init_value=1 / 0.07,
    projection_dim=512,
    projection_hidden_act="relu",
    initializer_factor=1.0,
)
"""The top level of both ``config.json`` files."""

FEATURE_EXTRACTOR = dict(
    feature_size=64,
    sampling_rate=48_000,
    hop_length=480,
    max_length_s=10,
    fft_window_size=1024,
    padding_value=0.0,
    return_attention_mask=False,
    frequency_min=50,
    frequency_max=14_000,
    top_db=None,
    padding="repeatpad",
    # Keys of the hub file that this transformers' ClapFeatureExtractor no longer reads; kept, so
    # the saved preprocessor_config.json holds the same keys and values as the hub's.
    chunk_length_s=10,
    n_fft=1024,
    nb_max_frames=1000,
)
"""``preprocessor_config.json`` of both checkpoints, except ``truncation`` (set per variant)."""


def clap_htsat_configs(enable_fusion: bool = True) -> tuple[ClapConfig, dict]:
    """The ClapConfig of ``laion/clap-htsat-(un)fused`` and its feature extractor's arguments."""
    audio = ClapAudioConfig(**AUDIO_CONFIG, enable_fusion=enable_fusion)
    text = ClapTextConfig(**TEXT_CONFIG)
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), **CLAP_CONFIG)
    extractor = dict(FEATURE_EXTRACTOR, truncation="fusion" if enable_fusion else "rand_trunc")
    return config, extractor


def _warn(enable_fusion: bool, doing: str) -> None:
    log.warning(
        "%s %s: random weights in the %s architecture, NOT pretrained (embeddings and scores mean "
        "nothing; for smoke tests and benchmarks). For the real model use model=%s.",
        doing,
        NAME[enable_fusion],
        ARCHITECTURE[enable_fusion],
        "laion_htsat_fused" if enable_fusion else "laion_htsat_unfused",
    )


def build_clap_htsat_random(
    directory: str | Path, enable_fusion: bool = True, seed: int = 0
) -> Path:
    """Write a random full-size ClapModel checkpoint (model + processor, ~615 MB) to a directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config, extractor_args = clap_htsat_configs(enable_fusion)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = train_tokenizer(Path(scratch), TOKENIZER_VOCABULARY)
    # A private RNG: building into an empty cache must not change the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        featurizer = ClapFeaturizer(
            ClapFeatureExtractor(**extractor_args), tokenizer, enable_fusion
        )
        ClapBackbone(ClapModel(config), featurizer).save_pretrained(directory)
    return directory


def clap_htsat_random(
    enable_fusion: bool = True, seed: int = 0, directory: str | None = None
) -> ClapBackbone:
    """Build (once, cached by its recipe) and load the random full-size CLAP through the checkpoint
    path. ``enable_fusion``: the architecture of ``laion/clap-htsat-fused`` (True) or -unfused."""
    if directory is None:
        recipe = {"version": FULL_SIZE_VERSION, "seed": seed, "fusion": enable_fusion}
        directory = str(recipe_directory(NAME[enable_fusion], recipe))
    path = Path(directory)

    def build(scratch: Path) -> None:
        _warn(enable_fusion, "Building")
        log.info("Writing %s (seed %d, ~615 MB) to %s", NAME[enable_fusion], seed, path)
        build_clap_htsat_random(scratch, enable_fusion=enable_fusion, seed=seed)

    if not build_once(path, build):
        _warn(enable_fusion, "Loading")
    return from_pretrained(str(path), name=NAME[enable_fusion])
