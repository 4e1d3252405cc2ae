"""Web-Audio biquads in float64 torch: coefficients, analytic response, batched cascades.

The "peaking" and "lowpass" filters of the Audealize effects (timbre-semantics §2.3), with the
coefficients the W3C Web Audio API specifies. See docs/effects.md#biquads.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import torch
import torchaudio.functional as AF
from scipy.signal import sosfilt
from torch import Tensor

from humanclap.dsp.inputs import positive_rate

Backend = Literal["auto", "torchaudio", "scipy"]
BACKENDS = ("auto", "torchaudio", "scipy")
_IDENTITY = (1.0, 0.0, 0.0)
_CHUNK_SAMPLES = 1 << 18


def _float64(name: str, value) -> Tensor:
    tensor = torch.as_tensor(value, dtype=torch.float64)
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite, got {tensor.tolist()}")
    return tensor


def _identity_where(mask: Tensor, b: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
    identity = torch.tensor(_IDENTITY, dtype=torch.float64)
    mask = mask.unsqueeze(-1)
    return torch.where(mask, identity, b), torch.where(mask, identity, a)


def peaking_coefficients(centre_hz, gain_db, q, sample_rate: int) -> tuple[Tensor, Tensor]:
    """Web Audio ``"peaking"`` biquad(s): ``(b, a)``, float64, shape ``broadcast(...) + (3,)``.

    ``centre_hz``, ``gain_db`` and ``q`` broadcast against each other. Centres at or above Nyquist
    and 0 dB gains give the exact identity (see docs/effects.md#biquads).
    """
    sample_rate = positive_rate(sample_rate)
    centre, gain, q = torch.broadcast_tensors(
        _float64("centre_hz", centre_hz), _float64("gain_db", gain_db), _float64("q", q)
    )
    if (centre <= 0).any():
        raise ValueError(f"centre_hz must be > 0, got {centre.min().item()}")
    if (q <= 0).any():
        raise ValueError(f"q must be > 0, got {q.min().item()}")
    nyquist = sample_rate / 2
    w0 = 2 * math.pi * centre.clamp(max=nyquist) / sample_rate
    big_a = 10.0 ** (gain / 40)
    alpha = torch.sin(w0) / (2 * q)
    cos_term = -2 * torch.cos(w0)
    a0 = 1 + alpha / big_a
    b = torch.stack([1 + alpha * big_a, cos_term, 1 - alpha * big_a], dim=-1) / a0.unsqueeze(-1)
    a = torch.stack([torch.ones_like(a0), cos_term / a0, (1 - alpha / big_a) / a0], dim=-1)
    return _identity_where((centre >= nyquist) | (gain == 0), b, a)


def lowpass_coefficients(cutoff_hz, q_db, sample_rate: int) -> tuple[Tensor, Tensor]:
    """Web Audio ``"lowpass"`` biquad(s) (Q in dB; the node's default is 1): ``(b, a)``, float64.

    A cut-off at or above Nyquist is the exact identity (Web Audio clamps it to Nyquist, where the
    spec defines the filter as a pass-through). Cut-offs must be > 0.
    """
    sample_rate = positive_rate(sample_rate)
    cutoff, q_db = torch.broadcast_tensors(_float64("cutoff_hz", cutoff_hz), _float64("q_db", q_db))
    if (cutoff <= 0).any():
        raise ValueError(f"cutoff_hz must be > 0, got {cutoff.min().item()}")
    nyquist = sample_rate / 2
    w0 = 2 * math.pi * cutoff.clamp(max=nyquist) / sample_rate
    alpha = torch.sin(w0) / (2 * 10.0 ** (q_db / 20))
    cos_w0 = torch.cos(w0)
    a0 = 1 + alpha
    b = torch.stack([(1 - cos_w0) / 2, 1 - cos_w0, (1 - cos_w0) / 2], dim=-1) / a0.unsqueeze(-1)
    a = torch.stack([torch.ones_like(a0), -2 * cos_w0 / a0, (1 - alpha) / a0], dim=-1)
    return _identity_where(cutoff >= nyquist, b, a)


def frequency_response(b: Tensor, a: Tensor, freqs_hz, sample_rate: int) -> Tensor:
    """Analytic H(e^{jω}) = B(e^{-jω}) / A(e^{-jω}) of each biquad, complex128, shape (..., F).

    ``b``, ``a``: (..., 3); ``freqs_hz``: (F,) with ω = 2π f / Fs.
    """
    sample_rate = positive_rate(sample_rate)
    b, a = torch.as_tensor(b, dtype=torch.float64), torch.as_tensor(a, dtype=torch.float64)
    if b.shape != a.shape or b.shape[-1:] != (3,):
        raise ValueError(
            f"b and a must have the same shape (..., 3), got {tuple(b.shape)} and {tuple(a.shape)}"
        )
    omega = 2 * math.pi * _float64("freqs_hz", freqs_hz).reshape(-1) / sample_rate
    powers = torch.exp(-1j * omega.unsqueeze(-1) * torch.arange(3, dtype=torch.float64))  # (F, 3)
    b, a = b.to(torch.complex128), a.to(torch.complex128)
    return (b @ powers.T) / (a @ powers.T)


def _check_cascade(waves, b, a) -> tuple[Tensor, Tensor, Tensor]:
    waves, b, a = (torch.as_tensor(t) for t in (waves, b, a))
    if waves.ndim != 2 or waves.shape[-1] == 0:
        raise ValueError(f"waves must be (B, T) with T > 0, got shape {tuple(waves.shape)}")
    if b.shape != a.shape or b.ndim != 3 or b.shape[0] != waves.shape[0] or b.shape[-1] != 3:
        raise ValueError(
            f"b and a must both be (B, K, 3) with B = {waves.shape[0]} rows of waves, "
            f"got {tuple(b.shape)} and {tuple(a.shape)}"
        )
    b, a = b.to(torch.float64), a.to(torch.float64)
    if not (torch.isfinite(b).all() and torch.isfinite(a).all()):
        raise ValueError("b and a must be finite")
    if (a[..., 0] == 0).any():
        raise ValueError("a[..., 0] must be non-zero")
    return waves, b / a[..., :1], a / a[..., :1]


def _torchaudio_cascade(x: Tensor, b: Tensor, a: Tensor) -> Tensor:
    # Rows in chunks of about _CHUNK_SAMPLES samples, each chunk through all K sections: a small
    # working set is ~1.7x faster on CPU than filtering every row per section (long clips go one
    # row at a time), and short clips share lfilter's per-call overhead. clamp=False: boosted
    # audio may exceed ±1.
    rows = max(1, _CHUNK_SAMPLES // x.shape[-1])
    chunks = []
    for first in range(0, x.shape[0], rows):
        y, end = x[first : first + rows], first + rows
        for k in range(b.shape[1]):
            y = AF.lfilter(y, a[first:end, k], b[first:end, k], clamp=False, batching=True)
        chunks.append(y)
    return torch.cat(chunks)


def _scipy_cascade(x: Tensor, b: Tensor, a: Tensor) -> Tensor:
    if x.device.type != "cpu":
        raise ValueError(
            f"backend='scipy' needs CPU tensors, got device {x.device}; use 'torchaudio'"
        )
    signal = x.numpy()
    sos = torch.cat([b, a], dim=-1).numpy()  # (B, K, 6) second-order sections
    out = np.empty_like(signal)

    def run(row: int) -> None:
        out[row] = sosfilt(sos[row], signal[row])

    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:  # sosfilt releases the GIL
        list(pool.map(run, range(signal.shape[0])))
    return torch.from_numpy(out)


def apply_cascade(waves: Tensor, b: Tensor, a: Tensor, *, backend: Backend = "auto") -> Tensor:
    """Run K biquads in series on each of B rows: ``waves`` (B, T), ``b``/``a`` (B, K, 3).

    Row i goes through ``(b[i, 0], a[i, 0])``, then ``(b[i, 1], a[i, 1])``, ... with zero initial
    state. Computed in float64; the result has the dtype of ``waves`` if it is floating (float32
    in -> float32 out), else float64. Sections that are the exact identity on every row are skipped.

    ``backend="torchaudio"`` uses ``torchaudio.functional.lfilter`` (``clamp=False``, per-row
    ``batching``; any device); ``backend="scipy"`` evaluates the same difference equations with
    ``scipy.signal.sosfilt`` (transposed direct form II) on a thread per core (CPU only).
    ``"auto"`` (default) picks scipy for CPU tensors and torchaudio otherwise: on CPU lfilter is
    several times slower, mostly in its float64 grouped ``conv1d`` for the numerator
    (benchmarks/effects_render.py). The two agree to ~1e-12 (tests/dsp/test_dsp_eq.py).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    waves, b, a = _check_cascade(waves, b, a)
    out_dtype = waves.dtype if waves.is_floating_point() else torch.float64
    x = waves.detach().to(torch.float64, copy=True)  # never an alias of the caller's tensor
    identity = torch.tensor(_IDENTITY, dtype=torch.float64, device=b.device)
    active = ~((b == identity).all(-1) & (a == identity).all(-1)).all(0)  # (K,)
    if active.any():
        b, a = b[:, active].contiguous(), a[:, active].contiguous()
        if backend == "auto":
            backend = "scipy" if x.device.type == "cpu" else "torchaudio"
        x = _torchaudio_cascade(x, b, a) if backend == "torchaudio" else _scipy_cascade(x, b, a)
    return x.to(out_dtype)
