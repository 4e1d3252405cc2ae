"""Figures of the zero-shot probes: positive vs negative cosine histograms and top-2 margins
(instruments), and the confusion matrix (classification).

two-tower §"Method Summary" analyses "similarity distributions between positive and negative
pairs" and "model confidence through top-2 class similarity differences"; its Fig. 3b contrasts
the text labels with audio-only labels. Panel (a): cos(clip, class text) for the clip's own class
(positive) and every other class (negative); (b): the same with class-mean audio embeddings in
place of the class texts; (c): best minus second-best class cosine per clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _overlaid(axes, positive: np.ndarray, negative: np.ndarray, bins: int, title: str) -> None:
    values = np.concatenate([positive, negative])
    low, high = float(values.min()), float(values.max())
    edges = np.linspace(low, high if high > low else low + 1e-6, bins + 1)
    axes.hist(
        negative,
        bins=edges,
        density=True,
        alpha=0.55,
        color="tab:red",
        label=f"negative (n={negative.size})",
    )
    axes.hist(
        positive,
        bins=edges,
        density=True,
        alpha=0.55,
        color="tab:blue",
        label=f"positive (n={positive.size})",
    )
    axes.set(xlabel="cosine similarity", ylabel="density", title=title)
    axes.title.set_fontsize("medium")
    axes.legend(fontsize="small")


def similarity_histograms(
    text: tuple[np.ndarray, np.ndarray],
    audio: tuple[np.ndarray, np.ndarray],
    margins: np.ndarray,
    template: str,
    bins: int = 40,
) -> Figure:
    """Three panels: (a) clip vs class text, (b) clip vs class-mean audio, (c) top-2 margins."""
    figure = Figure(figsize=(13.0, 3.8), layout="constrained")
    first, second, third = figure.subplots(1, 3)
    _overlaid(first, *text, bins, f"(a) clip vs class text\n«{template}»")
    _overlaid(second, *audio, bins, "(b) clip vs class-mean audio")
    third.hist(margins, bins=bins, color="tab:gray")
    third.axvline(
        float(np.median(margins)),
        color="black",
        linewidth=1.0,
        linestyle="--",
        label=f"median {np.median(margins):.3f}",
    )
    third.set(
        xlabel="best − second-best class cosine",
        ylabel="clips",
        title=f"(c) top-2 margin\n«{template}»",
    )
    third.xaxis.set_major_locator(MaxNLocator(4))
    third.title.set_fontsize("medium")
    third.legend(fontsize="small")
    return figure


def confusion_matrix(counts: np.ndarray, classes: Sequence[str], title: str) -> Figure:
    """Clip counts, rows = true class, columns = predicted class; sized and lettered so that 50
    classes (ESC-50) stay readable: small labels, the predicted ones rotated, counts in the cells."""
    n = len(classes)
    side = min(max(4.0, 0.24 * n + 2.5), 16.0)
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(counts, cmap="Blues", interpolation="nearest", vmin=0)
    bar = figure.colorbar(image, ax=axes, shrink=0.7, label="clips")
    bar.locator = MaxNLocator(integer=True)  # counts: no 0.5 ticks
    bar.update_ticks()
    font = 8 if n <= 20 else 6 if n <= 40 else 5
    axes.set_xticks(range(n), list(classes), rotation=90, fontsize=font)
    axes.set_yticks(range(n), list(classes), fontsize=font)
    axes.set(xlabel="predicted class (top-1; ties count against the model)", ylabel="true class")
    axes.set_title(title, fontsize="medium")
    high = counts.max() if counts.size else 0
    for (row, column), count in np.ndenumerate(counts):
        if count:
            axes.text(
                column,
                row,
                str(int(count)),
                ha="center",
                va="center",
                fontsize=font - 1,
                color="white" if count > high / 2 else "black",
            )
    return figure
