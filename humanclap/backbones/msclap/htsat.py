"""MS-CLAP 2023's audio encoder: HTS-AT (a Swin transformer over a folded log-mel image), ported
from msclap 1.3.4 ``msclap/models/htsat.py`` (MIT, Microsoft; itself after Ke Chen's HTS-AT and
microsoft/Swin-Transformer). Module and parameter names are upstream's, so MS-CLAP checkpoints load
unchanged (``audio_encoder.base.htsat.*``).

Ported: the inference path msclap takes for its fixed-length clips (at most ``spec_size *
freq_ratio`` frames: the spectrogram is stretched to that many frames and folded, "the part typically
used" upstream) and its output ``latent_output``, the token average of the last stage. Left out:
SpecAugment and mixup while training, the over-long-input cropping branch (our featurizer always
gives exactly the clip length), the classification outputs (``tscam_conv`` and ``head`` are kept as
weights, unused), attention heat maps. See docs/models.md#ms-clap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from humanclap.backbones.msclap.frontend import LogmelFilterBank, Spectrogram


@dataclass(frozen=True)
class HtsatConfig:
    """msclap's ``models/config.py`` values the 2023 model is built with (its yml's sample rate and
    ``fmax`` are not passed to HTSAT upstream: the mel front end is built for 32 kHz, 50-14,000 Hz)."""

    sample_rate: int = 32_000
    window_size: int = 1024
    hop_size: int = 320
    mel_bins: int = 64
    fmin: int = 50
    fmax: int = 14_000
    spec_size: int = 256
    patch_size: int = 4
    patch_stride: tuple[int, int] = (4, 4)
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window: int = 8
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    classes_num: int = 527

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


def window_partition(x: torch.Tensor, size: int) -> torch.Tensor:
    batch, height, width, channels = x.shape
    x = x.view(batch, height // size, size, width // size, size, channels)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, size, size, channels)


def window_reverse(windows: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    batch = int(windows.shape[0] / (height * width / size / size))
    x = windows.view(batch, height // size, width // size, size, size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(batch, height, width, -1)


class DropPath(nn.Module):
    """Stochastic depth per sample (training only)."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = (
            keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        ).floor_()
        return x.div(keep) * mask


class PatchEmbed(nn.Module):
    def __init__(
        self, img_size: int, patch_size: int, patch_stride: tuple[int, int], embed_dim: int
    ) -> None:
        super().__init__()
        self.img_size = (img_size, img_size)
        self.grid_size = (img_size // patch_stride[0], img_size // patch_stride[1])
        padding = ((patch_size - patch_stride[0]) // 2, (patch_size - patch_stride[1]) // 2)
        self.proj = nn.Conv2d(
            1, embed_dim, kernel_size=patch_size, stride=patch_stride, padding=padding
        )
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative position bias (Swin)."""

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) * (2 * window - 1), num_heads)
        )
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        )
        flat = torch.flatten(coords, 1)
        relative = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
        relative[:, :, 0] += window - 1
        relative[:, :, 1] += window - 1
        relative[:, :, 0] *= 2 * window - 1
        self.register_buffer("relative_position_index", relative.sum(-1))  # stored in checkpoints
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attention = (q * self.scale) @ k.transpose(-2, -1)
        area = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attention = attention + bias.view(area, area, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attention = attention.view(batch // windows, windows, self.num_heads, tokens, tokens)
            attention = (attention + mask.unsqueeze(1).unsqueeze(0)).view(
                -1, self.num_heads, tokens, tokens
            )
        attention = attention.softmax(dim=-1)
        return self.proj((attention @ v).transpose(1, 2).reshape(batch, tokens, channels))


class SwinTransformerBlock(nn.Module):
    def __init__(
        self, dim: int, resolution: tuple[int, int], num_heads: int, window: int, shift: int,
        mlp_ratio: float, drop_path: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= window:  # no partition when the window covers the input
            shift, window = 0, min(resolution)
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        attn_mask = None
        if shift > 0:
            height, width = resolution
            regions = torch.zeros((1, height, width, 1))
            spans = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
            for count, (h, w) in enumerate((h, w) for h in spans for w in spans):
                regions[:, h, w, :] = count
            windows = window_partition(regions, window).view(-1, window * window)
            attn_mask = windows.unsqueeze(1) - windows.unsqueeze(2)
            attn_mask = attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(
                attn_mask == 0, 0.0
            )
        self.register_buffer("attn_mask", attn_mask)  # stored in checkpoints (shifted blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.resolution
        batch, _, channels = x.shape
        shortcut = x
        x = self.norm1(x).view(batch, height, width, channels)
        if self.shift > 0:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(x, self.window).view(-1, self.window * self.window, channels)
        windows = self.attn(windows, self.attn_mask).view(-1, self.window, self.window, channels)
        x = window_reverse(windows, self.window, height, width)
        if self.shift > 0:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.drop_path(x.view(batch, height * width, channels))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    def __init__(self, resolution: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.resolution
        batch, _, channels = x.shape
        x = x.view(batch, height, width, channels)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(batch, -1, 4 * channels)))


class BasicLayer(nn.Module):
    def __init__(
        self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window: int,
        mlp_ratio: float, drop_path: list[float], downsample: bool,
    ) -> None:  # fmt: skip
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim,
                resolution,
                num_heads,
                window,
                0 if i % 2 == 0 else window // 2,
                mlp_ratio,
                drop_path[i],
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class HtsatSwinTransformer(nn.Module):
    """Waveform (B, samples) at the clip rate -> ``latent_output`` (B, num_features)."""

    def __init__(self, config: HtsatConfig) -> None:
        super().__init__()
        self.config = config
        self.freq_ratio = config.spec_size // config.mel_bins
        self.spectrogram_extractor = Spectrogram(config.window_size, config.hop_size)
        self.logmel_extractor = LogmelFilterBank(
            config.sample_rate, config.window_size, config.mel_bins, config.fmin, config.fmax
        )
        self.bn0 = nn.BatchNorm2d(config.mel_bins)
        self.patch_embed = PatchEmbed(
            config.spec_size, config.patch_size, config.patch_stride, config.embed_dim
        )
        grid = self.patch_embed.grid_size
        rates = np.linspace(
            0, config.drop_path_rate, sum(config.depths)
        ).tolist()  # stochastic depth
        self.layers = nn.ModuleList()
        for i, depth in enumerate(config.depths):
            start = sum(config.depths[:i])
            self.layers.append(
                BasicLayer(
                    dim=config.embed_dim * 2**i,
                    resolution=(grid[0] // 2**i, grid[1] // 2**i),
                    depth=depth,
                    num_heads=config.num_heads[i],
                    window=config.window,
                    mlp_ratio=config.mlp_ratio,
                    drop_path=rates[start : start + depth],
                    downsample=i < len(config.depths) - 1,
                )
            )
        features = config.num_features
        self.norm = nn.LayerNorm(features)
        # The token-semantic classifier: in the checkpoints, not in the embedding.
        last = (
            config.spec_size
            // 2 ** (len(config.depths) - 1)
            // config.patch_stride[0]
            // self.freq_ratio
        )
        self.tscam_conv = nn.Conv2d(
            features, config.classes_num, kernel_size=(last, 3), padding=(0, 1)
        )
        self.head = nn.Linear(config.classes_num, config.classes_num)
        self.apply(_init_weights)

    def classifier_parameters(self) -> list[nn.Parameter]:
        return [*self.tscam_conv.parameters(), *self.head.parameters()]

    def max_frames(self) -> int:
        return self.config.spec_size * self.freq_ratio

    def reshape_wav2img(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, frames, mels) -> (B, 1, spec_size, spec_size): stretch time (bicubic) to
        ``spec_size * freq_ratio`` frames and fold it into ``freq_ratio`` rows of mel bands."""
        target_t, target_f = self.max_frames(), self.config.spec_size // self.freq_ratio
        if x.shape[2] < target_t:
            x = F.interpolate(x, (target_t, x.shape[3]), mode="bicubic", align_corners=True)
        if x.shape[3] < target_f:
            x = F.interpolate(x, (x.shape[2], target_f), mode="bicubic", align_corners=True)
        x = x.permute(0, 1, 3, 2).contiguous()
        x = x.reshape(
            x.shape[0], x.shape[1], x.shape[2], self.freq_ratio, x.shape[3] // self.freq_ratio
        )
        x = x.permute(0, 1, 3, 2, 4).contiguous()
        return x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3], x.shape[4])

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        x = self.logmel_extractor(self.spectrogram_extractor(waves))  # (B, 1, frames, mels)
        if x.shape[2] > self.max_frames():
            raise ValueError(
                f"HTSAT takes at most {self.max_frames()} frames, got {x.shape[2]} (clip too long)"
            )
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        x = self.patch_embed(self.reshape_wav2img(x))
        for layer in self.layers:
            x = layer(x)
        # Upstream regroups the (F, T) token grid before average-pooling all of it: the plain mean.
        return self.norm(x).mean(dim=1)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0)
    elif isinstance(module, nn.LayerNorm):
        nn.init.constant_(module.bias, 0)
        nn.init.constant_(module.weight, 1.0)


class HtsatWrapper(nn.Module):
    """msclap's ``HTSATWrapper``: one child ``htsat``; the embedding is its ``latent_output``."""

    def __init__(self, config: HtsatConfig) -> None:
        super().__init__()
        self.htsat = HtsatSwinTransformer(config)

    def classifier_parameters(self) -> list[nn.Parameter]:
        return self.htsat.classifier_parameters()

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.htsat(waves)
