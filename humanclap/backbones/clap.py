"""``ClapBackbone``: a transformers ``ClapModel`` plus its featurizer, behind the Embedder interface.

Every supported checkpoint format ends up here: hub ids and local directories load directly,
original LAION-CLAP ``.pt`` files are converted into this layout first
(:mod:`humanclap.backbones.laion_checkpoint`), and the tiny test model is a saved directory.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ClapModel, ClapProcessor

from humanclap.backbones.base import (
    MAX_LOGIT_SCALE,
    Backbone,
    part_error,
    tower_error,
)
from humanclap.backbones.featurizer import ClapFeaturizer, expand_channels

__all__ = ["MAX_LOGIT_SCALE", "ClapBackbone"]


class ClapBackbone(Backbone):
    """Audio and text towers of a transformers ``ClapModel`` with their projections."""

    def __init__(self, model: ClapModel, featurizer: ClapFeaturizer, name: str = "clap") -> None:
        super().__init__(model, featurizer, name)
        self.train(model.training)  # from_pretrained gives eval mode; keep the wrapper consistent

    # -- properties ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.model.logit_scale_a.device

    @property
    def dtype(self) -> torch.dtype:
        """The audio tower's floating-point type (features are cast to it: 64-true, bf16-true runs)."""
        return self.model.audio_projection.linear1.weight.dtype

    @property
    def logit_scale(self) -> nn.Parameter:
        """log(1/τ) of human-clap eq. (5); LAION-CLAP's ``logit_scale_a``, used for both directions."""
        return self.model.logit_scale_a

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.projection_dim)

    def unused_parameters(self) -> list[nn.Parameter]:
        """``logit_scale_t``: the loss uses ``logit_scale_a`` for both directions (eq. 5)."""
        return [self.model.logit_scale_t]

    # -- training path ------------------------------------------------------------------------
    def audio_embeddings(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unit-norm audio embeddings e^audio from featurizer output (differentiable)."""
        device = self.device
        features = expand_channels(  # a compact batch from a loader worker, on the device
            {**features, "input_features": features["input_features"].to(device, self.dtype)}
        )
        outputs = self.model.audio_model(
            input_features=features["input_features"],
            is_longer=features["is_longer"].to(device),
        )
        return F.normalize(self.model.audio_projection(outputs.pooler_output), dim=-1)

    def text_embeddings(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unit-norm text embeddings e^text from token ids (differentiable)."""
        device = self.device
        outputs = self.model.text_model(
            input_ids=tokens["input_ids"].to(device),
            attention_mask=tokens["attention_mask"].to(device),
        )
        return F.normalize(self.model.text_projection(outputs.pooler_output), dim=-1)

    # -- training utilities -------------------------------------------------------------------
    def clamp_logit_scale(self, max_value: float = MAX_LOGIT_SCALE) -> None:
        """Keep 0 <= log(1/τ) <= ln(100) for both of ClapModel's scales (it never clamps them)."""
        with torch.no_grad():
            self.model.logit_scale_a.clamp_(0.0, max_value)
            self.model.logit_scale_t.clamp_(0.0, max_value)

    def tower_modules(self, tower: str) -> list[nn.Module]:
        """The encoder and projection of ``"audio"`` or ``"text"``."""
        if tower == "audio":
            return [self.model.audio_model, self.model.audio_projection]
        if tower == "text":
            return [self.model.text_model, self.model.text_projection]
        raise tower_error(tower)

    # Training stages (humanclap.lit.stages): the parts a stage trains or freezes.
    def part_modules(self, part: str) -> list[nn.Module]:
        """The modules of a stage part: ``"audio"`` / ``"text"`` the tower's encoder,
        ``"projections"`` both projections, ``"temperature"`` none (a bare parameter)."""
        if part == "audio":
            return [self.model.audio_model]
        if part == "text":
            return [self.model.text_model]
        if part == "projections":
            return [self.model.audio_projection, self.model.text_projection]
        if part == "temperature":
            return []
        raise part_error(part)

    # -- export -------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write a directory that ``ClapModel.from_pretrained`` and ``ClapProcessor`` load."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        ClapProcessor(
            feature_extractor=self.featurizer.feature_extractor,
            tokenizer=self.featurizer.tokenizer,
        ).save_pretrained(directory)
        return directory
