"""The embedded default data set: generated sounds rated by rules that follow measurable properties.

Ratings follow properties measured on the rendered audio, with simulated listener noise on the
11-point scale of human-clap §II-B, rescaled as in §III-A. See docs/data.md#rated-sounds.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from humanclap.data.pairs import RatedPair, RatedPairs

SAMPLE_RATE = 48_000

DESCRIPTORS: dict[str, tuple[str, str]] = {
    "brightness": ("bright", "dark"),
    "pitch": ("high-pitched", "low-pitched"),
    "loudness": ("loud", "quiet"),
    "noisiness": ("noisy", "pure"),
}
TEMPLATES = ("a {d} sound", "{d}", "something {d}", "this sounds {d}")


@dataclass(frozen=True)
class SoundRecipe:
    """Latent parameters of one synthetic sound; ``render`` is a pure function of them."""

    f0: float  # Hz
    rolloff: float  # harmonic k has amplitude k ** -rolloff: small = bright
    noise_mix: float  # 0 = pure harmonic tone, 1 = white noise only
    level_db: float  # target RMS in dBFS
    seed: int

    def render(self, duration_s: float, sample_rate: int) -> np.ndarray:
        """Additive synthesis in one inverse FFT: harmonics sit exactly on FFT bins (f0 is
        rounded to the bin spacing 1/duration), so the tone is periodic and alias-free."""
        n = int(round(duration_s * sample_rate))
        rng = np.random.default_rng(self.seed)
        f0_bin = max(1, int(round(self.f0 * n / sample_rate)))
        bins = np.arange(f0_bin, int(0.45 * n), f0_bin)  # harmonics up to 0.9 x Nyquist
        spectrum = np.zeros(n // 2 + 1, dtype=np.complex128)
        spectrum[bins] = (np.arange(1, bins.size + 1) ** -self.rolloff) * np.exp(
            1j * rng.uniform(0, 2 * np.pi, size=bins.size)
        )
        tone = np.fft.irfft(spectrum, n)
        tone /= np.sqrt(np.mean(tone**2)) + 1e-12
        noise = rng.standard_normal(n)
        mix = math.sqrt(1 - self.noise_mix) * tone + math.sqrt(self.noise_mix) * noise
        mix /= np.sqrt(np.mean(mix**2)) + 1e-12
        fade = min(n // 2, int(0.01 * sample_rate))  # 10 ms fades: no clicks
        envelope = np.ones(n)
        envelope[:fade] = np.linspace(0, 1, fade)
        envelope[n - fade :] = np.linspace(1, 0, fade)
        return (mix * envelope * 10 ** (self.level_db / 20)).astype(np.float32)


def measure(wave: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Spectral centroid (Hz), spectral flatness and RMS level (dBFS) of a waveform."""
    power = np.abs(np.fft.rfft(wave.astype(np.float64))) ** 2 + 1e-20
    freqs = np.fft.rfftfreq(wave.size, 1 / sample_rate)
    return {
        "centroid_hz": float(np.sum(freqs * power) / np.sum(power)),
        "flatness": float(np.exp(np.mean(np.log(power))) / np.mean(power)),
        "rms_db": float(20 * np.log10(np.sqrt(np.mean(wave.astype(np.float64) ** 2)) + 1e-12)),
    }


def _logistic(x: float, centre: float, width: float) -> float:
    return 1.0 / (1.0 + math.exp(-(x - centre) / width))


def property_ratings(f0: float, features: dict[str, float]) -> dict[str, float]:
    """Noise-free rating (0-10) of the first descriptor of each pair in ``DESCRIPTORS``."""
    return {
        "brightness": 10 * _logistic(math.log(features["centroid_hz"]), math.log(4000.0), 0.45),
        "pitch": 10 * _logistic(math.log(f0), math.log(400.0), 0.4),
        "loudness": 10 * _logistic(features["rms_db"], -24.0, 4.0),
        "noisiness": 10 * _logistic(math.log(features["flatness"]), math.log(0.15), 0.8),
    }


class SyntheticAudioStore:
    """Holds the rendered ``synthetic/<n>`` clips (48 kHz); other rates are re-rendered exactly."""

    def __init__(self, recipes: dict[str, SoundRecipe], duration_s: float) -> None:
        self.recipes = recipes
        self.duration_s = duration_s
        self.rendered = {
            key: recipe.render(duration_s, SAMPLE_RATE) for key, recipe in recipes.items()
        }

    def fingerprint(self, keys: Sequence[str]) -> str:
        """sha256 of the rendered 48 kHz clips (for provenance in evaluation reports)."""
        digest = hashlib.sha256()
        for key in keys:
            digest.update(
                key.encode() + b"\0" + self.load(key, SAMPLE_RATE).astype(np.float32).tobytes()
            )
        return digest.hexdigest()

    def load(self, key: str, sample_rate: int) -> np.ndarray:
        if key not in self.recipes:
            raise KeyError(f"synthetic audio store has no clip '{key}'")
        if sample_rate == SAMPLE_RATE:
            return self.rendered[key]
        return self.recipes[key].render(self.duration_s, sample_rate)


def assign_splits(
    n: int, val_fraction: float, test_fraction: float, rng: np.random.Generator, what: str
) -> list[str]:
    """A random train/validation/test label for each of ``n`` items (at least one validation item)."""
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions: validation {val_fraction}, test {test_fraction}")
    n_val = max(1, int(round(n * val_fraction)))
    n_test = int(round(n * test_fraction))
    if n_val + n_test >= n:
        raise ValueError(
            f"{n} {what} leave no training {what} with validation {val_fraction}, test {test_fraction}"
        )
    labels = ["validation"] * n_val + ["test"] * n_test + ["train"] * (n - n_val - n_test)
    return [labels[i] for i in rng.permutation(n)]


def synthetic_pairs(
    n_sounds: int = 240,
    texts_per_sound: int = 4,
    listeners: int = 3,
    rating_noise: float = 1.0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    duration_s: float = 1.0,
    seed: int = 0,
) -> RatedPairs:
    """Rated pairs over ``n_sounds`` generated sounds, split by sound into train/validation/test."""
    if n_sounds < 2 or texts_per_sound < 1 or listeners < 1:
        raise ValueError(
            "synthetic_pairs needs n_sounds >= 2, texts_per_sound >= 1, listeners >= 1"
        )
    if not duration_s > 0 or not rating_noise >= 0:
        raise ValueError(
            f"synthetic_pairs needs duration_s > 0 and rating_noise >= 0, got {duration_s}, {rating_noise}"
        )
    rng = np.random.default_rng(seed)
    texts = [
        (attribute, pole, template.format(d=DESCRIPTORS[attribute][pole]))
        for attribute in DESCRIPTORS
        for pole in (0, 1)
        for template in TEMPLATES
    ]
    split_of = assign_splits(n_sounds, val_fraction, test_fraction, rng, "sounds")

    recipes = {
        f"synthetic/{index:05d}": SoundRecipe(
            f0=float(np.exp(rng.uniform(math.log(80.0), math.log(2000.0)))),
            rolloff=float(rng.uniform(0.3, 3.0)),
            noise_mix=float(rng.uniform(0.0, 1.0) ** 2),
            level_db=float(rng.uniform(-42.0, -6.0)),
            seed=int(rng.integers(2**31)),
        )
        for index in range(n_sounds)
    }
    store = SyntheticAudioStore(recipes, duration_s)
    pairs: list[RatedPair] = []
    for index, (key, recipe) in enumerate(recipes.items()):
        ideal = property_ratings(recipe.f0, measure(store.load(key, SAMPLE_RATE), SAMPLE_RATE))
        for text_index in rng.choice(
            len(texts), size=min(texts_per_sound, len(texts)), replace=False
        ):
            attribute, pole, text = texts[text_index]
            target = ideal[attribute] if pole == 0 else 10 - ideal[attribute]
            votes = np.clip(np.round(target + rating_noise * rng.standard_normal(listeners)), 0, 10)
            pairs.append(
                RatedPair(
                    audio=key,
                    text=text,
                    score=float(votes.mean()) / 10,
                    split=split_of[index],
                    group=attribute,
                    num_ratings=listeners,
                )
            )
    return RatedPairs(pairs, store, name="synthetic")
