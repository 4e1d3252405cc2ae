"""An offline captioned sound-event set: generated clips of distinct event classes, each captioned.

The default source clips of :mod:`humanclap.data.synthetic.order` (event-ordering §3.3). The ten
event classes and how they are rendered: see docs/data.md#sound-events.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from humanclap.data.pairs import RatedPair, RatedPairs
from humanclap.data.synthetic.sounds import SAMPLE_RATE, SyntheticAudioStore, assign_splits

EVENT_CLASSES: dict[str, tuple[str, ...]] = {
    "hum": ("a low hum", "a low-pitched hum", "a steady electrical hum"),
    "beep": ("a high-pitched beep", "an electronic beep", "a device beeps"),
    "noise": ("a burst of white noise", "a hiss of static", "a short burst of noise"),
    "rising_chirp": ("a rising chirp", "a tone sweeps upward", "a rising whistle"),
    "falling_tone": ("a falling tone", "a tone sweeps downward", "a descending whistle"),
    "clicking": ("a rapid clicking", "fast clicking", "something clicks rapidly"),
    "bell": ("a bell rings", "a bell chimes", "a ringing bell"),
    "thud": ("a short thud", "a dull thump", "something thuds"),
    "siren": ("a siren wails", "a wailing siren", "a warbling siren"),
    "wind": ("wind blows", "a whoosh of wind", "wind whooshes"),
}
"""Event class -> caption variants (none contains a temporal connective)."""

_LENGTH_S = {  # event length range (s) before fitting into the clip
    "hum": (1.2, 1.9),
    "beep": (0.5, 1.0),
    "noise": (0.3, 0.8),
    "rising_chirp": (0.4, 0.9),
    "falling_tone": (0.4, 0.9),
    "clicking": (0.6, 1.2),
    "bell": (0.9, 1.5),
    "thud": (0.2, 0.35),
    "siren": (1.2, 1.8),
    "wind": (1.2, 1.9),
}
_EDGE_S = 0.005  # fades at the event's edges: no clicks
_PEAK = 0.9


@dataclass(frozen=True)
class EventRecipe:
    """One clip: an event of ``kind`` starting ``onset`` (fraction of the free time) into the clip.

    ``render`` is a pure function of the fields, the duration and the rate; everything is defined in
    seconds and Hz, so any sample rate renders the same event.
    """

    kind: str
    pitch: float  # class-specific base frequency (Hz)
    variation: float  # uniform [0, 1): a second class-specific parameter (sweep ratio, rate, ...)
    length_s: float
    onset: float  # uniform [0, 1): where the event sits in the time the clip leaves free
    level_db: float  # RMS of the active part, dBFS
    seed: int

    def render(self, duration_s: float, sample_rate: int) -> np.ndarray:
        n = int(round(duration_s * sample_rate))
        out = np.zeros(n, dtype=np.float64)
        length = min(self.length_s, 0.8 * duration_s)
        margin = min(0.05, 0.1 * duration_s)
        start_s = margin + self.onset * max(0.0, duration_s - length - 2 * margin)
        start = int(round(start_s * sample_rate))
        m = min(n - start, int(round(length * sample_rate)))
        if m <= 0:
            return out.astype(np.float32)
        event = _EVENTS[self.kind](
            self, np.arange(m) / sample_rate, sample_rate, np.random.default_rng(self.seed)
        )
        rms = math.sqrt(float(np.mean(event**2))) + 1e-12
        event *= 10 ** (self.level_db / 20) / rms
        peak = float(np.max(np.abs(event)))
        if peak > _PEAK:
            event *= _PEAK / peak
        edge = min(m // 2, max(1, int(_EDGE_S * sample_rate)))
        ramp = np.linspace(0.0, 1.0, edge)
        event[:edge] *= ramp
        event[m - edge :] *= ramp[::-1]
        out[start : start + m] = event
        return out.astype(np.float32)


def _decay(t: np.ndarray, tau: float) -> np.ndarray:
    return np.exp(-t / tau)


def _hum(r: EventRecipe, t, sr, rng):
    tone = sum(
        np.sin(2 * np.pi * k * r.pitch * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 9)
    )
    return tone * (1 + 0.15 * np.sin(2 * np.pi * (3 + 2 * r.variation) * t))


def _beep(r: EventRecipe, t, sr, rng):
    count = 2 + int(r.variation * 3)  # 2-4 beeps in the event
    period = t[-1] / count if t.size > 1 else 1.0
    on = (t % period) < 0.6 * period
    return np.sin(2 * np.pi * r.pitch * t) * on


def _noise(r: EventRecipe, t, sr, rng):
    return rng.standard_normal(t.size) * _decay(t, (0.1 + 0.2 * r.variation) * max(t[-1], 1e-3))


def _sweep(f_start: float, f_end: float, t: np.ndarray) -> np.ndarray:
    duration = max(float(t[-1]), 1e-6)
    k = math.log(f_end / f_start) / duration
    phase = 2 * np.pi * f_start * (np.expm1(k * t) / k if abs(k) > 1e-12 else t)
    return np.sin(phase)


def _rising(r: EventRecipe, t, sr, rng):
    return _sweep(r.pitch, r.pitch * (3 + 3 * r.variation), t)


def _falling(r: EventRecipe, t, sr, rng):
    return _sweep(r.pitch, r.pitch / (3 + 3 * r.variation), t)


def _clicking(r: EventRecipe, t, sr, rng):
    rate = 12 + 13 * r.variation  # clicks per second
    phase = t % (1 / rate)
    return np.sin(2 * np.pi * r.pitch * phase) * _decay(phase, 0.0006) * (phase < 0.002)


def _bell(r: EventRecipe, t, sr, rng):
    ratios, amplitudes = (1.0, 2.0, 2.76, 5.4, 8.93), (1.0, 0.6, 0.4, 0.25, 0.15)
    tau = 0.25 + 0.4 * r.variation
    return sum(
        a
        * np.sin(2 * np.pi * r.pitch * q * t + rng.uniform(0, 2 * np.pi))
        * _decay(t, tau / math.sqrt(q))
        for q, a in zip(ratios, amplitudes)
        if r.pitch * q < 0.45 * sr
    )


def _thud(r: EventRecipe, t, sr, rng):
    f = 45 + (r.pitch - 45) * _decay(t, 0.03)
    phase = 2 * np.pi * np.cumsum(f) / sr
    body = np.sin(phase) * _decay(t, 0.05 + 0.05 * r.variation)
    return body + 0.1 * rng.standard_normal(t.size) * _decay(t, 0.01)


def _siren(r: EventRecipe, t, sr, rng):
    depth = 0.2 + 0.1 * r.variation
    f = r.pitch * (1 + depth * np.sin(2 * np.pi * (1.0 + 1.5 * r.variation) * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    return sum(np.sin(k * phase) / k for k in (1, 2, 3))


def _wind(r: EventRecipe, t, sr, rng):
    spectrum = np.fft.rfft(rng.standard_normal(t.size))
    freqs = np.fft.rfftfreq(t.size, 1 / sr)
    noise = np.fft.irfft(spectrum / (1 + (freqs / r.pitch) ** 2), t.size)
    return noise * (0.6 + 0.4 * np.sin(2 * np.pi * (0.5 + 0.5 * r.variation) * t - np.pi / 2))


_EVENTS = {
    "hum": _hum,
    "beep": _beep,
    "noise": _noise,
    "rising_chirp": _rising,
    "falling_tone": _falling,
    "clicking": _clicking,
    "bell": _bell,
    "thud": _thud,
    "siren": _siren,
    "wind": _wind,
}

_PITCH_HZ = {  # log-uniform range of EventRecipe.pitch per class
    "hum": (50.0, 120.0),
    "beep": (1500.0, 3000.0),
    "noise": (1.0, 1.0),
    "rising_chirp": (300.0, 600.0),
    "falling_tone": (1500.0, 3000.0),
    "clicking": (3000.0, 5000.0),
    "bell": (400.0, 900.0),
    "thud": (90.0, 140.0),
    "siren": (600.0, 1000.0),
    "wind": (300.0, 900.0),
}


def synthetic_events(
    n_clips: int = 120,
    seed: int = 0,
    duration_s: float = 2.0,
    captions_per_clip: int = 1,
    classes: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> RatedPairs:
    """Captioned clips of generated sound events (docs/data.md#sound-events), score 1.0 each.

    ``classes``: a subset of :data:`EVENT_CLASSES` (default all ten). The result is named
    ``synthetic_events``; ``group`` = event class; split by clip.
    """
    classes = list(EVENT_CLASSES) if classes is None else list(classes)
    unknown = [c for c in classes if c not in EVENT_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(
            f"classes must be distinct names from {list(EVENT_CLASSES)}, got {classes}"
        )
    if n_clips < 2:
        raise ValueError(f"synthetic_events needs n_clips >= 2, got {n_clips}")
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"synthetic_events needs duration_s > 0, got {duration_s!r}")
    most = min(len(EVENT_CLASSES[c]) for c in classes)
    if not 1 <= captions_per_clip <= most:
        raise ValueError(
            f"captions_per_clip must be in 1..{most} (caption variants per class), got {captions_per_clip}"
        )
    rng = np.random.default_rng(seed)
    split_of = assign_splits(n_clips, val_fraction, test_fraction, rng, "clips")
    order = rng.permutation(len(classes))
    recipes: dict[str, EventRecipe] = {}
    pairs: list[RatedPair] = []
    for index in range(n_clips):
        kind = classes[order[index % len(classes)]]
        low, high = _PITCH_HZ[kind]
        length_low, length_high = _LENGTH_S[kind]
        key = f"events/{index:05d}"
        recipes[key] = EventRecipe(
            kind=kind,
            pitch=float(np.exp(rng.uniform(math.log(low), math.log(high)))),
            variation=float(rng.uniform()),
            length_s=float(rng.uniform(length_low, length_high)),
            onset=float(rng.uniform()),
            level_db=float(rng.uniform(-30.0, -14.0)),
            seed=int(rng.integers(2**31)),
        )
        variants = EVENT_CLASSES[kind]
        for choice in sorted(rng.choice(len(variants), size=captions_per_clip, replace=False)):
            pairs.append(
                RatedPair(
                    audio=key, text=variants[choice], score=1.0, split=split_of[index], group=kind
                )
            )
    store = SyntheticAudioStore(recipes, duration_s)  # type: ignore[arg-type]  # any recipe with render()
    return RatedPairs(pairs, store, name="synthetic_events")


__all__ = ["EVENT_CLASSES", "EventRecipe", "SAMPLE_RATE", "synthetic_events"]
