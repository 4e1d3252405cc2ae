"""Transformer aggregation heads (event-ordering paper §2.1), as an optional CLAP backbone variant.

Pooling + MLP projection are replaced per tower by a 2-layer, 2-head Transformer over 1 s audio
chunks and over token states (:class:`TransformerAggregator`, :class:`ChunkedClapFeaturizer`,
:class:`TransformerHeadBackbone`, :func:`with_transformer_heads`). The design decisions ([CLS],
positions, masking, chunking, freezing, persistence):
see docs/models.md#transformer-aggregation-heads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import ClapConfig

from humanclap.backbones.checkpoint_safety import (
    CHUNKING_ARGUMENTS,
    HEADS_CONFIG_ENTRIES,
    TRANSFORMER_HEAD_ARGUMENTS,
    CheckpointError,
    check_arguments,
    plain_reason,
    refuse_custom_code,
)
from humanclap.backbones.clap import ClapBackbone
from humanclap.backbones.embedder import Waveform
from humanclap.backbones.featurizer import (
    TEXT_MAX_TOKENS,
    ClapFeaturizer,
    as_mono_array,
    batch_tensor,
)

HEADS_WEIGHTS = "aggregation_heads.safetensors"
HEADS_CONFIG = "aggregation_config.json"
HEADS_FORMAT = "humanclap.transformer_heads"
HEADS_FORMAT_VERSION = 1
HEADS_MODEL_TYPE = "humanclap_clap_with_transformer_heads"
"""``model_type`` in the ``config.json`` of an export with heads: plain transformers refuses or warns."""


# -- the head -----------------------------------------------------------------------------------
def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim) fixed positional encoding: PE[p, 2i] = sin(p / 10000^(2i/dim)), PE[p, 2i+1] = cos."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10_000.0) / dim)
    )
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


def masked_mean(sequence: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Temporal mean pooling over the valid positions: (B, T, D), mask (B, T) True = valid -> (B, D).

    The order-blind aggregation the Transformer head replaces (used as the comparison in tests).
    """
    if mask is None:
        return sequence.mean(dim=1)
    weights = mask.to(sequence.dtype).unsqueeze(-1)
    return (sequence * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class TransformerAggregator(nn.Module):
    """Sequence -> one vector: input projection, [CLS], sinusoidal positions, Transformer, position 0.

    Args:
        input_dim: width of the encoder states (chunk embeddings or token states).
        output_dim: width of the result (the joint embedding space, CLAP's ``projection_dim``).
        num_layers / num_heads: of the ``nn.TransformerEncoder`` (paper: 2 and 2).
        max_positions: longest sequence accepted, [CLS] included.
        dropout: inside the Transformer and on its input.
        model_dim: Transformer width (default ``output_dim``); must be divisible by ``num_heads``.
        feedforward_dim: width of the feed-forward blocks (default ``4 * model_dim``).
        cls_token: prepend a learned [CLS] vector (True) or read the first input position (False;
            that position must then be valid in every row).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        num_layers: int = 2,
        num_heads: int = 2,
        max_positions: int = 512,
        dropout: float = 0.1,
        model_dim: int | None = None,
        feedforward_dim: int | None = None,
        cls_token: bool = True,
    ) -> None:
        super().__init__()
        model_dim = int(model_dim or output_dim)
        feedforward_dim = int(feedforward_dim or 4 * model_dim)
        if min(input_dim, output_dim, num_layers, num_heads, max_positions) < 1:
            raise ValueError(
                "TransformerAggregator: dimensions, layers, heads and max_positions must be >= 1"
            )
        if model_dim % num_heads:
            raise ValueError(
                f"TransformerAggregator: model_dim {model_dim} is not divisible by num_heads {num_heads}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"TransformerAggregator: dropout must be in [0, 1), got {dropout}")
        self._config = {
            "input_dim": int(input_dim),
            "output_dim": int(output_dim),
            "num_layers": int(num_layers),
            "num_heads": int(num_heads),
            "max_positions": int(max_positions),
            "dropout": float(dropout),
            "model_dim": model_dim,
            "feedforward_dim": feedforward_dim,
            "cls_token": bool(cls_token),
        }
        self.input_projection = nn.Linear(input_dim, model_dim)
        self.cls = nn.Parameter(0.02 * torch.randn(model_dim)) if cls_token else None
        self.register_buffer(
            "positions", sinusoidal_positions(max_positions, model_dim), persistent=False
        )
        self.input_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            model_dim,
            num_heads,
            feedforward_dim,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(model_dim), enable_nested_tensor=False
        )
        self.output_projection = nn.Linear(model_dim, output_dim)

    @property
    def output_dim(self) -> int:
        return self._config["output_dim"]

    def config(self) -> dict[str, Any]:
        """Constructor arguments: ``TransformerAggregator(**head.config())`` rebuilds the architecture."""
        return dict(self._config)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self._config.items())

    def forward(self, sequence: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``sequence`` (B, T, input_dim), ``mask`` (B, T) True/1 = valid -> (B, output_dim)."""
        if sequence.dim() != 3 or sequence.shape[-1] != self._config["input_dim"]:
            raise ValueError(
                f"TransformerAggregator: expected (B, T, {self._config['input_dim']}), "
                f"got {tuple(sequence.shape)}"
            )
        batch, length, _ = sequence.shape
        valid = (
            torch.ones(batch, length, dtype=torch.bool, device=sequence.device)
            if mask is None
            else mask.to(device=sequence.device).bool()
        )
        if valid.shape != (batch, length):
            raise ValueError(
                f"TransformerAggregator: mask {tuple(valid.shape)} does not match sequence {(batch, length)}"
            )
        hidden = self.input_projection(sequence)
        if self.cls is not None:
            hidden = torch.cat([self.cls.to(hidden.dtype).expand(batch, 1, -1), hidden], dim=1)
            valid = torch.cat([valid.new_ones(batch, 1), valid], dim=1)
        elif length == 0 or not bool(valid[:, 0].all()):
            raise ValueError(
                "TransformerAggregator without a [CLS] token reads position 0, which is padding "
                "in some row (left padding?); pad on the right"
            )
        total = hidden.shape[1]
        if total > self.positions.shape[0]:
            raise ValueError(
                f"TransformerAggregator: sequence of {total} positions exceeds max_positions "
                f"{self.positions.shape[0]}"
            )
        hidden = self.input_dropout(hidden + self.positions[:total].to(hidden.dtype))
        hidden = self.encoder(hidden, src_key_padding_mask=~valid)
        return self.output_projection(hidden[:, 0])


# -- chunked featurisation ----------------------------------------------------------------------
class ChunkedClapFeaturizer(ClapFeaturizer):
    """``audio`` -> per-chunk CLAP features: ``input_features`` (B * C, ...), ``is_longer`` (B * C, 1),
    ``chunk_mask`` (B, C) with C the most chunks of any clip in the batch; rows of padded chunks are
    zeros. Every chunk is featurised on its own under the fixed seed, so a clip's features do not
    depend on its batch. ``text`` is unchanged.
    """

    def __init__(
        self,
        feature_extractor,
        tokenizer,
        enable_fusion: bool,
        chunk_seconds: float = 1.0,
        max_chunks: int = 10,
        min_last_chunk_seconds: float = 0.1,
    ) -> None:
        super().__init__(feature_extractor, tokenizer, enable_fusion)
        if not chunk_seconds > 0 or max_chunks < 1 or min_last_chunk_seconds < 0:
            raise ValueError(
                f"ChunkedClapFeaturizer needs chunk_seconds > 0, max_chunks >= 1 and "
                f"min_last_chunk_seconds >= 0, got {chunk_seconds}, {max_chunks}, {min_last_chunk_seconds}"
            )
        self.chunk_seconds = float(chunk_seconds)
        self.max_chunks = int(max_chunks)
        self.min_last_chunk_seconds = float(min_last_chunk_seconds)

    @classmethod
    def from_featurizer(cls, featurizer: ClapFeaturizer, **chunking: Any) -> ChunkedClapFeaturizer:
        return cls(
            featurizer.feature_extractor, featurizer.tokenizer, featurizer.enable_fusion, **chunking
        )

    def chunking(self) -> dict[str, Any]:
        return {
            "chunk_seconds": self.chunk_seconds,
            "max_chunks": self.max_chunks,
            "min_last_chunk_seconds": self.min_last_chunk_seconds,
        }

    @property
    def chunk_samples(self) -> int:
        return max(1, int(round(self.chunk_seconds * self.sample_rate)))

    def split(self, wave: Waveform, what: str = "waveform") -> list[np.ndarray]:
        """Consecutive chunks of one clip (rules: docs/models.md#transformer-aggregation-heads)."""
        array = as_mono_array(wave, what=what)
        size = self.chunk_samples
        chunks = [array[start : start + size] for start in range(0, array.shape[0], size)]
        if len(chunks) > 1 and chunks[-1].shape[0] < self.min_last_chunk_seconds * self.sample_rate:
            chunks.pop()
        return chunks[: self.max_chunks]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.chunking()}

    def clip(self, wave: Waveform, what: str = "waveform") -> dict[str, np.ndarray]:
        """One clip's chunks: ``input_features`` (chunks, channels, frames, mels), ``is_longer`` (chunks,)."""
        chunks = [super(ChunkedClapFeaturizer, self).clip(c, what) for c in self.split(wave, what)]
        return {
            "input_features": np.stack([c["input_features"] for c in chunks]),
            "is_longer": np.array([bool(c["is_longer"]) for c in chunks]),
        }

    def collate(self, clips: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        if len(clips) == 0:
            raise ValueError("featurize: no waveforms given")
        counts = [len(clip["is_longer"]) for clip in clips]
        width = max(counts)
        mask = torch.zeros(len(clips), width, dtype=torch.bool)
        for row, count in enumerate(counts):
            mask[row, :count] = True
        shape = clips[0]["input_features"].shape[1:]
        features = batch_tensor((len(clips) * width, *shape))
        rows = features.numpy()
        longer = torch.zeros((len(clips) * width, 1), dtype=torch.bool)
        for row, clip in enumerate(clips):
            first = row * width
            np.copyto(rows[first : first + counts[row]], clip["input_features"])
            rows[first + counts[row] : first + width] = 0
            longer[first : first + counts[row], 0] = torch.from_numpy(np.array(clip["is_longer"]))
        return {"input_features": features, "is_longer": longer, "chunk_mask": mask}


# -- the backbone -------------------------------------------------------------------------------
class TransformerHeadBackbone(ClapBackbone):
    """A ClapBackbone whose pooling + projection are replaced by Transformer heads.

    See docs/models.md#transformer-aggregation-heads.

    ``audio_embeddings`` needs ``ChunkedClapFeaturizer`` output; ``text_embeddings`` takes the usual
    token ids. Both return L2-normalised (B, head output_dim) rows.
    """

    def __init__(
        self,
        model,
        featurizer: ChunkedClapFeaturizer,
        audio_head: TransformerAggregator,
        text_head: TransformerAggregator,
        name: str = "clap+transformer-head",
        freeze_heads_with_towers: bool = False,
    ) -> None:
        if not isinstance(featurizer, ChunkedClapFeaturizer):
            raise TypeError(
                "TransformerHeadBackbone needs a ChunkedClapFeaturizer (audio is cut into chunks)"
            )
        if audio_head.output_dim != text_head.output_dim:
            raise ValueError(
                f"audio head outputs {audio_head.output_dim} dims, text head {text_head.output_dim}"
            )
        super().__init__(model, featurizer, name=name)
        self.audio_head = audio_head
        self.text_head = text_head
        self.freeze_heads_with_towers = bool(freeze_heads_with_towers)
        self._freeze_replaced_layers()
        self.train(model.training)  # the heads were added after ClapBackbone set the mode

    @property
    def embedding_dim(self) -> int:
        return self.audio_head.output_dim

    def _replaced_layers(self) -> list[nn.Module]:
        """The projections and the text pooler: the heads replace them, they never reach the output."""
        replaced = [self.model.audio_projection, self.model.text_projection]
        if getattr(self.model.text_model, "pooler", None) is not None:
            replaced.append(self.model.text_model.pooler)
        return replaced

    def _freeze_replaced_layers(self) -> None:
        """Keep the replaced layers out of the optimiser (and out of DDP's unused-parameter check)."""
        for module in self._replaced_layers():
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    # -- training path ------------------------------------------------------------------------
    def chunk_embeddings(
        self, features: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled ``ClapAudioModel`` output of every chunk (before the CLAP projection): (B, C, D) and
        ``chunk_mask`` (B, C). Only valid chunks are encoded; padded rows are zeros."""
        if "chunk_mask" not in features:
            raise KeyError(
                "audio features have no 'chunk_mask': use ChunkedClapFeaturizer (backbone.featurizer)"
            )
        device = self.device
        mask = features["chunk_mask"].bool()
        valid = mask.flatten().cpu()
        encoded = self.model.audio_model(
            input_features=features["input_features"][
                valid.to(features["input_features"].device)
            ].to(device, self.dtype),
            is_longer=features["is_longer"][valid.to(features["is_longer"].device)].to(device),
        ).pooler_output
        rows = torch.nonzero(valid).squeeze(1).to(device)
        sequence = encoded.new_zeros(valid.numel(), encoded.shape[-1]).index_copy(0, rows, encoded)
        return sequence.view(*mask.shape, -1), mask.to(device)

    def audio_embeddings(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        sequence, mask = self.chunk_embeddings(features)
        return F.normalize(self.audio_head(sequence, mask), dim=-1)

    def text_embeddings(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        device = self.device
        mask = tokens["attention_mask"].to(device)
        states = self.model.text_model(
            input_ids=tokens["input_ids"].to(device), attention_mask=mask
        ).last_hidden_state
        return F.normalize(self.text_head(states, mask.bool()), dim=-1)

    def _embed(self, items, batch_size, featurize, encode) -> torch.Tensor:
        embeddings = super()._embed(items, batch_size, featurize, encode)
        return embeddings if len(items) else torch.empty(0, self.embedding_dim)

    # -- training utilities -------------------------------------------------------------------
    def freeze(self, audio: bool = False, text: bool = False) -> None:
        """Freeze a tower's encoder; its head too only if ``freeze_heads_with_towers``. Frozen parts stay
        in eval mode during training, as in ``ClapBackbone.freeze``."""
        super().freeze(audio=audio, text=text)
        for head, frozen in ((self.audio_head, audio), (self.text_head, text)):
            for parameter in head.parameters():
                parameter.requires_grad_(not (frozen and self.freeze_heads_with_towers))
        self._freeze_replaced_layers()

    def part_modules(self, part: str) -> list[nn.Module]:
        """As ``ClapBackbone.part_modules``, with the heads as ``"projections"`` (they replace them)."""
        if part == "projections":
            return [
                head
                for head in (getattr(self, "audio_head", None), getattr(self, "text_head", None))
                if head is not None
            ]
        return super().part_modules(part)

    def train_parts(self, audio: bool, text: bool, projections: bool, temperature: bool) -> None:
        """As ``ClapBackbone.train_parts``; the replaced layers stay frozen whatever the stage."""
        super().train_parts(audio, text, projections, temperature)
        self._freeze_replaced_layers()

    def frozen_modules(self) -> list[nn.Module]:
        """The frozen encoders, their heads if ``freeze_heads_with_towers``, and the replaced layers."""
        modules = super().frozen_modules() + self._replaced_layers()
        if getattr(
            self, "freeze_heads_with_towers", False
        ):  # train() runs in __init__ before the heads exist
            heads = {
                "audio": getattr(self, "audio_head", None),
                "text": getattr(self, "text_head", None),
            }
            modules += [
                heads[tower]
                for tower, frozen in self.frozen_towers.items()
                if frozen and heads[tower] is not None
            ]
        return modules

    # -- export -------------------------------------------------------------------------------
    def heads_config(self) -> dict[str, Any]:
        return {
            "format": HEADS_FORMAT,
            "version": HEADS_FORMAT_VERSION,
            "audio_head": self.audio_head.config(),
            "text_head": self.text_head.config(),
            "chunking": self.featurizer.chunking(),
            "freeze_heads_with_towers": self.freeze_heads_with_towers,
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        """The ClapModel + processor directory, plus the heads (docs/models.md#transformer-aggregation-heads)."""
        directory = super().save_pretrained(directory)
        tensors = {
            f"{prefix}.{key}": value.detach().cpu().contiguous()
            for prefix, head in (("audio_head", self.audio_head), ("text_head", self.text_head))
            for key, value in head.state_dict().items()
        }
        save_file(tensors, str(directory / HEADS_WEIGHTS), metadata={"format": HEADS_FORMAT})
        (directory / HEADS_CONFIG).write_text(json.dumps(self.heads_config(), indent=2) + "\n")
        config_path = directory / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["model_type"] = HEADS_MODEL_TYPE  # the ClapModel files alone are not this model
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return directory


# -- construction and loading -------------------------------------------------------------------
def with_transformer_heads(
    backbone: ClapBackbone,
    num_layers: int = 2,
    num_heads: int = 2,
    dropout: float = 0.1,
    model_dim: int | None = None,
    output_dim: int | None = None,
    chunk_seconds: float = 1.0,
    max_chunks: int = 10,
    min_last_chunk_seconds: float = 0.1,
    text_cls_token: bool = False,
    freeze_heads_with_towers: bool = False,
    seed: int | None = 0,
    audio_cls_token: bool = True,
) -> TransformerHeadBackbone:
    """Wrap a loaded ``ClapBackbone`` (any checkpoint) with fresh Transformer heads.

    ``output_dim`` defaults to the model's ``projection_dim`` and ``model_dim`` to ``output_dim``.
    ``seed`` makes the heads' initialisation reproducible without touching the global RNG (None:
    draw from the global RNG). The result shares ``backbone.model`` (no copy) and marks its
    projections and text pooler ``requires_grad=False``; use the returned object from then on.
    ``audio_cls_token``: the audio head prepends a learned [CLS] (True) or reads the first chunk's
    position (False), as the text head reads the first token unless ``text_cls_token``; why a fresh
    head learns order only with False: docs/models.md#transformer-aggregation-heads.
    """
    if isinstance(backbone, TransformerHeadBackbone):
        raise TypeError("backbone already has Transformer heads")
    config = backbone.model.config
    output_dim = int(output_dim or config.projection_dim)
    common = dict(
        output_dim=output_dim,
        num_layers=num_layers,
        num_heads=num_heads,
        dropout=dropout,
        model_dim=model_dim,
    )
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        audio_head = TransformerAggregator(
            config.audio_config.hidden_size,
            max_positions=max_chunks + int(audio_cls_token),
            cls_token=audio_cls_token,
            **common,
        )
        text_head = TransformerAggregator(
            config.text_config.hidden_size,
            max_positions=TEXT_MAX_TOKENS + int(text_cls_token),
            cls_token=text_cls_token,
            **common,
        )
    featurizer = ChunkedClapFeaturizer.from_featurizer(
        backbone.featurizer,
        chunk_seconds=chunk_seconds,
        max_chunks=max_chunks,
        min_last_chunk_seconds=min_last_chunk_seconds,
    )
    head_backbone = TransformerHeadBackbone(
        backbone.model,
        featurizer,
        audio_head,
        text_head,
        name=f"{backbone.name}+transformer-head",
        freeze_heads_with_towers=freeze_heads_with_towers,
    )
    return head_backbone.to(backbone.device)


def has_transformer_heads(directory: str | Path) -> bool:
    return (Path(directory).expanduser() / HEADS_CONFIG).is_file()


def heads_export_config(directory: str | Path) -> ClapConfig | None:
    """The ``ClapConfig`` of an export marked with :data:`HEADS_MODEL_TYPE`, read as a plain ``clap`` config
    (pass it as ``config=`` to ``ClapModel`` / ``ClapProcessor.from_pretrained``, which then do not warn);
    None for any other directory. A marked directory without its heads is refused: it is not a CLAP model.
    """
    directory = Path(directory).expanduser()
    config_path = directory / "config.json"
    if not directory.is_dir() or not config_path.is_file():
        return None
    refuse_custom_code(directory)  # before anything is built from its files
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"'{config_path}' is not valid JSON ({plain_reason(error)})."
        ) from None
    if not isinstance(document, dict) or document.get("model_type") != HEADS_MODEL_TYPE:
        return None
    if not has_transformer_heads(directory):
        raise CheckpointError(
            f"'{config_path}' says model_type {HEADS_MODEL_TYPE!r}: the model needs its "
            f"Transformer heads, but {directory} has no {HEADS_CONFIG} (copy the whole export "
            f"directory, {HEADS_WEIGHTS} and {HEADS_CONFIG} included)."
        )
    return ClapConfig.from_dict({**document, "model_type": ClapConfig.model_type})


def load_transformer_heads(
    backbone: ClapBackbone, directory: str | Path
) -> TransformerHeadBackbone:
    """Attach the heads saved in ``directory`` (``save_pretrained``) to a loaded ``ClapBackbone``.

    Both files are data: :data:`HEADS_CONFIG` may hold only the heads' and the chunking's arguments,
    of plain types, and the weights are safetensors. A bad entry or file raises
    :class:`~humanclap.backbones.checkpoint_safety.CheckpointError` naming it.
    """
    directory = Path(directory).expanduser()
    config_path, weights_path = directory / HEADS_CONFIG, directory / HEADS_WEIGHTS
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"'{config_path}' is not valid JSON ({plain_reason(error)})."
        ) from None
    if (
        not isinstance(config, dict)
        or config.get("format") != HEADS_FORMAT
        or config.get("version") != HEADS_FORMAT_VERSION
    ):
        raise CheckpointError(
            f"'{config_path}' is not a version-{HEADS_FORMAT_VERSION} {HEADS_FORMAT} file "
            f"(its 'format' and 'version' entries say otherwise)."
        )
    check_arguments(
        config,
        HEADS_CONFIG_ENTRIES,
        file=config_path,
        where="",
        owner="load_transformer_heads",
        required=("audio_head", "text_head", "chunking"),
    )
    for name in ("audio_head", "text_head"):
        check_arguments(
            config[name],
            TRANSFORMER_HEAD_ARGUMENTS,
            file=config_path,
            where=name,
            owner="TransformerAggregator",
            required=("input_dim", "output_dim"),
        )
    check_arguments(
        config["chunking"],
        CHUNKING_ARGUMENTS,
        file=config_path,
        where="chunking",
        owner="ChunkedClapFeaturizer",
    )
    if not weights_path.is_file():
        raise FileNotFoundError(f"{directory} has {HEADS_CONFIG} but no {HEADS_WEIGHTS}")
    try:
        weights = load_file(str(weights_path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"'{weights_path}' is not a complete safetensors file ({plain_reason(error)}); it is "
            f"truncated or corrupt, so copy or download it again."
        ) from None
    heads = {}
    for prefix in ("audio_head", "text_head"):
        state = {
            key.removeprefix(prefix + "."): value
            for key, value in weights.items()
            if key.startswith(prefix + ".")
        }
        try:
            heads[prefix] = TransformerAggregator(**config[prefix])
            heads[prefix].load_state_dict(state, strict=True)
        except (ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"'{weights_path}' and '{config_path}' do not describe the same {prefix} "
                f"({plain_reason(error)})."
            ) from None
    try:
        featurizer = ChunkedClapFeaturizer.from_featurizer(
            backbone.featurizer, **config["chunking"]
        )
    except ValueError as error:
        raise CheckpointError(
            f"'{config_path}': chunking is not usable ({plain_reason(error)})."
        ) from None
    loaded = TransformerHeadBackbone(
        backbone.model,
        featurizer,
        heads["audio_head"],
        heads["text_head"],
        name=backbone.name,
        freeze_heads_with_towers=config.get("freeze_heads_with_towers", False),
    )
    return loaded.to(backbone.device)
