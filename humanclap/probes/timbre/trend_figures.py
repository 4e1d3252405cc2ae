"""Δ_d(a) against the effect amount a, one line per descriptor (timbre-semantics §2.3, Tables 1-2 as a plot)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from humanclap.probes.timbre.trend_rule import TREND_SYMBOLS, TRENDS, trend_points

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TREND_COLOURS = {"up": "tab:green", "down": "tab:red", "peak": "tab:orange", "flat": "0.6"}


def trend_figure(
    title: str,
    amounts: Sequence[float],
    deltas: Mapping[str, Sequence[float]],
    trends: Mapping[str, str],
    include_origin: bool = False,
) -> Figure:
    """Δ_d(a) against the amount a, one line per descriptor coloured by its trend class.

    With ``include_origin`` each line starts at (0, 0), the points the trend was classified on.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=(6.0, 4.2), layout="constrained")
    axes = figure.subplots()
    for word, values in deltas.items():
        xs, ys = trend_points(amounts, values, include_origin)
        colour = TREND_COLOURS[trends[word]]
        axes.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, alpha=0.85, color=colour)
        axes.annotate(
            word,
            (xs[-1], ys[-1]),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize="x-small",
            va="center",
            color=colour,
        )
    xs, _ = trend_points(amounts, amounts, include_origin)
    axes.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
    span = xs[-1] - xs[0] or 1.0
    axes.set_xlim(xs[0] - 0.03 * span, xs[-1] + 0.25 * span)  # room for the word labels
    axes.set_xticks(xs)
    axes.set(xlabel="effect amount a", ylabel="Δ_d(a) = sim_manip − sim_orig", title=title)
    present = [t for t in TRENDS if t in trends.values()]
    axes.legend(
        [Line2D([], [], color=TREND_COLOURS[t], marker="o", markersize=3) for t in present],
        [f"{TREND_SYMBOLS[t]} {t} ({list(trends.values()).count(t)})" for t in present],
        fontsize="small",
        loc="best",
    )
    return figure
