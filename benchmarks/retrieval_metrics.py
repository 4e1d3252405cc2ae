"""Retrieval metrics at AudioCaps-test scale: the probe's computation vs a plain per-query loop.

5000 captions x 1000 clips (5 captions per clip), random embeddings. The probe counts each
match's rank directly in float64 (:func:`humanclap.probes.metrics.match_ranks`); the reference
sorts each query's gallery (non-matches first among equal scores) and calls torchmetrics'
functional metrics once per query. Both give the same numbers up to torchmetrics' float32
(checked here). Prints seconds for each direction and the ratio probe / per-query loop.

    python benchmarks/retrieval_metrics.py [--clips 1000] [--captions-per-clip 5]
"""

from __future__ import annotations

import argparse
import time

import torch
from torchmetrics.functional.retrieval import (
    retrieval_average_precision,
    retrieval_hit_rate,
    retrieval_reciprocal_rank,
)

from humanclap.probes.metrics import retrieval_metrics


def per_query(scores: torch.Tensor, matches: torch.Tensor) -> dict[str, float]:
    """The straightforward way: every torchmetrics metric once per query (pessimistic ties)."""
    # Non-matches first, then by score: a stable sort keeps them ahead of tied matches.
    order = torch.argsort(matches.to(torch.uint8), dim=1, stable=True)
    order = order.gather(
        1, torch.argsort(scores.gather(1, order), dim=1, descending=True, stable=True)
    )
    ranked = matches.gather(1, order)
    # Position i (0 = best) gets score n_gallery - i: positive and distinct in float32 (torchmetrics
    # casts to float32 and ignores matches scoring <= 0).
    preds = torch.arange(ranked.shape[1], 0, -1, dtype=torch.float32)
    totals = {"R@1": 0.0, "R@5": 0.0, "R@10": 0.0, "MRR": 0.0, "mAP@10": 0.0}
    for row in ranked:
        for k in (1, 5, 10):
            totals[f"R@{k}"] += float(retrieval_hit_rate(preds, row, top_k=k))
        totals["MRR"] += float(retrieval_reciprocal_rank(preds, row))
        totals["mAP@10"] += float(retrieval_average_precision(preds, row, top_k=10))
    return {name: value / len(ranked) for name, value in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--captions-per-clip", type=int, default=5)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(args.clips, 64, generator=generator), dim=1)
    text = torch.nn.functional.normalize(
        audio.repeat(args.captions_per_clip, 1)
        + torch.randn(args.clips * args.captions_per_clip, 64, generator=generator),
        dim=1,
    )
    matches = torch.eye(args.clips, dtype=torch.bool).repeat(args.captions_per_clip, 1)
    similarity = text.double() @ audio.double().T
    for name, scores, target in (("t2a", similarity, matches), ("a2t", similarity.T, matches.T)):
        start = time.perf_counter()
        probe = retrieval_metrics(scores, target)  # includes the optimistic variant
        probe_seconds = time.perf_counter() - start
        start = time.perf_counter()
        loop = per_query(scores, target)
        loop_seconds = time.perf_counter() - start
        for metric, value in loop.items():
            assert abs(probe[metric] - value) < 1e-6, (
                name,
                metric,
                probe[metric],
                value,
            )  # float32 there
        print(
            f"{name}: {int(probe['n_queries'])} queries x {int(probe['n_gallery'])} items  probe {probe_seconds:.3f} s "
            f"(both tie rules)  per-query loop {loop_seconds:.3f} s (one rule)  "
            f"ratio {probe_seconds / loop_seconds:.3f}"
        )


if __name__ == "__main__":
    main()
