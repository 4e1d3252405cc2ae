"""Timbre trend probe (timbre-semantics §2.3): the classification rule at every boundary, the two
readings (three levels, the default, and with the origin) and their 69 / 125 disagreement, Δ / slope /
Spearman against hand-computed values with a fake effect and a fake embedder whose cosines are
chosen, the release protocol's statistics (lindseydeng/timbre-semantics-release) on hand-made Δ,
aggregation over references, embedding once and rendering lazily, tables, figures,
validation, the Hydra recipe and (if humanclap.dsp exists) one run of the real effects on the tiny model."""

from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter

import numpy as np
import pytest
import scipy.stats
import soundfile as sf
import torch

import humanclap.probes.timbre.trend as timbre_trend
from humanclap.data.pairs import DataError
from humanclap.data.readers.audealize import (
    DEMO_EQ_FILE,
    DEMO_REVERB_FILE,
    AudealizeDescriptor,
    read_audealize_descriptors,
)
from humanclap.data.synthetic.reference_clip import ReferenceAudioStore, reference_clip
from humanclap.errors import NonFiniteError
from humanclap.probes.base import Table
from humanclap.probes.cache import AudioRef, EmbeddingCache
from humanclap.probes.timbre.trend import (
    RELEASE_AMOUNTS,
    TREND_CODES,
    TimbreTrendProbe,
    classify_trend,
    trend_statistics,
    trend_symbol,
)
from humanclap.probes.timbre.trend_release import (
    release_metrics,
    release_prompt,
    trajectory_statistics,
)

AMOUNTS = (0.3, 0.6, 1.0)
EFFECT_CODES = {"eq": 1, "reverb": 2}


# -- the classification rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "deltas, tolerance, include_origin, expected",
    [
        # 3 levels, tolerance 0, with the origin (0, 0) in front
        ([0.1, 0.2, 0.3], 0.0, True, "up"),
        ([-0.1, -0.2, -0.3], 0.0, True, "down"),
        ([0.1, 0.2, 0.1], 0.0, True, "peak"),
        ([0.1, 0.1, 0.1], 0.0, True, "up"),  # rise from the origin, then a plateau
        ([0.0, 0.0, 0.0], 0.0, True, "flat"),  # all equal
        ([0.1, -0.1, 0.2], 0.0, True, "flat"),  # zig-zag: inconsistent
        ([-0.1, -0.05, -0.02], 0.0, True, "flat"),  # valley: falls then rises
        ([0.1, 0.05], 0.0, True, "peak"),
        # without the origin the same values are a plain fall
        ([0.1, 0.05], 0.0, False, "down"),
        ([0.1, 0.2], 0.0, False, "up"),
        ([0.2, 0.2], 0.0, False, "flat"),
        ([0.1, 0.3, 0.2], 0.0, False, "peak"),
        # one level (origin + 1 point)
        ([0.25], 0.25, True, "flat"),  # exactly at tolerance: no change
        ([0.25 + 1e-9], 0.25, True, "up"),  # just above
        ([0.25 - 1e-9], 0.25, True, "flat"),  # just below
        ([-0.25], 0.25, True, "flat"),
        ([-0.25 - 1e-9], 0.25, True, "down"),
        # 2 levels at the tolerance boundary
        (
            [0.25, 0.5],
            0.25,
            True,
            "up",
        ),  # first step exactly at tolerance ignored, the second counts
        ([0.5, 0.25], 0.25, True, "up"),  # the fall is exactly the tolerance: no change
        ([0.5, 0.25 - 1e-9], 0.25, True, "peak"),  # just beyond: a fall
        ([0.5, 0.25 + 1e-9], 0.25, True, "up"),
        # changes within tolerance add up against the last significant value
        ([0.1, 0.2, 0.3], 0.15, True, "up"),  # steps of 0.1 < tolerance, but 0 -> 0.2 is a rise
        ([0.5, 0.45, 0.6], 0.1, True, "up"),  # the small dip is ignored
        ([0.05, -0.05, 0.05], 0.1, True, "flat"),  # everything within tolerance
        # 4 levels
        ([0.1, 0.2, 0.3, 0.4], 0.0, True, "up"),
        ([-0.1, -0.2, -0.2, -0.4], 0.0, True, "down"),
        ([0.1, 0.3, 0.2, 0.1], 0.0, True, "peak"),
        ([0.3, 0.3, 0.2, 0.1], 0.0, True, "peak"),  # plateau at the top
        ([0.1, 0.3, 0.2, 0.4], 0.0, True, "flat"),  # rise, fall, rise
        ([0.1, 0.3, 0.2, 0.4], 0.0, False, "flat"),
        ([0.4, 0.3, 0.2, 0.1], 0.0, False, "down"),
        ([0.4, 0.3, 0.2, 0.1], 0.0, True, "peak"),  # with the origin: up to 0.4, then down
    ],
)
def test_classify_trend(deltas, tolerance, include_origin, expected):
    assert classify_trend(deltas, tolerance, include_origin) == expected


@pytest.mark.parametrize(
    "deltas, expected",
    [
        # the paper's reading, the default: Δ at the three levels as they stand
        ([0.1, 0.2, 0.3], "up"),
        ([-0.3, -0.2, -0.1], "up"),  # with the origin: falls to -0.3, then rises (a valley: flat)
        ([0.3, 0.2, 0.1], "down"),  # with the origin: rises to 0.3, then falls (peak)
        ([0.1, 0.3, 0.2], "peak"),
        ([-0.1, 0.1, -0.2], "peak"),  # with the origin: fall, rise, fall (flat)
        ([0.1, 0.1, 0.1], "flat"),  # a constant Δ: no change (with the origin: up)
        ([-0.2, -0.2, -0.2], "flat"),  # (with the origin: down)
        ([0.2, 0.1, 0.3], "flat"),  # a valley
    ],
)
def test_default_classifies_the_three_levels_without_the_origin(deltas, expected):
    assert classify_trend(deltas) == expected == classify_trend(deltas, 0.0, False)
    assert trend_statistics(AMOUNTS, deltas)["trend"] == expected


def test_the_two_readings_disagree_on_69_of_125_grid_triples():
    """docs/probes.md#trend-rule: Δ at each of the three levels from the grid −0.2, −0.1, 0, 0.1, 0.2
    (5³ = 125 triples; the count depends only on the order of the values and 0, so any grid of two
    negative values, 0 and two positive ones symmetric about 0 gives the same), tolerance 0."""
    grid = (-0.2, -0.1, 0.0, 0.1, 0.2)
    triples = list(itertools.product(grid, repeat=3))
    assert len(triples) == 125
    changes = Counter(
        (classify_trend(t, 0.0, True), classify_trend(t, 0.0, False))
        for t in triples
        if classify_trend(t, 0.0, True) != classify_trend(t, 0.0, False)
    )
    assert sum(changes.values()) == 69
    # (with the origin, three levels only): how many triples move from one class to the other
    assert changes == {
        ("peak", "down"): 23,  # e.g. (0.1, 0.0, -0.1): with the origin it first rises
        ("flat", "up"): 23,  # e.g. (-0.2, -0.1, 0.0): with the origin, a valley
        ("flat", "peak"): 19,  # e.g. (-0.1, 0.1, 0.0): fall, rise, fall
        ("up", "flat"): 2,  # (0.1, 0.1, 0.1), (0.2, 0.2, 0.2)
        ("down", "flat"): 2,  # (-0.1, -0.1, -0.1), (-0.2, -0.2, -0.2)
    }
    agree = Counter(
        classify_trend(t) for t in triples if classify_trend(t, 0.0, True) == classify_trend(t)
    )
    assert sum(agree.values()) == 56 and agree == {"flat": 31, "peak": 11, "up": 7, "down": 7}


def test_non_finite_delta_is_flat_with_a_warning():
    with pytest.warns(RuntimeWarning, match="non-finite"):
        assert classify_trend([0.1, math.nan, 0.3]) == "flat"
    with pytest.warns(RuntimeWarning):
        assert classify_trend([math.inf]) == "flat"
    stats = None
    with pytest.warns(RuntimeWarning):
        stats = trend_statistics(AMOUNTS, [0.1, math.nan, 0.3])
    assert stats["trend"] == "flat" and math.isnan(stats["slope"]) and math.isnan(stats["spearman"])
    assert math.isnan(stats["pearson"])


@pytest.mark.parametrize("tolerance", [-0.1, math.nan, math.inf])
def test_classify_trend_refuses_bad_tolerance(tolerance):
    with pytest.raises(ValueError, match="tolerance"):
        classify_trend([0.1], tolerance)


def test_classify_trend_needs_values():
    with pytest.raises(ValueError, match="no Δ"):
        classify_trend([])


def test_trend_statistics_against_hand_values():
    # The default, the three levels: points (0.3, 0.1), (0.6, 0.2), (1.0, 0.15): x̄ = 0.6333…, ȳ = 0.15,
    # dx = (-1/3, -1/30, 11/30), dy = (-0.05, 0.05, 0): Σ dx·dy = 0.015, Σ dx² = 222/900
    # -> slope 13.5 / 222 = 0.060810…; ranks of Δ 1, 3, 2 -> ρ = 1 - 6·2/24 = 0.5;
    # r = 0.015 / sqrt(222/900 · 0.005) = 0.603990…
    stats = trend_statistics(AMOUNTS, [0.1, 0.2, 0.15])
    assert stats["slope"] == pytest.approx(13.5 / 222, abs=1e-12)
    assert stats["spearman"] == pytest.approx(0.5, abs=1e-12)
    assert stats["pearson"] == pytest.approx(0.015 / math.sqrt(222 / 900 * 0.005), abs=1e-12)
    assert stats["trend"] == "peak" and stats["deltas"] == [0.1, 0.2, 0.15]
    assert stats["slope"] == pytest.approx(np.polyfit(AMOUNTS, [0.1, 0.2, 0.15], 1)[0], abs=1e-12)
    assert stats["spearman"] == pytest.approx(
        scipy.stats.spearmanr(AMOUNTS, [0.1, 0.2, 0.15]).statistic
    )
    # With the origin: points (0, 0), (0.3, 0.1), (0.6, 0.2), (1.0, 0.15): x̄ = 0.475, ȳ = 0.1125,
    # Σ dx·dy = 0.08625, Σ dx² = 0.5475 -> slope 0.157534...; ranks of Δ 1, 2, 4, 3 -> ρ = 1 - 6·2/60 = 0.8.
    stats = trend_statistics(AMOUNTS, [0.1, 0.2, 0.15], include_origin=True)
    assert stats["slope"] == pytest.approx(0.08625 / 0.5475, abs=1e-12)
    assert stats["spearman"] == pytest.approx(0.8, abs=1e-12)
    assert stats["trend"] == "peak" and stats["deltas"] == [0.1, 0.2, 0.15]
    # constant Δ: slope 0, ρ undefined (NaN, no warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = trend_statistics(AMOUNTS, [0.0, 0.0, 0.0])
    assert stats["slope"] == 0.0 and math.isnan(stats["spearman"]) and stats["trend"] == "flat"


# -- the release protocol (lindseydeng/timbre-semantics-release, analysis.py) -----------------------

# Δ at the release's strengths 0.2 … 1.0: x̄ = 0.6, dx = (-0.4, -0.2, 0, 0.2, 0.4), Σ dx² = 0.4.
T_UP = [0.1, 0.2, 0.3, 0.4, 0.5]  # slope 0.5, final 0.5, r = ρ = 1
# ȳ = 0.08, dy = (0.22, 0.02, -0.08, -0.18, 0.02): Σ dx·dy = -0.12 -> slope -0.3; Σ dy² = 0.088;
# ranks of Δ 5, 3.5, 2, 1, 3.5: Σ drank_x·drank_y = -5.5, Σ drank_y² = 9.5, Σ drank_x² = 10
T_FALL_POSITIVE_END = [0.3, 0.1, 0.0, -0.1, 0.1]
# ȳ = -0.13, dy = (-0.17, -0.07, 0.03, 0.13, 0.08): Σ dx·dy = 0.14 -> slope 0.35; Σ dy² = 0.058;
# ranks 1, 2, 3, 5, 4: Σ d² = 2 -> ρ = 1 - 6·2/120 = 0.9
T_RISE_NEGATIVE_END = [-0.3, -0.2, -0.1, 0.0, -0.05]
T_CONSTANT = [0.1] * 5  # slope 0 (not positive), final 0.1 > 0, r and ρ undefined (NaN)
R_FALL = -0.12 / math.sqrt(0.4 * 0.088)
RHO_FALL = -5.5 / math.sqrt(10 * 9.5)
R_RISE = 0.14 / math.sqrt(0.4 * 0.058)


@pytest.mark.parametrize(
    "deltas, expected",
    [
        (T_UP, (0.5, 0.5, 1.0, 1.0, 1.0, 1.0)),
        (T_FALL_POSITIVE_END, (-0.3, 0.1, R_FALL, RHO_FALL, 0.0, 1.0)),
        (T_RISE_NEGATIVE_END, (0.35, -0.05, R_RISE, 0.9, 1.0, 0.0)),
        (T_CONSTANT, (0.0, 0.1, math.nan, math.nan, 0.0, 1.0)),
        ([0.0] * 5, (0.0, 0.0, math.nan, math.nan, 0.0, 0.0)),  # final Δ = 0 is not positive
    ],
)
def test_release_trajectory_statistics(deltas, expected):
    stats = trajectory_statistics(RELEASE_AMOUNTS, deltas)
    keys = ("slope", "final_delta", "pearson_r", "spearman_rho", "positive_slope")
    assert [stats[k] for k in (*keys, "positive_final_delta")] == pytest.approx(
        expected, abs=1e-12, nan_ok=True
    )
    assert np.isclose(stats["slope"], np.polyfit(RELEASE_AMOUNTS, deltas, 1)[0], atol=1e-15)


def test_release_constant_delta_has_slope_exactly_zero():
    """The deliberate difference: np.polyfit (the release) gives a constant Δ a round-off slope."""
    for value in (0.1, -0.3, 0.05, 0.1000000015):
        stats = trajectory_statistics(RELEASE_AMOUNTS, [value] * 5)
        assert stats["slope"] == 0.0 and stats["positive_slope"] == 0.0


def test_release_non_finite_delta_is_not_positive_and_left_out_of_means():
    stats = trajectory_statistics(RELEASE_AMOUNTS, [0.1, math.nan, 0.2, 0.3, 0.4])
    assert math.isnan(stats["slope"]) and math.isnan(stats["pearson_r"])
    assert stats["positive_slope"] == 0.0 and stats["positive_final_delta"] == 1.0
    metrics = release_metrics(
        RELEASE_AMOUNTS, {"eq": {"warm": [[0.1, math.nan, 0.2, 0.3, 0.4], T_UP]}}
    )
    assert metrics["eq/mean_slope"] == pytest.approx(0.5)
    assert metrics["mean_pearson_r"] == pytest.approx(1.0)
    assert metrics["eq/positive_slope_rate"] == 0.5 and metrics["eq/all_source_consistency"] == 0.0


# Two sources (references) per descriptor; analysis.py pools trajectories and descriptors.
RELEASE_DELTAS = {
    "eq": {
        "warm": [T_UP, T_RISE_NEGATIVE_END],  # both slopes positive: consistent
        "bright": [T_FALL_POSITIVE_END, T_CONSTANT],  # neither
    },
    "reverb": {"echo": [T_CONSTANT, T_UP]},  # one of two: not consistent
}
RELEASE_EXPECTED = {
    # eq: trajectories T_UP, T_RISE_NEGATIVE_END, T_FALL_POSITIVE_END, T_CONSTANT
    "eq/positive_slope_rate": 2 / 4,
    "eq/positive_final_delta_rate": 3 / 4,
    "eq/mean_slope": (0.5 + 0.35 - 0.3 + 0.0) / 4,
    "eq/mean_final_delta": (0.5 - 0.05 + 0.1 + 0.1) / 4,
    "eq/mean_pearson_r": (1.0 + R_RISE + R_FALL) / 3,  # the constant's NaN left out
    "eq/mean_spearman_rho": (1.0 + 0.9 + RHO_FALL) / 3,
    "eq/all_source_consistency": 1 / 2,
    "eq/warm/all_source_consistent": 1.0,
    "eq/bright/all_source_consistent": 0.0,
    # reverb: T_CONSTANT, T_UP
    "reverb/positive_slope_rate": 1 / 2,
    "reverb/positive_final_delta_rate": 2 / 2,
    "reverb/mean_slope": 0.5 / 2,
    "reverb/mean_final_delta": (0.1 + 0.5) / 2,
    "reverb/mean_pearson_r": 1.0,
    "reverb/mean_spearman_rho": 1.0,
    "reverb/all_source_consistency": 0.0,
    "reverb/echo/all_source_consistent": 0.0,
    # over both effects: 6 trajectories, 3 (effect, descriptor) pairs
    "positive_slope_rate": 3 / 6,
    "positive_final_delta_rate": 5 / 6,
    "all_source_consistency": 1 / 3,
    "mean_pearson_r": (1.0 + R_RISE + R_FALL + 1.0) / 4,
    "mean_spearman_rho": (1.0 + 0.9 + RHO_FALL + 1.0) / 4,
}


def test_release_metrics_against_hand_values():
    metrics = release_metrics(RELEASE_AMOUNTS, RELEASE_DELTAS)
    assert set(metrics) == set(RELEASE_EXPECTED)
    assert metrics == pytest.approx(RELEASE_EXPECTED, abs=1e-12)
    # one source: consistency is the positive-slope rate of the descriptors
    one = release_metrics(RELEASE_AMOUNTS, {"eq": {"warm": [T_UP], "bright": [T_CONSTANT]}})
    assert one["eq/all_source_consistency"] == one["eq/positive_slope_rate"] == 0.5


def test_release_prompt_is_a_sound_with_an_for_echo_only():
    assert release_prompt("warm") == "a warm sound"
    assert release_prompt("echo") == "an echo sound"
    assert release_prompt("airy") == "a airy sound"  # the release's rule names echo, not vowels


# -- fakes ----------------------------------------------------------------------------------------


class CodeStore:
    """Reference clips whose samples all equal a code (1, 2, ...); counts loads by sample rate."""

    def __init__(self, codes: dict[str, int], samples_per_second: int = 100):
        self.codes = codes
        self.samples_per_second = samples_per_second
        self.loads: Counter = Counter()

    def load(self, key: str, sample_rate: int) -> np.ndarray:
        self.loads[(key, sample_rate)] += 1
        return np.full(
            max(1, sample_rate // self.samples_per_second), self.codes[key], dtype=np.float32
        )


class CodeEffect:
    """Adds a known offset per descriptor row i and amount j: 1000·effect + 100·(i+1) + 10·(j+1)."""

    def __init__(self, name: str, sample_rate: int = 48_000):
        self.name, self.sample_rate = name, sample_rate
        self.calls: list[tuple[torch.Tensor, list[float], int]] = []

    def __call__(self, wave, settings, amounts):
        self.calls.append((settings.clone(), list(amounts), wave.shape[0]))
        d, n = settings.shape[0], len(amounts)
        offsets = (
            1000 * EFFECT_CODES[self.name]
            + 100 * torch.arange(1, d + 1)[:, None]
            + 10 * torch.arange(1, n + 1)[None, :]
        ).float()
        return wave[None, None, :] + offsets[:, :, None]


class ChosenCosines:
    """Embedder whose cosines are set by the test.

    Text t (a prompt) is the basis vector e_t. The original of reference r is Σ_t orig[r][t]·e_t
    (+ a spare axis for unit norm), so sim_orig = orig[r][t]. The clip of reference r manipulated
    by effect e with its descriptor i at amount j is c·e_t + √(1-c²)·e_spare with
    c = orig[r][t] + delta[(r, e, word)][j], so Δ is exactly what the test chose (up to float32).
    """

    sample_rate = 48_000

    def __init__(
        self,
        words: dict[str, list[str]],
        orig: dict[int, dict[str, float]],
        delta: dict[tuple[int, str, str], list[float]],
        prompt=lambda word: word,
    ):
        self.words = words
        self.texts = sorted({w for ws in words.values() for w in ws})
        self.word_of = {prompt(w): w for w in self.texts}  # the probe's text -> its descriptor
        self.orig, self.delta = orig, delta
        self.dim = len(self.texts) + 2
        self.audio_items: Counter = Counter()
        self.text_items: Counter = Counter()
        self.nan_words: set[str] = set()

    def _axis(self, text: str) -> torch.Tensor:
        v = torch.zeros(self.dim, dtype=torch.float64)
        v[self.texts.index(text)] = 1.0
        return v

    def _audio(self, code: int) -> torch.Tensor:
        ref, effect, i, j = code % 10, code // 1000, (code // 100) % 10 - 1, (code // 10) % 10 - 1
        self.audio_items[(ref, effect, i, j)] += 1
        v = torch.zeros(self.dim, dtype=torch.float64)
        if effect == 0:  # an original
            for text, c0 in self.orig[ref].items():
                v += c0 * self._axis(text)
            v[-2] = math.sqrt(1 - float((v * v).sum()))
            return v
        name = {c: e for e, c in EFFECT_CODES.items()}[effect]
        word = self.words[name][i]
        c = self.orig[ref][word] + self.delta[(ref, name, word)][j]
        v = c * self._axis(word)
        v[-1] = math.sqrt(1 - c * c)
        if word in self.nan_words:
            v[:] = math.nan
        return v

    def embed_audio(self, waves, batch_size=32):
        return torch.stack([self._audio(int(round(float(w[0])))) for w in waves]).float()

    def embed_text(self, texts, batch_size=64):
        self.text_items.update(texts)
        return torch.stack([self._axis(self.word_of[t]) for t in texts]).float()


def descriptor(word: str, effect: str, value: float = 0.5) -> AudealizeDescriptor:
    return AudealizeDescriptor(word, (value,) * (40 if effect == "eq" else 6), 10, 0.5, "English")


def make_probe(words, references=("r1",), **kwargs):
    store = CodeStore({name: i + 1 for i, name in enumerate(references)})
    effects = {e: CodeEffect(e) for e in words}
    descriptors = {
        e: [descriptor(w, e, value=i / 10) for i, w in enumerate(ws)] for e, ws in words.items()
    }
    probe = TimbreTrendProbe(
        descriptors, effects, references={r: AudioRef(store, r) for r in references}, **kwargs
    )
    return probe, effects, store


# One reference: Δ per descriptor chosen by hand (the trend of each in the comment).
WORDS = {"eq": ["warm", "bright"], "reverb": ["echoey", "dry"]}
ORIG = {1: {"warm": 0.2, "bright": 0.5, "echoey": 0.1, "dry": 0.3}}
DELTA = {
    (1, "eq", "warm"): [0.1, 0.2, 0.15],  # peak
    (1, "eq", "bright"): [-0.1, -0.2, -0.4],  # down
    (1, "reverb", "echoey"): [0.1, 0.2, 0.4],  # up
    (1, "reverb", "dry"): [0.0, 0.0, 0.0],  # flat
}


def test_delta_slope_spearman_class_with_chosen_cosines():
    probe, effects, _ = make_probe(WORDS)
    metrics = probe.run(ChosenCosines(WORDS, ORIG, DELTA)).metrics
    assert (
        metrics["n_references"] == 1
        and metrics["eq/n_descriptors"] == 2
        and metrics["reverb/n_descriptors"] == 2
    )
    assert {t: metrics[f"eq/{t}"] for t in ("up", "down", "peak", "flat")} == {
        "up": 0,
        "down": 1,
        "peak": 1,
        "flat": 0,
    }
    assert {t: metrics[f"reverb/{t}"] for t in ("up", "down", "peak", "flat")} == {
        "up": 1,
        "down": 0,
        "peak": 0,
        "flat": 1,
    }
    for (_, effect, word), deltas in DELTA.items():
        for amount, delta in zip(AMOUNTS, deltas):
            assert metrics[f"{effect}/{word}/delta@{amount}"] == pytest.approx(delta, abs=1e-6)
        assert metrics[f"{effect}/{word}/sim_orig"] == pytest.approx(ORIG[1][word], abs=1e-6)
    assert {k for k in metrics if k.startswith("eq/warm/")} == {
        "eq/warm/delta@0.3",
        "eq/warm/delta@0.6",
        "eq/warm/delta@1.0",
        "eq/warm/slope",
        "eq/warm/spearman",
        "eq/warm/class",
        "eq/warm/sim_orig",
    }
    # warm: (.3,.1) (.6,.2) (1,.15) -> slope 13.5 / 222, ρ = 0.5 (see above)
    assert metrics["eq/warm/slope"] == pytest.approx(13.5 / 222, abs=1e-5)
    assert metrics["eq/warm/spearman"] == pytest.approx(0.5)
    assert metrics["eq/warm/class"] == TREND_CODES["peak"] == 2
    # bright: (.3,-.1) (.6,-.2) (1,-.4): ȳ = -0.7/3, Σ dx·dy = -96/900, Σ dx² = 222/900 -> slope
    # -96/222, ρ = -1
    assert metrics["eq/bright/slope"] == pytest.approx(-96 / 222, abs=1e-5)
    assert metrics["eq/bright/spearman"] == pytest.approx(-1.0)
    assert metrics["eq/bright/class"] == -1
    assert metrics["reverb/echoey/class"] == 1
    assert metrics["reverb/dry/class"] == 0 and metrics["reverb/dry/slope"] == 0.0
    assert math.isnan(metrics["reverb/dry/spearman"])
    assert not any(k.startswith("r1/") for k in metrics)  # one reference: no per-reference copies
    assert "positive_slope_rate" not in metrics and "eq/mean_slope" not in metrics  # paper protocol
    # The effect saw every descriptor's settings and the amounts in one call per effect.
    ((settings, amounts, _),) = effects["eq"].calls
    assert amounts == list(AMOUNTS) and settings.shape == (2, 40)
    assert settings.dtype == torch.float64 and settings[:, 0].tolist() == [0.0, 0.1]


def test_counts_are_summed_over_two_references_and_descriptors_use_the_mean_delta():
    words = {"eq": ["warm", "bright"], "reverb": ["echoey"]}
    orig = {
        1: {"warm": 0.2, "bright": 0.5, "echoey": 0.1},
        2: {"warm": 0.25, "bright": 0.4, "echoey": 0.3},
    }
    delta = {
        (1, "eq", "warm"): [0.1, 0.2, 0.3],
        (2, "eq", "warm"): [-0.1, -0.2, -0.3],  # up + down -> mean flat
        (1, "eq", "bright"): [-0.1, -0.2, -0.3],
        (2, "eq", "bright"): [-0.05, -0.1, -0.2],  # down, down
        (1, "reverb", "echoey"): [0.1, 0.2, 0.3],
        (2, "reverb", "echoey"): [0.0, 0.0, 0.0],  # up, flat -> mean up
    }
    probe, _, _ = make_probe(words, references=("r1", "r2"), tolerance=1e-5)
    metrics = probe.run(ChosenCosines(words, orig, delta)).metrics
    assert metrics["n_references"] == 2
    assert [metrics[f"eq/{t}"] for t in ("up", "down", "peak", "flat")] == [1, 3, 0, 0]
    assert [metrics[f"reverb/{t}"] for t in ("up", "down", "peak", "flat")] == [1, 0, 0, 1]
    assert [metrics[f"r1/eq/{t}"] for t in ("up", "down", "peak", "flat")] == [1, 1, 0, 0]
    assert [metrics[f"r2/eq/{t}"] for t in ("up", "down", "peak", "flat")] == [0, 2, 0, 0]
    assert metrics["r2/reverb/flat"] == 1 and metrics["r1/reverb/up"] == 1
    # per reference, per descriptor
    assert metrics["r2/eq/warm/delta@0.6"] == pytest.approx(-0.2, abs=1e-6)
    assert metrics["r2/eq/warm/class"] == -1 and metrics["r1/eq/warm/class"] == 1
    assert metrics["r2/eq/warm/sim_orig"] == pytest.approx(0.25, abs=1e-6)
    # the mean over references
    assert (
        metrics["eq/warm/delta@1.0"] == pytest.approx(0.0, abs=1e-6)
        and metrics["eq/warm/class"] == 0
    )
    assert (
        metrics["eq/bright/delta@1.0"] == pytest.approx(-0.25, abs=1e-6)
        and metrics["eq/bright/class"] == -1
    )
    assert (
        metrics["reverb/echoey/delta@0.3"] == pytest.approx(0.05, abs=1e-6)
        and metrics["reverb/echoey/class"] == 1
    )
    assert metrics["eq/warm/sim_orig"] == pytest.approx(0.225, abs=1e-6)


def test_release_protocol_on_the_probe_with_chosen_cosines():
    """protocol=release: five strengths, "a <word> sound" / "an echo sound", the release statistics
    of every (reference, effect, descriptor) trajectory (the hand values of RELEASE_EXPECTED)."""
    words = {"eq": ["warm", "bright"], "reverb": ["echo"]}
    orig = {
        1: {"warm": 0.2, "bright": 0.5, "echo": 0.1},
        2: {"warm": 0.25, "bright": 0.4, "echo": 0.3},
    }
    delta = {
        (r, effect, word): sequences[r - 1]
        for effect, by_word in RELEASE_DELTAS.items()
        for word, sequences in by_word.items()
        for r in (1, 2)
    }
    probe, effects, _ = make_probe(words, references=("r1", "r2"), protocol="release")
    assert probe.amounts == RELEASE_AMOUNTS == (0.2, 0.4, 0.6, 0.8, 1.0)
    assert probe.inputs().texts == ["a warm sound", "a bright sound", "an echo sound"]
    assert probe.include_origin is False
    result = probe.run(ChosenCosines(words, orig, delta, prompt=release_prompt))
    metrics = result.metrics
    assert effects["eq"].calls[0][1] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert {k: metrics[k] for k in RELEASE_EXPECTED} == pytest.approx(RELEASE_EXPECTED, abs=1e-6)
    # the per-descriptor metrics gain Pearson r; per reference too
    assert metrics["r1/eq/warm/pearson"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["r2/eq/warm/pearson"] == pytest.approx(R_RISE, abs=1e-6)
    assert metrics["r2/eq/warm/slope"] == pytest.approx(0.35, abs=1e-6)
    assert metrics["r2/eq/warm/delta@1.0"] == pytest.approx(-0.05, abs=1e-6)
    assert metrics["r1/reverb/echo/class"] == 0 and metrics["r2/reverb/echo/class"] == 1
    # the release table: rates as percentages (as its paper.py prints them), r and ρ to 3 digits
    table = result.tables[
        "Timbre trends — release statistics (timbre-semantics-release Tables 1-2)"
    ]
    rendered = table.render({"m": metrics}).splitlines()
    assert rendered[0].startswith(
        "| model | overall pos. slope | overall pos. final Δ | overall consistency | overall mean r "
    )
    assert "| EQ consistency | EQ mean r | EQ mean ρ | Reverb pos. slope |" in rendered[0]
    assert rendered[2] == (
        "| m | 50.0% | 83.3% | 33.3% | 0.570 | 0.584 | 50.0% | 75.0% | 50.0% | 0.427 | 0.445 "
        "| 50.0% | 100.0% | 0.0% | 1.000 | 1.000 |"
    )
    # an explicit template or amounts override the protocol's
    probe, _, _ = make_probe(words, protocol="release", template="{descriptor}", amounts=[0.5, 1.0])
    assert probe.prompt("echo") == "echo" and probe.amounts == (0.5, 1.0)


def test_each_clip_is_embedded_once_and_rendered_lazily():
    probe, effects, store = make_probe(WORDS)
    embedder = ChosenCosines(WORDS, ORIG, DELTA)
    cache = EmbeddingCache(embedder, batch_size=2)  # several batches per (effect, reference)
    cache.prefetch([probe.inputs()])
    first = probe.run(cache).metrics
    assert [len(e.calls) for e in effects.values()] == [
        1,
        1,
    ]  # one batched render per (effect, reference)
    assert store.loads[("r1", 48_000)] == 3  # the original (prefetch) + once per effect
    second = probe.run(cache).metrics
    assert [len(e.calls) for e in effects.values()] == [1, 1]  # everything cached: nothing rendered
    assert store.loads[("r1", 48_000)] == 3
    assert set(embedder.audio_items.values()) == {1}  # every clip embedded once
    assert (
        len(embedder.audio_items) == 1 + 2 * 2 * 3
    )  # original + 2 effects x 2 descriptors x 3 amounts
    assert set(embedder.text_items.values()) == {1} and len(embedder.text_items) == 4
    assert cache.embedded == {"audio": 13, "text": 4}
    assert first == pytest.approx(second, nan_ok=True)
    probe.run(embedder)  # an Embedder: a fresh cache, rendered again
    assert [len(e.calls) for e in effects.values()] == [2, 2]


def test_effect_output_is_resampled_to_the_embedder_rate():
    class Lengths:
        sample_rate = 48_000

        def __init__(self):
            self.lengths: list[int] = []

        def embed_audio(self, waves, batch_size=32):
            self.lengths += [len(w) for w in waves]
            return torch.nn.functional.normalize(torch.ones(len(waves), 3), dim=1)

        def embed_text(self, texts, batch_size=64):
            return torch.nn.functional.normalize(torch.ones(len(texts), 3), dim=1)

    store = CodeStore({"r": 1})
    effect = CodeEffect("eq", sample_rate=24_000)
    probe = TimbreTrendProbe(
        {"eq": [descriptor("warm", "eq")]}, {"eq": effect}, references={"r": AudioRef(store, "r")}
    )
    embedder = Lengths()
    metrics = probe.run(embedder).metrics
    assert effect.calls[0][2] == 240  # the reference was loaded at the effect's rate
    assert embedder.lengths == [
        480,
        480,
        480,
        480,
    ]  # original at 48 kHz, 3 manipulated clips resampled
    assert metrics["eq/warm/delta@1.0"] == pytest.approx(0.0, abs=1e-6) and metrics["eq/flat"] == 1


def test_nan_embeddings_are_refused_naming_the_manipulated_input():
    """Non-finite embeddings mean a broken model: refused by the shared cache, not reported as flat."""
    probe, _, _ = make_probe(WORDS)
    embedder = ChosenCosines(WORDS, ORIG, DELTA)
    embedder.nan_words = {"warm"}
    with pytest.raises(
        NonFiniteError,
        match=r"non-finite embeddings \(NaN or inf\) for 3 of 6 audio inputs "
        r"\(e\.g\. \('timbre_trend', 'eq', 'warm', 0\.3, 'r1'",
    ):
        probe.run(embedder)


# -- inputs, tables, figures ----------------------------------------------------------------------


def test_inputs_list_references_and_prompts_once():
    words = {"eq": ["warm", "muffled"], "reverb": ["muffled"]}
    probe, _, store = make_probe(words, references=("r1", "r2"), template="a {descriptor} sound")
    inputs = probe.inputs()
    assert inputs.audio == [AudioRef(store, "r1"), AudioRef(store, "r2")]
    assert inputs.texts == ["a warm sound", "a muffled sound"]
    default = TimbreTrendProbe({"eq": [descriptor("warm", "eq")]}, {"eq": CodeEffect("eq")})
    (ref,) = default.inputs().audio
    assert ref == AudioRef(ReferenceAudioStore(4.0, 0), "reference")  # the generated reference


def test_tables_show_class_codes_as_arrows_and_counts_as_integers():
    probe, _, _ = make_probe(WORDS)
    result = probe.run(ChosenCosines(WORDS, ORIG, DELTA))
    tables = result.tables
    counts = tables["Timbre trends — class counts (timbre-semantics Tables 1-2)"].render(
        {"m": result.metrics}
    )
    assert "| m | 0 | 1 | 1 | 0 | 2 | 1 | 0 | 0 | 1 | 2 |" in counts
    eq_table = tables["EQ descriptor trends (timbre-semantics Table 1)"].render(
        {"m": result.metrics}
    )
    assert eq_table.splitlines()[0] == "| model | warm | bright |"
    assert "| m | ∧ | ↓ |" in eq_table
    reverb_table = tables["Reverb descriptor trends (timbre-semantics Table 2)"].render(
        {"m": result.metrics, "other": {}}
    )
    assert "| m | ↑ | – |" in reverb_table and "| other | – | – |" in reverb_table
    assert [trend_symbol(c) for c in (1.0, -1.0, 2.0, 0.0, 7.0)] == ["↑", "↓", "∧", "–", "7"]


def test_table_formats_are_optional_and_match_key_suffixes():
    metrics = {"n": 4.0, "srcc": 0.5, "eq/warm/class": 1.0, "class_x": 1.0}
    plain = Table([("n", "n"), ("SRCC", "srcc"), ("class", "eq/warm/class")], note="note")
    assert (
        plain.render({"m": metrics}).splitlines()[2] == "| m | 4 | 0.500 | 1.000 |"
    )  # unchanged default
    formatted = Table(
        [("SRCC", "srcc"), ("class", "eq/warm/class"), ("x", "class_x"), ("gone", "eq/dark/class")],
        formats={"class": trend_symbol},
    )
    assert formatted.render({"m": metrics}).splitlines()[2] == "| m | 0.500 | ↑ | 1.000 | – |"


def test_figures_build_per_effect():
    probe, _, _ = make_probe(WORDS)
    result = probe.run(ChosenCosines(WORDS, ORIG, DELTA))
    assert set(result.figures) == {"eq_trends", "reverb_trends"}
    figure = result.figures["eq_trends"]()
    (axes,) = figure.axes
    lines = [line for line in axes.get_lines() if len(line.get_xdata()) == 3]  # the 3 levels
    assert len(lines) == 2 and [list(line.get_xdata()) for line in lines] == [list(AMOUNTS)] * 2
    assert {t.get_text() for t in axes.texts} == {"warm", "bright"}
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["↓ down (1)", "∧ peak (1)"]
    figure.clear()
    probe, _, _ = make_probe(WORDS, include_origin=True)
    figure = probe.run(ChosenCosines(WORDS, ORIG, DELTA)).figures["eq_trends"]()
    lines = [line for line in figure.axes[0].get_lines() if len(line.get_xdata()) == 4]
    assert len(lines) == 2 and list(lines[0].get_xdata()) == [0.0, *AMOUNTS]  # (0,0) + 3 levels
    figure.clear()


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amounts",
    [
        [],
        [0.3, 0.3],
        [0.6, 0.3],
        [0.0, 0.5],
        [-0.3, 0.6],
        [0.3, math.nan],
        [True, 2.0],
        "0.3",
        0.3,
    ],
)
def test_amounts_must_be_positive_and_increasing(amounts):
    with pytest.raises(ValueError, match="amounts"):
        make_probe(WORDS, amounts=amounts)


def test_reverb_amounts_are_wet_dry_at_most_one():
    make_probe({"eq": ["warm"]}, amounts=[0.5, 2.0])  # EQ: any positive scale
    with pytest.raises(ValueError, match="wet/dry"):
        make_probe(WORDS, amounts=[0.5, 2.0])


def test_one_amount_needs_the_origin():
    make_probe(WORDS, amounts=[1.0], include_origin=True)
    with pytest.raises(ValueError, match="two points"):
        make_probe(WORDS, amounts=[1.0])


@pytest.mark.parametrize(
    "template",
    ["{word}", "no field", "{descriptor} {descriptor}", "{descriptor} {x}", "{descriptor", "{}"],
)
def test_template_must_have_descriptor_once(template):
    with pytest.raises(ValueError, match="template"):
        make_probe(WORDS, template=template)


@pytest.mark.parametrize("tolerance", [-0.1, math.nan, "0.1"])
def test_tolerance_must_be_finite_and_non_negative(tolerance):
    with pytest.raises(ValueError, match="tolerance"):
        make_probe(WORDS, tolerance=tolerance)


def test_descriptor_validation():
    effects = {"eq": CodeEffect("eq")}
    with pytest.raises(ValueError, match="'eq', descriptor 'wet': 6 settings, expected 40"):
        TimbreTrendProbe({"eq": [descriptor("wet", "reverb")]}, effects)
    with pytest.raises(ValueError, match="at least one descriptor"):
        TimbreTrendProbe({"eq": []}, effects)
    with pytest.raises(ValueError, match="no effects"):
        TimbreTrendProbe({}, {})
    with pytest.raises(ValueError, match="unknown effect 'chorus'"):
        TimbreTrendProbe({"chorus": [descriptor("a", "eq")]}, {"chorus": CodeEffect("eq")})
    with pytest.raises(ValueError, match="duplicate descriptor 'a'"):
        TimbreTrendProbe({"eq": [descriptor("a", "eq"), descriptor("a", "eq")]}, effects)
    with pytest.raises(ValueError, match="without '/'"):
        TimbreTrendProbe({"eq": [descriptor("a/b", "eq")]}, effects)
    with pytest.raises(ValueError, match="must match"):
        TimbreTrendProbe(
            {"eq": [descriptor("a", "eq")]},
            {"eq": CodeEffect("eq"), "reverb": CodeEffect("reverb")},
        )
    with pytest.raises(ValueError, match="sample_rate"):
        TimbreTrendProbe({"eq": [descriptor("a", "eq")]}, {"eq": lambda *a: None})


def test_reference_validation(tmp_path):
    eq = {"eq": [descriptor("warm", "eq")]}
    effects = {"eq": CodeEffect("eq")}
    with pytest.raises(DataError, match="missing.wav: no such file"):
        TimbreTrendProbe(eq, effects, references={"a": tmp_path / "missing.wav"})
    with pytest.raises(DataError, match="missing.wav"):
        TimbreTrendProbe(eq, effects, references=[str(tmp_path / "missing.wav")])
    for name in ["a/b", "", "eq"]:
        with pytest.raises(ValueError, match="reference name"):
            TimbreTrendProbe(eq, effects, references={name: AudioRef(CodeStore({"x": 1}), "x")})
    with pytest.raises(ValueError, match="empty"):
        TimbreTrendProbe(eq, effects, references={})
    (tmp_path / "a").mkdir()
    for path in (tmp_path / "a" / "x.wav", tmp_path / "x.wav"):
        sf.write(path, np.zeros(480, dtype=np.float32), 48_000)
    with pytest.raises(ValueError, match="share the name"):
        TimbreTrendProbe(eq, effects, references=[tmp_path / "a" / "x.wav", tmp_path / "x.wav"])
    probe = TimbreTrendProbe(eq, effects, references=[tmp_path / "x.wav"])
    assert probe.references["x"].key == str((tmp_path / "x.wav").resolve())


def test_generated_reference_arguments_are_validated():
    bad = [
        ("reference_seconds", 0),
        ("reference_seconds", math.nan),
        ("reference_seconds", "4"),
        ("reference_seed", 1.5),
        ("include_origin", "no"),
        ("protocol", "Release"),
        ("protocol", None),
    ]
    for name, value in bad:
        with pytest.raises(ValueError, match=name):
            TimbreTrendProbe(
                {"eq": [descriptor("warm", "eq")]}, {"eq": CodeEffect("eq")}, **{name: value}
            )


def test_cache_keys_follow_the_effect_configuration_not_its_identity():
    words = {"eq": ["warm"]}
    first, _, _ = make_probe(words)
    # another process / DDP rank builds its own, equally configured effect
    second = TimbreTrendProbe(
        first.descriptors, {"eq": CodeEffect("eq")}, references=first.references
    )
    assert first.keys("eq", "r1") == second.keys("eq", "r1")
    first.run(
        ChosenCosines(words, {1: {"warm": 0.2}}, DELTA)
    )  # the fake's recorded calls are state, not configuration
    assert first.keys("eq", "r1") == second.keys("eq", "r1")
    second.effects["eq"] = CodeEffect("eq", sample_rate=24_000)
    assert set(first.keys("eq", "r1")).isdisjoint(second.keys("eq", "r1"))


def test_bad_effect_output_is_reported():
    class Wrong(CodeEffect):
        def __init__(self, result):
            super().__init__("eq")
            self.result = result

        def __call__(self, wave, settings, amounts):
            return self.result(super().__call__(wave, settings, amounts))

    probe, _, _ = make_probe({"eq": ["warm"]})
    for result, message in [
        (lambda out: out[:, :2], r"shape \(1, 2, 480\), expected \(1, 3, T\)"),
        (
            lambda out: out.index_fill(1, torch.tensor([2]), math.nan),
            "non-finite audio for 'warm' at amount 1 on reference 'r1'",
        ),
    ]:
        probe.effects["eq"] = Wrong(result)
        with pytest.raises(ValueError, match=message):
            probe.run(ChosenCosines({"eq": ["warm"]}, {1: {"warm": 0.2}}, DELTA))


# -- the generated reference ----------------------------------------------------------------------


def test_generated_reference_is_deterministic_and_broadband():
    clip = reference_clip(4.0, 48_000, seed=0)
    assert clip.dtype == np.float32 and clip.shape == (192_000,)
    assert np.abs(clip).max() == pytest.approx(0.5) and np.isfinite(clip).all()
    assert np.array_equal(clip, reference_clip(4.0, 48_000, seed=0))
    assert not np.array_equal(clip, reference_clip(4.0, 48_000, seed=1))
    assert reference_clip(1.0, 16_000).shape == (16_000,)
    power = np.abs(np.fft.rfft(clip.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(clip.size, 1 / 48_000)
    for low, high in [
        (30, 100),
        (100, 1000),
        (1000, 5000),
        (5000, 20_000),
    ]:  # energy across the EQ's range
        share = power[(freqs >= low) & (freqs < high)].sum() / power.sum()
        assert share > 1e-3, (low, high)
    store = ReferenceAudioStore(seconds=0.5, seed=3)
    assert store == ReferenceAudioStore(0.5, 3) and hash(store) == hash(ReferenceAudioStore(0.5, 3))
    assert np.array_equal(
        store.load("reference", 48_000), reference_clip(0.5, 48_000, 3, "reference")
    )
    with pytest.raises(ValueError):
        reference_clip(0.0)


# -- Hydra ----------------------------------------------------------------------------------------


def test_recipe_builds_the_probe_without_the_run_pairs(compose_evaluate, monkeypatch, tmp_path):
    from humanclap.probes.build import ProbeConfigError, build_probes

    built: list[tuple] = []

    def fake_effects(names, max_db=5.0, sample_rate=48_000):
        built.append((tuple(names), max_db, sample_rate))
        return {name: CodeEffect(name, sample_rate) for name in names}

    monkeypatch.setattr(
        timbre_trend, "default_effects", fake_effects
    )  # humanclap.dsp is not needed here
    cfg = compose_evaluate("probes=[relevance,timbre_trend]")
    assert set(cfg.probes) == {"relevance", "timbre_trend"}
    probes = build_probes(
        {"timbre_trend": cfg.probes.timbre_trend}, default_data="validation pairs (not passed)"
    )
    probe = probes["timbre_trend"]
    assert isinstance(probe, TimbreTrendProbe) and built == [(("eq", "reverb"), 5.0, 48_000)]
    assert probe.descriptors["eq"] == read_audealize_descriptors(DEMO_EQ_FILE)
    assert probe.descriptors["reverb"] == read_audealize_descriptors(DEMO_REVERB_FILE)
    assert probe.amounts == AMOUNTS and probe.template == "{descriptor}" and probe.tolerance == 0.0
    assert probe.protocol == "paper" and probe.include_origin is False
    assert list(probe.references) == ["generated"]

    cfg = compose_evaluate("probes=timbre_trend", "probes.timbre_trend.protocol=release")
    probe = build_probes(cfg.probes, default_data=None)["timbre_trend"]
    assert probe.protocol == "release" and probe.amounts == RELEASE_AMOUNTS
    assert probe.prompt("echo") == "an echo sound" and probe.prompt("warm") == "a warm sound"
    cfg = compose_evaluate("probes=timbre_trend", "probes.timbre_trend.protocol=paper2")
    with pytest.raises(ProbeConfigError, match="protocol must be one of"):
        build_probes(cfg.probes, default_data=None)

    wav = tmp_path / "ref.wav"
    sf.write(wav, np.zeros(4800, dtype=np.float32), 48_000)
    cfg = compose_evaluate(
        "probes=timbre_trend",
        f"probes.timbre_trend.references={{track:{wav}}}",
        "probes.timbre_trend.effects=[eq]",
        "probes.timbre_trend.max_db=10",
        "probes.timbre_trend.amounts=[0.5,1.0]",
        "probes.timbre_trend.top_n=2",
        "probes.timbre_trend.template='a {descriptor} sound'",
    )
    probe = build_probes(cfg.probes, default_data=None)["timbre_trend"]
    assert list(probe.descriptors) == ["eq"] and [d.word for d in probe.descriptors["eq"]] == [
        "warm",
        "bright",
    ]
    assert probe.references["track"].key == str(wav.resolve()) and probe.amounts == (0.5, 1.0)
    assert probe.prompt("warm") == "a warm sound" and built[-1] == (("eq",), 10.0, 48_000)

    cfg = compose_evaluate(
        "probes=timbre_trend", f"probes.timbre_trend.references=[{tmp_path / 'nope.wav'}]"
    )
    with pytest.raises(ProbeConfigError, match="timbre_trend.*nope.wav: no such file"):
        build_probes(cfg.probes, default_data=None)


def test_from_files_checks_the_file_matches_the_effect(monkeypatch):
    monkeypatch.setattr(
        timbre_trend,
        "default_effects",
        lambda names, max_db=5.0, sample_rate=48_000: {n: CodeEffect(n) for n in names},
    )
    with pytest.raises(ValueError, match="reverb descriptors .6 settings., not eq"):
        TimbreTrendProbe.from_files(eq_descriptors=DEMO_REVERB_FILE, effects=["eq"])
    with pytest.raises(ValueError, match="effects must be"):
        TimbreTrendProbe.from_files(effects=["chorus"])
    with pytest.raises(ValueError, match="eq_words selects no descriptors"):
        TimbreTrendProbe.from_files(eq_words=[], top_n=None, effects=["eq"])
    with pytest.raises(ValueError, match="effects must be"):
        TimbreTrendProbe.from_files(effects="eq")
    probe = TimbreTrendProbe.from_files(eq_words=["thin", "warm"], top_n=None, effects=["eq"])
    assert [d.word for d in probe.descriptors["eq"]] == ["warm", "thin"]


# -- the real effects on the tiny model -----------------------------------------------------------


def test_real_effects_on_the_tiny_backbone(tiny_backbone):
    probe = TimbreTrendProbe.from_files(reference_seconds=1.0)
    eq_render = probe.render("eq", "generated", 48_000)
    assert eq_render.shape == (6, 3, 48_000) and np.isfinite(eq_render).all()
    cache = EmbeddingCache(tiny_backbone, batch_size=8)
    result = probe.run(cache)
    metrics = result.metrics
    for effect in ("eq", "reverb"):
        assert sum(metrics[f"{effect}/{t}"] for t in ("up", "down", "peak", "flat")) == 6
        assert all(
            math.isfinite(v)
            for k, v in metrics.items()
            if k.startswith(f"{effect}/") and "/delta@" in k
        )
    assert cache.embedded["audio"] == 1 + 2 * 6 * 3
    result.figures["reverb_trends"]().clear()
