"""Audealize's 40-band graphic EQ (timbre-semantics §2.3, Experiment 2, "Equalization").

40 Web Audio peaking biquads in series; band gain = amount × ``max_db`` (5 dB) × the descriptor's
normalised curve. See docs/effects.md#graphic-eq.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from humanclap.dsp.biquad import BACKENDS, Backend, apply_cascade, peaking_coefficients
from humanclap.dsp.inputs import as_amounts, as_wave, positive_rate

AUDEALIZE_EQ_CENTRES_HZ: tuple[float, ...] = (
    20.0,
    50.0,
    83.0,
    120.0,
    161.0,
    208.0,
    259.0,
    318.0,
    383.0,
    455.0,
    537.0,
    628.0,
    729.0,
    843.0,
    971.0,
    1114.0,
    1273.0,
    1452.0,
    1652.0,
    1875.0,
    2126.0,
    2406.0,
    2719.0,
    3070.0,
    3462.0,
    3901.0,
    4392.0,
    4941.0,
    5556.0,
    6244.0,
    7014.0,
    7875.0,
    8839.0,
    9917.0,
    11124.0,
    12474.0,
    13984.0,
    15675.0,
    17566.0,
    19682.0,
)
"""Centre frequencies (Hz) of Audealize's 40 bands (SocialFX columns RSC_20Hz_band ...)."""

AUDEALIZE_Q = 4.31
"""Q of every band (linear, as Web Audio's peaking filter takes it)."""

AUDEALIZE_MAX_DB = 5.0
"""Gain (dB) of a normalised value of ±1 at amount 1 (Audealize: gain = range × 5 × curve)."""


def normalize_curve(settings) -> Tensor:
    """Audealize's rescaling of descriptor curves to [−1, 1], over the last dim; float64.

    min_el = min(0, min(s)), max_el = max(0, max(s)), value = (s − min_el)/(max_el − min_el)·2 − 1.
    So a curve with both signs maps its minimum to −1 and its maximum to +1, an all-positive curve
    has its maximum at +1 and 0 at −1, an all-negative one its minimum at −1 and 0 at +1.
    An all-zero curve (max_el == min_el; Audealize leaves it undefined) gives all zeros: a flat
    EQ, the identity.
    """
    curve = torch.as_tensor(settings, dtype=torch.float64)
    if curve.ndim == 0 or curve.shape[-1] == 0:
        raise ValueError(
            f"settings must be (..., n_bands) with n_bands > 0, got shape {tuple(curve.shape)}"
        )
    if not torch.isfinite(curve).all():
        raise ValueError("settings contain non-finite values (NaN or inf)")
    low = curve.min(dim=-1, keepdim=True).values.clamp(max=0)
    high = curve.max(dim=-1, keepdim=True).values.clamp(min=0)
    span = high - low
    flat = span == 0
    scaled = (curve - low) / torch.where(flat, torch.ones_like(span), span) * 2 - 1
    return torch.where(flat, torch.zeros_like(scaled), scaled)


class GraphicEQ:
    """Audealize's graphic EQ at ``sample_rate``, rendering D descriptors × L amounts at once.

    Args:
        sample_rate: Hz (the demo assumes 48 kHz).
        max_db: gain in dB of a normalised value ±1 at amount 1.
        q: Q of every band.
        centres_hz: band centres; their number is the number of settings per descriptor.
        backend: how the biquad cascade is run, see :func:`humanclap.dsp.biquad.apply_cascade`.
    """

    def __init__(
        self,
        sample_rate: int = 48_000,
        max_db: float = AUDEALIZE_MAX_DB,
        q: float = AUDEALIZE_Q,
        centres_hz: Sequence[float] = AUDEALIZE_EQ_CENTRES_HZ,
        backend: Backend = "auto",
    ):
        self.sample_rate = positive_rate(sample_rate)
        if not (isinstance(max_db, (int, float)) and torch.isfinite(torch.tensor(float(max_db)))):
            raise ValueError(f"max_db must be a finite number, got {max_db!r}")
        if not (isinstance(q, (int, float)) and 0 < q < float("inf")):
            raise ValueError(f"q must be a finite number > 0, got {q!r}")
        centres = torch.as_tensor(centres_hz, dtype=torch.float64)
        if centres.ndim != 1 or centres.numel() == 0:
            raise ValueError(
                f"centres_hz must be a non-empty 1-D sequence, got shape {tuple(centres.shape)}"
            )
        if not (torch.isfinite(centres).all() and (centres > 0).all()):
            raise ValueError(f"centres_hz must be finite and > 0, got {centres.tolist()}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.max_db, self.q, self.centres_hz, self.backend = (
            float(max_db),
            float(q),
            centres,
            backend,
        )

    @property
    def n_bands(self) -> int:
        return self.centres_hz.numel()

    def _settings(self, settings) -> Tensor:
        curves = torch.as_tensor(settings, dtype=torch.float64)
        if curves.ndim != 2 or curves.shape[0] == 0 or curves.shape[1] != self.n_bands:
            raise ValueError(
                f"settings must be (D, {self.n_bands}) descriptor curves with D >= 1 "
                f"(one setting per band), got shape {tuple(curves.shape)}"
            )
        return curves

    def gains_db(self, settings, amounts: Sequence[float]) -> Tensor:
        """Band gains in dB, (D, L, n_bands): amount × max_db × normalize_curve(settings)."""
        curves = normalize_curve(self._settings(settings))
        levels = as_amounts(amounts)
        return levels[None, :, None] * self.max_db * curves[:, None, :]

    def coefficients(self, settings, amounts: Sequence[float]) -> tuple[Tensor, Tensor]:
        """The peaking biquads ``(b, a)``, each (D, L, n_bands, 3), a0-normalised float64."""
        return peaking_coefficients(
            self.centres_hz, self.gains_db(settings, amounts), self.q, self.sample_rate
        )

    def __call__(self, wave, settings, amounts: Sequence[float]) -> Tensor:
        """Every descriptor × amount version of one clip, (D, L, T).

        ``wave``: one mono clip (T,), numpy or torch; ``settings``: (D, n_bands) raw descriptor
        curves; ``amounts``: L intensities >= 0 (e.g. [0.3, 0.6, 1.0]). The output dtype is the
        input's floating dtype (float32 for non-float input); filtering runs in float64.
        """
        x, out_dtype = as_wave(wave)
        b, a = self.coefficients(settings, amounts)
        n_desc, n_levels = b.shape[:2]
        rows = x.expand(n_desc * n_levels, -1)
        out = apply_cascade(
            rows,
            b.reshape(n_desc * n_levels, self.n_bands, 3),
            a.reshape(n_desc * n_levels, self.n_bands, 3),
            backend=self.backend,
        )
        return out.reshape(n_desc, n_levels, -1).to(out_dtype)
