"""``Backbone``: what the LightningModule, the probes and evaluate need from any audio-text model.

A backbone holds a featurizer (waveforms and texts -> model inputs; picklable, so loader workers run
it) and two towers with their projections into one joint space. Subclasses say how a tower embeds a
batch and which modules make up a tower or a training-stage part; the batching, the gradient-free
inference helpers (``Embedder``), freezing and the train/eval bookkeeping are shared here.
See docs/models.md#backbones.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from humanclap.backbones.embedder import Waveform

MAX_LOGIT_SCALE = math.log(100.0)
"""Upper bound of log(1/τ), as in CLIP/open_clip: the temperature never drops below 0.01."""

PARTS = ("audio", "text", "projections", "temperature")
"""The parts a training stage trains or freezes (humanclap.lit.stages)."""


class Backbone(nn.Module):
    """Audio and text towers of a contrastive audio-text model with their projections.

    ``audio_embeddings``/``text_embeddings`` keep gradients (training); ``embed_audio``/
    ``embed_text`` are the batched, gradient-free inference helpers probes use.

    Subclasses implement ``audio_embeddings``, ``text_embeddings``, ``logit_scale``,
    ``embedding_dim``, ``tower_modules``, ``part_modules`` and ``save_pretrained``, and set
    ``featurizer`` (``audio``, ``text``, ``clip``, ``collate``, ``describe``, ``sample_rate``,
    ``tokenizer``, ``max_text_tokens``) and ``name``.
    """

    featurizer: Any
    name: str

    def __init__(self, model: nn.Module, featurizer: Any, name: str) -> None:
        """``model``: the towers (the family's own module, whose state dict is its checkpoint format)."""
        super().__init__()
        self.model = model
        self.featurizer = featurizer
        self.name = name

    # -- what a model says about itself -------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.featurizer.sample_rate

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def dtype(self) -> torch.dtype:
        """The towers' floating-point type (inputs are cast to it: 64-true, bf16-true runs)."""
        return self.logit_scale.dtype

    @property
    def logit_scale(self) -> nn.Parameter:
        """log(1/τ) of human-clap eq. (5), the one temperature the losses use."""
        raise NotImplementedError

    @property
    def embedding_dim(self) -> int:
        raise NotImplementedError

    def unused_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters no loss reaches (DDP refuses them): frozen by the LightningModule."""
        return []

    def audio_embeddings(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unit-norm audio embeddings e^audio from featurizer output (differentiable)."""
        raise NotImplementedError

    def text_embeddings(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unit-norm text embeddings e^text from token ids (differentiable)."""
        raise NotImplementedError

    def tower_modules(self, tower: str) -> list[nn.Module]:
        """The encoder and projection of ``"audio"`` or ``"text"``."""
        raise NotImplementedError

    def part_modules(self, part: str) -> list[nn.Module]:
        """The modules of a stage part: ``"audio"`` / ``"text"`` the tower's encoder,
        ``"projections"`` both projections, ``"temperature"`` none (a bare parameter)."""
        raise NotImplementedError

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write a directory that the same model kind loads back (``model=<directory>``)."""
        raise NotImplementedError

    # -- inference path (Embedder) ------------------------------------------------------------
    def embed_audio(self, waves: Sequence[Waveform], batch_size: int = 32) -> torch.Tensor:
        return self._embed(waves, batch_size, self.featurizer.audio, self.audio_embeddings)

    def embed_text(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        return self._embed(texts, batch_size, self.featurizer.text, self.text_embeddings)

    def embed_audio_features(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """``embed_audio`` of one batch the featurizer already made (``featurizer.audio`` or
        ``featurizer.collate`` of cached clips): unit-norm rows on the CPU, without gradients."""
        with self._inference() as dtype:
            return self.audio_embeddings(features).to("cpu", dtype)

    def _embed(self, items, batch_size, featurize, encode) -> torch.Tensor:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(items, (str, bytes)):
            raise TypeError("expected a list of items, got a single string (wrap it in a list)")
        with self._inference() as dtype:
            chunks = [
                encode(featurize(items[start : start + batch_size], first_index=start)).to(
                    "cpu", dtype
                )
                for start in range(0, len(items), batch_size)
            ]
        if not chunks:
            return torch.empty(0, self.embedding_dim, dtype=dtype)
        return torch.cat(chunks)

    @contextmanager
    def _inference(self) -> Iterator[torch.dtype]:
        """Eval mode and no gradients inside; yields the embeddings' dtype (float64 models keep float64,
        for exact comparisons across process layouts; others float32)."""
        modes = {module: module.training for module in self.modules()}
        self.eval()
        try:
            with torch.no_grad():
                yield torch.float64 if self.dtype == torch.float64 else torch.float32
        finally:  # restore each submodule's own mode (they need not agree with the wrapper's)
            for module, training in modes.items():
                module.training = training

    # -- training utilities -------------------------------------------------------------------
    def clamp_logit_scale(self, max_value: float = MAX_LOGIT_SCALE) -> None:
        """Keep 0 <= log(1/τ) <= ln(100)."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, max_value)

    def freeze(self, audio: bool = False, text: bool = False) -> None:
        """Fix a tower (encoder and projection): no gradients, and eval mode even while the backbone is
        in train mode, so its BatchNorm statistics and dropout stay fixed too (see ``train``). The
        temperature stays trainable. ``freeze()`` unfreezes both towers."""
        self._frozen_towers = {"audio": bool(audio), "text": bool(text)}
        for tower, frozen in self._frozen_towers.items():
            for module in self.tower_modules(tower):
                for parameter in module.parameters():
                    parameter.requires_grad_(not frozen)
        self.train(self.training)

    @property
    def frozen_towers(self) -> dict[str, bool]:
        """``{"audio": ..., "text": ...}`` as last set by ``freeze`` (nothing frozen at first)."""
        return dict(getattr(self, "_frozen_towers", {"audio": False, "text": False}))

    def part_parameters(self, part: str) -> list[nn.Parameter]:
        """The parameters of a stage part (``"temperature"``: ``logit_scale``, the one the loss uses)."""
        if part == "temperature":
            return [self.logit_scale]
        return [
            parameter for module in self.part_modules(part) for parameter in module.parameters()
        ]

    def train_parts(self, audio: bool, text: bool, projections: bool, temperature: bool) -> None:
        """Set which parts train (a training stage): the others are frozen as ``freeze`` freezes a
        tower: no gradients, and eval mode even while the backbone is in train mode."""
        wanted = {
            "audio": audio,
            "text": text,
            "projections": projections,
            "temperature": temperature,
        }
        self._frozen_parts = tuple(part for part, trains in wanted.items() if not trains)
        for part, trains in wanted.items():
            for parameter in self.part_parameters(part):
                parameter.requires_grad_(bool(trains))
        self.train(self.training)

    @property
    def frozen_parts(self) -> tuple[str, ...]:
        """The parts the last ``train_parts`` froze (none at first)."""
        return tuple(getattr(self, "_frozen_parts", ()))

    def frozen_modules(self) -> list[nn.Module]:
        """The submodules ``train`` keeps in eval mode: those of the frozen towers and parts."""
        modules = [
            module
            for tower, frozen in self.frozen_towers.items()
            if frozen
            for module in self.tower_modules(tower)
        ]
        seen = {id(module) for module in modules}
        for part in self.frozen_parts:
            for module in self.part_modules(part):
                if id(module) not in seen:
                    seen.add(id(module))
                    modules.append(module)
        return modules

    def train(self, mode: bool = True) -> Backbone:
        """``nn.Module.train``, except that frozen parts (``frozen_modules``) always stay in eval mode.

        Lightning and ``HumanClapModule`` put the whole model in train mode; without this a frozen
        tower's BatchNorm running statistics would keep following the training data, and its dropout
        would make the "fixed" embeddings random.
        """
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)


def part_error(part: str) -> ValueError:
    return ValueError(f"part must be 'audio', 'text', 'projections' or 'temperature', got {part!r}")


def tower_error(tower: str) -> ValueError:
    return ValueError(f"tower must be 'audio' or 'text', got {tower!r}")
