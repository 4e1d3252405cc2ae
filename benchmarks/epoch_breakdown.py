"""Where a real-size epoch spends its CPU time, without and with the feature cache.

On the full-size model (default ``clap_htsat_random``: HTSAT + RoBERTa-base with the shapes of
laion/clap-htsat-fused, random weights; ``--model`` takes any config name, checkpoint directory or
file that evaluate takes) over ``--clips`` generated clips of 10 s at 16 kHz written to disk:

1. A probe pass over the clips, cold (empty feature cache) and cached (second pass), run in this
   process (``num_workers=0``) so that its time splits cleanly: per clip, load + featurise (or read
   the cached features), and the model's forward pass.
2. The training loader (the DataLoader the data module builds: dataset, collate with tokenisation,
   ``--workers`` processes, default ``auto``) without any model: clips/s in its first, cold epoch
   and in a cached epoch, counted from the first batch to the last (steady state; the workers'
   start-up is left out of both).

The last line is ``cached/cold non-model time per clip = <x>; cached/cold loader throughput = <y>``
(targets: x <= 0.05, y >= 20).

    python benchmarks/epoch_breakdown.py [--model clap_htsat_random] [--clips 32] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from humanclap.backbones.resolve import resolve_model  # noqa: E402
from humanclap.data.readers.manifest import read_manifest  # noqa: E402
from humanclap.features import ClipFeatures, resolve_num_workers  # noqa: E402
from humanclap.features.loader import from_transfer  # noqa: E402
from humanclap.lit.dataset import RatedPairCollator, RatedPairDataset  # noqa: E402
from humanclap.probes.cache import AudioRef, EmbeddingCache  # noqa: E402

SAMPLE_RATE = 16_000


def write_clips(directory: Path, count: int, seconds: float) -> Path:
    """``count`` clips (tones in noise, each different) and a manifest with one text per clip."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    lines = ["audio,text,score"]
    for i in range(count):
        wave = 0.2 * np.sin(2 * np.pi * (110 + 20 * i) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(directory / f"clip{i:04d}.wav", wave.astype(np.float32), SAMPLE_RATE)
        lines.append(f"clip{i:04d}.wav,a tone at {110 + 20 * i} hertz,{i % 11}")
    manifest = directory / "ratings.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


class TimedModel:
    """The backbone with the time of its forward passes (``embed_audio_features``) added up."""

    def __init__(self, backbone) -> None:
        self.backbone = backbone
        self.featurizer = backbone.featurizer
        self.sample_rate = backbone.sample_rate
        self.seconds = 0.0

    def embed_audio_features(self, features):
        start = time.perf_counter()
        rows = self.backbone.embed_audio_features(features)
        self.seconds += time.perf_counter() - start
        return rows

    def embed_audio(self, waves, batch_size=32):
        return self.backbone.embed_audio(waves, batch_size)

    def embed_text(self, texts, batch_size=64):
        return self.backbone.embed_text(texts, batch_size)


def probe_pass(backbone, refs, cache_root: Path, batch_size: int) -> tuple[float, float]:
    """(non-model seconds per clip, model seconds per clip) of one pass through ``EmbeddingCache``."""
    model = TimedModel(backbone)
    cache = EmbeddingCache(model, batch_size=batch_size, feature_cache=cache_root, num_workers=0)
    start = time.perf_counter()
    cache.audio(refs)
    wall = time.perf_counter() - start
    return (wall - model.seconds) / len(refs), model.seconds / len(refs)


def loader_throughput(pairs, features, batch_size: int, workers: int, epochs: int) -> list[float]:
    """Clips/s of each epoch of one persistent-worker loader, first batch to last."""
    loader = DataLoader(
        RatedPairDataset(pairs, features),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=RatedPairCollator(features.featurizer),
        persistent_workers=workers > 0,
    )
    rates = []
    for _ in range(epochs):
        first = None
        clips = 0
        for batch in loader:
            batch = from_transfer(batch)  # what the data module does before the step
            if first is None:
                first = time.perf_counter()
                continue
            clips += len(batch["index"])
        rates.append(clips / (time.perf_counter() - first))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="clap_htsat_random")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--workers", default="auto", help="training-loader workers (auto or a number)"
    )
    args = parser.parse_args()
    workers = resolve_num_workers(args.workers, option="--workers")
    torch.set_num_threads(max(1, torch.get_num_threads()))

    with tempfile.TemporaryDirectory(prefix="epoch-breakdown-") as scratch:
        scratch = Path(scratch)
        (scratch / "audio").mkdir()
        pairs = read_manifest(write_clips(scratch / "audio", args.clips, args.seconds))
        resolved = resolve_model(args.model)
        backbone = resolved.backbone
        parameters = sum(p.numel() for p in backbone.parameters())
        print(
            f"model {resolved.name} ({resolved.source}): {parameters / 1e6:.1f} M parameters; "
            f"{args.clips} clips of {args.seconds:g} s at {SAMPLE_RATE} Hz; batch {args.batch_size}; "
            f"{torch.get_num_threads()} torch thread(s); loader workers {workers}"
        )
        refs = [AudioRef(pairs.audio_store, pair.audio) for pair in pairs]
        # First calls build resampling kernels and mel filters: not part of any clip's cost.
        backbone.featurizer.clip(pairs.load_audio(pairs[0].audio, backbone.sample_rate))

        root = scratch / "cache"
        cold_other, cold_model = probe_pass(backbone, refs, root, args.batch_size)
        cached_other, cached_model = probe_pass(backbone, refs, root, args.batch_size)
        entries = ClipFeatures(backbone.featurizer, root)
        print(entries.usage())
        print("probe pass, per clip         load+featurise   model forward")
        print(
            f"  cold (empty cache)          {1e3 * cold_other:9.2f} ms    {1e3 * cold_model:9.1f} ms"
        )
        print(
            f"  cached                      {1e3 * cached_other:9.2f} ms    {1e3 * cached_model:9.1f} ms"
        )

        loader_root = scratch / "loader-cache"
        features = ClipFeatures(backbone.featurizer, loader_root)
        cold_rate, *cached_rates = loader_throughput(pairs, features, args.batch_size, workers, 8)
        cached_rate = float(np.median(cached_rates))
        print(
            f"training loader, no model: cold epoch {cold_rate:.1f} clips/s; cached epochs "
            + f"{min(cached_rates):.0f}-{max(cached_rates):.0f} clips/s (median of "
            + f"{len(cached_rates)}: {cached_rate:.0f})"
        )
        x = cached_other / cold_other
        y = cached_rate / cold_rate
        print(
            f"cached/cold non-model time per clip = {x:.4f}; cached/cold loader throughput = {y:.1f}"
        )


if __name__ == "__main__":
    main()
