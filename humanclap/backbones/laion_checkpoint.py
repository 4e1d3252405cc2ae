"""Original LAION-CLAP ``.pt`` checkpoints, converted into a transformers ``ClapModel``.

The conversion renames weights: every LAION weight not on an explicit drop list must land in the
ClapModel and every ClapModel weight must be filled, or it fails with the names. The renaming
table: see docs/models.md#laion-clap-checkpoints.

Command line::

    python -m humanclap.backbones.laion_checkpoint 630k-audioset-fusion-best.pt OUT_DIR [--tokenizer DIR]
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    ClapAudioConfig,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapTextConfig,
)

from humanclap.backbones.checkpoint_safety import (
    LAION_CHECKPOINT,
    CheckpointError,
    read_torch_checkpoint,
)
from humanclap.backbones.clap import ClapBackbone
from humanclap.backbones.featurizer import ClapFeaturizer
from humanclap.backbones.pretrained import CheckpointNotAvailable, _from_source, missing_path

# -- what cannot be read from the weights ----------------------------------------------------------

HTSAT_SPEC_SIZE = 256
"""``create_htsat_model`` builds every HTSAT (tiny/base/large) with spec_size=256."""

LAION_AUDIO = dict(
    sampling_rate=48_000,
    hop_length=480,
    max_length_s=10,
    frequency_min=50,
    frequency_max=14_000,
    padding="repeatpad",
)
"""LAION's ``audio_cfg`` of every HTSAT model config (``clap_module/model_configs/HTSAT-*.json``:
sample_rate 48000, hop_size 480, clip_samples 480000 = 10 s, fmin 50, fmax 14000) and the
``data_filling='repeatpad'`` of ``CLAP_Module.get_audio_embedding_*``. The FFT size (``window_size``,
1024, or 1536 in HTSAT-tiny-win-1536) and the number of mel bins are read from the checkpoint."""

DEFAULT_FFT_SIZE = 1024

ROBERTA_HEAD_SIZE = 64
"""roberta-base (768 = 12 x 64) and roberta-large (1024 = 16 x 64); heads leave no trace in weights."""

ROBERTA_LAYER_NORM_EPS = 1e-5
"""roberta-base/large ``layer_norm_eps``; ClapTextConfig's default is 1e-12."""

LEGACY_HUB_IDS = {
    "roberta-base": "FacebookAI/roberta-base",
    "roberta-large": "FacebookAI/roberta-large",
}
"""LAION-CLAP names its tokenizer by the pre-organisation hub id ``roberta-base``."""

UNUSED_LAION_KEYS = tuple(
    re.compile(pattern)
    for pattern in (
        # the MLPs applied after the projections, used only by LAION's training loss (mlp_loss)
        r"(audio|text)_transform\..*",
        # HTSAT's AudioSet classification head (token-semantic CNN + linear layer): not in the embedding
        r"audio_branch\.(tscam_conv|head)\..*",
        # STFT kernels and mel filterbank of the unfused model's in-graph log-mel (torchlibrosa);
        # transformers computes the log-mel in ClapFeatureExtractor. from_laion_checkpoint reads the FFT
        # size from them and checks the extractor's filterbank against them.
        r"audio_branch\.(spectrogram_extractor|logmel_extractor)\..*",
        # shifted-window attention masks: ClapAudioLayer recomputes them on every forward
        r"audio_branch\.layers\.\d+\.blocks\.\d+\.attn_mask",
        # an arange that older transformers versions saved with RobertaModel; ClapModel's is rebuilt
        r"text_branch\.embeddings\.position_ids",
    )
)

# Renames, applied to the first matching prefix; (LAION, ClapModel).
_PREFIXES = (
    ("audio_branch.bn0.", "audio_model.audio_encoder.batch_norm."),
    ("audio_branch.", "audio_model.audio_encoder."),
    ("text_branch.", "text_model."),
    ("audio_projection.0.", "audio_projection.linear1."),
    ("audio_projection.2.", "audio_projection.linear2."),
    ("text_projection.0.", "text_projection.linear1."),
    ("text_projection.2.", "text_projection.linear2."),
    ("logit_scale_a", "logit_scale_a"),
    ("logit_scale_t", "logit_scale_t"),
)
# Inside a Swin block (``layers.<i>.blocks.<j>.``): HTSAT name -> ClapAudioLayer name.
_BLOCK_PARTS = (
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("attn.proj.", "attention.output.dense."),
    ("attn.", "attention.self."),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
)
_BLOCK = re.compile(r"^(audio_model\.audio_encoder\.layers\.\d+\.blocks\.\d+\.)(.*)$")
_QKV = re.compile(r"^(.*\.attention\.self\.)qkv\.(weight|bias)$")


# -- reading ---------------------------------------------------------------------------------------


def read_laion_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of a LAION-CLAP checkpoint, without the DDP ``module.`` prefix.

    Read weights-only (:func:`~humanclap.backbones.checkpoint_safety.read_torch_checkpoint`): a
    file that names Python objects is refused, never executed.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointNotAvailable(missing_path("LAION-CLAP checkpoint", str(path)))
    if path.is_dir():
        raise CheckpointNotAvailable(
            f"LAION-CLAP checkpoint '{path}' is a directory; a LAION checkpoint is a .pt file "
            f"(load transformers directories with humanclap.backbones.from_pretrained)"
        )
    checkpoint = read_torch_checkpoint(path, LAION_CHECKPOINT)
    state_dict = (
        checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    )
    if not isinstance(state_dict, dict):
        raise CheckpointError(
            f"'{path}' is not a LAION-CLAP checkpoint: it holds a {type(state_dict).__name__}, "
            f"not a state dict"
        )
    not_tensors = sorted(
        str(key)
        for key, value in state_dict.items()
        if not isinstance(key, str) or not isinstance(value, torch.Tensor)
    )
    if not_tensors:
        raise CheckpointError(
            f"'{path}' is not a LAION-CLAP checkpoint: entries {not_tensors[:5]} are not tensors"
        )
    state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    state_dict.pop("text_branch.embeddings.position_ids", None)
    for branch in ("audio_branch.", "text_branch."):
        if not any(key.startswith(branch) for key in state_dict):
            raise CheckpointError(
                f"'{path}' is not a LAION-CLAP checkpoint: no '{branch}*' weights "
                f"(first keys: {sorted(state_dict)[:5]})"
            )
    return state_dict


# -- architecture ----------------------------------------------------------------------------------


def _shape(state_dict: dict, key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ValueError(f"LAION-CLAP state dict has no '{key}'")
    return tuple(state_dict[key].shape)


def _indices(state_dict: dict, pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (one group) over the keys."""
    regex = re.compile(pattern)
    return sorted({int(match.group(1)) for key in state_dict if (match := regex.match(key))})


def _htsat_config(state_dict: dict) -> dict:
    """ClapAudioConfig arguments of an HTSAT ``audio_branch``."""
    if "audio_branch.patch_embed.proj.weight" not in state_dict:
        found = sorted(
            {".".join(key.split(".")[:2]) for key in state_dict if key.startswith("audio_branch.")}
        )
        kind = (
            "a PANN (CNN) audio branch"
            if any("conv_block" in key for key in found)
            else "an unknown audio branch"
        )
        raise ValueError(
            f"only HTSAT audio branches can be converted to ClapModel; this checkpoint has {kind} "
            f"({found[:6]})"
        )
    embed, in_channels, patch, patch_w = _shape(state_dict, "audio_branch.patch_embed.proj.weight")
    if in_channels != 1 or patch != patch_w:
        raise ValueError(
            f"unsupported HTSAT patch embedding {(embed, in_channels, patch, patch_w)} "
            f"(channel_map fusion or non-square patches)"
        )
    stages = _indices(state_dict, r"audio_branch\.layers\.(\d+)\.")
    depths = [
        len(_indices(state_dict, rf"audio_branch\.layers\.{stage}\.blocks\.(\d+)\."))
        for stage in stages
    ]
    heads, windows = [], set()
    for stage, depth in zip(stages, depths):
        tables = {
            _shape(
                state_dict,
                f"audio_branch.layers.{stage}.blocks.{block}.attn.relative_position_bias_table",
            )
            for block in range(depth)
        }
        if len(tables) != 1:
            raise ValueError(f"HTSAT stage {stage} mixes attention shapes {sorted(tables)}")
        ((rows, stage_heads),) = tables
        window = (math.isqrt(rows) + 1) // 2  # the table has (2w - 1)^2 rows
        if (2 * window - 1) ** 2 != rows:
            raise ValueError(
                f"HTSAT stage {stage}: {rows} relative positions is not (2w - 1)^2 for any window w"
            )
        heads.append(stage_heads)
        windows.add(window)
    if len(windows) != 1:
        raise ValueError(
            f"HTSAT stages use different window sizes {sorted(windows)}; ClapModel needs one"
        )
    window = windows.pop()
    hidden = _shape(state_dict, "audio_branch.norm.weight")[0]
    if stages != list(range(len(stages))) or hidden != embed * 2 ** (len(stages) - 1):
        raise ValueError(
            f"inconsistent HTSAT: stages {stages}, patch dim {embed}, final dim {hidden}"
        )
    mlp_hidden = _shape(state_dict, "audio_branch.layers.0.blocks.0.mlp.fc1.weight")[0]
    fusion = {}
    if any(key.startswith("audio_branch.mel_conv1d.") for key in state_dict):
        raise ValueError(
            "HTSAT with 1-D feature fusion (daf_1d/aff_1d/iaff_1d) has no ClapModel equivalent"
        )
    if any(key.startswith("audio_branch.patch_embed.mel_conv2d.") for key in state_dict):
        if "audio_branch.patch_embed.fusion_model.local_att.0.weight" not in state_dict or any(
            key.startswith("audio_branch.patch_embed.fusion_model.local_att2.")
            for key in state_dict
        ):
            raise ValueError(
                "only 'aff_2d' feature fusion converts to ClapModel (found daf_2d or iaff_2d)"
            )
        inter = _shape(state_dict, "audio_branch.patch_embed.fusion_model.local_att.0.weight")[0]
        fusion = dict(enable_fusion=True, fusion_type="aff_2d", aff_block_r=embed // inter)
    return dict(
        spec_size=HTSAT_SPEC_SIZE,
        num_mel_bins=_shape(state_dict, "audio_branch.bn0.weight")[0],
        patch_size=patch,
        patch_stride=[patch, patch],
        patch_embeds_hidden_size=embed,
        depths=depths,
        num_attention_heads=heads,
        window_size=window,
        hidden_size=hidden,
        mlp_ratio=mlp_hidden / embed,
        qkv_bias="audio_branch.layers.0.blocks.0.attn.qkv.bias" in state_dict,
        enable_patch_layer_norm="audio_branch.patch_embed.norm.weight" in state_dict,
        **(fusion or dict(enable_fusion=False, fusion_type=None)),
    )


def _roberta_config(state_dict: dict, num_heads: int | None) -> dict:
    """ClapTextConfig arguments of a RoBERTa ``text_branch``."""
    if any(key.startswith(("text_branch.shared.", "text_branch.decoder.")) for key in state_dict):
        raise ValueError(
            "the text branch is BART; only RoBERTa text branches can be converted to ClapModel"
        )
    if "text_branch.embeddings.word_embeddings.weight" not in state_dict:
        found = sorted(
            {".".join(key.split(".")[:2]) for key in state_dict if key.startswith("text_branch.")}
        )
        raise ValueError(
            f"the text branch is not a RoBERTa model ({found[:6]}; the CLIP-style 'transformer' "
            f"text branch is not supported); only RoBERTa text branches convert to ClapModel"
        )
    vocab, hidden = _shape(state_dict, "text_branch.embeddings.word_embeddings.weight")
    type_vocab = _shape(state_dict, "text_branch.embeddings.token_type_embeddings.weight")[0]
    if type_vocab != 1:
        raise ValueError(
            f"the text branch has {type_vocab} token types, i.e. it is BERT, not RoBERTa (1); "
            f"only RoBERTa text branches can be converted to ClapModel"
        )
    num_heads = num_heads or hidden // ROBERTA_HEAD_SIZE
    if hidden % num_heads:
        raise ValueError(
            f"text hidden size {hidden} is not divisible by {num_heads} attention heads"
        )
    return dict(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=len(_indices(state_dict, r"text_branch\.encoder\.layer\.(\d+)\.")),
        num_attention_heads=num_heads,
        intermediate_size=_shape(
            state_dict, "text_branch.encoder.layer.0.intermediate.dense.weight"
        )[0],
        max_position_embeddings=_shape(
            state_dict, "text_branch.embeddings.position_embeddings.weight"
        )[0],
        type_vocab_size=type_vocab,
        layer_norm_eps=ROBERTA_LAYER_NORM_EPS,
        hidden_act="gelu",
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )


def laion_to_clap_config(
    state_dict: dict[str, torch.Tensor], text_num_heads: int | None = None
) -> ClapConfig:
    """The ClapConfig of a LAION-CLAP state dict, inferred from tensor shapes.

    Args:
        state_dict: output of :func:`read_laion_state_dict`.
        text_num_heads: RoBERTa attention heads; weights do not record them, the default
            ``hidden_size // 64`` is right for roberta-base and roberta-large.
    """
    audio = _htsat_config(state_dict)
    text = _roberta_config(state_dict, text_num_heads)
    projection_dim, audio_in = _shape(state_dict, "audio_projection.0.weight")
    text_out, text_in = _shape(state_dict, "text_projection.0.weight")
    if (audio_in, text_in, text_out) != (audio["hidden_size"], text["hidden_size"], projection_dim):
        raise ValueError(
            f"projection shapes audio {(projection_dim, audio_in)} / text {(text_out, text_in)} do not "
            f"fit audio width {audio['hidden_size']} and text width {text['hidden_size']}"
        )
    return ClapConfig(
        text_config=ClapTextConfig(**text).to_dict(),
        audio_config=ClapAudioConfig(**audio).to_dict(),
        projection_dim=projection_dim,
        projection_hidden_act="relu",
    )


# -- weights ---------------------------------------------------------------------------------------


def _swap(key: str, pairs, reverse: bool = False) -> str | None:
    for laion, clap in pairs:
        old, new = (clap, laion) if reverse else (laion, clap)
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def _clap_key(laion_key: str) -> str | None:
    """ClapModel name of a LAION key (before the qkv split), or None if no rule applies."""
    key = _swap(laion_key, _PREFIXES)
    block = _BLOCK.match(key) if key else None
    if block:
        part = _swap(block.group(2), _BLOCK_PARTS)
        key = block.group(1) + part if part else None
    return key


def _laion_key(clap_key: str) -> str:
    """Best-effort inverse of :func:`_clap_key`, for error messages."""
    key = re.sub(r"\.attention\.self\.(query|key|value)\.", ".attention.self.qkv.", clap_key)
    block = _BLOCK.match(key)
    if block:
        key = block.group(1) + (_swap(block.group(2), _BLOCK_PARTS, reverse=True) or block.group(2))
    return _swap(key, _PREFIXES, reverse=True) or clap_key


def convert_laion_state_dict(
    state_dict: dict[str, torch.Tensor], config: ClapConfig
) -> dict[str, torch.Tensor]:
    """ClapModel weights from LAION-CLAP weights; fails unless the two match one to one.

    Raises ``ValueError`` listing every LAION weight that is neither used nor in
    ``UNUSED_LAION_KEYS``, every ClapModel parameter or persistent buffer left unfilled, and every
    shape mismatch.
    """
    converted, origin, unused = {}, {}, []
    for laion_key, tensor in state_dict.items():
        if any(pattern.fullmatch(laion_key) for pattern in UNUSED_LAION_KEYS):
            continue
        key = _clap_key(laion_key)
        if key is None:
            unused.append(laion_key)
            continue
        qkv = _QKV.match(key)
        # query, key and value are the three row blocks of HTSAT's fused qkv projection
        parts = zip(("query", "key", "value"), tensor.chunk(3)) if qkv else [(None, tensor)]
        for name, value in parts:
            new_key = f"{qkv.group(1)}{name}.{qkv.group(2)}" if qkv else key
            converted[new_key], origin[new_key] = value.clone(), laion_key
    # Buffers that hold no learned values: ClapTextEmbeddings' position ids and token types.
    positions = config.text_config.max_position_embeddings
    converted.setdefault("text_model.embeddings.position_ids", torch.arange(positions).unsqueeze(0))
    converted.setdefault(
        "text_model.embeddings.token_type_ids", torch.zeros(1, positions, dtype=torch.long)
    )

    with torch.device("meta"):
        expected = ClapModel(config).state_dict()
    unused += sorted({origin[key] for key in converted if key not in expected})
    unfilled = [f"{key} (LAION: {_laion_key(key)})" for key in expected if key not in converted]
    mismatched = [
        f"{origin.get(key, key)} -> {key}: {tuple(converted[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in converted and converted[key].shape != value.shape
    ]
    problems = [
        (title, names)
        for title, names in (
            ("LAION weights that no ClapModel weight takes", unused),
            ("ClapModel weights the checkpoint does not fill", unfilled),
            ("shape mismatches (checkpoint vs ClapModel)", mismatched),
        )
        if names
    ]
    if problems:
        raise ValueError(
            "LAION-CLAP -> ClapModel conversion is not one to one:\n"
            + "\n".join(
                f"  {title} ({len(names)}):\n" + "\n".join(f"    {name}" for name in names)
                for title, names in problems
            )
        )
    return {key: converted[key].to(expected[key].dtype) for key in expected}


def _load_model(config: ClapConfig, weights: dict[str, torch.Tensor]) -> ClapModel:
    with torch.device("meta"):
        model = ClapModel(config)
    model.load_state_dict(weights, strict=True, assign=True)
    left = [
        name
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        if tensor.is_meta
    ]
    if left:  # a non-persistent buffer would need computing here; none exists in transformers 5
        raise RuntimeError(f"ClapModel tensors not materialised after loading: {left}")
    return model.eval()


# -- features --------------------------------------------------------------------------------------


def _feature_extractor(state_dict: dict, config: ClapConfig) -> ClapFeatureExtractor:
    """LAION's log-mel front end as a ClapFeatureExtractor, checked against the checkpoint's filterbank."""
    audio = config.audio_config
    stft = state_dict.get("audio_branch.spectrogram_extractor.stft.conv_real.weight")
    fft_size = stft.shape[-1] if stft is not None else DEFAULT_FFT_SIZE
    extractor = ClapFeatureExtractor(
        feature_size=audio.num_mel_bins,
        fft_window_size=fft_size,
        truncation="fusion" if audio.enable_fusion else "rand_trunc",
        **LAION_AUDIO,
    )
    # Unfused models compute the log-mel in-graph with librosa's (Slaney) filterbank, which they
    # store; the extractor's must be the same matrix, or sample rate / FFT size / band edges differ.
    mel = state_dict.get("audio_branch.logmel_extractor.melW")
    if mel is not None and (
        mel.shape != extractor.mel_filters_slaney.shape
        or not np.allclose(mel.double().numpy(), extractor.mel_filters_slaney, atol=1e-6)
    ):
        raise ValueError(
            "the checkpoint's mel filterbank differs from LAION's standard front end "
            f"({LAION_AUDIO}, FFT size {fft_size}, {audio.num_mel_bins} mel bins)"
        )
    return extractor


# -- entry points ----------------------------------------------------------------------------------


def _tokenizer(source: str):
    if not Path(source).expanduser().exists():
        source = LEGACY_HUB_IDS.get(source, source)
    return _from_source(AutoTokenizer.from_pretrained, source, "tokenizer", "tokenizer")


def from_laion_checkpoint(
    path: str | Path,
    tokenizer: str = "roberta-base",
    text_num_heads: int | None = None,
    name: str | None = None,
) -> ClapBackbone:
    """A ``ClapBackbone`` from an original LAION-CLAP ``.pt`` file.

    Args:
        path: e.g. ``630k-audioset-best.pt``, ``630k-audioset-fusion-best.pt``,
            ``music_audioset_epoch_15_esc_90.14.pt``.
        tokenizer: local directory or hub id of the RoBERTa tokenizer the text tower was trained
            with (LAION: ``roberta-base``).
        text_num_heads: see :func:`laion_to_clap_config`.
        name: label for logs and reports; defaults to the file name without extension.
    """
    state_dict = read_laion_state_dict(path)
    text_tokenizer = _tokenizer(tokenizer)
    config = laion_to_clap_config(state_dict, text_num_heads=text_num_heads)
    extractor = _feature_extractor(state_dict, config)
    model = _load_model(config, convert_laion_state_dict(state_dict, config))
    if len(text_tokenizer) > config.text_config.vocab_size:
        raise ValueError(
            f"tokenizer '{tokenizer}' has {len(text_tokenizer)} tokens but the checkpoint's text "
            f"tower only {config.text_config.vocab_size}; pass the tokenizer it was trained with"
        )
    featurizer = ClapFeaturizer(extractor, text_tokenizer, bool(config.audio_config.enable_fusion))
    return ClapBackbone(model, featurizer, name=name or Path(path).stem)


def convert_laion_checkpoint(
    path: str | Path,
    out_dir: str | Path,
    tokenizer: str = "roberta-base",
    text_num_heads: int | None = None,
) -> Path:
    """Write a LAION-CLAP ``.pt`` as a transformers directory that ``from_pretrained`` loads."""
    backbone = from_laion_checkpoint(path, tokenizer=tokenizer, text_num_heads=text_num_heads)
    return backbone.save_pretrained(out_dir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="Convert a LAION-CLAP .pt checkpoint to a transformers directory."
    )
    parser.add_argument("checkpoint", help="LAION-CLAP .pt file")
    parser.add_argument(
        "out_dir", help="directory to write (config, weights, feature extractor, tokenizer)"
    )
    parser.add_argument(
        "--tokenizer", default="roberta-base", help="RoBERTa tokenizer directory or hub id"
    )
    parser.add_argument(
        "--text-num-heads", type=int, default=None, help="override hidden_size // 64"
    )
    args = parser.parse_args()
    written = convert_laion_checkpoint(
        args.checkpoint, args.out_dir, tokenizer=args.tokenizer, text_num_heads=args.text_num_heads
    )
    print(f"wrote {written}")
