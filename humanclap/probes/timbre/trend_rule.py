"""The trend of one descriptor's Δ sequence: up, down, peak or flat (timbre-semantics §2.3).

The paper's "monotonic increase, monotonic decrease, or peaking at a specific intensity", made exact
with a tolerance. By default the sequence is Δ at the levels only (the paper: "Δ_d(a) values were
examined across intensity levels"); ``include_origin`` puts the point (0, 0) in front.
See docs/probes.md#trend-rule.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

from humanclap.probes.metrics import lcc, slope, srcc

TRENDS = ("up", "down", "peak", "flat")
TREND_CODES: dict[str, float] = {"up": 1.0, "down": -1.0, "peak": 2.0, "flat": 0.0}
"""Numeric code of each class in the ``<effect>/<word>/class`` metrics."""
TREND_SYMBOLS: dict[str, str] = {"up": "↑", "down": "↓", "peak": "∧", "flat": "–"}
"""The paper's legend (↑ monotonic up, ↓ monotonic down, – flat or inconsistent) plus ∧ for a peak."""

_TREND_OF_MOVES = {(): "flat", (1,): "up", (-1,): "down", (1, -1): "peak"}


def check_tolerance(tolerance: float) -> float:
    """``tolerance`` as a float; ValueError unless it is a finite number >= 0."""
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, numbers.Real)
        or not math.isfinite(tolerance)
        or tolerance < 0
    ):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    return float(tolerance)


def trend_points(
    amounts: Sequence[float] | None, deltas: Sequence[float], include_origin: bool
) -> tuple[list[float] | None, list[float]]:
    """(amounts, Δ) of the classified sequence, with (0, 0) prepended when ``include_origin``."""
    values = [float(v) for v in deltas]
    xs = None if amounts is None else [float(a) for a in amounts]
    if include_origin:
        values = [0.0, *values]
        xs = None if xs is None else [0.0, *xs]
    return xs, values


def classify_trend(
    deltas: Sequence[float], tolerance: float = 0.0, include_origin: bool = False
) -> str:
    """``"up"``, ``"down"``, ``"peak"`` or ``"flat"`` for Δ at increasing amounts.

    The rule: docs/probes.md#trend-rule.

    Non-finite Δ: ``"flat"`` with a ``RuntimeWarning``.
    """
    tolerance = check_tolerance(tolerance)
    if len(deltas) == 0:
        raise ValueError("no Δ values to classify")
    _, values = trend_points(None, deltas, include_origin)
    if not all(math.isfinite(v) for v in values):
        warnings.warn(
            f"non-finite Δ {list(deltas)} (NaN embeddings?); classified as flat",
            RuntimeWarning,
            stacklevel=2,
        )
        return "flat"
    moves: list[int] = []
    anchor = values[0]
    for value in values[1:]:
        if value - anchor > tolerance:
            step = 1
        elif anchor - value > tolerance:
            step = -1
        else:
            continue
        anchor = value
        if not moves or moves[-1] != step:  # keep runs collapsed: [1, -1] etc.
            moves.append(step)
    return _TREND_OF_MOVES.get(tuple(moves), "flat")


def trend_statistics(
    amounts: Sequence[float],
    deltas: Sequence[float],
    tolerance: float = 0.0,
    include_origin: bool = False,
) -> dict[str, Any]:
    """Δ at each amount, least-squares slope, Spearman ρ, Pearson r and trend class of one descriptor.

    Returns ``{"deltas": [...], "slope": float, "spearman": float, "pearson": float, "trend": str}``,
    all over the classified points (with (0, 0) when ``include_origin``). Slope, ρ and r come from
    :mod:`humanclap.probes.metrics`: NaN for fewer than 2 points or a non-finite Δ (an infinite Δ
    used to get the ρ of scipy's ranks, inf as the largest), ρ and r also for a constant Δ, whose
    slope is 0 (up to round-off of its mean, about 1e-17).
    """
    if len(amounts) != len(deltas):
        raise ValueError(f"{len(amounts)} amounts but {len(deltas)} Δ values")
    xs, ys = trend_points(amounts, deltas, include_origin)
    return {
        "deltas": [float(d) for d in deltas],
        "slope": slope(xs, ys),
        "spearman": srcc(xs, ys),
        "pearson": lcc(xs, ys),
        "trend": classify_trend(deltas, tolerance, include_origin),
    }


def trend_symbol(code: float) -> str:
    """Table cell of a ``class`` code: ↑ ↓ ∧ – (an unknown code as a number)."""
    for trend, value in TREND_CODES.items():
        if code == value:
            return TREND_SYMBOLS[trend]
    return f"{code:g}"
