"""Relevance probe (human-clap eq. 1, Tables I-III) on a fake embedder with known cosines, checked
against scipy/numpy; the sharded embedding helper with simulated ranks; one run on the tiny model."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import scipy.stats
import torch
from fakes import MemoryStore, VectorEmbedder, run_threaded_ranks, unit

from humanclap.data.pairs import RatedPair, RatedPairs
from humanclap.data.synthetic.sounds import synthetic_pairs
from humanclap.probes.relevance.probe import RelevanceProbe
from humanclap.probes.sharded import embed_sharded

# Clips and texts are 2-D unit vectors at these angles (degrees): cos(audio, text) = cos(θ - φ).
CLIP_ANGLES = {"c0": 0.0, "c1": 40.0, "c2": 100.0, "c3": 170.0}
TEXT_ANGLES = {"t0": 10.0, "t1": 60.0, "t2": 135.0, "t3": 250.0}
# (clip, text, human score, group); the cosine is in the comment.
PAIRS = [
    ("c0", "t0", 0.90, "natural"),  # cos -10° = 0.985
    ("c0", "t1", 0.60, "natural"),  # cos -60° = 0.5
    ("c0", "t3", 0.10, "natural"),  # cos -250° < 0 -> 0
    ("c1", "t0", 0.80, "natural"),  # cos 30° = 0.866
    ("c1", "t2", 0.50, "tta_a"),  # cos -95° < 0 -> 0
    ("c1", "t3", 0.20, "tta_a"),  # cos -210° < 0 -> 0
    ("c2", "t1", 0.70, "tta_a"),  # cos 40° = 0.766
    ("c2", "t2", 0.55, "tta_a"),  # cos -35° = 0.819
    ("c2", "t3", 0.30, "tta_b"),  # cos -150° < 0 -> 0
    ("c3", "t2", 0.40, "tta_b"),  # cos 35° = 0.819
    ("c3", "t1", 0.45, "tta_b"),  # cos 110° < 0 -> 0
    ("c3", "t0", 0.50, "tta_b"),  # cos 160° < 0 -> 0
    ("c0", "t2", 0.35, "tta_b"),  # cos -135° < 0 -> 0
]
GROUP_SETS = {"synthesized": ["tta_a", "tta_b"]}


def angle_embedder(
    store: MemoryStore, clip_angles=CLIP_ANGLES, text_angles=TEXT_ANGLES
) -> VectorEmbedder:
    """Hand-chosen unit vectors keyed by clip and text; records every call."""
    return VectorEmbedder(
        store,
        {k: unit(a) for k, a in clip_angles.items()},
        {t: unit(a) for t, a in text_angles.items()},
    )


def make_pairs(rows=PAIRS):
    store = MemoryStore({clip for clip, *_ in rows})
    pairs = RatedPairs(
        [RatedPair(audio=c, text=t, score=s, group=g) for c, t, s, g in rows], store, name="toy"
    )
    return pairs, store


def expected_clapscores(rows=PAIRS) -> np.ndarray:
    cosines = np.array(
        [math.cos(math.radians(CLIP_ANGLES[c] - TEXT_ANGLES[t])) for c, t, *_ in rows]
    )
    return np.maximum(cosines, 0.0)  # eq. (1)


def reference_metrics(predicted: np.ndarray, human: np.ndarray) -> dict[str, float]:
    return {
        "srcc": scipy.stats.spearmanr(predicted, human).statistic,
        "lcc": scipy.stats.pearsonr(predicted, human).statistic,
        "mse": float(np.mean((predicted - human) ** 2)),
        "ktau": scipy.stats.kendalltau(predicted, human).statistic,
    }


def reference_subsets(rows, group_sets, threshold=0.5) -> dict[str, list[int]]:
    """Indices of every subset the probe should form, written out with plain Python."""
    groups = {g: [g] for g in dict.fromkeys(r[3] for r in rows)} | group_sets
    subsets = {"": list(range(len(rows)))}
    for name, members in groups.items():
        subsets[name] = [i for i, r in enumerate(rows) if r[3] in members]
    bands = {"high": lambda s: s > threshold, "low": lambda s: s <= threshold}
    for band, test in bands.items():
        subsets[band] = [i for i, r in enumerate(rows) if test(r[2])]
    for band, test in bands.items():
        for name, members in groups.items():
            subsets[f"{band}/{name}"] = [
                i for i, r in enumerate(rows) if test(r[2]) and r[3] in members
            ]
    return subsets


# -- eq. (1) and the metrics ------------------------------------------------------------------------


def test_clapscore_clamps_negative_cosines_to_zero():
    pairs, store = make_pairs()
    probe = RelevanceProbe(pairs)
    scores = probe.clap_scores(angle_embedder(store))
    expected = expected_clapscores()
    assert scores.dtype == torch.float32
    assert np.allclose(scores.numpy(), expected, atol=1e-6)
    assert (scores == 0).sum() == 7  # the seven pairs with a negative cosine
    assert scores[0].item() == pytest.approx(math.cos(math.radians(10)), abs=1e-6)
    assert scores[1].item() == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("min_subset_size", [3, 5])
def test_metrics_equal_scipy_overall_and_per_subset(min_subset_size):
    pairs, store = make_pairs()
    result = RelevanceProbe(pairs, group_sets=GROUP_SETS, min_subset_size=min_subset_size).run(
        angle_embedder(store)
    )
    metrics = result.metrics
    predicted = expected_clapscores()
    human = np.array([r[2] for r in PAIRS])

    subsets = reference_subsets(PAIRS, GROUP_SETS)
    # Hand check of the partition: 0.5 goes to 'low'; union and band x group subsets.
    assert len(subsets) == 15
    assert len(subsets["high"]) == 5 and len(subsets["low"]) == 8
    assert (
        len(subsets["synthesized"]) == 9
        and len(subsets["low/tta_b"]) == 5
        and len(subsets["high/tta_b"]) == 0
    )

    reported = {name: idx for name, idx in subsets.items() if len(idx) >= min_subset_size}
    skipped = len(subsets) - len(reported)
    assert skipped == {3: 5, 5: 8}[min_subset_size]  # counted by hand from the table above
    assert metrics["skipped_subsets"] == skipped
    assert metrics["clapscore_min"] == 0.0
    assert metrics["clapscore_max"] == pytest.approx(math.cos(math.radians(10)), abs=1e-6)
    assert metrics["clapscore_zero_fraction"] == pytest.approx(7 / 13)
    assert metrics["clapscore_median"] == 0.0  # 7 of 13 are clamped
    assert metrics["clapscore_p95"] == pytest.approx(np.quantile(predicted, 0.95), abs=1e-6)

    for name, idx in subsets.items():
        prefix = f"{name}/" if name else ""
        if name not in reported:
            assert f"{prefix}srcc" not in metrics and f"{prefix}n" not in metrics
            continue
        assert metrics[f"{prefix}n"] == len(idx)
        expected = reference_metrics(predicted[idx], human[idx])
        for key, value in expected.items():
            assert metrics[f"{prefix}{key}"] == pytest.approx(value, rel=1e-6, abs=1e-7), (
                name,
                key,
            )

    # Tables I-III and the range table show only numbers that are in metrics ("–" where skipped).
    tables = result.tables
    assert list(tables) == [
        "Table I — agreement with human scores",
        "Table II — SRCC by group",
        "Table III — SRCC by human score",
        "CLAPScore range — eq. (1)",
    ]
    table_2 = tables["Table II — SRCC by group"]
    assert [h for h, _ in table_2.columns] == ["all", "natural", "tta_a", "tta_b", "synthesized"]
    lines = table_2.render({"toy": metrics}).splitlines()
    assert lines[0] == "| model | all | natural | tta_a | tta_b | synthesized |"
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[0] == "toy"
    for cell, (_, key) in zip(cells[1:], table_2.columns):
        assert cell == (f"{metrics[key]:.3f}" if key in metrics else "–"), key
    table_3 = tables["Table III — SRCC by human score"]
    assert [h for h, _ in table_3.columns][:2] == ["> 0.5 all", "> 0.5 natural"]
    assert [k for _, k in table_3.columns][-1] == "low/synthesized/srcc"
    for table in tables.values():
        for _, key in table.columns:
            assert (
                key in metrics or key.endswith("srcc") and key.rsplit("/", 1)[0] not in reported
            ), key


def test_overall_numbers_by_hand():
    """Spot check without scipy: MSE of the 13 pairs, and Table-III band membership at exactly 0.5."""
    pairs, store = make_pairs()
    metrics = RelevanceProbe(pairs).run(angle_embedder(store)).metrics
    cos = [math.cos(math.radians(a)) for a in (10, 60, 30, 40, 35, 35)]  # the positive cosines
    positive = [
        (cos[0], 0.9),
        (cos[1], 0.6),
        (cos[2], 0.8),
        (cos[3], 0.7),
        (cos[4], 0.55),
        (cos[5], 0.4),
    ]
    zero_scores = [0.1, 0.5, 0.2, 0.3, 0.45, 0.5, 0.35]
    mse = (sum((c - s) ** 2 for c, s in positive) + sum(s**2 for s in zero_scores)) / 13
    assert metrics["mse"] == pytest.approx(mse, rel=1e-6)
    assert metrics["n"] == 13 and metrics["high/n"] == 5 and metrics["low/n"] == 8


def test_threshold_is_applied_to_the_exact_score():
    # Just above 0.5 (closer than float32 resolution) belongs to 'high'; 0.5 itself to 'low'.
    rows = [
        ("c0", "t0", 0.5 + 1e-9, "g"),
        ("c1", "t0", 0.5, "g"),
        ("c2", "t1", 0.9, "g"),
        ("c3", "t2", 0.1, "g"),
    ]
    pairs, _ = make_pairs(rows)
    masks = RelevanceProbe(pairs).subsets()
    assert masks["high"].tolist() == [True, False, True, False]
    assert masks["low"].tolist() == [False, True, False, True]


def test_constant_predictions_give_nan_correlations():
    rows = [
        ("c0", "t3", 0.2, "g"),
        ("c1", "t3", 0.7, "g"),
        ("c3", "t1", 0.4, "g"),
        ("c2", "t3", 0.9, "g"),
    ]
    pairs, store = make_pairs(rows)
    assert (expected_clapscores(rows) == 0).all()  # every cosine <= 0
    metrics = RelevanceProbe(pairs).run(angle_embedder(store)).metrics
    for key in ("srcc", "lcc", "ktau"):
        assert math.isnan(metrics[key]), key
    assert metrics["mse"] == pytest.approx(np.mean(np.array([0.2, 0.7, 0.4, 0.9]) ** 2))
    assert metrics["clapscore_min"] == metrics["clapscore_max"] == 0.0


def test_cosine_srcc_ranks_the_unclamped_cosines():
    # cosines -0.342, -0.866, -0.940 (no ties): CLAPScore is constant 0, the cosines are not.
    rows = [("c0", "t3", 0.2, "g"), ("c1", "t3", 0.7, "g"), ("c3", "t0", 0.4, "g")]
    pairs, store = make_pairs(rows)
    embedder = angle_embedder(store, clip_angles={key: CLIP_ANGLES[key] for key in store.codes})
    metrics = RelevanceProbe(pairs).run(embedder).metrics
    raw = [math.cos(math.radians(CLIP_ANGLES[c] - TEXT_ANGLES[t])) for c, t, *_ in rows]
    assert math.isnan(metrics["srcc"])
    assert metrics["cosine_srcc"] == pytest.approx(
        scipy.stats.spearmanr(raw, [0.2, 0.7, 0.4]).statistic
    )  # -0.5


# -- embedding once, in batches ---------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_each_clip_and_text_embedded_once_in_batches(batch_size):
    pairs, store = make_pairs()
    embedder = angle_embedder(store)
    RelevanceProbe(pairs, batch_size=batch_size).run(embedder)
    assert embedder.audio_items == Counter({key: 1 for key in CLIP_ANGLES})
    assert embedder.text_items == Counter({text: 1 for text in TEXT_ANGLES})
    assert store.loads == Counter({key: 1 for key in CLIP_ANGLES})
    assert store.rates == {VectorEmbedder.sample_rate}
    expected_sizes = [
        min(batch_size, 4 - start) for start in range(0, 4, batch_size)
    ]  # 4 clips, 4 texts
    assert [n for n, _ in embedder.audio_calls] == expected_sizes
    assert [n for n, _ in embedder.text_calls] == expected_sizes
    assert {b for _, b in embedder.audio_calls + embedder.text_calls} == {batch_size}


# -- validation -------------------------------------------------------------------------------------


def test_fewer_than_two_pairs_is_refused():
    pairs, _ = make_pairs(PAIRS[:1])
    with pytest.raises(ValueError, match="at least 2"):
        RelevanceProbe(pairs)


def test_unknown_group_in_group_sets_is_refused():
    pairs, _ = make_pairs()
    with pytest.raises(ValueError, match=r"tango.*groups present: \['natural', 'tta_a', 'tta_b'\]"):
        RelevanceProbe(pairs, group_sets={"synthesized": ["tta_a", "tango"]})


# -- embed_sharded ----------------------------------------------------------------------------------


def _row(item: int) -> list[float]:
    return [float(item), float(item) ** 2 + 0.5]


def test_embed_sharded_single_process_keeps_order():
    items = [7, 3, 11, 0, 5]
    calls = []

    def embed(batch):
        calls.append(list(batch))
        return torch.tensor([_row(i) for i in batch])

    out = embed_sharded(items, embed, batch_size=2)
    assert out.tolist() == [_row(i) for i in items]
    assert calls == [[7, 3], [11, 0], [5]]
    with pytest.raises(ValueError, match="nothing to embed"):
        embed_sharded([], embed, batch_size=2)


@pytest.mark.parametrize("n_items, world, batch_size", [(5, 2, 2), (2, 3, 4), (7, 3, 1), (1, 2, 8)])
def test_embed_sharded_reassembles_ranks(monkeypatch, n_items, world, batch_size):
    """Every rank runs embed_sharded in its own thread; gather_rows is a real all-gather over them."""
    items = [10 * i + 1 for i in range(n_items)]
    embedded: dict[int, list[list[int]]] = {r: [] for r in range(world)}

    def work(rank):
        def embed(batch):
            embedded[rank].append(list(batch))
            return torch.tensor([_row(i) for i in batch])

        return embed_sharded(items, embed, batch_size)

    results, shared = run_threaded_ranks(monkeypatch, world, work, timeout=10)
    expected = [_row(i) for i in items]
    for rank in range(world):
        assert results[rank].tolist() == expected, rank
        # Rank r embeds items r, r+W, ... in batches; a rank without items embeds one item only to
        # learn the row shape, and contributes no rows.
        mine = [items[i] for i in range(rank, n_items, world)]
        if mine:
            assert embedded[rank] == [
                mine[s : s + batch_size] for s in range(0, len(mine), batch_size)
            ]
            assert shared[rank].shape[0] == len(mine)
        else:
            assert embedded[rank] == [items[:1]] and shared[rank].shape == (0, 2)


# -- the real tiny backbone ------------------------------------------------------------------------


class NegatedText:
    """The tiny backbone with its text embeddings negated: the same real embeddings, but most of
    this random model's cosines become positive, so CLAPScore ranks pairs instead of clamping."""

    def __init__(self, backbone):
        self.backbone = backbone
        self.sample_rate = backbone.sample_rate

    def embed_audio(self, waves, batch_size=32):
        return self.backbone.embed_audio(waves, batch_size=batch_size)

    def embed_text(self, texts, batch_size=64):
        return -self.backbone.embed_text(texts, batch_size=batch_size)


@pytest.mark.parametrize("negate_text", [False, True], ids=["plain", "negated-text"])
def test_probe_on_tiny_backbone_matches_direct_computation(tiny_backbone, negate_text):
    pairs = synthetic_pairs(n_sounds=10).select("validation")
    assert len(pairs) == 8
    embedder = NegatedText(tiny_backbone) if negate_text else tiny_backbone
    metrics = RelevanceProbe(pairs, batch_size=3).run(embedder).metrics

    # Direct computation, one pair at a time, straight from the backbone.
    audio = torch.cat(
        [
            tiny_backbone.embed_audio([pairs.load_audio(p.audio, tiny_backbone.sample_rate)])
            for p in pairs
        ]
    )
    text = torch.cat([tiny_backbone.embed_text([p.text]) for p in pairs])
    cosines = (audio.double() * text.double()).sum(-1).numpy() * (-1 if negate_text else 1)
    predicted = np.maximum(cosines, 0.0)
    human = np.array([p.score for p in pairs])
    if negate_text:
        assert (predicted > 0).sum() >= 6  # a real ranking, not everything clamped to zero
    expected = reference_metrics(predicted, human)
    assert metrics["n"] == 8
    assert metrics["srcc"] == pytest.approx(expected["srcc"], abs=1e-6)
    assert metrics["lcc"] == pytest.approx(expected["lcc"], abs=1e-5)
    assert metrics["mse"] == pytest.approx(expected["mse"], abs=1e-6)
    assert metrics["clapscore_min"] == pytest.approx(predicted.min(), abs=1e-6)
    assert metrics["clapscore_max"] == pytest.approx(predicted.max(), abs=1e-6)
