"""The metrics every probe shares: agreement with human judgements and ranking metrics.

**Agreement** (``scipy.stats``): :func:`srcc` (Spearman's ρ), :func:`lcc` (Pearson's r),
:func:`kendall_tau` (τ-b), :func:`slope` (least squares) and :func:`mse`, on two equally long
1-D sequences (lists, numpy arrays or tensors; computed in float64).

**Undefined values: NaN, silently.** A statistic whose definition has no value for the data is
``math.nan`` -- never 0, never a warning, never an exception: when there are fewer than 2 points
(1 for MSE), when a value is NaN or infinite, or when an input it divides by the spread of is
constant (all values exactly equal: both inputs of a correlation, ``x`` of a slope; a constant
``y`` has slope 0). :func:`undefined_reason` says which of these applies, for probes that report
it. Every other input gets scipy's value (a nearly constant input included).

**Retrieval** (:func:`retrieval_metrics`): each query's matches are ranked directly --
rank = the match's place among the query's matches + the non-matches that score higher, or equal
(ties count against the model) -- and R@k, MRR and mAP@k follow from those ranks.
:func:`random_mrr` is the MRR a uniformly random ranking has in expectation (``MRR_random``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats
from torch import Tensor

Values = Sequence[float] | np.ndarray | Tensor


def _vector(values: Values) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"expected a 1-D sequence, got shape {array.shape}")
    return array


def _pair(x: Values, y: Values) -> tuple[np.ndarray, np.ndarray]:
    x, y = _vector(x), _vector(y)
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    return x, y


def undefined_reason(
    x: Values,
    y: Values,
    names: tuple[str, str] = ("x", "y"),
    spread: tuple[bool, bool] = (True, True),
    min_points: int = 2,
) -> str | None:
    """Why a statistic of ``x`` and ``y`` is undefined (NaN), or None if it is defined.

    ``spread``: which inputs must not be constant (correlations: both; slope: x only).
    E.g. ``"constant human ratings and constant model similarities"`` with
    ``names=("human ratings", "model similarities")``.
    """
    x, y = _pair(x, y)
    if len(x) < min_points:
        return f"fewer than {min_points} points ({len(x)})"
    reasons = []
    for name, values, needs_spread in zip(names, (x, y), spread):
        if not np.isfinite(values).all():
            reasons.append(f"non-finite {name}")
        elif needs_spread and (values == values[0]).all():
            reasons.append(f"constant {name}")
    return " and ".join(reasons) or None


def _statistic(
    function, x: Values, y: Values, spread: tuple[bool, bool] = (True, True), min_points: int = 2
) -> float:
    x, y = _pair(x, y)
    if undefined_reason(x, y, spread=spread, min_points=min_points) is not None:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", stats.NearConstantInputWarning
        )  # a defined value: reported as is
        return float(function(x, y))


def srcc(x: Values, y: Values) -> float:
    """Spearman's rank correlation: Pearson's r of the average ranks (ties share their mean rank).

    human-clap §IV: SRCC of CLAPScore vs human relevance scores (its main metric, Tables I-III);
    timbre-semantics Exp. 1 reports it beside Pearson's r, Exp. 2 uses it for Δ vs intensity.
    NaN when undefined (module docstring).
    """
    return _statistic(lambda a, b: stats.spearmanr(a, b).statistic, x, y)


def lcc(x: Values, y: Values) -> float:
    """Pearson's linear correlation ``Σ(x−x̄)(y−ȳ) / sqrt(Σ(x−x̄)² Σ(y−ȳ)²)``.

    human-clap §IV: LCC of CLAPScore vs human scores (Table I); timbre-semantics Exp. 1 (§2.2):
    the r of descriptor- and instrument-level correlations. NaN when undefined (module docstring).
    """
    return _statistic(lambda a, b: stats.pearsonr(a, b).statistic, x, y)


def kendall_tau(x: Values, y: Values) -> float:
    """Kendall's τ-b (ties in either input adjusted for), scipy's O(n log n) implementation.

    Reported beside SRCC and LCC by the relevance probe. NaN when undefined (module docstring).
    """
    return _statistic(lambda a, b: stats.kendalltau(a, b).statistic, x, y)


def slope(x: Values, y: Values) -> float:
    """Slope of the least-squares line of y on x (``scipy.stats.linregress``):
    ``Σ(x−x̄)(y−ȳ) / Σ(x−x̄)²``.

    timbre-semantics Exp. 2 (§2.3): the trend of Δ against the effect intensity. NaN when
    undefined (module docstring: n < 2, non-finite values, constant x); a constant y gives 0.
    """
    return _statistic(lambda a, b: stats.linregress(a, b).slope, x, y, spread=(True, False))


def mse(x: Values, y: Values) -> float:
    """Mean squared error ``Σ(x−y)² / n`` (human-clap Table I). NaN without points or with a
    non-finite value."""
    return _statistic(lambda a, b: np.mean((a - b) ** 2), x, y, spread=(False, False), min_points=1)


# -- retrieval ---------------------------------------------------------------------------------------


def check_cutoffs(ks: Sequence[int], map_k: int) -> tuple[tuple[int, ...], int]:
    """``ks`` without repeats and ``map_k``; ValueError unless all are integers >= 1."""
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty list of integers >= 1, got {list(ks)}")
    if isinstance(map_k, bool) or not isinstance(map_k, int) or map_k < 1:
        raise ValueError(f"map_k must be an integer >= 1, got {map_k!r}")
    return tuple(dict.fromkeys(ks)), map_k


def match_ranks(scores: Tensor, matches: Tensor, depth: int) -> tuple[Tensor, Tensor]:
    """Ranks (1 = best, float64) of each query's best matches, best first, up to ``depth`` of
    them (fewer if no query has that many; inf where a query has fewer): (pessimistic, optimistic).

    Rows are queries, columns the gallery (finite scores). The i-th best match of a query ranks
    ``i + (non-matches scoring >= it)`` pessimistically (a tie counts against the model) and
    ``i + (non-matches scoring > it)`` optimistically. Matches tied with each other take
    consecutive ranks, which no metric here tells apart. Memory: queries x depth x gallery booleans.
    """
    depth = max(1, min(depth, int(matches.sum(dim=1).max())))
    best = torch.topk(scores.masked_fill(~matches, -math.inf), depth, dim=1).values[:, :, None]
    misses = scores.masked_fill(matches, math.nan)[
        :, None, :
    ]  # NaN compares False: matches never count
    place = torch.arange(1, depth + 1, dtype=torch.float64)
    missing = best[:, :, 0] == -math.inf
    return tuple(
        (place + ahead.sum(dim=2)).masked_fill(missing, math.inf)
        for ahead in (misses >= best, misses > best)
    )


def ranking_means(
    ranks: Tensor, ks: Sequence[int], map_k: int, relevant: Tensor | None = None
) -> dict[str, float]:
    """R@k, MRR and mAP@map_k averaged over queries, from :func:`match_ranks` (depth ``map_k``).

    * ``R@k``: 1 if any match ranks <= k, else 0 -- the "R@k" of the CLAP papers (with one match
      per query it is recall@k).
    * ``MRR``: 1 / rank of the best match (CLaMP 3 §4.2, "Mean Reciprocal Rank").
    * ``mAP@k``: ``AP@k = 1/|found| · Σ_{match i in found} i / rank_i``, ``found`` = the matches
      ranked <= k, and 0 if none is (torchmetrics' ``retrieval_average_precision(top_k=k)``: the
      denominator is the matches *found* in the top k, not all matches). With one match per
      query, AP@k = 1/rank if rank <= k, else 0.
    * ``relevant`` (matches per query) given: ``AP@k`` divides by it instead, as LAION-CLAP's
      audio -> text mAP@10 divides by the 5 captions of a clip (training/train.py
      ``evaluate_clotho_audiocaps``, after Xinhao Mei's audio-text_retrieval).
    """
    first = ranks[:, 0]
    values = {f"R@{k}": float((first <= k).double().mean()) for k in ks}
    values["MRR"] = float((1.0 / first).mean())
    found = ranks <= map_k
    precision = torch.arange(1, ranks.shape[1] + 1, dtype=torch.float64) / ranks
    denominator = found.sum(dim=1).clamp(min=1) if relevant is None else relevant.double()
    ap = (precision * found).sum(dim=1) / denominator
    values[f"mAP@{map_k}"] = float(ap.mean())
    return values


def random_mrr(n_gallery: int, n_matches: int = 1) -> float:
    """E[1 / rank of the first match] of one query whose gallery of N = ``n_gallery`` items, m =
    ``n_matches`` of them matches, is ranked uniformly at random (the chance level of MRR).

    The matches take a uniformly random m-subset of the places 1..N; the first match is at place r
    when r is in it and the other m − 1 are among the N − r places after r, so
    ``P(r) = C(N − r, m − 1) / C(N, m)`` and ``E = Σ_{r=1}^{N−m+1} P(r) / r``. With one match
    ``P(r) = 1/N`` and ``E = H_N / N`` (H_N the N-th harmonic number): N = 1000 gives 0.0074855,
    the "random baseline of 0.0075" of clamp3 §4.4. The sum is exact; P(r) is computed by the ratio
    ``P(r + 1) / P(r) = (N − r − m + 1) / (N − r)`` from ``P(1) = m / N`` (no big binomials).
    """
    if isinstance(n_gallery, bool) or isinstance(n_matches, bool):
        raise TypeError("n_gallery and n_matches must be integers")
    n, m = int(n_gallery), int(n_matches)
    if n != n_gallery or m != n_matches or not 1 <= m <= n:
        raise ValueError(f"need integers 1 <= n_matches <= n_gallery, got {n_matches}, {n_gallery}")
    r = np.arange(1, n - m + 1, dtype=np.float64)  # the places r whose successor r + 1 can be first
    p = (m / n) * np.concatenate(([1.0], np.cumprod((n - r - m + 1) / (n - r))))
    return math.fsum(p / np.arange(1, n - m + 2, dtype=np.float64))


def mean_random_mrr(matches: Tensor) -> float:
    """:func:`random_mrr` averaged over the rows with a match of a queries x gallery ``matches``
    (each query with its own number of matches m, the gallery size N = the number of columns)."""
    counts = matches.detach().cpu().bool().sum(dim=1)
    counts = counts[counts > 0]
    if not len(counts):
        raise ValueError("no query has a match")
    values, times = torch.unique(counts, return_counts=True)
    n = matches.shape[1]
    return math.fsum(random_mrr(n, int(m)) * int(k) for m, k in zip(values, times)) / int(
        times.sum()
    )


OPTIMISTIC = "_optimistic"


def retrieval_metrics(
    scores: Tensor,
    matches: Tensor,
    ks: Sequence[int] = (1, 5, 10),
    map_k: int = 10,
    map_over_all_matches: bool = False,
) -> dict[str, float]:
    """R@k, MRR and mAP@map_k of one retrieval direction (:func:`ranking_means`), with ties
    counted against the model, and the same with ties in its favour as ``<metric>_optimistic``;
    ``MRR_random``, the MRR a uniformly random ranking expects for these queries
    (:func:`mean_random_mrr`), to read MRR against.

    ``scores`` (queries x gallery, compared in float64) and the boolean ``matches`` of the same
    shape; rows without a match are left out. Also ``n_queries`` and ``n_gallery``.
    ``map_over_all_matches``: mAP@k divides by all of a query's matches (LAION), not those found.
    """
    ks, map_k = check_cutoffs(ks, map_k)
    if scores.shape != matches.shape or scores.dim() != 2:
        raise ValueError(
            f"scores {tuple(scores.shape)} and matches {tuple(matches.shape)} must be the same 2-D shape"
        )
    scores = scores.detach().cpu().double()
    matches = matches.detach().cpu().bool()
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("similarities contain NaN or inf (non-finite embeddings?)")
    queries = matches.any(dim=1)
    if not bool(queries.any()):
        raise ValueError("no query has a match")
    scores, matches = scores[queries], matches[queries]
    pessimistic, optimistic = match_ranks(scores, matches, map_k)
    relevant = matches.sum(dim=1) if map_over_all_matches else None
    metrics = ranking_means(pessimistic, ks, map_k, relevant)
    lucky = ranking_means(optimistic, ks, map_k, relevant)
    metrics.update({f"{name}{OPTIMISTIC}": value for name, value in lucky.items()})
    metrics["MRR_random"] = mean_random_mrr(matches)
    metrics.update(n_queries=float(queries.sum()), n_gallery=float(scores.shape[1]))
    return metrics
