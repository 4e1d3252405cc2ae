"""The one interface every probe and every training step talks to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

Waveform = np.ndarray | torch.Tensor


@runtime_checkable
class Embedder(Protocol):
    """Anything that maps mono waveforms and texts into one joint, L2-normalised space.

    ``embed_audio`` takes mono float waveforms at ``sample_rate`` (48 kHz for every CLAP
    checkpoint) and ``embed_text`` takes strings. Both are inference helpers: deterministic,
    batched, without gradients, returning float32 tensors on the CPU with unit-norm rows, so that
    a dot product is the cosine of human-clap eq. (3).
    """

    sample_rate: int

    def embed_audio(self, waves: Sequence[Waveform], batch_size: int = 32) -> torch.Tensor: ...

    def embed_text(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor: ...
