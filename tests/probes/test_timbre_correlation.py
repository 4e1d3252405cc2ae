"""Timbre-correlation probe (timbre-semantics §2.2, Experiment 1) on a fake embedder with chosen
cosines, checked against numpy formulas and hand-computed values; the instrument_group column of
read_timbre_ratings; end to end on the tiny model through the Hydra config and humanclap.evaluate."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fakes import MemoryStore, VectorEmbedder, unit
from matplotlib.figure import Figure

from humanclap.data.pairs import DataError, RatedPair, RatedPairs
from humanclap.data.readers.timbre_ratings import read_timbre_ratings
from humanclap.probes.base import run_probes
from humanclap.probes.cache import EmbeddingCache
from humanclap.probes.relevance.probe import RelevanceProbe
from humanclap.probes.timbre.correlation import (
    TimbreCorrelationProbe,
    UndefinedCorrelationWarning,
    descriptor_names,
    summarize,
)

TEMPLATE = "a {descriptor} sound"
# Recordings and descriptor texts are 2-D unit vectors at these angles (degrees), so that
# s_{i,d} = cos(θ_i - φ_d):
CLIP_ANGLES = {"A": 0.0, "B": 30.0, "C": 90.0, "D": 150.0}
TEXT_ANGLES = {"bright": 0.0, "dark": 90.0, "raspy": 45.0}
#              bright         dark            raspy
# s_A =  (1,            0,              √2/2 = .707)
# s_B =  (√3/2 = .866,  1/2,            cos 15° = .966)
# s_C =  (0,            1,              √2/2 = .707)
# s_D =  (-√3/2,        1/2,            cos 105° = -.259)
# Ratings on the nine-point scale (instrument -> descriptor -> rating).
RATINGS = {
    "A": {"bright": 9, "dark": 2, "raspy": 5},
    "B": {"bright": 7, "dark": 4, "raspy": 6},
    "C": {"bright": 6, "dark": 1, "raspy": 4},
    "D": {"bright": 1, "dark": 5, "raspy": 8},
}
GROUPS = {"A": "Chinese", "B": "Chinese", "C": "Western", "D": "Western"}


def angle_embedder(
    store: MemoryStore, clip_angles=CLIP_ANGLES, text_angles=TEXT_ANGLES, template=TEMPLATE
) -> VectorEmbedder:
    """Unit vectors at chosen angles, keyed by clip and by descriptor text."""
    return VectorEmbedder(
        store,
        {f"{k}.wav": unit(a) for k, a in clip_angles.items()},
        {template.format(descriptor=d): unit(a) for d, a in text_angles.items()},
    )


def make_pairs(ratings=RATINGS, template=TEMPLATE, group_sets=None):
    rows = [
        RatedPair(audio=f"{i}.wav", text=template.format(descriptor=d), score=(r - 1) / 8, group=i)
        for i, by_descriptor in ratings.items()
        for d, r in by_descriptor.items()
    ]
    store = MemoryStore({f"{i}.wav" for i in ratings})
    return RatedPairs(rows, store, name="toy", group_sets=group_sets or {}), store


def matrices(ratings=RATINGS, clip_angles=CLIP_ANGLES, text_angles=TEXT_ANGLES):
    """(H, S, instruments, descriptors) written out independently of the probe."""
    instruments, descriptors = list(ratings), list(next(iter(ratings.values())))
    h = np.array([[ratings[i][d] for d in descriptors] for i in instruments], dtype=float)
    s = np.array(
        [
            [math.cos(math.radians(clip_angles[i] - text_angles[d])) for d in descriptors]
            for i in instruments
        ]
    )
    return h, s, instruments, descriptors


def np_pearson(x, y) -> float:
    x, y = np.asarray(x, float) - np.mean(x), np.asarray(y, float) - np.mean(y)
    return float((x * y).sum() / math.sqrt((x * x).sum() * (y * y).sum()))


def np_ranks(x) -> np.ndarray:
    """Average ranks (1-based), ties sharing their mean rank."""
    x = np.asarray(x, float)
    return np.array([(x < v).sum() + ((x == v).sum() + 1) / 2 for v in x])


def np_spearman(x, y) -> float:
    return np_pearson(np_ranks(x), np_ranks(y))


# -- the correlations ---------------------------------------------------------------------------


def test_descriptor_and_instrument_correlations_equal_numpy_and_hand_values():
    pairs, store = make_pairs()
    result = TimbreCorrelationProbe(pairs, template=TEMPLATE).run(angle_embedder(store))
    m = result.metrics
    h, s, instruments, descriptors = matrices()
    for k, d in enumerate(descriptors):
        assert m[f"descriptor/{d}/pearson"] == pytest.approx(np_pearson(h[:, k], s[:, k]), abs=1e-6)
        assert m[f"descriptor/{d}/spearman"] == pytest.approx(
            np_spearman(h[:, k], s[:, k]), abs=1e-6
        )
    for k, i in enumerate(instruments):
        assert m[f"instrument/{i}/pearson"] == pytest.approx(np_pearson(h[k], s[k]), abs=1e-6)
        assert m[f"instrument/{i}/spearman"] == pytest.approx(np_spearman(h[k], s[k]), abs=1e-6)

    # By hand. bright: h = (9, 7, 6, 1), s = (1, √3/2, 0, -√3/2); Σ(h - h̄)s = 3.25 + 3√3,
    # Σ(h - h̄)² = 34.75, Σ(s - s̄)² = 2.5 - 4/16 = 2.25; ranks agree exactly.
    assert m["descriptor/bright/pearson"] == pytest.approx(
        (3.25 + 3 * math.sqrt(3)) / (1.5 * math.sqrt(34.75)), abs=1e-6
    )
    assert m["descriptor/bright/pearson"] == pytest.approx(0.95519, abs=1e-5)
    assert m["descriptor/bright/spearman"] == pytest.approx(1.0)
    # dark: h = (2, 4, 1, 5), s = (0, .5, 1, .5): r = -0.5 / √(10 · 0.5) = -1 / (2√5); ranks
    # h (2, 3, 1, 4), s (1, 2.5, 4, 2.5) (tie): ρ = -1.5 / √(5 · 4.5) = -1/√10.
    assert m["descriptor/dark/pearson"] == pytest.approx(-1 / (2 * math.sqrt(5)), abs=1e-6)
    assert m["descriptor/dark/spearman"] == pytest.approx(-1 / math.sqrt(10), abs=1e-6)
    # Instrument A: h = (9, 2, 5), s = (1, 0, √2/2): same order -> ρ = 1;
    # C: h = (6, 1, 4), s = (0, 1, √2/2): reversed order -> ρ = -1.
    assert m["instrument/A/spearman"] == pytest.approx(1.0)
    assert m["instrument/C/spearman"] == pytest.approx(-1.0)
    # Ratings rescaled to [0, 1] give the same r as the nine-point scale.
    assert m["instrument/A/pearson"] == pytest.approx(
        np_pearson([1.0, 1 / 8, 0.5], [1, 0, math.sqrt(0.5)]), abs=1e-6
    )


def test_summaries_count_positive_correlations_and_average_r():
    pairs, store = make_pairs()
    m = (
        TimbreCorrelationProbe(pairs, instrument_groups=GROUPS, template=TEMPLATE)
        .run(angle_embedder(store))
        .metrics
    )
    h, s, instruments, descriptors = matrices()
    descriptor_r = [np_pearson(h[:, k], s[:, k]) for k in range(3)]
    instrument_r = {i: np_pearson(h[k], s[k]) for k, i in enumerate(instruments)}
    # bright > 0, dark < 0, raspy: D rated most raspy but least similar -> < 0.
    assert [r > 0 for r in descriptor_r] == [True, False, False]
    assert (
        m["descriptor/n"] == 3
        and m["descriptor/n_positive"] == 1
        and m["descriptor/n_negative"] == 2
    )
    assert m["descriptor/n_undefined"] == 0
    assert m["descriptor/mean_r"] == pytest.approx(np.mean(descriptor_r), abs=1e-6)
    assert m["descriptor/mean_spearman"] == pytest.approx(
        np.mean([np_spearman(h[:, k], s[:, k]) for k in range(3)]), abs=1e-6
    )
    positive = {i for i, r in instrument_r.items() if r > 0}
    assert positive == {"A", "B", "D"}  # C's profile is reversed
    assert (
        m["instrument/n"] == 4
        and m["instrument/n_positive"] == 3
        and m["instrument/n_negative"] == 1
    )
    assert m["instrument/mean_r"] == pytest.approx(np.mean(list(instrument_r.values())), abs=1e-6)
    # Per group: Chinese = A, B (both positive), Western = C (negative), D (positive).
    assert m["group/Chinese/instrument/n"] == 2 and m["group/Chinese/instrument/n_positive"] == 2
    assert m["group/Western/instrument/n"] == 2 and m["group/Western/instrument/n_positive"] == 1
    assert m["group/Western/instrument/n_negative"] == 1
    assert m["group/Chinese/instrument/mean_r"] == pytest.approx(
        (instrument_r["A"] + instrument_r["B"]) / 2, abs=1e-6
    )
    assert m["group/Western/instrument/mean_r"] == pytest.approx(
        (instrument_r["C"] + instrument_r["D"]) / 2, abs=1e-6
    )
    assert m["group/Western/instrument/n_undefined"] == 0


def test_similarities_are_raw_cosines_not_clamped():
    pairs, store = make_pairs()
    similarity = TimbreCorrelationProbe(pairs).similarities(angle_embedder(store))
    _, s, _, _ = matrices()
    assert similarity.shape == (4, 3) and similarity.dtype == np.float64
    assert np.allclose(similarity, s, atol=1e-6)
    assert similarity[3, 0] == pytest.approx(-math.sqrt(3) / 2, abs=1e-6)  # D x bright < 0 is kept


def test_groups_from_the_data_and_explicit_groups_replace_them():
    data_groups = {"Chinese": ["A", "B"], "Western": ["C", "D", "not_in_this_split"]}
    pairs, store = make_pairs(group_sets=data_groups)
    probe = TimbreCorrelationProbe(pairs)
    assert probe.groups == {"Chinese": ["A", "B"], "Western": ["C", "D"]}
    explicit = TimbreCorrelationProbe(
        pairs, instrument_groups={"A": "bowed", "C": "bowed", "Z": "plucked"}
    )
    assert explicit.groups == {"bowed": ["A", "C"]}  # Z is absent: group dropped; B, D ungrouped
    m = explicit.run(angle_embedder(store)).metrics
    assert m["group/bowed/instrument/n"] == 2 and "group/Chinese/instrument/n" not in m
    figures = explicit.run(angle_embedder(store)).figures
    assert set(figures) == {
        "descriptor_correlation",
        "instrument_correlation-bowed",
        "instrument_correlation-ungrouped",
    }


def test_summarize_leaves_out_nan():
    summary = summarize([0.5, math.nan, -0.25, 0.0, 0.75], [1.0, math.nan, -1.0, 0.0, 0.5])
    assert summary == {
        "n": 5,
        "n_positive": 2,
        "n_negative": 1,
        "n_undefined": 1,
        "mean_r": pytest.approx(0.25),
        "mean_spearman": pytest.approx(0.125),
    }
    everything_undefined = summarize([math.nan, math.nan], [math.nan, math.nan])
    assert math.isnan(everything_undefined["mean_r"]) and everything_undefined["n_undefined"] == 2


# -- undefined correlations -------------------------------------------------------------------------


def test_constant_human_ratings_give_nan_with_a_warning():
    ratings = {i: {**by_descriptor, "pure": 5} for i, by_descriptor in RATINGS.items()}
    pairs, store = make_pairs(ratings)
    probe = TimbreCorrelationProbe(pairs, template=TEMPLATE)
    embedder = angle_embedder(store, text_angles={**TEXT_ANGLES, "pure": 200.0})
    with pytest.warns(
        UndefinedCorrelationWarning, match=r"descriptor-level .* 'pure' \(constant human ratings\)"
    ):
        m = probe.run(embedder).metrics
    assert math.isnan(m["descriptor/pure/pearson"]) and math.isnan(m["descriptor/pure/spearman"])
    assert m["descriptor/n"] == 4 and m["descriptor/n_undefined"] == 1
    h, s, _, _ = matrices()
    assert m["descriptor/n_positive"] == 1
    assert m["descriptor/mean_r"] == pytest.approx(
        np.mean([np_pearson(h[:, k], s[:, k]) for k in range(3)]), abs=1e-6
    )
    # The instrument profiles now have four entries and stay defined.
    assert m["instrument/n_undefined"] == 0 and not math.isnan(m["instrument/A/pearson"])


def test_a_model_with_identical_similarities_gives_nan_with_a_warning():
    pairs, store = make_pairs()
    probe = TimbreCorrelationProbe(pairs, instrument_groups=GROUPS, template=TEMPLATE)
    # Every recording on the same vector: each descriptor's similarities are equal across instruments.
    same_audio = angle_embedder(store, clip_angles=dict.fromkeys(CLIP_ANGLES, 20.0))
    with pytest.warns(
        UndefinedCorrelationWarning,
        match=r"3 descriptor\(s\): 'bright' \(constant model similarities\)",
    ):
        m = probe.run(same_audio).metrics
    assert all(math.isnan(m[f"descriptor/{d}/pearson"]) for d in TEXT_ANGLES)
    assert (
        m["descriptor/n_undefined"] == 3
        and m["descriptor/n_positive"] == 0
        and math.isnan(m["descriptor/mean_r"])
    )
    assert m["instrument/n_undefined"] == 0
    # Every text on the same vector: each instrument's profile is flat.
    same_text = angle_embedder(store, text_angles=dict.fromkeys(TEXT_ANGLES, 20.0))
    with pytest.warns(
        UndefinedCorrelationWarning,
        match=r"instrument-level .* 'A' \(constant model similarities\)",
    ):
        m = probe.run(same_text).metrics
    assert m["instrument/n_undefined"] == 4 and math.isnan(m["instrument/mean_r"])
    assert (
        m["group/Chinese/instrument/n_undefined"] == 2
        and m["group/Chinese/instrument/n_positive"] == 0
    )
    assert m["descriptor/n_undefined"] == 0
    # The figures and tables still build.
    with pytest.warns(UndefinedCorrelationWarning):
        result = probe.run(same_text)
    for make in result.figures.values():
        assert isinstance(make(), Figure)
    assert "nan" in result.tables["Timbre Exp. 1 — positive correlations and mean r"].render(
        {"m": result.metrics}
    )


# -- validation ---------------------------------------------------------------------------------


def test_an_instrument_with_two_recordings_is_refused():
    pairs, store = make_pairs()
    rows = [
        RatedPair("A2.wav", p.text, p.score, group=p.group)
        if p.group == "A" and "dark" in p.text
        else p
        for p in pairs
    ]
    with pytest.raises(
        ValueError, match=r"exactly one recording; 1 have several: 'A': 2 \(A.wav, A2.wav\)"
    ):
        TimbreCorrelationProbe(RatedPairs(rows, store, name="toy"))


def test_two_scores_for_one_cell_are_refused():
    pairs, store = make_pairs()
    rows = list(pairs) + [RatedPair("B.wav", "a dark sound", 0.1, group="B")]
    with pytest.raises(
        ValueError,
        match=r"toy: instrument 'B' has more than one score for 'a dark sound' \(pair 12\)",
    ):
        TimbreCorrelationProbe(RatedPairs(rows, store, name="toy"))


def test_missing_cells_are_named():
    ratings = {i: dict(by_descriptor) for i, by_descriptor in RATINGS.items()}
    del ratings["C"]["raspy"], ratings["D"]["dark"]
    pairs, _ = make_pairs(ratings)
    with pytest.raises(
        ValueError,
        match=r"2 \(instrument, descriptor\) cell\(s\) missing: 'C' x 'a raspy sound', "
        r"'D' x 'a dark sound'",
    ):
        TimbreCorrelationProbe(pairs)


@pytest.mark.parametrize(
    "keep_instruments, keep_descriptors, got",
    [
        (["A", "B"], ["bright", "dark", "raspy"], "2 instrument(s) and 3 descriptor(s)"),
        (["A", "B", "C", "D"], ["bright", "dark"], "4 instrument(s) and 2 descriptor(s)"),
    ],
)
def test_fewer_than_three_instruments_or_descriptors_are_refused(
    keep_instruments, keep_descriptors, got
):
    ratings = {i: {d: RATINGS[i][d] for d in keep_descriptors} for i in keep_instruments}
    pairs, _ = make_pairs(ratings)
    with pytest.raises(
        ValueError,
        match=f"at least 3 instruments and 3 descriptors .*got {got}".replace("(", r"\(").replace(
            ")", r"\)"
        ),
    ):
        TimbreCorrelationProbe(pairs)


def test_pairs_without_instrument_name_are_refused():
    pairs, store = make_pairs()
    rows = [RatedPair(p.audio, p.text, p.score) if k == 4 else p for k, p in enumerate(pairs)]
    with pytest.raises(
        ValueError, match=r"1 pair\(s\) without a group \(the instrument name\), e.g. pair 4"
    ):
        TimbreCorrelationProbe(RatedPairs(rows, store, name="toy"))


def test_descriptor_names_from_the_template():
    texts = ["a bright sound", "a dark sound", "something else"]
    assert descriptor_names(texts, "a {descriptor} sound") == {
        "a bright sound": "bright",
        "a dark sound": "dark",
        "something else": "something else",
    }
    assert descriptor_names(texts, None) == {t: t for t in texts}
    assert descriptor_names(["bright", "dark"], "{descriptor}") == {
        "bright": "bright",
        "dark": "dark",
    }
    # Two texts that would be shown alike -> every text shows itself.
    assert descriptor_names(["bright", "a bright sound"], "a {descriptor} sound") == {
        "bright": "bright",
        "a bright sound": "a bright sound",
    }
    with pytest.raises(ValueError, match="must contain"):
        descriptor_names(texts, "a {timbre} sound")
    pairs, store = make_pairs()
    assert TimbreCorrelationProbe(pairs).descriptors == [
        "a bright sound",
        "a dark sound",
        "a raspy sound",
    ]
    assert (
        "descriptor/a bright sound/pearson"
        in TimbreCorrelationProbe(pairs).run(angle_embedder(store)).metrics
    )


# -- embedding, tables and figures ---------------------------------------------------------------


def test_each_recording_and_descriptor_is_embedded_once():
    pairs, store = make_pairs()
    probe = TimbreCorrelationProbe(pairs, template=TEMPLATE)
    inputs = probe.inputs()
    assert [ref.key for ref in inputs.audio] == ["A.wav", "B.wav", "C.wav", "D.wav"]
    assert all(ref.store is store for ref in inputs.audio)
    assert inputs.texts == ["a bright sound", "a dark sound", "a raspy sound"]
    embedder = angle_embedder(store)
    probe.run(embedder)
    assert embedder.audio_items == Counter({f"{i}.wav": 1 for i in RATINGS})
    assert embedder.text_items == Counter(dict.fromkeys(inputs.texts, 1))
    assert store.loads == Counter({f"{i}.wav": 1 for i in RATINGS})
    # Through a shared cache, together with the relevance probe on the same pairs: still once each.
    embedder = angle_embedder(store)
    results, cache = run_probes(
        {"relevance": RelevanceProbe(pairs), "timbre_correlation": probe}, embedder
    )
    assert cache.embedded == {"audio": 4, "text": 3}
    assert set(embedder.audio_items.values()) == {1} and set(embedder.text_items.values()) == {1}
    again = probe.run(cache)
    assert cache.embedded == {"audio": 4, "text": 3}
    assert again.metrics == pytest.approx(results["timbre_correlation"].metrics)
    assert isinstance(cache, EmbeddingCache)


def test_table_cells_are_metrics():
    pairs, store = make_pairs()
    result = TimbreCorrelationProbe(pairs, instrument_groups=GROUPS, template=TEMPLATE).run(
        angle_embedder(store)
    )
    summary = result.tables["Timbre Exp. 1 — positive correlations and mean r"]
    by_descriptor = result.tables["Timbre Exp. 1 — descriptor-level Pearson r"]
    for table in (summary, by_descriptor):
        assert all(key in result.metrics for _, key in table.columns)
    assert [h for h, _ in by_descriptor.columns] == ["bright", "dark", "raspy"]
    assert ("Western r > 0", "group/Western/instrument/n_positive") in summary.columns
    row = summary.render({"toy": result.metrics}).splitlines()[2]
    m = result.metrics
    assert row == (
        f"| toy | 1 | 3 | {m['descriptor/mean_r']:.3f} | 3 | 4 | {m['instrument/mean_r']:.3f} | "
        f"2 | 2 | {m['group/Chinese/instrument/mean_r']:.3f} | 1 | 2 | "
        f"{m['group/Western/instrument/mean_r']:.3f} |"
    )
    row = by_descriptor.render({"toy": m}).splitlines()[2]
    assert (
        row
        == "| toy | "
        + " | ".join(f"{m[f'descriptor/{d}/pearson']:.3f}" for d in TEXT_ANGLES)
        + " |"
    )


def test_figures_are_sorted_bar_charts_per_level_and_group():
    pairs, store = make_pairs()
    result = TimbreCorrelationProbe(pairs, instrument_groups=GROUPS, template=TEMPLATE).run(
        angle_embedder(store)
    )
    m = result.metrics
    assert set(result.figures) == {
        "descriptor_correlation",
        "instrument_correlation-Chinese",
        "instrument_correlation-Western",
    }
    figure = result.figures["descriptor_correlation"]()
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    axes = figure.axes[0]
    expected = sorted(((m[f"descriptor/{d}/pearson"], d) for d in TEXT_ANGLES), reverse=True)
    assert [round(p.get_height(), 9) for p in axes.patches] == [round(r, 9) for r, _ in expected]
    assert [t.get_text() for t in axes.get_xticklabels()] == [d for _, d in expected]
    assert "1/3 descriptors r > 0" in axes.get_title()
    western = result.figures["instrument_correlation-Western"]().axes[0]
    assert sorted(t.get_text() for t in western.get_xticklabels()) == ["C", "D"]
    assert "Western" in western.get_title() and "1/2 instruments r > 0" in western.get_title()
    # Without groups: one instrument figure with every instrument.
    plain = TimbreCorrelationProbe(pairs).run(angle_embedder(store)).figures
    assert set(plain) == {"descriptor_correlation", "instrument_correlation"}
    assert len(plain["instrument_correlation"]().axes[0].patches) == 4


# -- read_timbre_ratings' instrument_group column and the real tiny model ----------------------

TABLE = (
    "instrument_id,instrument_name,instrument_group,bright,dark,raspy\n"
    "001,erhu,Chinese,6,3,7\n002,pipa,Chinese,8,2,4\n003,violin,Western,5,4,6\n004,tuba,Western,2,9,3\n"
)


@pytest.fixture
def timbre_files(tmp_path):
    """A ratings table with groups and one generated recording per instrument (48 kHz, 0.5 s)."""
    (tmp_path / "wav").mkdir()
    t = np.arange(24_000) / 48_000
    rng = np.random.default_rng(0)
    for k, (name, f0) in enumerate(
        [("erhu", 440.0), ("pipa", 880.0), ("violin", 330.0), ("tuba", 110.0)]
    ):
        wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * k * rng.standard_normal(t.size)
        sf.write(tmp_path / "wav" / f"{name}.wav", wave.astype(np.float32), 48_000, subtype="FLOAT")
    (tmp_path / "timbre.csv").write_text(TABLE, encoding="utf-8")
    (tmp_path / "recordings.csv").write_text(
        "instrument_id,audio\n001,wav/erhu.wav\n002,wav/pipa.wav\n003,wav/violin.wav\n004,wav/tuba.wav\n",
        encoding="utf-8",
    )
    return tmp_path


def test_instrument_group_column_becomes_group_sets(timbre_files):
    pairs = read_timbre_ratings(timbre_files / "timbre.csv", timbre_files / "recordings.csv")
    assert pairs.group_sets == {"Chinese": ["erhu", "pipa"], "Western": ["violin", "tuba"]}
    assert sorted({p.text for p in pairs}) == [
        "bright",
        "dark",
        "raspy",
    ]  # the group column is no descriptor
    assert len(pairs) == 12
    assert pairs.split_by_audio(0.5).select("validation").group_sets == pairs.group_sets
    (timbre_files / "timbre.csv").write_text(
        TABLE.replace("003,violin,Western", "003,violin,"), encoding="utf-8"
    )
    with pytest.raises(
        DataError,
        match=r"timbre.csv, line 4: empty instrument_group for instrument '003' \(violin\)",
    ):
        read_timbre_ratings(timbre_files / "timbre.csv", timbre_files / "recordings.csv")
    # Without the column: no groups, as before.
    (timbre_files / "timbre.csv").write_text(
        "instrument_id,instrument_name,bright\n001,erhu,3\n", encoding="utf-8"
    )
    assert (
        read_timbre_ratings(timbre_files / "timbre.csv", timbre_files / "recordings.csv").group_sets
        == {}
    )


def test_tiny_model_end_to_end(timbre_files, tiny_backbone):
    pairs = read_timbre_ratings(
        timbre_files / "timbre.csv",
        timbre_files / "recordings.csv",
        template="the sound is {descriptor}",
    )
    probe = TimbreCorrelationProbe(pairs, template="the sound is {descriptor}")
    cache = EmbeddingCache(tiny_backbone)
    result = probe.run(cache)
    m = result.metrics
    assert cache.embedded == {"audio": 4, "text": 3}
    assert probe.descriptors == ["bright", "dark", "raspy"]
    assert probe.groups == {"Chinese": ["erhu", "pipa"], "Western": ["violin", "tuba"]}
    # The same numbers from the model's own embeddings, computed here.
    audio = tiny_backbone.embed_audio(
        [pairs.load_audio(p, tiny_backbone.sample_rate) for p in probe.recordings]
    )
    text = tiny_backbone.embed_text(
        ["the sound is bright", "the sound is dark", "the sound is raspy"]
    )
    s = (audio.double() @ text.double().T).numpy()
    h = np.array([[6, 3, 7], [8, 2, 4], [5, 4, 6], [2, 9, 3]], dtype=float)
    for k, d in enumerate(["bright", "dark", "raspy"]):
        assert m[f"descriptor/{d}/pearson"] == pytest.approx(np_pearson(h[:, k], s[:, k]), abs=1e-4)
    for k, i in enumerate(["erhu", "pipa", "violin", "tuba"]):
        assert m[f"instrument/{i}/pearson"] == pytest.approx(np_pearson(h[k], s[k]), abs=1e-4)
    assert m["group/Chinese/instrument/n"] == 2 and m["group/Western/instrument/n"] == 2
    assert all(math.isfinite(v) for v in m.values())
    for make in result.figures.values():
        assert len(make().axes) == 1


def test_hydra_config_and_evaluate_end_to_end(timbre_files, compose_evaluate):
    """recipes/probes/timbre_correlation.yaml on data=timbre_ratings: the template follows the data."""
    from humanclap.evaluate import evaluate

    cfg = compose_evaluate(
        "probes=[timbre_correlation]",
        "data=timbre_ratings",
        "split=null",
        f"data.pairs.ratings_csv={timbre_files / 'timbre.csv'}",
        f"data.pairs.recordings={timbre_files / 'recordings.csv'}",
        'data.pairs.template="a {descriptor} timbre"',
    )
    assert cfg.probes.timbre_correlation.template == "a {descriptor} timbre"
    evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())["models"]["tiny"]["metrics"][
        "timbre_correlation"
    ]
    assert {
        "descriptor/bright/pearson",
        "instrument/tuba/spearman",
        "group/Western/instrument/mean_r",
        "descriptor/n_positive",
        "instrument/n_undefined",
    } <= set(metrics)
    report = (out / "report.md").read_text()
    assert (
        "### Timbre Exp. 1 — descriptor-level Pearson r" in report
        and "| model | bright | dark | raspy |" in report
    )
    pngs = sorted(p.name for p in (out / "figures" / "tiny").glob("*.png"))
    assert pngs == [
        "timbre_correlation-descriptor_correlation.png",
        "timbre_correlation-instrument_correlation-Chinese.png",
        "timbre_correlation-instrument_correlation-Western.png",
    ]
