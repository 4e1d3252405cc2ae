"""The shared metrics module: correlations and slope equal to the computations the probes used
before (scipy, torchmetrics on average ranks, a hand-written least-squares slope) to 1e-12 on
random data with ties; one undefined-value policy (NaN, no warning); retrieval ranks and metrics
worked out by hand with ties and several matches per query, and against a float64 sort-based
reference and torchmetrics' per-query retrieval metrics on random data; the random-ranking MRR
by hand, by enumerating every permutation, and against random scores."""

from __future__ import annotations

import itertools
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import scipy.stats
import torch
from torchmetrics.functional import mean_squared_error, pearson_corrcoef
from torchmetrics.functional.retrieval import (
    retrieval_average_precision,
    retrieval_hit_rate,
    retrieval_reciprocal_rank,
)

from humanclap.probes.metrics import (
    kendall_tau,
    lcc,
    match_ranks,
    mean_random_mrr,
    mse,
    random_mrr,
    retrieval_metrics,
    slope,
    srcc,
    undefined_reason,
)


def random_pairs(seed: int, count: int = 90):
    """(x, y) of 2-60 points: normal values, a few levels (many ties) or clamped at 0 like CLAPScore."""
    rng = np.random.default_rng(seed)
    for trial in range(count):
        n = int(rng.integers(2, 61))
        kind = trial % 3
        if kind == 0:
            x, y = rng.standard_normal(n), rng.standard_normal(n)
        elif kind == 1:
            x, y = rng.integers(0, 4, n).astype(float), rng.integers(0, 3, n).astype(float)
        else:
            x, y = np.maximum(rng.standard_normal(n), 0.0), rng.random(n)
        if (
            np.ptp(x) > 0 and np.ptp(y) > 0
        ):  # the defined cases; the undefined ones are tested below
            yield x, y


# -- the old computations, kept here as references ---------------------------------------------------


def relevance_before(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The relevance probe's former ``agreement``: torchmetrics on float64 tensors, SRCC as
    Pearson of scipy's average ranks, scipy's τ-b."""
    px, py = torch.from_numpy(x), torch.from_numpy(y)
    ranks = [torch.from_numpy(scipy.stats.rankdata(v)) for v in (x, y)]
    return {
        "srcc": float(pearson_corrcoef(*ranks)),
        "lcc": float(pearson_corrcoef(px, py)),
        "mse": float(mean_squared_error(px, py)),
        "ktau": float(scipy.stats.kendalltau(x, y).statistic),
    }


def slope_before(x: np.ndarray, y: np.ndarray) -> float:
    """The timbre trend probe's former hand-written least-squares slope."""
    dx = x - x.mean()
    return float((dx * (y - y.mean())).sum() / (dx * dx).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_equal_the_former_computations_to_1e_12(seed):
    for x, y in random_pairs(seed):
        before = relevance_before(x, y)
        assert abs(srcc(x, y) - before["srcc"]) <= 1e-12
        assert abs(lcc(x, y) - before["lcc"]) <= 1e-12
        assert abs(mse(x, y) - before["mse"]) <= 1e-12
        assert abs(kendall_tau(x, y) - before["ktau"]) <= 1e-12
        # The timbre correlation probe called scipy directly.
        assert abs(lcc(x, y) - scipy.stats.pearsonr(x, y).statistic) <= 1e-12
        assert abs(srcc(x, y) - scipy.stats.spearmanr(x, y).statistic) <= 1e-12
        assert slope(x, y) == pytest.approx(slope_before(x, y), rel=1e-12, abs=1e-12)
        assert slope(x, y) == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-9, abs=1e-12)


def test_tensors_lists_and_arrays_give_the_same_value():
    x, y = [0.1, 0.4, 0.35, 0.8], [1.0, 2.0, 3.0, 5.0]
    expected = scipy.stats.spearmanr(x, y).statistic
    assert (
        srcc(x, y)
        == srcc(np.array(x), torch.tensor(y))
        == srcc(torch.tensor(x, dtype=torch.float64), y)
        == expected
    )
    assert kendall_tau(x, y) == pytest.approx(2 / 3)  # 5 concordant, 1 discordant of 6 pairs


def test_hand_values():
    # x = 0, 1, 2, 3; y = 1, 3, 2, 5: ranks of y 1, 3, 2, 4 -> ρ = 1 - 6·2/(4·15) = 0.8;
    # Σ dx·dy = 1.5·1.75 − 0.5·0.25 − 0.5·0.75 + 1.5·2.25 = 5.5, Σ dx² = 5 -> slope 1.1.
    x, y = [0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 2.0, 5.0]
    assert srcc(x, y) == pytest.approx(0.8, abs=1e-12)
    assert slope(x, y) == pytest.approx(1.1, abs=1e-12)
    assert mse(x, y) == pytest.approx((1 + 4 + 0 + 4) / 4)
    # Two points: every correlation is ±1, the slope the line through them.
    for statistic in (lcc, srcc, kendall_tau):
        assert statistic([0, 1], [5, 2]) == pytest.approx(-1.0, abs=1e-15)
    assert slope([1, 3], [5, 2]) == pytest.approx(-1.5)


# -- the undefined-value policy -------------------------------------------------------------------------

UNDEFINED = [
    ("no points", [], [], "fewer than 2 points (0)"),
    ("one point", [0.3], [0.5], "fewer than 2 points (1)"),
    ("constant x", [0.2, 0.2, 0.2], [0.1, 0.5, 0.3], "constant x"),
    ("constant y", [0.1, 0.5, 0.3], [0.7, 0.7, 0.7], "constant y"),
    ("constant, not exact in binary", [0.1] * 7, [0.3, 0.5, 0.2, 0.9, 0.4, 0.1, 0.7], "constant x"),
    ("both constant", [1.0, 1.0], [2.0, 2.0], "constant x and constant y"),
    ("NaN", [0.1, math.nan, 0.3], [0.1, 0.2, 0.4], "non-finite x"),
    ("inf", [0.1, 0.2, 0.3], [0.1, math.inf, 0.4], "non-finite y"),
]


@pytest.mark.parametrize("case, x, y, reason", UNDEFINED, ids=[c[0] for c in UNDEFINED])
def test_undefined_correlations_are_nan_without_a_warning(case, x, y, reason):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert undefined_reason(x, y) == reason
        for statistic in (srcc, lcc, kendall_tau):
            assert math.isnan(statistic(x, y)), statistic.__name__


def test_slope_needs_spread_in_x_only_and_mse_one_point():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert slope([0.0, 0.3, 0.6, 1.0], [0.0, 0.0, 0.0, 0.0]) == 0.0  # constant Δ: slope 0
        for x, y in (
            ([0.5, 0.5], [0.1, 0.2]),
            ([0.5], [0.1]),
            ([0.1, 0.2], [0.3, math.nan]),
            ([], []),
        ):
            assert math.isnan(slope(x, y)), (x, y)
        assert mse([0.5], [0.1]) == pytest.approx(0.16)
        assert math.isnan(mse([], [])) and math.isnan(mse([0.1, math.inf], [0.1, 0.2]))


def test_a_nearly_constant_input_keeps_its_value_without_a_warning():
    x, y = [1.0, 1.0 + 1e-12, 1.0 + 3e-12], [0.1, 0.2, 0.4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = scipy.stats.pearsonr(x, y).statistic  # scipy warns (NearConstantInputWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lcc(x, y) == expected and srcc(x, y) == 1.0


def test_reasons_name_the_inputs_and_bad_shapes_are_errors():
    assert (
        undefined_reason([1, 1, 1], [1, 2, 3], names=("human ratings", "model similarities"))
        == "constant human ratings"
    )
    assert undefined_reason([1, 2, 3], [1, 1, 1], spread=(True, False)) is None
    with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
        srcc([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="1-D"):
        lcc(np.ones((2, 2)), np.ones((2, 2)))


# -- retrieval ------------------------------------------------------------------------------------------

# Four queries over six items. Query 2 has no match and is left out.
SCORES = torch.tensor(
    [
        [0.9, 0.5, 0.5, 0.5, 0.1, 0.5],
        [0.2, 0.8, 0.8, 0.3, 0.0, 0.0],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        [0.4, 0.4, 0.4, 0.4, 0.4, 0.4],
    ],
    dtype=torch.float64,
)
MATCHES = torch.tensor(
    [
        [False, True, False, True, True, False],
        [True, True, True, False, False, False],
        [False] * 6,
        [False, False, True, False, False, False],
    ]
)


def test_match_ranks_by_hand():
    pessimistic, optimistic = match_ranks(SCORES, MATCHES, depth=5)
    inf = math.inf
    # q0: matches at .5, .5 (tied with the non-matches 2 and 5) and .1; item 0 (.9) is above all.
    #     pessimistic: 1 + 3, 2 + 3, 3 + 3 (non-matches >= .5: 0, 2, 5); optimistic: 1 + 1, 2 + 1, 3 + 3.
    # q1: matches .8, .8, .2; the non-match .3 is above the last only: 1, 2, 3 + 1 both ways.
    # q3: one match tied with all five non-matches: 1 + 5 pessimistically, 1 optimistically.
    assert pessimistic.tolist() == [[4, 5, 6], [1, 2, 4], [inf, inf, inf], [6, inf, inf]]
    assert optimistic.tolist() == [[2, 3, 6], [1, 2, 4], [inf, inf, inf], [1, inf, inf]]


def test_retrieval_metrics_by_hand_with_ties_and_several_matches():
    metrics = retrieval_metrics(SCORES, MATCHES, ks=(1, 3, 5), map_k=5)
    # Pessimistic ranks q0 4, 5, 6; q1 1, 2, 4; q3 6.
    #   R@1 = R@3 = 1/3 (q1), R@5 = 2/3, MRR = (1/4 + 1 + 1/6)/3 = 17/36
    #   AP@5: q0 (1/4 + 2/5)/2 = 13/40, q1 (1/1 + 2/2 + 3/4)/3 = 11/12, q3 0 -> mAP@5 = 149/360
    expected = {"R@1": 1 / 3, "R@3": 1 / 3, "R@5": 2 / 3, "MRR": 17 / 36, "mAP@5": 149 / 360}
    # Optimistic ranks q0 2, 3, 6; q1 1, 2, 4; q3 1.
    #   R@1 = 2/3, R@3 = R@5 = 1, MRR = (1/2 + 1 + 1)/3 = 5/6
    #   AP@5: q0 (1/2 + 2/3)/2 = 7/12, q1 11/12, q3 1 -> mAP@5 = 5/6
    optimistic = {"R@1": 2 / 3, "R@3": 1.0, "R@5": 1.0, "MRR": 5 / 6, "mAP@5": 5 / 6}
    # Random ranking: q0, q1 have 3 matches among 6 -> (10/1 + 6/2 + 3/3 + 1/4)/C(6,3) = 57/80;
    # q3 one -> H_6/6 = 49/120. MRR_random = (2 * 57/80 + 49/120)/3 = 11/18.
    assert metrics == pytest.approx(
        {
            **expected,
            **{f"{k}_optimistic": v for k, v in optimistic.items()},
            "MRR_random": 11 / 18,
            "n_queries": 3,
            "n_gallery": 6,
        },
        rel=1e-15,
        abs=1e-15,
    )


def sorted_reference(
    scores: np.ndarray, matches: np.ndarray, ks, map_k, pessimistic: bool
) -> dict[str, float]:
    """Sort each row by score, non-matches first (pessimistic) or last within equal scores, and
    read the metrics off the sorted match flags (float64, one query at a time)."""
    values = {f"R@{k}": [] for k in ks} | {"MRR": [], f"mAP@{map_k}": []}
    for row, match in zip(scores, matches):
        if not match.any():
            continue
        flags = match[np.lexsort((match if pessimistic else ~match, -row))]
        ranks = np.flatnonzero(flags) + 1
        for k in ks:
            values[f"R@{k}"].append(float(ranks[0] <= k))
        values["MRR"].append(1.0 / ranks[0])
        found = ranks[ranks <= map_k]
        values[f"mAP@{map_k}"].append(
            float(np.mean(np.arange(1, len(found) + 1) / found)) if len(found) else 0.0
        )
    return {name: float(np.mean(v)) for name, v in values.items()}


def torchmetrics_reference(scores: np.ndarray, matches: np.ndarray, ks, map_k) -> dict[str, float]:
    """The retrieval probe's former computation: torchmetrics per query on the pessimistically
    sorted match flags with positive, distinct scores n_gallery - position (torchmetrics casts
    scores to float32 and ignores matches scoring <= 0)."""
    values = {f"R@{k}": [] for k in ks} | {"MRR": [], f"mAP@{map_k}": []}
    preds = torch.arange(scores.shape[1], 0, -1, dtype=torch.float32)
    for row, match in zip(scores, matches):
        if not match.any():
            continue
        flags = torch.from_numpy(match[np.lexsort((match, -row))])
        for k in ks:
            values[f"R@{k}"].append(float(retrieval_hit_rate(preds, flags, top_k=k)))
        values["MRR"].append(float(retrieval_reciprocal_rank(preds, flags)))
        values[f"mAP@{map_k}"].append(float(retrieval_average_precision(preds, flags, top_k=map_k)))
    return {name: float(np.mean(v)) for name, v in values.items()}


@pytest.mark.parametrize("seed", range(4))
def test_retrieval_metrics_equal_a_sorted_reference_and_torchmetrics_on_random_data(seed):
    rng = np.random.default_rng(seed)
    for trial in range(30):
        n_queries, n_gallery = int(rng.integers(1, 25)), int(rng.integers(1, 30))
        if trial % 2:  # a few levels: many exact ties, also between matches
            scores = rng.integers(-2, 3, (n_queries, n_gallery)).astype(float)
        else:
            scores = rng.standard_normal((n_queries, n_gallery))
        matches = rng.random((n_queries, n_gallery)) < rng.choice([0.05, 0.3, 0.8])
        if not matches.any():
            continue
        ks = tuple(sorted({int(k) for k in rng.integers(1, 12, 3)}))
        map_k = int(rng.integers(1, 12))
        got = retrieval_metrics(torch.from_numpy(scores), torch.from_numpy(matches), ks, map_k)
        for pessimistic, suffix in ((True, ""), (False, "_optimistic")):
            for name, value in sorted_reference(scores, matches, ks, map_k, pessimistic).items():
                assert abs(got[f"{name}{suffix}"] - value) <= 1e-12, (trial, name, suffix)
        for name, value in torchmetrics_reference(scores, matches, ks, map_k).items():
            assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-7), (
                trial,
                name,
            )  # float32 there
        assert got["n_queries"] == matches.any(axis=1).sum() and got["n_gallery"] == n_gallery


# -- the MRR of a random ranking --------------------------------------------------------------------


def test_random_mrr_by_hand():
    # One match among N: E[1/rank] = H_N / N.
    assert random_mrr(1) == 1.0
    assert random_mrr(2) == pytest.approx(3 / 4, abs=1e-15)  # (1 + 1/2)/2
    assert random_mrr(3) == pytest.approx(11 / 18, abs=1e-15)  # (1 + 1/2 + 1/3)/3
    # m matches among N: P(first at r) = C(N-r, m-1)/C(N, m).
    assert random_mrr(3, 2) == pytest.approx(5 / 6, abs=1e-15)  # (2/1 + 1/2)/3
    assert random_mrr(4, 2) == pytest.approx(13 / 18, abs=1e-15)  # (3/1 + 2/2 + 1/3)/6
    assert random_mrr(3, 3) == 1.0  # every place holds a match
    # clamp3 §4.4: "the random baseline of 0.0075" for WikiMT-X's 1,000 pieces, one match each.
    assert random_mrr(1000) == pytest.approx(
        math.fsum(1 / r for r in range(1, 1001)) / 1000, rel=1e-13
    )
    assert round(random_mrr(1000), 4) == 0.0075


def test_random_mrr_equals_the_mean_over_every_permutation():
    """Exact: every ordering of N items, m of them matches, each equally likely (N! orderings)."""
    for n in range(1, 7):
        for m in range(1, n + 1):
            orderings = list(itertools.permutations(range(n)))
            total = sum(
                Fraction(1, 1 + min(order.index(item) for item in range(m))) for order in orderings
            )
            assert random_mrr(n, m) == pytest.approx(float(total / len(orderings)), abs=1e-15), (
                n,
                m,
            )


def test_mrr_random_is_the_mrr_random_scores_get_on_average():
    """Queries with 1 to 4 matches among 12 items: the MRR of i.i.d. random scores (no ties) over
    many queries approaches the mean of each query's own random_mrr."""
    rng = np.random.default_rng(0)
    n_queries, n_gallery = 20_000, 12
    counts = rng.integers(1, 5, n_queries)
    matches = np.zeros((n_queries, n_gallery), dtype=bool)
    for row, m in enumerate(counts):
        matches[row, rng.choice(n_gallery, m, replace=False)] = True
    scores = rng.standard_normal((n_queries, n_gallery))
    metrics = retrieval_metrics(
        torch.from_numpy(scores), torch.from_numpy(matches), ks=(1,), map_k=1
    )
    expected = np.mean([random_mrr(n_gallery, int(m)) for m in counts])
    assert metrics["MRR_random"] == pytest.approx(expected, rel=1e-12)
    # The standard deviation of 1/rank is below 0.5, so 5 standard errors are < 0.018.
    assert abs(metrics["MRR"] - expected) < 5 * 0.5 / math.sqrt(n_queries)
    assert mean_random_mrr(torch.from_numpy(matches)) == metrics["MRR_random"]


def test_random_mrr_refuses_impossible_counts():
    for n, m in ((3, 0), (2, 3), (0, 0)):
        with pytest.raises(ValueError, match="1 <= n_matches <= n_gallery"):
            random_mrr(n, m)
    with pytest.raises(ValueError, match="no query has a match"):
        mean_random_mrr(torch.zeros(2, 3, dtype=torch.bool))
