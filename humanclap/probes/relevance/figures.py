"""Figures of the relevance probe: human-clap Fig. 1 / Fig. 3 (CLAPScore vs subjective score)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure


def scatter_figure(
    predicted: torch.Tensor,
    human: torch.Tensor,
    groups: Sequence[str | None],
    metrics: dict[str, float],
) -> Figure:
    """Each pair as a point (subjective score, CLAPScore), coloured by group, as in Fig. 1 / 3."""
    figure = Figure(figsize=(4.8, 4.2), layout="constrained")
    axes = figure.subplots()
    names = list(dict.fromkeys(groups))
    for name in names:
        mask = torch.tensor([g == name for g in groups])
        axes.scatter(
            human[mask].numpy(),
            predicted[mask].double().numpy(),
            s=9,
            alpha=0.6,
            label=name if name is not None else "pairs",
        )
    axes.set(
        xlim=(-0.03, 1.03),
        ylim=(-0.03, 1.03),
        xlabel="subjective score (rescaled to 0-1)",
        ylabel="CLAPScore (eq. 1)",
        title=f"SRCC {metrics['srcc']:.3f}, LCC {metrics['lcc']:.3f}, n={len(groups)}",
    )
    axes.plot([0, 1], [0, 1], color="0.7", linewidth=0.8, zorder=0)
    if len(names) > 1:
        axes.legend(fontsize="small", markerscale=1.5)
    return figure


def range_figure(predicted: torch.Tensor, metrics: dict[str, float]) -> Figure:
    """Histogram of CLAPScores: the range a model actually uses (Fig. 3's 0.2-1.0 compression)."""
    figure = Figure(figsize=(4.8, 2.8), layout="constrained")
    axes = figure.subplots()
    axes.hist(predicted.double().numpy(), bins=40, range=(0.0, 1.0), color="tab:blue")
    axes.axvline(metrics["clapscore_p05"], color="0.3", linestyle="--", linewidth=0.8)
    axes.axvline(metrics["clapscore_p95"], color="0.3", linestyle="--", linewidth=0.8)
    axes.set(
        xlabel="CLAPScore",
        ylabel="pairs",
        title=f"5-95 %: {metrics['clapscore_p05']:.2f}-{metrics['clapscore_p95']:.2f}",
    )
    return figure
