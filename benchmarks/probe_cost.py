"""Probe overhead: the full configured probe suite vs one embedding pass over its unique inputs.

The suite is what ``python -m humanclap.evaluate`` runs (recipes/evaluate.yaml plus any overrides
given here): all probes through one shared embedding cache, metrics, tables (figures are built
lazily and not counted). The reference is the least any evaluation must do: load every unique clip
once and embed it, and embed every unique text once, in the same batch size. Prints seconds for
each (best of ``--repeats``, interleaved) and their ratio (target: <= 1.25).

    python benchmarks/probe_cost.py [--repeats 5] [hydra overrides, e.g. data.pairs.n_sounds=600]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from humanclap.backbones.resolve import resolve_model  # noqa: E402
from humanclap.data.pairs import unique_in_order  # noqa: E402
from humanclap.evaluate import evaluation_pairs  # noqa: E402
from humanclap.probes.base import run_probes  # noqa: E402
from humanclap.probes.build import build_probes  # noqa: E402

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def one_pass(backbone, probes, batch_size: int) -> float:
    """Seconds to load + embed each unique clip and embed each unique text once."""
    refs, texts = [], []
    for probe in probes.values():
        inputs = probe.inputs()
        refs += inputs.audio
        texts += inputs.texts
    refs, texts = list(dict.fromkeys(refs)), unique_in_order(texts)
    start = time.perf_counter()
    for first in range(0, len(refs), batch_size):
        batch = refs[first : first + batch_size]
        backbone.embed_audio(
            [ref.store.load(ref.key, backbone.sample_rate) for ref in batch], batch_size=batch_size
        )
    backbone.embed_text(texts, batch_size=batch_size)
    return time.perf_counter() - start


def suite(backbone, probes, batch_size: int) -> float:
    start = time.perf_counter()
    results, _ = run_probes(probes, backbone, batch_size=batch_size)
    for result in results.values():  # what the evaluate CLI renders for every model
        for table in result.tables.values():
            table.render({"model": result.metrics})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args, overrides = parser.parse_known_args()
    with initialize_config_dir(version_base="1.3", config_dir=str(RECIPES)):
        cfg = compose(config_name="evaluate", overrides=["progress=false", *overrides])
    backbone = resolve_model(cfg.models[0], seed=cfg.seed).backbone
    probes = build_probes(cfg.probes, evaluation_pairs(cfg.data, cfg.split))
    n_clips = len({ref for probe in probes.values() for ref in probe.inputs().audio})
    n_texts = len({text for probe in probes.values() for text in probe.inputs().texts})
    suite(backbone, probes, cfg.batch_size)  # warm-up (allocator, kernels, synthetic renders)
    one_pass(backbone, probes, cfg.batch_size)
    full, reference = [], []
    for _ in range(args.repeats):
        reference.append(one_pass(backbone, probes, cfg.batch_size))
        full.append(suite(backbone, probes, cfg.batch_size))
    print(
        f"probes: {sorted(probes)}  model: {cfg.models[0]}  unique clips: {n_clips}  unique texts: {n_texts}"
    )
    print(
        f"one embedding pass: {min(reference):.3f} s   full probe suite: {min(full):.3f} s   "
        f"ratio: {min(full) / min(reference):.3f}  (target <= 1.25, best of {args.repeats})"
    )


if __name__ == "__main__":
    main()
