"""MS-CLAP 2022's audio encoder: PANNs' Cnn14, ported from msclap 1.3.4 ``msclap/models/audio.py``
(MIT, Microsoft; after Kong et al.'s PANNs). Parameter names are upstream's
(``audio_encoder.base.*``). The embedding is ``relu(fc1(max_t + mean_t))`` of the last block;
``fc_audioset`` (the AudioSet classifier) is kept as weights, unused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from humanclap.backbones.msclap.frontend import LogmelFilterBank, Spectrogram


@dataclass(frozen=True)
class Cnn14Config:
    """``config_2022.yml`` values Cnn14 is built with (its ``n_fft: 1028`` is not used upstream:
    the FFT size is ``window_size``)."""

    sample_rate: int = 44_100
    window_size: int = 1024
    hop_size: int = 320
    mel_bins: int = 64
    fmin: int = 50
    fmax: int = 14_000
    classes_num: int = 527
    out_emb: int = 2048
    channels: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)

    def to_dict(self) -> dict:
        return asdict(self)


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool_size: tuple[int, int]) -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)


class Cnn14(nn.Module):
    """Waveform (B, samples) -> embedding (B, out_emb)."""

    def __init__(self, config: Cnn14Config) -> None:
        super().__init__()
        self.config = config
        self.spectrogram_extractor = Spectrogram(config.window_size, config.hop_size)
        self.logmel_extractor = LogmelFilterBank(
            config.sample_rate, config.window_size, config.mel_bins, config.fmin, config.fmax
        )
        self.bn0 = nn.BatchNorm2d(config.mel_bins)
        widths = (1, *config.channels)
        for i in range(len(config.channels)):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(config.channels[-1], config.out_emb)
        self.fc_audioset = nn.Linear(config.out_emb, config.classes_num)

    def classifier_parameters(self) -> list[nn.Parameter]:
        return list(self.fc_audioset.parameters())

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        x = self.logmel_extractor(self.spectrogram_extractor(waves))  # (B, 1, frames, mels)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        blocks = len(self.config.channels)
        for i in range(blocks):
            pool = (1, 1) if i == blocks - 1 else (2, 2)
            x = F.dropout(
                getattr(self, f"conv_block{i + 1}")(x, pool), p=0.2, training=self.training
            )
        x = torch.mean(x, dim=3)
        x = torch.max(x, dim=2).values + torch.mean(x, dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        return F.dropout(F.relu_(self.fc1(x)), p=0.5, training=self.training)
