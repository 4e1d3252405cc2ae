"""``model=tiny``: a small, randomly initialised ClapModel built entirely offline.

The model is written with ``save_pretrained`` (weights, feature extractor and a byte-level BPE
tokenizer trained here on a small embedded word list) and then loaded back through
:func:`humanclap.backbones.from_pretrained`, the same path a downloaded checkpoint takes. It is the
default backbone of tests and of the Quickstart run: same architecture family as
``laion/clap-htsat-*`` (HTSAT audio tower, RoBERTa text tower, MLP projections), ~60 k parameters,
1 s context.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    ClapAudioConfig,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapTextConfig,
    RobertaTokenizer,
)

from humanclap.backbones.clap import ClapBackbone
from humanclap.backbones.featurizer import TEXT_MAX_TOKENS, ClapFeaturizer
from humanclap.backbones.pretrained import from_pretrained

TINY_VERSION = 1  # bump when the recipe below changes, so cached builds are rebuilt

_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa ids 0..4

_WORDS = """
a an the of and or with without then before after as while followed by sound sounds noise noisy
bright dark dull warm cold harsh soft smooth rough thin thick full hollow clear muddy airy breathy
high low pitch pitched tone tones tonal pure buzzy hiss hissing hum humming loud quiet silent
very slightly somewhat extremely not no recording of music musical instrument instruments track
sharp mellow metallic wooden glassy deep shrill sweet sour raspy nasal vigorous turbid coarse
speech man woman child speaks talking laughing crowd dog barks bird chirps car engine running
water flowing rain wind blowing door closes footsteps siren music playing piano guitar violin
trumpet flute drum drums bell bells clock ticking phone rings machine motor whistle beep tick
short long fast slow rising falling steady pulsing constant distant near background foreground
"""


def tiny_configs(enable_fusion: bool = False, vocab_size: int = 512) -> tuple[ClapConfig, dict]:
    """The tiny ClapConfig and the feature-extractor arguments that go with it."""
    audio = ClapAudioConfig(
        window_size=8,
        num_mel_bins=64,  # the fusion path of ClapFeatureExtractor hard-codes 64 mel bins
        spec_size=128,  # 1 s = 101 frames, stretched to 256 and folded into a 128x128 image
        patch_size=4,
        patch_stride=[4, 4],
        patch_embeds_hidden_size=16,
        depths=[1, 1],
        num_attention_heads=[2, 4],
        hidden_size=32,  # = patch_embeds_hidden_size * 2 ** (len(depths) - 1)
        enable_fusion=enable_fusion,
        fusion_type="aff_2d" if enable_fusion else None,
        mlp_ratio=2.0,
    )
    text = ClapTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=32)
    extractor = dict(
        feature_size=64,
        sampling_rate=48_000,
        hop_length=480,
        max_length_s=1,
        fft_window_size=1024,
        frequency_min=50,
        frequency_max=14_000,
        truncation="fusion" if enable_fusion else "rand_trunc",
        padding="repeatpad",
    )
    return config, extractor


def train_tokenizer(directory: Path, vocab_size: int) -> RobertaTokenizer:
    """A byte-level BPE tokenizer trained on the embedded word list (RoBERTa's special tokens at
    ids 0..4, at most ``vocab_size`` tokens), its files written to ``directory``."""
    bpe = ByteLevelBPETokenizer()
    words = _WORDS.split()
    # Both spellings: sentence-initial words have no leading space, all others do ("Ġword").
    bpe.train_from_iterator(
        words + [" " + word for word in words],
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=_SPECIAL_TOKENS,
        show_progress=False,
    )
    bpe.save_model(str(directory))
    return RobertaTokenizer(
        vocab=str(directory / "vocab.json"),
        merges=str(directory / "merges.txt"),
        model_max_length=TEXT_MAX_TOKENS,
    )


def build_tiny_clap(directory: str | Path, seed: int = 0, enable_fusion: bool = False) -> Path:
    """Write a tiny random ClapModel checkpoint (model + processor) to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config, extractor_args = tiny_configs(enable_fusion)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = train_tokenizer(Path(scratch), config.text_config.vocab_size)
    config.text_config.vocab_size = len(tokenizer)
    # A private RNG: building into an empty cache must not change the caller's random stream
    # (a run that builds the model would otherwise differ from the same run with a warm cache).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        featurizer = ClapFeaturizer(
            ClapFeatureExtractor(**extractor_args), tokenizer, enable_fusion
        )
        ClapBackbone(ClapModel(config), featurizer).save_pretrained(directory)
    return directory


def cache_root() -> Path:
    """Where built models are kept: ``$HUMANCLAP_CACHE``, else ``~/.cache/humanclap``."""
    root = os.environ.get("HUMANCLAP_CACHE") or Path.home() / ".cache" / "humanclap"
    return Path(root)


def recipe_directory(prefix: str, recipe: dict) -> Path:
    """``<cache root>/<prefix>-<digest of recipe>``: one directory per distinct build."""
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    return cache_root() / f"{prefix}-{digest}"


def build_once(path: Path, build: Callable[[Path], object], marker: str = "config.json") -> bool:
    """``build(scratch)`` into a scratch directory next to ``path``, renamed to ``path``, unless
    ``path/<marker>`` exists already; True if this call built it.

    The rename is atomic, so concurrent processes (DDP ranks) never load a half-written directory.
    """
    if (path / marker).exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=path.name + ".", dir=path.parent))
    try:
        build(scratch)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    try:
        scratch.rename(path)
    except OSError:  # another process won the race; its copy is identical
        shutil.rmtree(scratch, ignore_errors=True)
    return True


def tiny_clap(
    seed: int = 0, enable_fusion: bool = False, directory: str | None = None
) -> ClapBackbone:
    """Build (once, cached by its recipe) and load the tiny CLAP through the checkpoint path."""
    if directory is None:
        recipe = {"version": TINY_VERSION, "seed": seed, "fusion": enable_fusion}
        kind = "fused" if enable_fusion else "unfused"
        directory = str(recipe_directory(f"tiny-clap-{kind}", recipe))
    path = Path(directory)
    build_once(
        path, lambda scratch: build_tiny_clap(scratch, seed=seed, enable_fusion=enable_fusion)
    )
    return from_pretrained(str(path), name=f"tiny{'-fused' if enable_fusion else ''}")
