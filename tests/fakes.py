"""Test doubles and small file writers shared by the tests: an in-memory audio store, 2-D unit vectors,
an embedder with fixed vectors, CSV/wav writers, ESC-50 / UrbanSound8K folders, hostile checkpoint
payloads."""

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
    """An embedder with fixed float32 vectors per clip (of a ``MemoryStore``) and per text; records
    every call (``audio_calls`` / ``text_calls``: (items, batch_size)) and counts what it embeds."""

    sample_rate = 16_000

    def __init__(self, store: MemoryStore, clip_vectors: dict, text_vectors: dict):
        self.audio_by_code = {
            store.codes[k]: v for k, v in clip_vectors.items() if k in store.codes
        }
        self.code_to_key = {code: key for key, code in store.codes.items()}
        self.text_vectors = text_vectors
        self.audio_items: Counter = Counter()
        self.text_items: Counter = Counter()
        self.audio_calls: list[tuple[int, int]] = []
        self.text_calls: list[tuple[int, int]] = []

    @property
    def embedded(self) -> dict[str, int]:
        """How many clips and texts were embedded in all."""
        return {"audio": sum(self.audio_items.values()), "text": sum(self.text_items.values())}

    def embed_audio(self, waves, batch_size=32):
        self.audio_calls.append((len(waves), batch_size))
        codes = [float(w[0]) for w in waves]
        self.audio_items.update(self.code_to_key[c] for c in codes)
        return torch.tensor(np.array([self.audio_by_code[c] for c in codes]), dtype=torch.float32)

    def embed_text(self, texts, batch_size=64):
        self.text_calls.append((len(texts), batch_size))
        self.text_items.update(texts)
        return torch.tensor(np.array([self.text_vectors[t] for t in texts]), dtype=torch.float32)


def write_csv(path, header, rows):
    """A UTF-8 CSV with ``header`` and ``rows``; the header is line 1, so ``rows[i]`` is line i + 2."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_wav(
    path,
    frames: int = 1_600,
    sample_rate: int = 16_000,
    subtype: str = "PCM_16",
    frequency: float = 440.0,
):
    """A mono wav of ``frames`` samples of a quiet tone (default 0.1 s of 440 Hz at 16 kHz)."""
    import soundfile as sf

    tone = 0.1 * np.sin(2 * np.pi * frequency * np.arange(frames) / sample_rate)
    sf.write(path, tone.astype(np.float32), sample_rate, subtype=subtype)
    return path


ESC50_HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
US8K_HEADER = [
    "slice_file_name",
    "fsID",
    "start",
    "end",
    "salience",
    "fold",
    "classID",
    "class",
]


def write_esc50(root, clips, audio: bool = True) -> list:
    """An ESC-50 folder as the ESC-50-master download lays it out: ``meta/esc50.csv`` and
    ``audio/<fold>-<src_file>-<take>-<target>.wav`` (0.1 s tones, a different pitch per clip).

    ``clips``: (fold, target, category) per clip, written in that order (the CSV's line i + 2).
    Returns the absolute paths of the clips, in that order (``audio=False``: none is written)."""
    from pathlib import Path

    root = Path(root)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    rows, paths = [], []
    for i, (fold, target, category) in enumerate(clips):
        source = 100_000 + i
        filename = f"{fold}-{source}-A-{target}.wav"
        rows.append([filename, fold, target, category, "False", source, "A"])
        paths.append((root / "audio" / filename).absolute())
        if audio:
            write_wav(paths[-1], frequency=220.0 + 40.0 * i)
    write_csv(root / "meta" / "esc50.csv", ESC50_HEADER, rows)
    return paths


def write_urbansound8k(root, clips, audio: bool = True) -> list:
    """An UrbanSound8K folder as its download lays it out: ``metadata/UrbanSound8K.csv`` and
    ``audio/fold<N>/<fsID>-<classID>-0-0.wav`` (0.1 s tones, a different pitch per clip).

    ``clips``: (fold, classID, class) per clip, in CSV order; returns the clips' absolute paths."""
    from pathlib import Path

    root = Path(root)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    rows, paths = [], []
    for i, (fold, index, name) in enumerate(clips):
        source = 200_000 + i
        filename = f"{source}-{index}-0-0.wav"
        rows.append([filename, source, "0.0", "0.1", "1", fold, index, name])
        paths.append((root / "audio" / f"fold{fold}" / filename).absolute())
        if audio:
            paths[-1].parent.mkdir(parents=True, exist_ok=True)
            write_wav(paths[-1], frequency=220.0 + 40.0 * i)
    write_csv(root / "metadata" / "UrbanSound8K.csv", US8K_HEADER, rows)
    return paths


class RunsWhenUnpickled:
    """A hostile checkpoint's payload: unpickling it runs ``touch <marker>`` through ``os.system``.

    ``torch.load(..., weights_only=False)`` on a file holding it creates ``marker``; a safe loader
    must refuse the file and leave ``marker`` absent.
    """

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os
        import shlex

        return os.system, (f"touch {shlex.quote(self.marker)}",)


class PoisonedLoss(torch.nn.Module):
    """A ``HumanClapLoss`` whose chosen terms (and so the loss) become NaN at one training call.

    The NaN is added as a constant, so the gradients stay finite: the guard must catch the loss itself.
    Validation calls (the module in eval mode) are not counted.
    """

    def __init__(
        self, loss: torch.nn.Module, at_call: int, terms: tuple[str, ...] = ("mse",)
    ) -> None:
        super().__init__()
        self.loss, self.at_call, self.terms, self.training_calls = loss, at_call, terms, 0

    def forward(self, audio, text, scores, logit_scale):
        out = self.loss(audio, text, scores, logit_scale)
        if self.training:
            self.training_calls += 1
            if self.training_calls - 1 == self.at_call:
                nan = torch.tensor(float("nan"))
                out = {
                    **out,
                    "loss": out["loss"] + nan,
                    **{term: out[term] + nan for term in self.terms},
                }
        return out


def lightning_checkpoint(path, model, **extra):
    """A minimal ``humanclap.train`` checkpoint at ``path`` whose stored model config is ``model``."""
    torch.save(
        {
            "epoch": 0,
            "hyper_parameters": {"config": {"seed": 0, "model": model}},
            "state_dict": {},
            **extra,
        },
        path,
    )
    return path


def run_threaded_ranks(monkeypatch, world: int, work, timeout: float = 60):
    """A process group of ``world`` ranks made of threads: ``work(rank)`` runs in each, the probes'
    sharding (``humanclap.probes.sharded``/``cache``) sees (rank, world), and ``gather_rows`` is a real
    all-gather between the threads. Returns ({rank: work's result}, {rank: the rows it gathered last}).
    An error in one rank aborts the others and fails the test."""
    import threading

    from humanclap.probes import cache as cache_module
    from humanclap.probes import sharded

    local = threading.local()
    barrier = threading.Barrier(world)
    shared: dict = {}

    def gather_rows(tensor):
        barrier.wait(
            timeout=timeout
        )  # nobody overwrites `shared` before everyone read the last one
        shared[local.rank] = tensor
        barrier.wait(timeout=timeout)
        return [shared[r] for r in range(world)]

    monkeypatch.setattr(sharded, "rank_and_world", lambda: (local.rank, world))
    monkeypatch.setattr(cache_module, "rank_and_world", lambda: (local.rank, world))
    monkeypatch.setattr(sharded, "gather_rows", gather_rows)
    results, errors = {}, []

    def run(rank):
        local.rank = rank
        try:
            results[rank] = work(rank)
        except Exception as error:  # surfaced below
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * timeout)
    assert not errors, errors
    assert sorted(results) == list(range(world))
    return results, shared


def tiny_training(backbone=None, **module_kwargs):
    """(HumanClapModule, RatedPairDataModule) on the tiny model and 10 synthetic sounds x 2 texts,
    batch 4, wSCE 0.1 + MAE 1, AdamW lr 1e-3; ``module_kwargs`` go to the module (freezing, stages)."""
    from humanclap.backbones import tiny_clap
    from humanclap.data.synthetic.sounds import synthetic_pairs
    from humanclap.lit.datamodule import RatedPairDataModule
    from humanclap.lit.module import HumanClapModule
    from humanclap.losses import HumanClapLoss

    backbone = backbone or tiny_clap()
    data = RatedPairDataModule(
        synthetic_pairs(n_sounds=10, texts_per_sound=2), backbone.featurizer, batch_size=4
    )
    module = HumanClapModule(
        backbone,
        HumanClapLoss({"wsce": 0.1, "mae": 1.0}),
        lambda p: torch.optim.AdamW(p, lr=1e-3),
        **module_kwargs,
    )
    return module, data
