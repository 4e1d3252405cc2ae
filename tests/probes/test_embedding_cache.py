"""The embedding cache: each unique clip and text is embedded once per evaluation, shared by probes,
and (under simulated DDP ranks) once across all ranks, with every rank holding the same rows."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from fakes import run_threaded_ranks

from humanclap.data.pairs import RatedPair, RatedPairs
from humanclap.probes.base import run_probes
from humanclap.probes.cache import AudioRef, EmbeddingCache, ProbeInputs
from humanclap.probes.relevance.probe import RelevanceProbe


class Store:
    """Clip 'cN' -> a waveform whose first sample is N; counts loads."""

    def __init__(self):
        self.loads: Counter = Counter()

    def load(self, key, sample_rate):
        self.loads[key] += 1
        return np.full(4, float(key[1:]), dtype=np.float32)


class CountingEmbedder:
    """Clip N -> unit vector at angle N*20°, text 'tN' -> angle N*35°; counts every encoded item."""

    sample_rate = 16_000

    def __init__(self):
        self.audio: Counter = Counter()
        self.text: Counter = Counter()
        self.calls = 0

    @staticmethod
    def _unit(degrees):
        radians = np.radians(degrees)
        return [float(np.cos(radians)), float(np.sin(radians))]

    def embed_audio(self, waves, batch_size=32):
        self.calls += 1
        codes = [int(w[0]) for w in waves]
        self.audio.update(codes)
        return torch.tensor([self._unit(20 * c) for c in codes])

    def embed_text(self, texts, batch_size=64):
        self.calls += 1
        self.text.update(texts)
        return torch.tensor([self._unit(35 * int(t[1:])) for t in texts])


def _pairs(rows, store, name):
    return RatedPairs(
        [RatedPair(audio=a, text=t, score=s, group="g") for a, t, s in rows], store, name=name
    )


ROWS_A = [("c0", "t0", 0.9), ("c1", "t1", 0.2), ("c2", "t0", 0.5), ("c1", "t2", 0.7)]
ROWS_B = [("c2", "t2", 0.1), ("c3", "t1", 0.8), ("c0", "t0", 0.4), ("c3", "t3", 0.6)]


def test_two_probes_share_one_embedding_per_unique_input():
    store, embedder = Store(), CountingEmbedder()
    probes = {
        "a": RelevanceProbe(_pairs(ROWS_A, store, "a")),
        "b": RelevanceProbe(_pairs(ROWS_B, store, "b")),
    }
    results, cache = run_probes(probes, embedder, batch_size=2)
    # Clips c0..c3 and texts t0..t3 appear in both probes' data; each is encoded and loaded once.
    assert embedder.audio == Counter({0: 1, 1: 1, 2: 1, 3: 1})
    assert embedder.text == Counter({"t0": 1, "t1": 1, "t2": 1, "t3": 1})
    assert store.loads == Counter({"c0": 1, "c1": 1, "c2": 1, "c3": 1})
    assert cache.embedded == {"audio": 4, "text": 4}
    assert embedder.calls == 4  # 4 clips and 4 texts in batches of 2
    # And the results are what each probe gets on its own with a fresh embedder.
    for name, probe in probes.items():
        alone = probe.run(CountingEmbedder())
        assert results[name].metrics == pytest.approx(alone.metrics, nan_ok=True)


def test_rows_come_back_in_request_order_with_repeats():
    store, embedder = Store(), CountingEmbedder()
    cache = EmbeddingCache(embedder, batch_size=3)
    refs = [AudioRef(store, key) for key in ("c2", "c0", "c2", "c1")]
    rows = cache.audio(refs)
    expected = torch.tensor([CountingEmbedder._unit(20 * c) for c in (2, 0, 2, 1)])
    assert torch.equal(rows, expected)
    assert torch.equal(cache.audio([AudioRef(store, "c1")]), expected[3:])  # served from memory
    assert cache.embedded["audio"] == 3 and store.loads["c2"] == 1
    texts = cache.text(["t3", "t3", "t0"])
    assert torch.equal(texts[0], texts[1]) and cache.embedded["text"] == 2


def test_generated_waves_are_keyed_by_the_caller():
    embedder = CountingEmbedder()
    cache = EmbeddingCache(embedder)
    made = []

    def make(key):
        made.append(key)
        return np.full(4, float(key[1]), dtype=np.float32)

    cache.waves([("eq", 1), ("eq", 2)], make)
    cache.waves([("eq", 2), ("eq", 3)], make)
    assert made == [("eq", 1), ("eq", 2), ("eq", 3)]


def test_prefetch_embeds_the_union_then_probes_hit_memory():
    store, embedder = Store(), CountingEmbedder()
    cache = EmbeddingCache(embedder, batch_size=8)
    cache.prefetch(
        [
            ProbeInputs([AudioRef(store, "c0"), AudioRef(store, "c1")], ["t0"]),
            ProbeInputs([AudioRef(store, "c1")], ["t0", "t1"]),
            ProbeInputs([], []),
        ]
    )
    assert embedder.calls == 2  # one batch of clips, one of texts
    cache.audio([AudioRef(store, "c1")])
    cache.text(["t1", "t0"])
    assert embedder.calls == 2


def test_bad_requests():
    with pytest.raises(ValueError, match="batch_size"):
        EmbeddingCache(CountingEmbedder(), batch_size=0)
    with pytest.raises(ValueError, match="no text inputs"):
        EmbeddingCache(CountingEmbedder()).text([])


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_split_the_work_and_all_hold_every_row(monkeypatch, world):
    """Each rank in its own thread; gather_rows is a real all-gather between them."""
    single = RelevanceProbe(_pairs(ROWS_A + ROWS_B, Store(), "ab")).run(CountingEmbedder()).metrics
    store = Store()
    embedders = {r: CountingEmbedder() for r in range(world)}

    def work(rank):
        probe = RelevanceProbe(_pairs(ROWS_A + ROWS_B, store, "ab"))
        return run_probes({"ab": probe}, embedders[rank], batch_size=1)

    results, _ = run_threaded_ranks(monkeypatch, world, work, timeout=10)
    total_audio = sum((e.audio for e in embedders.values()), Counter())
    total_text = sum((e.text for e in embedders.values()), Counter())
    assert total_audio == Counter({0: 1, 1: 1, 2: 1, 3: 1})  # once across all ranks
    assert total_text == Counter({"t0": 1, "t1": 1, "t2": 1, "t3": 1})
    for rank in range(world):
        assert results[rank][0]["ab"].metrics == pytest.approx(single, nan_ok=True)
