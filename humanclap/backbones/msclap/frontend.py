"""Log-mel front end inside MS-CLAP's audio encoders: a port of ``torchlibrosa``'s ``Spectrogram``
and ``LogmelFilterBank`` (as used by msclap 1.3.4, ``msclap/models/{audio,htsat}.py``).

The STFT is a strided ``Conv1d`` with DFT-times-Hann weights and the mel matrix is a parameter, as
upstream: both are stored in MS-CLAP checkpoints (``...spectrogram_extractor.stft.conv_real.weight``,
``...logmel_extractor.melW``), so the values a checkpoint carries are the ones used. Both are frozen.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import get_window
from torch import nn
from transformers.audio_utils import mel_filter_bank


class Stft(nn.Module):
    """Power-2 STFT of (B, samples) -> (B, 1, frames, n_fft // 2 + 1), centred with reflect padding."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        window = get_window("hann", n_fft, fftbins=True)  # librosa's periodic Hann
        x, y = np.meshgrid(np.arange(n_fft), np.arange(n_fft))
        dft = np.power(np.exp(-2 * np.pi * 1j / n_fft), x * y)[:, : n_fft // 2 + 1]
        kernels = dft * window[:, None]
        bins = n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, bins, n_fft, stride=hop_length, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, n_fft, stride=hop_length, bias=False)
        with torch.no_grad():
            self.conv_real.weight.copy_(
                torch.tensor(np.real(kernels).T, dtype=torch.float32)[:, None]
            )
            self.conv_imag.weight.copy_(
                torch.tensor(np.imag(kernels).T, dtype=torch.float32)[:, None]
            )
        self.requires_grad_(False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        x = F.pad(waves[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real = self.conv_real(x)[:, None].transpose(2, 3)
        imag = self.conv_imag(x)[:, None].transpose(2, 3)
        return real**2 + imag**2


class Spectrogram(nn.Module):
    """``torchlibrosa.stft.Spectrogram`` (power 2): its one child is ``stft``, as in the checkpoints."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.stft = Stft(n_fft, hop_length)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.stft(waves)


class LogmelFilterBank(nn.Module):
    """Power spectrogram -> mel (slaney filters, librosa's default) -> ``10 log10(max(x, 1e-10))``
    (``ref`` 1, no ``top_db``, as both MS-CLAP encoders set it)."""

    def __init__(self, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> None:
        super().__init__()
        filters = mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1,
            num_mel_filters=n_mels,
            min_frequency=fmin,
            max_frequency=fmax,
            sampling_rate=sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.melW = nn.Parameter(torch.tensor(filters, dtype=torch.float32), requires_grad=False)
        self.amin = 1e-10

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(spectrogram, self.melW)
        return 10.0 * torch.log10(
            torch.clamp(mel, min=self.amin)
        )  # - 10 log10(max(amin, ref=1)) = 0
