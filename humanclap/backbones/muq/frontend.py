"""MuQ's mel front end (``muq/muq/modules/features.py`` ``MelSTFT``, ``is_db=True``): torchaudio's
``MelSpectrogram(sample_rate=24000, n_fft=2048, hop_length=240, n_mels=128)`` then
``AmplitudeToDB()``, written with ``torch.stft`` so torchaudio is not needed.

The defaults that call gets: a periodic Hann window of ``n_fft``, centred frames with reflect
padding, power 2, HTK mel scale without filter normalisation from 0 Hz to ``sample_rate / 2``, and
``10 log10(max(x, 1e-10))`` (ref 1, no ``top_db``). Upstream's ``MelSTFT`` is no ``nn.Module``, so
nothing of it is in the checkpoint; the window and filters here are non-persistent buffers. It is
computed in float32 (``x.float()``, muq_model.py:181) whatever the model's dtype (float64 stays).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _hz_to_mel(freq: float) -> float:
    return 2595.0 * math.log10(1.0 + freq / 700.0)


def melscale_fbanks(
    n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int
) -> torch.Tensor:
    """torchaudio.functional.melscale_fbanks(norm=None, mel_scale="htk"): (n_freqs, n_mels). Computed
    on the CPU whatever the default device (a model built on the meta device still gets values)."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs, device="cpu")
    m_pts = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2, device="cpu")
    f_pts = 700.0 * (10.0 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.max(torch.zeros(1, device="cpu"), torch.min(down, up))


class MelSTFT(nn.Module):
    """(B, samples) -> (B, n_mels, 1 + samples // hop_length) log-mel power in dB."""

    def __init__(
        self, sample_rate: int = 24_000, n_fft: int = 2048, hop_length: int = 240, n_mels: int = 128
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        filters = melscale_fbanks(n_fft // 2 + 1, 0.0, float(sample_rate // 2), n_mels, sample_rate)
        self.register_buffer("filters", filters, persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        dtype = torch.float64 if waves.dtype == torch.float64 else torch.float32
        waves = waves.to(dtype)
        spec = torch.stft(
            waves,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window=self.window.to(dtype),
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = spec.abs().pow(2.0)
        mel = torch.matmul(power.transpose(-1, -2), self.filters.to(dtype)).transpose(-1, -2)
        return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
