"""Test doubles shared by the probe tests: an in-memory audio store, 2-D unit vectors and an
embedder with fixed vectors."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch


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


class VectorEmbedder:
    """An embedder with fixed float32 vectors per clip (of a ``MemoryStore``) and per text; counts
    what it embeds."""

    sample_rate = 16_000

    def __init__(self, store: MemoryStore, clip_vectors: dict, text_vectors: dict):
        self.audio_by_code = {store.codes[k]: v for k, v in clip_vectors.items() if k in store.codes}
        self.code_to_key = {code: key for key, code in store.codes.items()}
        self.text_vectors = text_vectors
        self.audio_items: Counter = Counter()
        self.text_items: Counter = Counter()

    def embed_audio(self, waves, batch_size=32):
        codes = [float(w[0]) for w in waves]
        self.audio_items.update(self.code_to_key[c] for c in codes)
        return torch.tensor(np.array([self.audio_by_code[c] for c in codes]), dtype=torch.float32)

    def embed_text(self, texts, batch_size=64):
        self.text_items.update(texts)
        return torch.tensor(np.array([self.text_vectors[t] for t in texts]), dtype=torch.float32)
