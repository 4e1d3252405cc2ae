"""A generated, license-free reference clip for probes that manipulate audio (timbre-semantics §2.3).

Four plucked harmonic notes with noise transients, so that both the EQ and the reverb have something
to act on. See docs/data.md#reference-clip.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

NOTE_FUNDAMENTALS = (55.0, 110.0, 165.0, 247.5)


def _seed(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little")


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    scale = np.ones(n // 2 + 1)
    scale[1:] = 1 / np.sqrt(np.arange(1, n // 2 + 1))
    scale[0] = 0.0
    noise = np.fft.irfft(spectrum * scale, n)
    return noise / (np.abs(noise).max() + 1e-12)


def reference_clip(
    seconds: float = 4.0, sample_rate: int = 48_000, seed: int = 0, key: str = "reference"
) -> np.ndarray:
    """The generated reference: mono float32, ``round(seconds * sample_rate)`` samples.

    ``seed`` and ``key`` pick the random phases and noise (same arguments, same clip).
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    rng = np.random.default_rng(_seed(seed, key))
    n = int(round(seconds * sample_rate))
    out = np.zeros(n)
    segment = max(1, n // len(NOTE_FUNDAMENTALS))
    attack = max(1, int(0.005 * sample_rate))
    burst = max(1, int(0.010 * sample_rate))
    for index, f0 in enumerate(NOTE_FUNDAMENTALS):
        start = index * segment
        length = (n - start) if index == len(NOTE_FUNDAMENTALS) - 1 else segment
        if length <= 0:
            break
        # Harmonics on exact FFT bins of the segment: periodic, alias-free, one inverse FFT.
        f0_bin = max(1, int(round(f0 * length / sample_rate)))
        bins = np.arange(f0_bin, int(0.45 * length), f0_bin)
        spectrum = np.zeros(length // 2 + 1, dtype=np.complex128)
        spectrum[bins] = np.exp(1j * rng.uniform(0, 2 * np.pi, bins.size)) / np.arange(
            1, bins.size + 1
        )
        tone = np.fft.irfft(spectrum, length)
        tone /= np.abs(tone).max() + 1e-12
        t = np.arange(length) / sample_rate
        envelope = np.exp(-t / 0.25)
        envelope[:attack] *= np.linspace(0.0, 1.0, min(attack, length))
        note = tone * envelope
        hit = min(burst, length)
        note[:hit] += 0.3 * rng.standard_normal(hit) * np.linspace(1.0, 0.0, hit)
        out[start : start + length] += note
    out += 0.01 * _pink_noise(rng, n)
    out *= 0.5 / (np.abs(out).max() + 1e-12)
    return out.astype(np.float32)


@dataclass(frozen=True)
class ReferenceAudioStore:
    """``AudioStore`` of generated reference clips: ``load(key, sr)`` = ``reference_clip(seconds, sr, seed, key)``.

    Frozen and hashable, so an ``AudioRef(ReferenceAudioStore(...), key)`` is a content key of
    the embedding cache: equal arguments, equal clip, embedded once.
    """

    seconds: float = 4.0
    seed: int = 0

    def load(self, key: str, sample_rate: int) -> np.ndarray:
        return reference_clip(self.seconds, sample_rate, self.seed, key)
