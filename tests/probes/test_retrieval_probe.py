"""Retrieval probe: R@k, MRR and mAP@k against values worked out by hand on 2-D embeddings with
known cosines (with and without ties), a plain-numpy cross-check on random data, and the plumbing
(cache, inputs, table, errors)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from fakes import MemoryStore, VectorEmbedder, unit

from humanclap.data.pairs import RatedPair, RatedPairs
from humanclap.probes.cache import EmbeddingCache
from humanclap.probes.retrieval.probe import RetrievalProbe, retrieval_metrics

METRICS = ("R@1", "R@5", "R@10", "MRR", "mAP@10")


def make_probe(rows, clip_vectors, text_vectors, **kwargs):
    """rows: (clip, text, score); returns the probe and an embedder for it."""
    store = MemoryStore({clip for clip, _, _ in rows})
    pairs = RatedPairs([RatedPair(audio=c, text=t, score=s) for c, t, s in rows], store, name="toy")
    return RetrievalProbe(pairs, **kwargs), VectorEmbedder(store, clip_vectors, text_vectors), store


def check(metrics: dict, prefix: str, expected: dict, optimistic: dict | None = None):
    """Every expected value, and the _optimistic ones (default: the same, as without ties)."""
    for name, value in expected.items():
        assert metrics[f"{prefix}/{name}"] == pytest.approx(value, rel=1e-6, abs=1e-7), (
            prefix,
            name,
        )
    for name, value in (optimistic or expected).items():
        if not name.startswith("n_"):
            assert metrics[f"{prefix}/{name}_optimistic"] == pytest.approx(
                value, rel=1e-6, abs=1e-7
            ), (prefix, name)


# -- 1. no ties: 3 texts x 4 clips ------------------------------------------------------------------
# Clips and texts are 2-D unit vectors at these angles (degrees): cos = cos(θ_clip - θ_text).
ANGLES_CLIPS = {"c0": 0.0, "c1": 40.0, "c2": 100.0, "c3": 170.0}
ANGLES_TEXTS = {"t0": 10.0, "t1": 60.0, "t2": 140.0, "t3": 320.0}
CLIPS = {k: unit(a) for k, a in ANGLES_CLIPS.items()}
TEXTS = {k: unit(a) for k, a in ANGLES_TEXTS.items()}
# Text rows, best clip first (cosines):
#   t0: c0 .985, c1 .866, c2 0, c3 -.940     match c1 -> rank 2
#   t1: c1 .940, c2 .766, c0 .5, c3 -.342    match c0 -> rank 3
#   t2: c3 .866, c2 .766, c1 -.174, c0 -.766 match c3 -> rank 1   (t2-c2 is rated 0.2: no match)
# Clip rows over the texts t0, t1, t2:
#   c0: t0 .985, t1 .5, t2 -.766   match t1 -> rank 2
#   c1: t1 .940, t0 .866, t2 -.174 match t0 -> rank 2
#   c2: no match -> not a query (still a clip of the t2a gallery)
#   c3: t2 .866, t1 -.342, t0 -.940 match t2 -> rank 1
ROWS = [("c1", "t0", 0.9), ("c0", "t1", 0.8), ("c3", "t2", 1.0), ("c2", "t2", 0.2)]


def test_no_ties_by_hand():
    probe, embedder, _ = make_probe(ROWS, CLIPS, TEXTS)
    metrics = probe.run(embedder).metrics
    # t2a ranks 2, 3, 1: R@1 = 1/3, R@5 = R@10 = 1, MRR = (1/2 + 1/3 + 1)/3 = 11/18; one match per
    # query, so AP@10 = 1/rank and mAP@10 = MRR.
    check(
        metrics,
        "t2a",
        {
            "R@1": 1 / 3,
            "R@5": 1.0,
            "R@10": 1.0,
            "MRR": 11 / 18,
            "mAP@10": 11 / 18,
            "n_queries": 3,
            "n_gallery": 4,
        },
    )
    # a2t ranks 2, 2, 1 (c2 left out): R@1 = 1/3, MRR = mAP@10 = (1/2 + 1/2 + 1)/3 = 2/3.
    check(
        metrics,
        "a2t",
        {
            "R@1": 1 / 3,
            "R@5": 1.0,
            "R@10": 1.0,
            "MRR": 2 / 3,
            "mAP@10": 2 / 3,
            "n_queries": 3,
            "n_gallery": 3,
        },
    )
    # Random ranking, one match per query: H_N / N, N = 4 clips (t2a) or 3 texts (a2t).
    assert metrics["t2a/MRR_random"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert metrics["a2t/MRR_random"] == pytest.approx(11 / 18)
    assert set(metrics) == {
        f"{d}/{m}{s}" for d in ("t2a", "a2t") for m in METRICS for s in ("", "_optimistic")
    } | {f"{d}/{n}" for d in ("t2a", "a2t") for n in ("MRR_random", "n_queries", "n_gallery")}


def test_queries_without_a_match_are_left_out_but_stay_in_the_gallery():
    # t3 (320°) is only in a no-match pair: not a t2a query, but an a2t gallery text. It scores
    # .766 for c0, above c0's match t1 (.5): c0's rank goes 2 -> 3. For c1 (.174) and c3 (-.866)
    # it ranks below the match. a2t: ranks 3, 2, 1 -> MRR = (1/3 + 1/2 + 1)/3 = 11/18.
    probe, embedder, _ = make_probe(ROWS + [("c0", "t3", 0.3)], CLIPS, TEXTS)
    metrics = probe.run(embedder).metrics
    check(metrics, "t2a", {"R@1": 1 / 3, "MRR": 11 / 18, "n_queries": 3, "n_gallery": 4})
    check(
        metrics,
        "a2t",
        {
            "R@1": 1 / 3,
            "R@5": 1.0,
            "MRR": 11 / 18,
            "mAP@10": 11 / 18,
            "n_queries": 3,
            "n_gallery": 4,
        },
    )


def test_match_threshold_is_inclusive():
    # At 0.2 the t2-c2 pair becomes a match: c2 turns into an a2t query, and t2 has two matches
    # (c3, c2 at ranks 1, 2: AP = (1/1 + 2/2)/2 = 1, so the t2a numbers do not change).
    probe, embedder, _ = make_probe(ROWS, CLIPS, TEXTS, match_threshold=0.2)
    metrics = probe.run(embedder).metrics
    check(metrics, "t2a", {"R@1": 1 / 3, "MRR": 11 / 18, "mAP@10": 11 / 18, "n_queries": 3})
    assert metrics["a2t/n_queries"] == 4
    # MRR_random with each query's own m: t0, t1 one match among 4 clips (H_4/4 = 25/48), t2 two
    # ((3/1 + 2/2 + 1/3)/C(4,2) = 13/18).
    assert metrics["t2a/MRR_random"] == pytest.approx((2 * 25 / 48 + 13 / 18) / 3)
    assert RetrievalProbe(probe.pairs, match_threshold=0.9).matches.sum() == 2  # 0.9 and 1.0


def test_a_match_with_a_negative_cosine_still_counts():
    # torchmetrics' MRR and AP treat a relevant item whose score is <= 0 as irrelevant, so they
    # would give 0 here on raw cosines; the probe ranks by the cosines themselves.
    # Both clips are on the far side of the text x (115°): c0 (0°) -.423 is its match and best,
    # c1 (250°) -.707.
    probe, embedder, _ = make_probe(
        [("c0", "x", 1.0), ("c1", "y", 0.0)],
        {"c0": unit(0), "c1": unit(250)},
        {"x": unit(115), "y": unit(190)},
    )
    metrics = probe.run(embedder).metrics
    check(metrics, "t2a", {"R@1": 1.0, "MRR": 1.0, "mAP@10": 1.0, "n_queries": 1, "n_gallery": 2})


# -- 2. ties -------------------------------------------------------------------------------------------
# Exact vectors, so ties are exact: c1 is a copy of c0.
TIE_CLIPS = {"c0": [1.0, 0.0], "c1": [1.0, 0.0], "c2": [0.0, 1.0], "c3": [0.6, 0.8]}
TIE_TEXTS = {"t0": [1.0, 0.0], "t1": [0.0, 1.0], "t2": [0.8, 0.6]}
# Text rows (scores):
#   t0: c0 1, c1 1, c3 .6, c2 0       match c1, tied with c0: pessimistic rank 2, optimistic 1
#   t1: c2 1, c3 .8, c0 0, c1 0       match c0 (score 0), tied with c1: pessimistic 4, optimistic 3
#   t2: c3 .96, c0 .8, c1 .8, c2 .6   matches c0 and c1, tied with each other only: ranks 2, 3 both ways
# Clip rows over t0, t1, t2 (c0 and c1 are separate queries, so no ties within a row):
#   c0: t0 1, t2 .8, t1 0   matches t1, t2 -> ranks 2, 3
#   c1: t0 1, t2 .8, t1 0   matches t0, t2 -> ranks 1, 2
TIE_ROWS = [
    ("c1", "t0", 1.0),
    ("c0", "t1", 1.0),
    ("c0", "t2", 1.0),
    ("c1", "t2", 1.0),
    ("c2", "t1", 0.0),
    ("c3", "t2", 0.0),
]


def test_ties_pessimistic_and_optimistic_by_hand():
    probe, embedder, _ = make_probe(TIE_ROWS, TIE_CLIPS, TIE_TEXTS, ks=(1, 2, 3), map_k=3)
    metrics = probe.run(embedder).metrics
    # Pessimistic first-match ranks 2, 4, 2:
    #   R@1 = 0, R@2 = R@3 = 2/3, MRR = (1/2 + 1/4 + 1/2)/3 = 5/12
    #   AP@3: t0 1/2; t1 no match in the top 3 -> 0; t2 (1/2 + 2/3)/2 = 7/12 -> mAP@3 = (1/2 + 7/12)/3 = 13/36
    # Optimistic first-match ranks 1, 3, 2:
    #   R@1 = 1/3, R@2 = 2/3, R@3 = 1, MRR = (1 + 1/3 + 1/2)/3 = 11/18
    #   AP@3: t0 1; t1 1/3; t2 7/12 -> mAP@3 = (1 + 1/3 + 7/12)/3 = 23/36
    check(
        metrics,
        "t2a",
        {
            "R@1": 0.0,
            "R@2": 2 / 3,
            "R@3": 2 / 3,
            "MRR": 5 / 12,
            "mAP@3": 13 / 36,
            "n_queries": 3,
            "n_gallery": 4,
        },
        optimistic={"R@1": 1 / 3, "R@2": 2 / 3, "R@3": 1.0, "MRR": 11 / 18, "mAP@3": 23 / 36},
    )
    # a2t, no ties: first-match ranks 2, 1 -> R@1 = 1/2, MRR = 3/4;
    # AP@3: c0 (1/2 + 2/3)/2 = 7/12, c1 (1/1 + 2/2)/2 = 1 -> mAP@3 = 19/24. c2, c3 have no match.
    check(
        metrics,
        "a2t",
        {
            "R@1": 0.5,
            "R@2": 1.0,
            "R@3": 1.0,
            "MRR": 3 / 4,
            "mAP@3": 19 / 24,
            "n_queries": 2,
            "n_gallery": 3,
        },
    )


def test_constant_scores_are_the_worst_case_pessimistically():
    """A collapsed model (every score equal): each match ranks behind every non-match."""
    scores = torch.zeros(2, 5, dtype=torch.float64)
    matches = torch.tensor([[False, True, False, False, False], [True, False, False, False, True]])
    metrics = retrieval_metrics(scores, matches, ks=(1, 4), map_k=5)
    # Row 0: 4 non-matches first -> rank 5. Row 1: 3 non-matches first -> matches at 4, 5.
    assert metrics["R@1"] == 0 and metrics["R@4"] == pytest.approx(0.5)
    assert metrics["MRR"] == pytest.approx((1 / 5 + 1 / 4) / 2)
    assert metrics["mAP@5"] == pytest.approx((1 / 5 + (1 / 4 + 2 / 5) / 2) / 2)
    # Optimistic: the matches come first -> ranks 1 and (1, 2): everything is 1.
    for name in ("R@1", "R@4", "MRR", "mAP@5"):
        assert metrics[f"{name}_optimistic"] == pytest.approx(1.0), name


def test_ties_closer_than_float32_are_kept_apart():
    # Two scores 1e-12 apart: distinct in float64, equal in float32 (torchmetrics' precision).
    scores = torch.tensor([[0.3 + 1e-12, 0.3, 0.1]], dtype=torch.float64)
    metrics = retrieval_metrics(scores, torch.tensor([[False, True, False]]), ks=(1,), map_k=1)
    assert metrics["MRR"] == pytest.approx(0.5) and metrics["MRR_optimistic"] == pytest.approx(0.5)
    metrics = retrieval_metrics(scores, torch.tensor([[True, False, False]]), ks=(1,), map_k=1)
    assert metrics["MRR"] == 1.0 and metrics["R@1"] == 1.0


# -- 3. several captions per clip, a caption for two clips --------------------------------------------


def test_several_captions_per_clip():
    # Clip c0 has captions a and b, c1 has d, c2 has e.
    clips = {"c0": unit(0), "c1": unit(100), "c2": unit(200)}
    texts = {"a": unit(5), "b": unit(140), "d": unit(120), "e": unit(250)}
    rows = [("c0", "a", 1.0), ("c0", "b", 1.0), ("c1", "d", 1.0), ("c2", "e", 1.0)]
    probe, embedder, _ = make_probe(rows, clips, texts)
    metrics = probe.run(embedder).metrics
    # a2t rows: c0: a .996, e -.342, d -.5, b -.766 -> matches at 1 and 4: a hit at 1 whichever
    #           caption it is; AP = (1/1 + 2/4)/2 = 3/4.
    #           c1: d .940 first; c2: e .643 first.
    #   R@1 = 1, MRR = 1, mAP@10 = (3/4 + 1 + 1)/3 = 11/12
    check(
        metrics,
        "a2t",
        {"R@1": 1.0, "R@5": 1.0, "MRR": 1.0, "mAP@10": 11 / 12, "n_queries": 3, "n_gallery": 4},
    )
    # t2a: a -> c0 rank 1; b: c1 .766, c2 .5, c0 -.766 -> rank 3; d -> c1 rank 1; e -> c2 rank 1.
    #   R@1 = 3/4, MRR = mAP@10 = (1 + 1/3 + 1 + 1)/4 = 5/6
    check(
        metrics,
        "t2a",
        {"R@1": 3 / 4, "R@5": 1.0, "MRR": 5 / 6, "mAP@10": 5 / 6, "n_queries": 4, "n_gallery": 3},
    )


def test_a_caption_matching_two_clips():
    # "x" describes both c0 and c1 (AudioCaps repeats captions across clips); y describes c2.
    clips = {"c0": unit(0), "c1": unit(60), "c2": unit(200)}
    texts = {"x": unit(115), "y": unit(190)}
    rows = [("c0", "x", 1.0), ("c1", "x", 1.0), ("c2", "y", 1.0)]
    probe, embedder, _ = make_probe(rows, clips, texts)
    metrics = probe.run(embedder).metrics
    # t2a: x: c1 .574, c2 .087, c0 -.423 -> matches at 1, 3: AP = (1 + 2/3)/2 = 5/6; y -> c2 first.
    #   R@1 = 1, MRR = 1, mAP@10 = (5/6 + 1)/2 = 11/12
    check(
        metrics, "t2a", {"R@1": 1.0, "MRR": 1.0, "mAP@10": 11 / 12, "n_queries": 2, "n_gallery": 3}
    )
    # a2t: c0: x -.423 > y -.985 (a negative cosine, still first); c1: x first; c2: y first.
    check(metrics, "a2t", {"R@1": 1.0, "MRR": 1.0, "mAP@10": 1.0, "n_queries": 3, "n_gallery": 2})


# -- 4. cross-check on random data against plain numpy ---------------------------------------------------


def numpy_reference(
    sim: np.ndarray, matches: np.ndarray, ks, map_k, optimistic=False
) -> dict[str, float]:
    """rank of a match = 1 + number of other gallery items scoring >= it (pessimistic) or > it."""
    values = {f"R@{k}": [] for k in ks} | {"MRR": [], f"mAP@{map_k}": []}
    for row, match in zip(sim, matches):
        if not match.any():
            continue
        ranks = []
        for j in np.flatnonzero(match):
            others = np.delete(row, j)
            ranks.append(1 + int(np.sum(others > row[j] if optimistic else others >= row[j])))
        ranks = np.sort(ranks)
        for k in ks:
            values[f"R@{k}"].append(float(ranks[0] <= k))
        values["MRR"].append(1.0 / ranks[0])
        found = [(i + 1) / r for i, r in enumerate(ranks) if r <= map_k]
        values[f"mAP@{map_k}"].append(float(np.mean(found)) if found else 0.0)
    return {name: float(np.mean(v)) for name, v in values.items()} | {
        "n_queries": float(matches.any(1).sum())
    }


def random_case(seed: int, n_texts: int, n_clips: int, dim: int, levels: int | None):
    """Random embeddings and matches; with ``levels`` the vectors are a few small integer
    patterns, so many scores tie exactly (integer dot products are exact in any order)."""
    rng = np.random.default_rng(seed)
    if levels:
        text = rng.integers(-1, 2, size=(levels, dim))[rng.integers(0, levels, n_texts)].astype(
            np.float32
        )
        audio = rng.integers(-1, 2, size=(levels, dim))[rng.integers(0, levels, n_clips)].astype(
            np.float32
        )
    else:
        text = rng.standard_normal((n_texts, dim)).astype(np.float32)
        audio = rng.standard_normal((n_clips, dim)).astype(np.float32)
    matches = rng.random((n_texts, n_clips)) < 0.08
    matches[:4], matches[:, :3] = False, False  # texts and clips without a match
    return text, audio, matches


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_data_matches_numpy_without_ties(seed):
    text, audio, matches = random_case(seed, n_texts=40, n_clips=25, dim=8, levels=None)
    sim = text.astype(np.float64) @ audio.astype(np.float64).T
    ks, map_k = (1, 3, 5), 5
    for scores, match, prefix in ((sim, matches, "t2a"), (sim.T, matches.T, "a2t")):
        got = retrieval_metrics(torch.from_numpy(scores), torch.from_numpy(match), ks, map_k)
        expected = numpy_reference(scores, match, ks, map_k)
        assert 0 < expected["n_queries"] < len(match)  # some rows have no match and are left out
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-7), (prefix, name)
            if name != "n_queries":
                assert got[f"{name}_optimistic"] == pytest.approx(value, rel=1e-6, abs=1e-7), (
                    prefix,
                    name,
                )


@pytest.mark.parametrize("seed", [0, 1])
def test_random_data_with_many_ties_matches_numpy(seed):
    # One match per query (each text its own clip), so "rank = 1 + items scoring >= it" is exact.
    n = 30
    text, audio, _ = random_case(seed, n_texts=n, n_clips=n, dim=3, levels=4)
    matches = np.eye(n, dtype=bool)
    store = MemoryStore({f"clip{i}" for i in range(n)})
    pairs = RatedPairs(
        [RatedPair(audio=f"clip{i}", text=f"text{i}", score=1.0) for i in range(n)], store
    )
    embedder = VectorEmbedder(
        store, {f"clip{i}": audio[i] for i in range(n)}, {f"text{i}": text[i] for i in range(n)}
    )
    metrics = RetrievalProbe(pairs, ks=(1, 3), map_k=5).run(embedder).metrics
    sim = text.astype(np.float64) @ audio.astype(np.float64).T
    assert len(np.unique(sim)) < sim.size / 4  # plenty of exact ties
    for prefix, scores in (("t2a", sim), ("a2t", sim.T)):
        for optimistic in (False, True):
            suffix = "_optimistic" if optimistic else ""
            for name, value in numpy_reference(scores, matches, (1, 3), 5, optimistic).items():
                key = f"{prefix}/{name}{'' if name == 'n_queries' else suffix}"
                assert metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
        assert metrics[f"{prefix}/MRR"] < metrics[f"{prefix}/MRR_optimistic"]


# -- 5. plumbing ------------------------------------------------------------------------------------------


def test_inputs_list_each_clip_and_text_once_and_cache_and_embedder_agree():
    rows = [
        ("c0", "t0", 1.0),
        ("c1", "t0", 1.0),
        ("c0", "t1", 0.2),
        ("c2", "t2", 0.9),
        ("c1", "t1", 0.7),
    ]
    clips = {"c0": unit(0), "c1": unit(50), "c2": unit(200)}
    texts = {"t0": unit(20), "t1": unit(70), "t2": unit(180)}
    probe, embedder, store = make_probe(rows, clips, texts, batch_size=2)
    inputs = probe.inputs()
    assert [ref.key for ref in inputs.audio] == ["c0", "c1", "c2"]  # order of first appearance
    assert all(ref.store is store for ref in inputs.audio)
    assert inputs.texts == ["t0", "t1", "t2"]

    direct = probe.run(embedder).metrics
    assert embedder.audio_items == Counter({"c0": 1, "c1": 1, "c2": 1})
    assert embedder.text_items == Counter({"t0": 1, "t1": 1, "t2": 1})

    fresh = VectorEmbedder(store, clips, texts)
    cache = EmbeddingCache(fresh, batch_size=2)
    cache.prefetch([inputs])
    cached = probe.run(cache).metrics
    assert cached == direct
    assert cache.embedded == {"audio": 3, "text": 3}  # run() found everything in the cache
    assert probe.run(cache).metrics == direct and cache.embedded == {"audio": 3, "text": 3}


def test_table_shows_only_metrics_and_says_how_ties_count():
    probe, embedder, _ = make_probe(ROWS, CLIPS, TEXTS)
    result = probe.run(embedder)
    assert list(result.tables) == ["retrieval"] and result.figures == {}
    table = result.tables["retrieval"]
    names = ("R@1", "R@5", "R@10", "MRR", "MRR random", "mAP@10", "n_queries")
    assert [h for h, _ in table.columns] == [f"{d} {m}" for d in ("t2a", "a2t") for m in names]
    assert table.columns[4] == ("t2a MRR random", "t2a/MRR_random")  # beside MRR
    assert "MRR random: the MRR a uniformly random ranking expects" in table.note
    assert all(key in result.metrics for _, key in table.columns)
    assert "ties count against the model: a tied wrong item ranks ahead" in table.note.lower()
    lines = table.render({"toy": result.metrics}).splitlines()
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells == [
        "toy",
        *(
            f"{result.metrics[key]:.3f}"
            if not key.endswith("n_queries")
            else str(int(result.metrics[key]))
            for _, key in table.columns
        ),
    ]
    # t2a R@1 = 1/3, MRR random = 25/48, n_queries = 3
    assert cells[1] == "0.333" and cells[5] == "0.521" and cells[7] == "3"


# -- 6. errors ------------------------------------------------------------------------------------------


def test_no_match_at_all_is_refused_with_the_scores_present():
    rows = [("c0", "t0", 0.1), ("c1", "t1", 0.3)]
    with pytest.raises(
        ValueError, match=r"toy.*match_threshold=0\.5.*scores present: 0\.1 to 0\.3"
    ):
        make_probe(rows, CLIPS, TEXTS)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ks": ()}, "ks must be"),
        ({"ks": (1, 0)}, "ks must be"),
        ({"ks": (5, -1)}, "ks must be"),
        ({"ks": (1.5,)}, "ks must be"),
        ({"map_k": 0}, "map_k must be"),
    ],
)
def test_bad_cutoffs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_probe(ROWS, CLIPS, TEXTS, **kwargs)


def test_non_finite_embeddings_are_refused():
    probe, embedder, _ = make_probe(ROWS, CLIPS | {"c2": [float("nan"), 0.0]}, TEXTS)
    with pytest.raises(ValueError, match="non-finite"):
        probe.run(embedder)
