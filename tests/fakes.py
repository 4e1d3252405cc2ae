"""Test doubles shared by the probe tests: an in-memory audio store and 2-D unit vectors."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np


def unit(degrees: float) -> list[float]:
    """The 2-D unit vector at ``degrees``: cos(unit(a), unit(b)) = cos(a − b)."""
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


class MemoryStore:
    """Clip key -> a short waveform whose first sample encodes the clip; counts loads and rates."""

    def __init__(self, keys):
        self.codes = {key: float(i + 1) for i, key in enumerate(sorted(keys))}
        self.loads: Counter = Counter()
        self.rates: set[int] = set()

    def load(self, key: str, sample_rate: int) -> np.ndarray:
        self.loads[key] += 1
        self.rates.add(sample_rate)
        return np.full(8, self.codes[key], dtype=np.float32)
