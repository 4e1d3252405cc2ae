"""Audealize's reverberator (Rafii & Pardo 2009) (timbre-semantics §2.3, "Reverberation").

Six parallel combs, two all-passes and a low-pass per channel, rendered as one FFT convolution per
descriptor. The structure, the formulas and the differences from the browser:
see docs/effects.md#reverb.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import NamedTuple

import numpy as np
import torch
from scipy.fft import next_fast_len
from torch import Tensor

from humanclap.dsp.biquad import BACKENDS, Backend, apply_cascade, lowpass_coefficients
from humanclap.dsp.inputs import as_amounts, as_wave, positive_rate

N_COMBS = 6
ALLPASS_GAIN = 0.1
MIN_DELAY_S = 0.01
ALLPASS_BASE_DELAY_S = MIN_DELAY_S + 0.006
LOWPASS_Q_DB = 1.0
OUTPUT_GAIN = 0.45
FIELDS = ("d", "g", "m", "f", "E", "wetdry")


@dataclass(frozen=True)
class ReverbSettings:
    """One descriptor's reverb settings, in the order of reverbdescriptors.json.

    d: delay of the first (longest) comb, s (> 0); g: gain of the first comb (0 < g < 1);
    m: all-pass delay difference left − right, s (finite); f: low-pass cut-off, Hz (> 0);
    E: effect gain, reverb vs delayed clean signal (>= 0); wetdry: 0 = dry ... 1 = wet.
    """

    d: float
    g: float
    m: float
    f: float
    E: float
    wetdry: float = 1.0

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise ValueError(f"ReverbSettings.{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        checks = {
            "d": self.d > 0,
            "g": 0 < self.g < 1,
            "f": self.f > 0,
            "E": self.E >= 0,
            "wetdry": 0 <= self.wetdry <= 1,
        }
        rules = {"d": "> 0", "g": "in (0, 1)", "f": "> 0", "E": ">= 0", "wetdry": "in [0, 1]"}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(
                    f"ReverbSettings.{name} must be {rules[name]}, got {getattr(self, name)!r}"
                )

    @classmethod
    def from_sequence(cls, values: Sequence[float]) -> ReverbSettings:
        """From [d, g, m, f, E, wetdry] (a row of reverbdescriptors.json's ``settings``)."""
        values = [float(v) for v in values]
        if len(values) != len(FIELDS):
            raise ValueError(
                f"reverb settings need {len(FIELDS)} values {list(FIELDS)}, got {len(values)}"
            )
        return cls(*values)

    def as_tuple(self) -> tuple[float, ...]:
        return astuple(self)


def prev_prime(x: float) -> int:
    """The largest prime <= floor(x); 2 if x < 3 (Audealize's rule, see docs/effects.md#reverb)."""
    if not math.isfinite(x):
        raise ValueError(f"prev_prime needs a finite number, got {x!r}")
    n = math.floor(x)
    if n <= 2:
        return 2
    for candidate in range(n, 2, -1):
        if candidate % 2 and all(candidate % p for p in range(3, math.isqrt(candidate) + 1, 2)):
            return candidate
    return 2  # unreachable: 3 is prime


def wet_dry_gains(amount: float) -> tuple[float, float]:
    """(wet, dry) = (cos((1 − a)·π/2), cos(a·π/2)), with exact 0 at a = 1 (dry) and a = 0 (wet)."""
    wet = 0.0 if amount == 0 else math.cos((1 - amount) * math.pi / 2)
    dry = 0.0 if amount == 1 else math.cos(amount * math.pi / 2)
    return wet, dry


def mix_gains(effect_gain: float) -> tuple[float, float, float]:
    """(reverb gain, clean gain, gain scale) for E: g1 = 1/(E+1), cos(g1·3π/8), cos((1−g1)·π/8)."""
    g1 = 1 / (effect_gain + 1)
    reverb_gain = math.cos(g1 * 0.375 * math.pi)
    clean_gain = math.cos((1 - g1) * 0.125 * math.pi)
    return reverb_gain, clean_gain, 0.5 * 0.8 / (clean_gain + reverb_gain)


class ReverbDesign(NamedTuple):
    """The reverberator's components at one sample rate (delays in samples)."""

    comb_delays: tuple[int, ...]
    comb_gains: tuple[float, ...]
    allpass_delays: tuple[int, int]  # (left, right)
    clean_delay: int
    lowpass: tuple[Tensor, Tensor]  # (b, a), each (3,)
    reverb_gain: float
    clean_gain: float
    gain_scale: float


def _fft_convolve(x: Tensor, h: Tensor, length: int) -> Tensor:
    """First ``length`` samples of the linear convolution of x (..., Tx) and h (..., Th); float64."""
    n = next_fast_len(x.shape[-1] + h.shape[-1] - 1, real=True)
    spectrum = torch.fft.rfft(x, n) * torch.fft.rfft(h, n)
    return torch.fft.irfft(spectrum, n)[..., :length]


def _sparse_feedback(length: int, delay: int, feedforward: float, feedback: float) -> Tensor:
    """Impulse response of (g1 + z^−D)/(1 − g2 z^−D), truncated: h[0] = g1,
    h[D] = 1 + g1·g2, h[jD] = g2^(j−1)·(1 + g1·g2)."""
    h = torch.zeros(length, dtype=torch.float64)
    h[0] = feedforward
    taps = torch.arange(delay, length, delay)
    h[taps] = (1 + feedforward * feedback) * feedback ** torch.arange(
        taps.numel(), dtype=torch.float64
    )
    return h


class AudealizeReverb:
    """Audealize's reverberator at ``sample_rate``; the structure: docs/effects.md#reverb.

    ``backend`` runs the low-pass biquad (:func:`humanclap.dsp.biquad.apply_cascade`).
    """

    def __init__(self, sample_rate: int = 48_000, backend: Backend = "auto"):
        self.sample_rate = positive_rate(sample_rate)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend

    def design(self, settings: ReverbSettings) -> ReverbDesign:
        """Delays, gains and low-pass coefficients for ``settings`` (its wetdry is not used)."""
        fs = self.sample_rate
        rt = settings.d * math.log(0.001) / math.log(settings.g)
        delays_s = [settings.d * (15 - k) / 15 for k in range(N_COMBS)]
        b, a = lowpass_coefficients(settings.f, LOWPASS_Q_DB, fs)
        reverb_gain, clean_gain, gain_scale = mix_gains(settings.E)
        return ReverbDesign(
            comb_delays=tuple(prev_prime(delay * fs) for delay in delays_s),
            comb_gains=tuple(0.001 ** (delay / rt) for delay in delays_s),
            allpass_delays=(
                prev_prime((ALLPASS_BASE_DELAY_S + settings.m / 2) * fs),
                prev_prime((ALLPASS_BASE_DELAY_S - settings.m / 2) * fs),
            ),
            clean_delay=round(MIN_DELAY_S * fs),
            lowpass=(b, a),
            reverb_gain=reverb_gain,
            clean_gain=clean_gain,
            gain_scale=gain_scale,
        )

    def _response(self, settings: ReverbSettings, length: int, allpass_weights: Tensor) -> Tensor:
        """Wet-path impulse responses for rows of all-pass channel weights (C, 2) -> (C, length)."""
        if not isinstance(length, (int, np.integer)) or length <= 0:
            raise ValueError(f"length must be a positive integer, got {length!r}")
        design = self.design(settings)
        combs = torch.zeros(length, dtype=torch.float64)
        for delay, gain in zip(design.comb_delays, design.comb_gains):
            combs += _sparse_feedback(length, delay, 0.0, gain)
        allpasses = torch.stack(
            [
                _sparse_feedback(length, delay, -ALLPASS_GAIN, ALLPASS_GAIN)
                for delay in design.allpass_delays
            ]
        )  # (2, length): left, right
        diffuse = _fft_convolve(combs, allpass_weights @ allpasses, length)  # (C, length)
        b, a = design.lowpass
        channels = diffuse.shape[0]
        diffuse = apply_cascade(
            diffuse, b.expand(channels, 1, 3), a.expand(channels, 1, 3), backend=self.backend
        )
        response = design.reverb_gain * diffuse
        if design.clean_delay < length:
            response[:, design.clean_delay] += design.clean_gain
        return design.gain_scale * response

    def impulse_response(self, settings: ReverbSettings, length: int) -> Tensor:
        """Stereo wet path h_c, (2, length) float64 (left, right), at wet gain 1.

        h_c = gain_scale·(reverb_gain·LPF ∗ AP_c ∗ Σ combs + clean_gain·δ[n − 0.01·fs]), so that
        out_c = 0.45·(dry·x + wet·(h_c ∗ x)). ``settings.wetdry`` is not used.
        """
        return self._response(_as_settings(settings), length, torch.eye(2, dtype=torch.float64))

    def mono_impulse_response(self, settings: ReverbSettings, length: int) -> Tensor:
        """(h_left + h_right)/2, (length,) — built with the averaged all-pass (the effect is linear)."""
        weights = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
        return self._response(_as_settings(settings), length, weights)[0]

    def __call__(self, wave, settings, amounts: Sequence[float], *, tail_s: float = 0.0) -> Tensor:
        """Every descriptor × wet/dry version of one clip, mono, (D, L, T + tail).

        ``wave``: one mono clip (T,), numpy or torch; ``settings``: (D, 6) rows [d, g, m, f, E,
        wetdry] or a list of :class:`ReverbSettings` (wetdry is replaced by each amount);
        ``amounts``: L wet/dry values in [0, 1]. ``tail_s`` seconds of silence are appended before
        processing, so the tail is kept (default 0: output length = input length). The output dtype
        is the input's floating dtype (float32 for non-float input); computation is float64.
        """
        x, out_dtype = as_wave(wave)
        descriptors = _settings_list(settings)
        levels = as_amounts(amounts, maximum=1.0)
        if not (isinstance(tail_s, (int, float)) and math.isfinite(tail_s) and tail_s >= 0):
            raise ValueError(f"tail_s must be a finite number >= 0, got {tail_s!r}")
        x = torch.nn.functional.pad(x, (0, round(tail_s * self.sample_rate)))
        length = x.shape[-1]
        gains = torch.tensor(
            [wet_dry_gains(float(level)) for level in levels], dtype=torch.float64
        )  # (L, 2)
        n = next_fast_len(2 * length - 1, real=True)
        spectrum = torch.fft.rfft(x, n)
        out = torch.empty(len(descriptors), levels.numel(), length, dtype=out_dtype)
        for row, descriptor in enumerate(descriptors):
            h = self.mono_impulse_response(descriptor, length)
            wet = torch.fft.irfft(spectrum * torch.fft.rfft(h, n), n)[:length]
            out[row] = (OUTPUT_GAIN * (gains[:, :1] * wet + gains[:, 1:] * x)).to(out_dtype)
        return out


def _as_settings(settings) -> ReverbSettings:
    if not isinstance(settings, ReverbSettings):
        raise ValueError(f"settings must be a ReverbSettings, got {type(settings).__name__}")
    return settings


def _settings_list(settings) -> list[ReverbSettings]:
    """(D, 6) rows or ReverbSettings -> a non-empty list of ReverbSettings (errors name the row)."""
    if isinstance(settings, ReverbSettings):
        raise ValueError(
            "settings must be a list of ReverbSettings or a (D, 6) array; wrap one in a list"
        )
    if (
        isinstance(settings, (list, tuple))
        and settings
        and all(isinstance(s, ReverbSettings) for s in settings)
    ):
        return list(settings)
    rows = torch.as_tensor(np.asarray(settings, dtype=np.float64))
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] != len(FIELDS):
        raise ValueError(
            f"settings must be (D, {len(FIELDS)}) rows {list(FIELDS)} with D >= 1, "
            f"got shape {tuple(rows.shape)}"
        )
    out = []
    for index, row in enumerate(rows.tolist()):
        try:
            out.append(ReverbSettings.from_sequence(row))
        except ValueError as err:
            raise ValueError(f"settings row {index}: {err}") from None
    return out
