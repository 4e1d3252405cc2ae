"""Ordering probes (bat, clause_swap, as_then_swap, text_sensitivity): values worked out by hand on
3-4 sentences with chosen embeddings (exact vectors where a tie must be exact), ties, balancing,
skip counts, validation errors, the shared cache (each text embedded once), the configs, and one
run on the tiny backbone and through ``humanclap.evaluate``."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from fakes import MemoryStore, VectorEmbedder, unit
from omegaconf import OmegaConf

from humanclap.data.pairs import RatedPair, RatedPairs
from humanclap.probes.base import run_probes
from humanclap.probes.build import ProbeConfigError, build_probes
from humanclap.probes.ordering.as_then_swap import AsThenSwapProbe
from humanclap.probes.ordering.bat import BeforeAfterProbe
from humanclap.probes.ordering.clause_swap import ClauseSwapProbe
from humanclap.probes.ordering.text_sensitivity import TextSensitivityProbe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
S = math.sqrt(0.5)


def make_pairs(rows, name="toy"):
    """rows: (clip, text, score)."""
    store = MemoryStore({clip for clip, _, _ in rows})
    return RatedPairs(
        [RatedPair(audio=c, text=t, score=s) for c, t, s in rows], store, name=name
    ), store


# -- BAT ----------------------------------------------------------------------------------------------
# Clips at 0°, 90°, 180° (2-D unit vectors: cos = cos of the angle between).
BAT_CLIPS = {"c0": unit(0), "c1": unit(90), "c2": unit(180)}
T0, T0S = "A man speaks before a dog barks", "A man speaks after a dog barks"
T1, T1S = "A dog barks after a car passes", "A dog barks before a car passes"
T2, T2S = "Rain falls before thunder", "Rain falls after thunder"
T3 = "A bell rings then a man speaks"  # no before/after: skipped (no_connective)
NEG = "A dog barks before a man speaks"  # a swapped-order negative (score 0): not an original
BAT_TEXTS = {
    T0: unit(10),
    T0S: unit(30),
    T1: unit(45),
    T1S: unit(45),  # the same vector: an exact tie
    T2: unit(170),
    T2S: unit(100),
    T3: unit(0),
    NEG: unit(0),
}
BAT_ROWS = [
    ("c0", T0, 1.0),
    ("c1", T0, 0.8),
    ("c1", T1, 1.0),
    ("c2", T2, 1.0),
    ("c2", T3, 1.0),
    ("c0", NEG, 0.0),
]
# Items (clip, sentence) and cos(original) vs cos(swapped):
#   c0, T0 (before): cos 10° .985 > cos 30° .866  -> correct
#   c1, T0 (before): cos 80° .174 < cos 60° .5    -> wrong   (T0 matches two clips: two items)
#   c1, T1 (after):  cos 45° = cos 45°            -> tie = wrong
#   c2, T2 (before): cos 10° .985 > cos 80° .174  -> correct
# accuracy = 2/4, before = 2/3, after = 0/1, balanced = (2/3 + 0)/2 = 1/3, one tie.


def test_bat_by_hand():
    pairs, store = make_pairs(BAT_ROWS)
    probe = BeforeAfterProbe(pairs)
    result = probe.run(VectorEmbedder(store, BAT_CLIPS, BAT_TEXTS))
    m = result.metrics
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["accuracy_before"] == pytest.approx(2 / 3) and m["accuracy_after"] == 0.0
    assert m["balanced_accuracy"] == pytest.approx(1 / 3)
    assert (m["n"], m["n_before"], m["n_after"], m["n_ties"]) == (4, 3, 1, 1)
    c = lambda degrees: math.cos(math.radians(degrees))  # noqa: E731
    assert m["margin_mean"] == pytest.approx(
        (c(10) - c(30) + c(80) - c(60) + 0 + c(10) - c(80)) / 4, abs=1e-6
    )
    # Unique original texts T0, T1, T2, T3: T3 has no before/after; NEG (score 0) is not counted.
    assert {k: v for k, v in m.items() if k.startswith("skipped/")} == {
        "skipped/no_connective": 1.0
    }
    table = result.tables["bat"]
    assert all(key in m for _, key in table.columns)
    assert "ties count as failures" in table.note.lower()
    row = table.render({"toy": m}).splitlines()[2]
    assert row == "| toy | 0.500 | 0.333 | 0.667 | 0.000 | 3 | 1 | 1 |"
    assert len(result.figures["bat_margins"]().axes) == 1


def test_bat_collapsed_text_tower_scores_zero_not_half():
    """Original and swapped embedded alike: every comparison ties, and ties are failures."""
    pairs, store = make_pairs(BAT_ROWS)
    texts = {t: unit(0) for t in BAT_TEXTS}
    m = BeforeAfterProbe(pairs).run(VectorEmbedder(store, BAT_CLIPS, texts)).metrics
    assert m["accuracy"] == 0.0 and m["n_ties"] == 4 and m["balanced_accuracy"] == 0.0


def test_bat_balance_subsamples_the_larger_half():
    pairs, store = make_pairs(BAT_ROWS)
    probe = BeforeAfterProbe(pairs, balance=True, seed=3)
    assert Counter(item[3] for item in probe.items) == {"before": 1, "after": 1}
    assert set(probe.items) <= set(BeforeAfterProbe(pairs).items)
    m = probe.run(VectorEmbedder(store, BAT_CLIPS, BAT_TEXTS)).metrics
    assert (m["n_before"], m["n_after"], m["accuracy_after"]) == (1, 1, 0.0)
    assert m["accuracy"] == pytest.approx(m["balanced_accuracy"])
    assert BeforeAfterProbe(pairs, balance=True, seed=3).items == probe.items  # seeded
    # One half empty: balancing is impossible; unbalanced, its accuracy (and the balanced one) is left out.
    only_before = [row for row in BAT_ROWS if row[1] != T1]
    with pytest.raises(ValueError, match=r"balance=True but toy has 3 'before' and 0 'after'"):
        BeforeAfterProbe(make_pairs(only_before)[0], balance=True)
    pairs, store = make_pairs(only_before)
    m = BeforeAfterProbe(pairs).run(VectorEmbedder(store, BAT_CLIPS, BAT_TEXTS)).metrics
    assert m["n_after"] == 0 and "accuracy_after" not in m and "balanced_accuracy" not in m
    assert m["accuracy"] == pytest.approx(2 / 3)


# -- clause swap ------------------------------------------------------------------------------------
# Exact 3-D vectors, so the tie below is exact: clips c0..c2 on the axes, c3 in the c0-c1 plane.
CS_CLIPS = {"c0": [1, 0, 0], "c1": [0, 1, 0], "c2": [0, 0, 1], "c3": [0.6, 0.8, 0]}
Q0, Q0S = "A man speaks before a dog barks", "A dog barks before a man speaks"
Q1, Q1S = "A car passes followed by a horn", "A horn followed by a car passes"
Q2, Q2S = "Birds chirp then rain falls", "Rain falls then birds chirp"
Q3 = "Wind blows while leaves rustle"  # no order connective: skipped
CS_TEXTS = {
    Q0: [1, 0, 0],
    Q0S: [0.6, 0.8, 0],
    Q1: [0, 1, 0],
    Q1S: [0, 0.8, 0.6],
    Q2: [0, 0, 1],
    Q2S: [S, 0, S],
    Q3: [0, 0, 1],
}
# Q0S is also in the data, as a swapped-order negative of clip c3 (c3 is only in the "all" gallery).
CS_ROWS = [("c0", Q0, 1.0), ("c1", Q1, 1.0), ("c2", Q2, 1.0), ("c2", Q3, 1.0), ("c3", Q0S, 0.0)]
# Rows over the gallery c0, c1, c2, c3:
#   Q0  1, 0, 0, .6     -> c0 first: hit      Q0S .6, .8, 0, 1  -> c3, c1, c0: miss (rank 3)
#   Q1  0, 1, 0, .8     -> c1 first: hit      Q1S 0, .8, .6, .64 -> c1 first: hit
#   Q2  0, 0, 1, 0      -> c2 first: hit      Q2S s, 0, s, .6s  -> c0 ties c2: the non-match ranks first: miss
# R@1: original 3/3, swapped 1/3, drop 2/3; per preposition before 1 -> 0, followed by 1 -> 1, then 1 -> 0.


def test_clause_swap_by_hand():
    pairs, store = make_pairs(CS_ROWS)
    probe = ClauseSwapProbe(pairs)
    result = probe.run(VectorEmbedder(store, CS_CLIPS, CS_TEXTS))
    m = result.metrics
    assert m["R@1_original"] == 1.0 and m["R@1_swapped"] == pytest.approx(1 / 3)
    assert m["drop"] == pytest.approx(2 / 3)
    assert (m["n_queries"], m["n_gallery"]) == (3, 4)
    expected = {"before": (1, 0), "followed_by": (1, 1), "then": (1, 0)}
    for prep, (original, swapped) in expected.items():
        assert (m[f"{prep}/R@1_original"], m[f"{prep}/R@1_swapped"]) == (original, swapped), prep
        assert m[f"{prep}/drop"] == original - swapped and m[f"{prep}/n_queries"] == 1
    assert "after/R@1_original" not in m  # no such sentence
    assert {k: v for k, v in m.items() if k.startswith("skipped/")} == {
        "skipped/no_connective": 1.0
    }
    assert probe.inputs().texts == [Q0, Q1, Q2, Q0S, Q1S, Q2S]
    tables = result.tables
    assert all(
        key in m
        for table in tables.values()
        for _, key in table.columns
        if not key.startswith("after/")
    )
    assert (
        tables["clause_swap"].render({"toy": m}).splitlines()[2]
        == "| toy | 1.000 | 0.333 | 0.667 | 3 |"
    )
    by_prep = tables["clause_swap_by_preposition"].render({"toy": m}).splitlines()[2]
    assert (
        by_prep == "| toy | 1.000 | 0.000 | 1 | – | – | – | 1.000 | 0.000 | 1 | 1.000 | 1.000 | 1 |"
    )
    assert "ties count against the model" in tables["clause_swap"].note.lower()
    figure = result.figures["clause_swap"]()
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == [
        "all\n(n=3)",
        "before\n(n=1)",
        "then\n(n=1)",
        "followed by\n(n=1)",
    ]


def test_clause_swap_k_and_connective_gallery():
    pairs, store = make_pairs(CS_ROWS)
    # k=2: Q0S ranks c3 (1), c1 (.8), c0 (.6): still a miss; Q2S ranks c0, c2 (tie, pessimistic): hit at 2.
    m = ClauseSwapProbe(pairs, k=2).run(VectorEmbedder(store, CS_CLIPS, CS_TEXTS)).metrics
    assert m["R@2_original"] == 1.0 and m["R@2_swapped"] == pytest.approx(2 / 3)
    # Per-preposition galleries: each has one clip (its query's), so every query hits.
    probe = ClauseSwapProbe(pairs, gallery="connective")
    assert probe.clips == ["c0", "c1", "c2"]  # c3 (negatives only) is in no gallery
    m = probe.run(VectorEmbedder(store, CS_CLIPS, CS_TEXTS)).metrics
    assert m["R@1_original"] == m["R@1_swapped"] == 1.0 and m["drop"] == 0.0
    assert m["then/n_gallery"] == 1 and "n_gallery" not in m


# -- as/then swap -----------------------------------------------------------------------------------
A0, A0S = "A man speaks as water runs", "A man speaks then water runs"
A1, A1S = "A bird sings as rain falls", "A bird sings then rain falls"
B0, B0S = "A door opens and then a dog barks", "A door opens as a dog barks"
FIXED = "Chirping as well as running water"  # fixed phrase only: skipped
AT_CLIPS = {"c0": [1, 0, 0], "c1": [0, 1, 0], "c2": [0, 0, 1], "c3": [0.6, 0.8, 0]}
AT_TEXTS = {
    A0: [1, 0, 0],
    A0S: [0.6, 0.8, 0],
    A1: [0.8, 0.6, 0],
    A1S: [0, 1, 0],
    B0: [0, 0, 1],
    B0S: [0.8, 0, 0.6],
    FIXED: [0, 0, 1],
}
AT_ROWS = [("c0", A0, 1.0), ("c1", A1, 1.0), ("c2", B0, 1.0), ("c3", FIXED, 1.0)]
# Per-connective galleries (default): as -> {c0, c1}, then -> {c2}.
#   A0 (1, 0) hit; A0S (.6, .8) c1 first: miss; A1 (.8, .6) c0 first: miss; A1S (0, 1) hit
#   -> as: original 1/2, replaced 1/2. then: one clip, B0 and B0S both hit -> 1, 1.
#   Overall (query-weighted): original (2 * 1/2 + 1)/3 = 2/3, replaced 2/3.
# Gallery "all" (c0..c3): A0 (1, 0, 0, .6) hit; A0S (.6, .8, 0, 1) c3: miss; A1 (.8, .6, 0, .96) c3: miss;
#   A1S (0, 1, 0, .8) hit; B0 (0, 0, 1, 0) hit; B0S (.8, 0, .6, .48) c0: miss
#   -> as 1/2 -> 1/2, then 1 -> 0; overall 2/3 -> 1/3.


def test_as_then_swap_by_hand_table_3():
    pairs, store = make_pairs(AT_ROWS)
    result = AsThenSwapProbe(pairs, k=1).run(VectorEmbedder(store, AT_CLIPS, AT_TEXTS))
    m = result.metrics
    assert (m["as/R@1_original"], m["as/R@1_swapped"], m["as/n_queries"], m["as/n_gallery"]) == (
        0.5,
        0.5,
        2,
        2,
    )
    assert (m["then/R@1_original"], m["then/R@1_swapped"], m["then/n_gallery"]) == (1.0, 1.0, 1)
    assert m["R@1_original"] == pytest.approx(2 / 3) and m["R@1_swapped"] == pytest.approx(2 / 3)
    assert m["drop"] == pytest.approx(0.0) and m["n_queries"] == 3
    assert m["skipped/fixed_phrase"] == 1.0
    table = result.tables["as_then_swap"]
    assert [h for h, _ in table.columns] == [
        "Then",
        "r/Then/As",
        "As",
        "r/As/Then",
        "n then",
        "n as",
    ]
    assert (
        table.render({"toy": m}).splitlines()[2]
        == "| toy | 1.000 | 1.000 | 0.500 | 0.500 | 1 | 2 |"
    )

    m = (
        AsThenSwapProbe(pairs, k=1, gallery="all")
        .run(VectorEmbedder(store, AT_CLIPS, AT_TEXTS))
        .metrics
    )
    assert (m["as/R@1_original"], m["as/R@1_swapped"]) == (0.5, 0.5)
    assert (m["then/R@1_original"], m["then/R@1_swapped"], m["then/drop"]) == (1.0, 0.0, 1.0)
    assert m["R@1_original"] == pytest.approx(2 / 3) and m["R@1_swapped"] == pytest.approx(1 / 3)
    assert m["n_gallery"] == 4


def test_as_then_default_is_r_at_10():
    pairs, store = make_pairs(AT_ROWS)
    m = AsThenSwapProbe(pairs).run(VectorEmbedder(store, AT_CLIPS, AT_TEXTS)).metrics
    assert m["R@10_original"] == m["R@10_swapped"] == 1.0  # galleries of 2 and 1 clips


# -- text sensitivity --------------------------------------------------------------------------------
O1, O2, O3 = (
    "A man speaks before a dog barks",
    "Birds chirp then rain falls",
    "A man speaks as water runs",
)
TS_TEXTS = {
    O1: [1, 0],
    O2: [0, 1],
    O3: [0.8, -0.6],
    "A man speaks after a dog barks": [0.5, math.sqrt(0.75)],  # before_after: cos .5
    "A dog barks before a man speaks": [1, 0],  # clause_swap O1: cos 1 (unchanged)
    "Rain falls then birds chirp": [1, 0],  # clause_swap O2: cos 0
    "Birds chirp as rain falls": [0.6, 0.8],  # as_then O2: cos .8
    "A man speaks then water runs": [0.8, 0.6],  # as_then O3: cos .64 - .36 = .28
}
TS_ROWS = [
    ("c0", O1, 1.0),
    ("c1", O2, 0.9),
    ("c2", O3, 1.0),
    ("c0", "Rain falls then birds chirp", 0.0),
]


def test_text_sensitivity_by_hand():
    pairs, store = make_pairs(TS_ROWS)
    probe = TextSensitivityProbe(pairs)
    assert probe.inputs().audio == []
    embedder = VectorEmbedder(store, {}, TS_TEXTS)
    result = probe.run(embedder)
    m = result.metrics
    # before_after: [.5]; clause_swap: [1, 0]; as_then: [.8, .28]
    # p05 (linear): clause_swap 0 + .05 * (1 - 0) = .05; as_then .28 + .05 * (.8 - .28) = .306
    expected = {
        "before_after": (0.5, 0.5, 0.5, 0.5, 1, 0.0),
        "clause_swap": (0.5, 0.5, 0.0, 0.05, 2, 0.5),
        "as_then": (0.54, 0.54, 0.28, 0.306, 2, 0.0),
    }
    for kind, (mean, median, low, p05, n, unchanged) in expected.items():
        got = [m[f"{kind}/{s}"] for s in ("mean", "median", "min", "p05", "n", "unchanged")]
        assert got == pytest.approx([mean, median, low, p05, n, unchanged], abs=1e-6), kind
    # Skips over the unique originals O1, O2, O3 (the score-0 negative is not an original):
    assert (
        m["before_after/skipped/no_connective"] == 2 and m["clause_swap/skipped/no_connective"] == 1
    )
    assert m["as_then/skipped/no_connective"] == 1
    assert embedder.audio_items == Counter() and set(embedder.text_items.values()) == {1}
    row = result.tables["text_sensitivity"].render({"toy": m}).splitlines()[2]
    assert (
        row
        == "| toy | 0.500 | 0.500 | 0.500 | 1 | 0.500 | 0.050 | 0.000 | 2 | 0.540 | 0.306 | 0.280 | 2 |"
    )
    assert len(result.figures["text_sensitivity"]().axes) == 1


def test_text_sensitivity_subset_and_unknown_manipulation():
    pairs, _ = make_pairs(TS_ROWS)
    probe = TextSensitivityProbe(pairs, manipulations=["as_then"])
    assert list(probe.manipulated) == ["as_then"]
    with pytest.raises(ValueError, match=r"unknown manipulation\(s\) \['swap'\].*before_after"):
        TextSensitivityProbe(pairs, manipulations=["as_then", "swap"])


# -- shared cache: each input embedded once ----------------------------------------------------------


def test_all_probes_share_one_cache_and_embed_each_input_once():
    rows = BAT_ROWS + CS_ROWS + AT_ROWS
    clips = {"c0": [1, 0, 0], "c1": [0, 1, 0], "c2": [0, 0, 1], "c3": [0.6, 0.8, 0]}
    pairs, store = make_pairs(rows)
    probes = {
        "bat": BeforeAfterProbe(pairs),
        "clause_swap": ClauseSwapProbe(pairs),
        "as_then_swap": AsThenSwapProbe(pairs),
        "text_sensitivity": TextSensitivityProbe(pairs),
    }
    wanted = {t for probe in probes.values() for t in probe.inputs().texts}
    rng = np.random.default_rng(0)
    texts = {
        text: v / np.linalg.norm(v) for text in sorted(wanted) for v in [rng.standard_normal(3)]
    }
    embedder = VectorEmbedder(store, clips, texts)
    results, cache = run_probes(probes, embedder, batch_size=3)
    assert set(embedder.text_items) == wanted and set(embedder.text_items.values()) == {1}
    assert embedder.audio_items == Counter({c: 1 for c in clips})
    assert cache.embedded == {"audio": 4, "text": len(wanted)}
    # The same numbers as each probe on its own embedder.
    for name, probe in probes.items():
        alone = probe.run(VectorEmbedder(store, clips, texts)).metrics
        assert results[name].metrics == pytest.approx(alone), name
    # Q0 is T0's text: one original matching c0 and c1 (its c0 pair appears twice in the data).
    assert (results["bat"].metrics["n_before"], results["bat"].metrics["n_after"]) == (3, 1)


# -- validation ---------------------------------------------------------------------------------------

NO_CONNECTIVES = [
    ("c0", "A dog barks", 1.0),
    ("c1", "Rain falls on a roof", 1.0),
    ("c2", "Chirping as well as running water", 1.0),
]


@pytest.mark.parametrize(
    "probe_class", [BeforeAfterProbe, ClauseSwapProbe, AsThenSwapProbe, TextSensitivityProbe]
)
def test_data_without_connectives_is_refused_with_the_skip_counts(probe_class):
    pairs, _ = make_pairs(NO_CONNECTIVES, name="plain.csv")
    with pytest.raises(ValueError) as error:
        probe_class(pairs)
    message = str(error.value)
    assert probe_class.name in message and "plain.csv" in message
    assert "no_connective (e.g. 'A dog barks')" in message and "data=order_synthetic" in message
    if probe_class in (AsThenSwapProbe, TextSensitivityProbe):
        assert "fixed_phrase [as well as 1]" in message


@pytest.mark.parametrize(
    "probe_class", [BeforeAfterProbe, ClauseSwapProbe, AsThenSwapProbe, TextSensitivityProbe]
)
def test_no_original_above_the_threshold_is_refused(probe_class):
    pairs, _ = make_pairs([("c0", T0, 0.2), ("c1", A0, 0.3)])
    with pytest.raises(ValueError, match=r"match_threshold=0\.5 \(scores present: 0\.2 to 0\.3"):
        probe_class(pairs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "k must be"),
        ({"k": 1.5}, "k must be"),
        ({"gallery": "some"}, "gallery must be one of"),
    ],
)
def test_bad_retrieval_options_are_refused(kwargs, message):
    pairs, _ = make_pairs(CS_ROWS)
    with pytest.raises(ValueError, match=message):
        ClauseSwapProbe(pairs, **kwargs)


def test_non_finite_embeddings_are_refused():
    pairs, store = make_pairs(BAT_ROWS)
    with pytest.raises(ValueError, match="non-finite"):
        BeforeAfterProbe(pairs).run(
            VectorEmbedder(store, BAT_CLIPS | {"c0": [float("nan"), 0.0]}, BAT_TEXTS)
        )


# -- configs -------------------------------------------------------------------------------------------

ORDERING = {
    "bat": BeforeAfterProbe,
    "clause_swap": ClauseSwapProbe,
    "as_then_swap": AsThenSwapProbe,
    "text_sensitivity": TextSensitivityProbe,
}


def test_configs_build_each_probe_on_the_run_pairs_and_name_it_on_bad_data():
    specs = {
        name: yaml.safe_load((RECIPES / "probes" / f"{name}.yaml").read_text())[name]
        for name in ORDERING
    }
    pairs, _ = make_pairs(BAT_ROWS + CS_ROWS + AT_ROWS)
    probes = build_probes(OmegaConf.create(specs), pairs)
    for name, cls in ORDERING.items():
        assert (
            type(probes[name]) is cls and probes[name].name == name and probes[name].pairs is pairs
        )
    assert probes["clause_swap"].k == 1 and probes["as_then_swap"].k == 10
    assert probes["as_then_swap"].gallery == "connective" and probes["clause_swap"].gallery == "all"
    plain, _ = make_pairs(NO_CONNECTIVES, name="plain.csv")
    with pytest.raises(
        ProbeConfigError,
        match=r"probe 'bat' cannot be built: bat probe: no original sentence "
        r"of plain\.csv",
    ):
        build_probes(OmegaConf.create({"bat": specs["bat"]}), plain)


# -- real models --------------------------------------------------------------------------------------


class ToneStore:
    """Clip key -> a 1 s tone whose pitch and loudness depend on the key."""

    def __init__(self, keys):
        self.keys = sorted(keys)

    def load(self, key: str, sample_rate: int) -> np.ndarray:
        i = self.keys.index(key)
        t = np.arange(sample_rate, dtype=np.float32) / sample_rate
        return (0.1 + 0.1 * i) * np.sin(2 * np.pi * (220 + 110 * i) * t).astype(np.float32)


TINY_ROWS = [
    ("c0", "a man speaks then a dog barks", 1.0),
    ("c1", "a dog barks before a car engine running", 1.0),
    ("c2", "rain falls after the wind blowing", 1.0),
    ("c3", "a bird chirps as water flowing", 1.0),
    ("c0", "a dog barks then a man speaks", 0.0),
    ("c3", "music playing followed by a crowd laughing", 1.0),
]


def test_on_the_tiny_backbone(tiny_backbone):
    store = ToneStore({clip for clip, _, _ in TINY_ROWS})
    pairs = RatedPairs(
        [RatedPair(audio=c, text=t, score=s) for c, t, s in TINY_ROWS], store, name="tiny-order"
    )
    probes = {name: cls(pairs, batch_size=2) for name, cls in ORDERING.items()}
    results, cache = run_probes(probes, tiny_backbone, batch_size=2)
    texts = {t for probe in probes.values() for t in probe.inputs().texts}
    assert cache.embedded == {"audio": 4, "text": len(texts)}
    for name, result in results.items():
        assert all(math.isfinite(v) for v in result.metrics.values()), name
        for make in result.figures.values():
            assert len(make().axes) == 1
    bat = results["bat"].metrics
    assert (bat["n_before"], bat["n_after"]) == (1, 1)
    # BAT straight from the backbone: one sentence at a time.
    correct = []
    for clip, text in [
        ("c1", "a dog barks before a car engine running"),
        ("c2", "rain falls after the wind blowing"),
    ]:
        audio = tiny_backbone.embed_audio([store.load(clip, tiny_backbone.sample_rate)]).double()
        swapped = (
            text.replace("before", "AFTER").replace("after", "before").replace("AFTER", "after")
        )
        cos = (audio @ tiny_backbone.embed_text([text, swapped]).double().T)[0]
        correct.append(float(cos[0] > cos[1]))
    assert bat["accuracy"] == pytest.approx(np.mean(correct))
    clause = results["clause_swap"].metrics
    assert clause["n_queries"] == 4 and clause["n_gallery"] == 4 and 0 <= clause["R@1_swapped"] <= 1
    assert results["as_then_swap"].metrics["n_queries"] == 2  # "then" (c0) and "as" (c3)
    assert results["text_sensitivity"].metrics["clause_swap/n"] == 4


def test_evaluate_end_to_end_on_a_captions_file(tmp_path, compose_evaluate):
    """data=captions with the four ordering probes: metrics.json, report tables, figures."""
    from humanclap.evaluate import evaluate

    captions = [
        "A man speaks then a dog barks",
        "A dog barks before a car passes",
        "Rain falls after the wind blows",
        "A bird chirps as water flows",
        "Music plays followed by a crowd laughing",
    ]
    lines = ["audio,caption"]
    for i, caption in enumerate(captions):
        sf.write(tmp_path / f"clip{i}.wav", ToneStore(range(5)).load(i, 16_000), 16_000)
        lines.append(f"clip{i}.wav,{caption}")
    (tmp_path / "order.csv").write_text("\n".join(lines) + "\n")
    cfg = compose_evaluate(
        "data=captions",
        f"data.pairs.path={tmp_path / 'order.csv'}",
        "split=null",
        "probes=[bat,clause_swap,as_then_swap,text_sensitivity]",
    )
    evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())["models"]["tiny"]["metrics"]
    assert set(metrics) == set(ORDERING)
    assert metrics["bat"]["n"] == 2 and metrics["clause_swap"]["n_queries"] == 4
    assert (
        metrics["as_then_swap"]["then/n_queries"] == 1
        and metrics["as_then_swap"]["as/n_queries"] == 1
    )
    report = (out / "report.md").read_text()
    assert "| model | Then | r/Then/As | As | r/As/Then | n then | n as |" in report
    pngs = sorted(p.name for p in (out / "figures" / "tiny").glob("*.png"))
    assert pngs == [
        "as_then_swap-as_then_swap.png",
        "bat-bat_margins.png",
        "clause_swap-clause_swap.png",
        "text_sensitivity-text_sensitivity.png",
    ]
