"""The authors' release protocol of the timbre trend experiment (``protocol=release``).

The code release of timbre-semantics, github.com/lindseydeng/timbre-semantics-release (commit
``ca2ae10``; it accompanies the paper's ISMIR 2026 version, whose Tables 1-2 are these rates, not
the trend classes of the paper text humanclap follows otherwise), measures Experiment 2 so:

* five strengths 0.2, 0.4, 0.6, 0.8, 1.0 (``configs/experiment2.json``, ``"scales"``), the Audealize
  amount slider (``tools/audealize/audealize_batch.js``) -- here the ``amounts``;
* the text ``"a <descriptor> sound"``, and ``"an echo sound"`` for echo only
  (``src/timbre_semantics/design.py``, ``text_prompt``): :func:`release_prompt`;
* Δ = cos(processed clip, text) − cos(its own original source, text), per source
  (``src/timbre_semantics/experiments.py``, ``run_experiment2``) -- a source is a reference here;
* per trajectory (source, effect, descriptor) over the strengths, without an origin point: the
  least-squares slope, the final Δ (at the largest strength), Pearson r and Spearman ρ, and
  whether slope and final Δ are > 0 (``src/timbre_semantics/analysis.py``,
  ``analyze_experiment2`` step 2): :func:`trajectory_statistics`;
* rates over trajectories and the all-source consistency (step 3): :func:`release_metrics`.

Deliberate differences: the slope of a constant Δ is 0 here, so it never counts as positive; the
release's ``np.polyfit(x, y, 1)[0]`` gives it a round-off slope of about ±1e-17 of either sign.
Any other Δ gets the least-squares slope (:func:`humanclap.probes.metrics.slope`), equal to the
release's up to round-off (1e-16 on its saved LAION-CLAP scores). Non-finite Δ (the release raises
an error) give NaN statistics that count as not positive and are left out of the means.
See docs/probes.md#release-protocol.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from humanclap.probes.metrics import lcc, slope, srcc

PROTOCOLS = ("paper", "release")
"""``paper``: the paper text (§2.3, Tables 1-2: trend classes); ``release``: the code release."""
RELEASE_AMOUNTS = (0.2, 0.4, 0.6, 0.8, 1.0)
"""The release's five strengths (``configs/experiment2.json``, ``"scales"``)."""
RELEASE_TEMPLATE = "a {descriptor} sound"
"""The release's text, with "an" for echo (:func:`release_prompt`)."""
RATES = ("positive_slope_rate", "positive_final_delta_rate", "all_source_consistency")
"""The release statistics that are shares (tables show them as percentages, like its paper.py)."""


def release_prompt(word: str) -> str:
    """The release's text of a descriptor (``design.py``, ``text_prompt``): ``"a warm sound"``,
    and ``"an echo sound"`` -- "an" for the word echo only, as the release keeps its historical prompts.
    """
    return f"{'an' if word == 'echo' else 'a'} {word} sound"


def trajectory_statistics(amounts: Sequence[float], deltas: Sequence[float]) -> dict[str, float]:
    """The statistics of one trajectory, Δ at the strengths ``amounts`` (no origin point).

    ``analysis.py``, ``analyze_experiment2`` step 2: ``slope`` (least squares of Δ on the
    strength; 0 for a constant Δ), ``final_delta`` (Δ at the largest strength), ``pearson_r`` and ``spearman_rho`` of
    Δ with the strength (NaN for a constant Δ, as the release's ``correlations``), and the flags
    ``positive_slope`` (slope > 0) and ``positive_final_delta`` (final Δ > 0) as 1.0 / 0.0.
    """
    if len(amounts) != len(deltas) or len(deltas) == 0:
        raise ValueError(f"{len(amounts)} amounts but {len(deltas)} Δ values")
    xs, ys = [float(a) for a in amounts], [float(d) for d in deltas]
    # a constant Δ: exactly 0 (least squares through the mean can round to ±1e-17)
    fitted = 0.0 if all(y == ys[0] for y in ys) else slope(xs, ys)
    final = ys[-1]
    return {
        "slope": fitted,
        "final_delta": final,
        "pearson_r": lcc(xs, ys),
        "spearman_rho": srcc(xs, ys),
        "positive_slope": float(fitted > 0),  # NaN > 0 is False, as in pandas
        "positive_final_delta": float(final > 0),
    }


def _mean(values: Sequence[float]) -> float:
    """Mean without the NaN values (pandas' ``mean``, ``skipna=True``); NaN if none is left."""
    kept = [v for v in values if not math.isnan(v)]
    return math.fsum(kept) / len(kept) if kept else math.nan


def release_metrics(
    amounts: Sequence[float], deltas: Mapping[str, Mapping[str, Sequence[Sequence[float]]]]
) -> dict[str, float]:
    """The release's summaries of Δ trajectories.

    ``deltas``: effect -> descriptor -> one Δ sequence (at ``amounts``) per source, the sources in
    the same order for every descriptor. ``analysis.py``, ``analyze_experiment2``:

    * per effect (its ``effects.csv``, the ISMIR version's Table 2): ``<effect>/positive_slope_rate``,
      ``/positive_final_delta_rate`` (shares of trajectories), ``/mean_slope``, ``/mean_final_delta``,
      ``/mean_pearson_r``, ``/mean_spearman_rho`` (means over trajectories, NaN left out) and
      ``/all_source_consistency``: the share of descriptors whose slope is positive for *every*
      source (step 3, ``positive_slope.all()``);
    * over both effects (its ``summary.csv``, Table 1; every trajectory and every (effect,
      descriptor) pair pooled): ``positive_slope_rate`` (``pos_slope_rate`` there),
      ``positive_final_delta_rate`` (``pos_final_delta_rate``), ``all_source_consistency``,
      ``mean_pearson_r``, ``mean_spearman_rho``;
    * per descriptor: ``<effect>/<word>/all_source_consistent``, 1.0 or 0.0.

    Rates are shares in [0, 1] (the release prints them as percentages).
    """
    metrics: dict[str, float] = {}
    pooled: list[dict[str, float]] = []
    pooled_consistent: list[float] = []
    for effect, words in deltas.items():
        trajectories: list[dict[str, float]] = []
        consistent: list[float] = []
        for word, sequences in words.items():
            if not sequences:
                raise ValueError(f"{effect} '{word}': no Δ sequence")
            stats = [trajectory_statistics(amounts, sequence) for sequence in sequences]
            trajectories += stats
            consistent.append(float(all(s["positive_slope"] == 1.0 for s in stats)))
            metrics[f"{effect}/{word}/all_source_consistent"] = consistent[-1]
        if not trajectories:
            raise ValueError(f"{effect}: no descriptors")
        metrics.update(
            {
                f"{effect}/positive_slope_rate": _mean([s["positive_slope"] for s in trajectories]),
                f"{effect}/positive_final_delta_rate": _mean(
                    [s["positive_final_delta"] for s in trajectories]
                ),
                f"{effect}/mean_slope": _mean([s["slope"] for s in trajectories]),
                f"{effect}/mean_final_delta": _mean([s["final_delta"] for s in trajectories]),
                f"{effect}/mean_pearson_r": _mean([s["pearson_r"] for s in trajectories]),
                f"{effect}/mean_spearman_rho": _mean([s["spearman_rho"] for s in trajectories]),
                f"{effect}/all_source_consistency": _mean(consistent),
            }
        )
        pooled += trajectories
        pooled_consistent += consistent
    if not pooled:
        raise ValueError("no effects")
    metrics.update(
        {
            "positive_slope_rate": _mean([s["positive_slope"] for s in pooled]),
            "positive_final_delta_rate": _mean([s["positive_final_delta"] for s in pooled]),
            "all_source_consistency": _mean(pooled_consistent),
            "mean_pearson_r": _mean([s["pearson_r"] for s in pooled]),
            "mean_spearman_rho": _mean([s["spearman_rho"] for s in pooled]),
        }
    )
    return metrics


def percent(value: float) -> str:
    """A rate as the release's tables print it (``paper.py``): ``72.5%``."""
    return "–" if math.isnan(value) else f"{100 * value:.1f}%"
