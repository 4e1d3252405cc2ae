"""Validation shared by the effects: one mono clip in, a list of intensities.

Every effect takes one clip ``wave`` (T,) (numpy or torch) and a sequence of L intensity
``amounts``; these helpers turn both into float64 tensors or raise a ``ValueError`` naming the bad
input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def as_wave(wave) -> tuple[Tensor, torch.dtype]:
    """``wave`` as a float64 1-D CPU tensor, plus the dtype the effect's output should have.

    The output dtype is the input's floating dtype (numpy float32 -> torch.float32); integer or
    other inputs give float32 (what CLAP consumes).
    """
    if isinstance(wave, np.ndarray):
        wave = torch.from_numpy(np.ascontiguousarray(wave))
    elif not isinstance(wave, Tensor):
        raise ValueError(f"wave must be a numpy array or torch tensor, got {type(wave).__name__}")
    if wave.ndim != 1:
        raise ValueError(f"wave must be one mono clip of shape (T,), got shape {tuple(wave.shape)}")
    if wave.numel() == 0:
        raise ValueError("wave is empty (T = 0)")
    if wave.is_complex():
        raise ValueError("wave must be real, got a complex tensor")
    out_dtype = wave.dtype if wave.is_floating_point() else torch.float32
    wave = wave.detach().to(device="cpu", dtype=torch.float64)  # effects render on CPU
    if not torch.isfinite(wave).all():
        raise ValueError("wave contains non-finite samples (NaN or inf)")
    return wave, out_dtype


def as_amounts(
    amounts: Sequence[float] | Tensor | np.ndarray, *, maximum: float = math.inf
) -> Tensor:
    """The L effect intensities as a float64 (L,) tensor; each finite and in [0, ``maximum``]."""
    if isinstance(amounts, (int, float)):
        raise ValueError(
            f"amounts must be a sequence of intensities (e.g. [0.3, 0.6, 1.0]), got {amounts!r}"
        )
    values = torch.as_tensor(
        np.asarray(amounts, dtype=np.float64)
        if not isinstance(amounts, Tensor)
        else amounts.detach(),
        dtype=torch.float64,
    )
    if values.ndim != 1:
        raise ValueError(f"amounts must be 1-D (L,), got shape {tuple(values.shape)}")
    if values.numel() == 0:
        raise ValueError("amounts is empty; give at least one intensity, e.g. [0.3, 0.6, 1.0]")
    if not torch.isfinite(values).all():
        raise ValueError(f"amounts must be finite, got {values.tolist()}")
    if (values < 0).any():
        raise ValueError(f"amounts must be >= 0, got {values.tolist()}")
    if (values > maximum).any():
        raise ValueError(f"amounts must be <= {maximum}, got {values.tolist()}")
    return values


def positive_rate(sample_rate) -> int:
    """``sample_rate`` as a positive int (Hz)."""
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, (int, np.integer))
        or sample_rate <= 0
    ):
        raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    return int(sample_rate)
