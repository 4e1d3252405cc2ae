"""Zero-shot instrument probe (two-tower paper): metrics equal hand-computed values on a fake
embedder (a tie included), prompt sensitivity with a negated template, family level, ontology
triplets on text vs class-mean audio, diagnostics, bad input; end to end through a 1-epoch train
(the epoch callback) and humanclap.evaluate on the offline default."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import MemoryStore, VectorEmbedder
from matplotlib.figure import Figure
from torchmetrics.functional.classification import multiclass_accuracy

from humanclap.data.pairs import DataError
from humanclap.data.readers.instrument_ontology import OntologyError
from humanclap.data.readers.labelled_audio import LabelledAudio, LabelledClip
from humanclap.evaluate import evaluate
from humanclap.probes.build import ProbeConfigError
from humanclap.probes.cache import EmbeddingCache
from humanclap.probes.zero_shot.metrics import classification_metrics, pessimistic_ranks
from humanclap.probes.zero_shot.probe import ZeroShotInstrumentProbe
from humanclap.train import train

S = 1 / math.sqrt(2)
# Six clips of three classes (5-D; the audio lives in the first three dims). Class texts of
# "A {x} track" are the axes plus a tail that only matters for text-text cosines; all texts have the
# same norm N = sqrt(1 + .25 + .0625), so cos(clip, text of class c) = clip[c] / N.
CLIPS = {  # key: (label, family, vector)         cos with (violin, viola, flute) x N
    "c1": ("violin", "strings", [0.8, 0.6, 0.0]),  # (.8, .6, 0)      -> violin
    "c2": (
        "violin",
        "strings",
        [S, S, 0.0],
    ),  # (.707, .707, 0)  -> tie violin/viola: counts as viola
    "c3": ("viola", "strings", [0.6, 0.8, 0.0]),  # (.6, .8, 0)      -> viola
    "c4": ("viola", "strings", [0.8, 0.0, 0.6]),  # (.8, 0, .6)      -> violin; viola ranked last
    "c5": ("flute", "winds", [0.0, 0.6, 0.8]),  # (0, .6, .8)      -> flute
    "c6": ("flute", "winds", [0.6, 0.0, 0.8]),  # (.6, 0, .8)      -> flute
}
TEXT = {  # text tails chosen so that cos(violin, viola) > cos(violin, flute) but cos(viola, flute) > cos(viola, violin)
    "violin": [1.0, 0.0, 0.0, 0.5, 0.25],
    "viola": [0.0, 1.0, 0.0, 0.5, -0.25],
    "flute": [0.0, 0.0, 1.0, 0.25, -0.5],
}
N = math.sqrt(1.3125)
FAMILY_TEXT = {"strings": [S, S, 0.0, 0.0, 0.0], "winds": [0.0, 0.0, 1.0, 0.0, 0.0]}
TEMPLATES = ["A {x} track", "A no {x} track"]  # the negated one embeds as minus the plain one


def toy_embedder(store: MemoryStore) -> VectorEmbedder:
    """Clips and texts as the vectors above."""
    text = {f"A {label} track": vector for label, vector in {**TEXT, **FAMILY_TEXT}.items()}
    text.update({f"A no {label} track": [-v for v in vector] for label, vector in TEXT.items()})
    return VectorEmbedder(
        store, {key: vector + [0.0, 0.0] for key, (_, _, vector) in CLIPS.items()}, text
    )


def toy_data(families: bool = True, labels: dict | None = None) -> LabelledAudio:
    store = MemoryStore(set(CLIPS))
    clips = [
        LabelledClip(
            key, (labels or {}).get(label, label), family if families else None, str(i % 2)
        )
        for i, (key, (label, family, _)) in enumerate(CLIPS.items())
    ]
    return LabelledAudio(clips, store, name="toy")


@pytest.fixture
def result():
    data = toy_data()
    embedder = toy_embedder(data.audio_store)
    probe = ZeroShotInstrumentProbe(data, templates=TEMPLATES)
    out = probe.run(embedder)
    return out, embedder, probe


def test_classification_metrics_equal_hand_computed_values_with_a_tie(result):
    metrics = result[0].metrics
    assert metrics["n_clips"] == 6 and metrics["n_classes"] == 3
    # Top-1: c1, c3, c5, c6 right; c2's tie goes against it; c4 wrong -> 4/6. Top-2: all but c4 -> 5/6.
    assert metrics["top1"] == pytest.approx(4 / 6) and metrics["top2"] == pytest.approx(5 / 6)
    assert metrics["top3"] == 1.0 and "top4" not in metrics and "top5" not in metrics
    assert metrics["n_tied"] == 1
    # F1 of the top-1 predictions (violin, viola, viola, violin, flute, flute): violin and viola 1 TP,
    # 1 FP, 1 FN each -> F1 .5; flute 1.0; weighted by support 2/2/2 -> 2/3.
    assert metrics["f1_weighted"] == pytest.approx(2 / 3)
    # ROC-AUC one-vs-rest (positive > negative pairs, ties 1/2): violin (3.5 + 3) / 8, viola
    # (4 + .5) / 8, flute 8 / 8.
    assert metrics["roc_auc/violin"] == pytest.approx(0.8125)
    assert metrics["roc_auc/viola"] == pytest.approx(0.5625)
    assert metrics["roc_auc/flute"] == 1.0
    assert metrics["roc_auc"] == pytest.approx((0.8125 + 0.5625 + 1) / 3)
    # Average precision: violin: threshold .8 (c1 +, c4 -) P = 1/2 at R = 1/2, then c2 P = 2/3 at R = 1
    # -> .25 + 1/3; viola: c3 P = 1 at R = 1/2, c4 only at the bottom tie (0: c4 +, c6 -, ...)
    # P = 2/6 at R = 1 -> .5 + 1/6; flute 1.
    assert metrics["pr_auc/violin"] == pytest.approx(0.25 + 1 / 3, abs=1e-6)
    assert metrics["pr_auc/viola"] == pytest.approx(0.5 + 1 / 6, abs=1e-6)
    assert metrics["pr_auc"] == pytest.approx(0.75, abs=1e-6)
    assert {k: metrics[f"prompt/a_x_track/{k}"] for k in ("top1", "roc_auc")} == {
        k: metrics[k] for k in ("top1", "roc_auc")
    }  # the first template gives the headline


def test_a_tie_counts_against_the_model_unlike_torchmetrics_argmax():
    scores = torch.tensor([[0.5, 0.5, 0.1], [0.2, 0.7, 0.7]], dtype=torch.float64)
    target = torch.tensor([0, 2])
    # torchmetrics on the raw scores: argmax takes the first maximal class -> clip 0 right, clip 1 wrong.
    assert float(multiclass_accuracy(scores, target, num_classes=3, average="micro")) == 0.5
    ranks = pessimistic_ranks(scores, target)
    assert ranks.tolist() == [
        [2.0, 3.0, 1.0],
        [1.0, 3.0, 2.0],
    ]  # the true class after every class it ties with
    assert float(multiclass_accuracy(ranks, target, num_classes=3, average="micro")) == 0.0
    assert float(multiclass_accuracy(ranks, target, num_classes=3, top_k=2, average="micro")) == 1.0


def test_auc_ranks_clips_by_the_cosine_not_by_a_softmax_over_classes():
    scores = torch.tensor(
        [
            [0.5, 0.4, 0.4],  # clip A, class 1
            [0.3, -0.9, -0.9],  # clip B, class 0
            [0.0, 0.0, 0.9],
        ],
        dtype=torch.float64,
    )  # clip C, class 2
    _, per_class = classification_metrics(scores, torch.tensor([1, 0, 2]), ks=(1,))
    # Class 0: its clip B (.3) is below A (.5) and above C (0) -> AUC 1/2. torchmetrics would softmax
    # these (some are negative): B's .62 would beat A's .36 and give 1.
    assert per_class["roc_auc"][0] == 0.5
    assert per_class["pr_auc"][0] == pytest.approx(0.5)  # B found second: precision 1/2 at recall 1


def test_prompt_sensitivity_with_a_negated_template(result):
    metrics = result[0].metrics
    # "A no {x} track" = minus the plain texts: rankings reverse. Top-1: only c4 (0 > -.6 > -.8) is right.
    assert metrics["prompt/a_no_x_track/top1"] == pytest.approx(1 / 6)
    # Reversed ranking with ties kept: every class's AUC becomes 1 - AUC, so does the macro mean.
    assert metrics["prompt/a_no_x_track/roc_auc"] == pytest.approx(1 - metrics["roc_auc"])
    assert metrics["spread/top1/range"] == pytest.approx(4 / 6 - 1 / 6)
    assert metrics["spread/top1/std"] == pytest.approx(0.25)  # population std of (2/3, 1/6)
    assert metrics["spread/roc_auc/range"] == pytest.approx(abs(2 * metrics["roc_auc"] - 1))
    assert (
        "roc_auc/violin" in metrics and "prompt/a_no_x_track/roc_auc/violin" not in metrics
    )  # per class: first


def test_family_level_hand_values(result):
    metrics = result[0].metrics
    # strings text (1, 1, 0)/√2, winds (0, 0, 1): every clip right except c4 (.566 < .6) -> 5/6.
    assert metrics["family/top1"] == pytest.approx(5 / 6)
    # strings P 1, R 3/4 -> F1 6/7 (support 4); winds P 2/3, R 1 -> F1 .8 (support 2).
    assert metrics["family/f1_weighted"] == pytest.approx((4 * 6 / 7 + 2 * 0.8) / 6)
    assert metrics["family/roc_auc"] == 1.0 and metrics["family/pr_auc"] == 1.0
    assert metrics["family/prompt/a_x_track/top1"] == metrics["family/top1"]


def test_triplets_text_versus_class_mean_audio(result):
    metrics = result[0].metrics
    # Shipped ontology: violin, viola in "bowed string", flute in "wind" -> (violin, viola, flute) and
    # (viola, violin, flute). Text: cos(violin, viola) = .1875 > cos(violin, flute) = 0, but
    # cos(viola, violin) = .1875 < cos(viola, flute) = .25 -> 1/2. Audio class means: violin
    # (1.51, 1.31, 0), viola (1.4, .8, .6), flute (.6, .6, 1.6) -> both right.
    assert metrics["triplets/n"] == 2 and metrics["triplets/n_anchors"] == 2
    assert metrics["triplets/text/accuracy"] == 0.5
    assert metrics["triplets/audio/accuracy"] == 1.0
    assert (
        metrics["prompt/a_no_x_track/triplet_accuracy"] == 0.5
    )  # negating every text keeps their cosines
    assert metrics["spread/triplet_accuracy/range"] == 0.0


def test_similarity_diagnostics_and_figure(result):
    out, embedder, _ = result
    metrics = out.metrics
    positive = [0.8, S, 0.8, 0.0, 0.8, 0.8]  # each clip with its own class text (x N)
    negative = [0.6, 0.0, S, 0.0, 0.6, 0.0, 0.8, 0.6, 0.0, 0.6, 0.6, 0.0]
    assert metrics["similarity/positive_mean"] == pytest.approx(np.mean(positive) / N, rel=1e-6)
    assert metrics["similarity/negative_mean"] == pytest.approx(np.mean(negative) / N, rel=1e-6)
    margins = [0.2, 0.0, 0.2, 0.2, 0.2, 0.2]  # best - second best (x N); c2's tie gives 0
    assert metrics["similarity/margin_mean"] == pytest.approx(np.mean(margins) / N, rel=1e-5)
    assert metrics["similarity/margin_median"] == pytest.approx(0.2 / N, rel=1e-5)
    assert metrics["similarity/audio/positive_mean"] > metrics["similarity/audio/negative_mean"]
    figure = out.figures["similarity_histograms"]()
    assert isinstance(figure, Figure) and len(figure.axes) == 3
    assert "positive (n=6)" in [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    # Each clip once; 3 classes x 2 templates + 2 families (the family "A {x} track" texts differ).
    assert embedder.embedded == {"audio": 6, "text": 8}


def test_tables_are_laid_out_per_prompt_and_hold_metrics(result):
    out, _, _ = result
    tables = out.tables
    assert list(tables)[:2] == [
        "Zero-shot instruments — «A {x} track»",
        "Zero-shot instruments — «A no {x} track»",
    ]
    rendered = tables["Zero-shot instruments — «A {x} track»"].render({"fake": out.metrics})
    assert (
        "| model | Top-1 | Top-2 | Top-3 | F1 (weighted) | ROC-AUC | PR-AUC | n tied | clips |"
        in rendered
    )
    assert "| fake | 0.667 | 0.833 | 1.000 | 0.667 | 0.792 | 0.750 | 1 | 6 |" in rendered
    triplet_row = tables["Zero-shot instruments — ontology triplets"].render({"fake": out.metrics})
    assert "| fake | 0.500 | 1.000 | 2 | 2 |" in triplet_row
    for table in tables.values():
        assert all(key in out.metrics for _, key in table.columns)


def test_families_from_the_ontology_when_the_data_has_none():
    data = toy_data(families=False)
    probe = ZeroShotInstrumentProbe(data, templates=["A {x} track"])
    assert probe.families == ["string", "wind"]  # depth-1 ancestors in the shipped ontology
    assert "A string track" in probe.inputs().texts
    assert (
        ZeroShotInstrumentProbe(data, templates=["A {x} track"], use_ontology=False).families == []
    )


def test_bad_input_is_refused_with_clear_errors():
    with pytest.raises(OntologyError, match=r"1 class\(es\) missing from the ontology: 'kazoo'"):
        ZeroShotInstrumentProbe(toy_data(labels={"flute": "kazoo"}))
    with pytest.raises(DataError, match=r"toy\[4\]: label 'flute_01' is not a prompt-able name"):
        toy_data(labels={"flute": "flute_01"})
    with pytest.raises(
        DataError, match=r"toy: no clips in fold\(s\) \['7'\]; folds present: \['0', '1'\]"
    ):
        ZeroShotInstrumentProbe(toy_data(), folds=[7])
    with pytest.raises(ValueError, match=r"'A \{y\} track' must contain \{x\}"):
        ZeroShotInstrumentProbe(toy_data(), templates=["A {y} track"])
    with pytest.raises(
        ValueError,
        match=r"'A \{x\} track' and 'a \{x\} TRACK' have the same metric name 'a_x_track'",
    ):
        ZeroShotInstrumentProbe(toy_data(), templates=["A {x} track", "a {x} TRACK"])
    with pytest.raises(ValueError, match=r"zero-shot probe on one: needs at least 2 classes"):
        ZeroShotInstrumentProbe(
            LabelledAudio([LabelledClip("c1", "violin")], MemoryStore({"c1"}), name="one")
        )


def test_without_the_ontology_there_are_no_triplets():
    data = toy_data(labels={"flute": "kazoo"})
    embedder = toy_embedder(data.audio_store)
    embedder.text_vectors.update({"A kazoo track": TEXT["flute"]})
    metrics = (
        ZeroShotInstrumentProbe(data, templates=TEMPLATES[:1], use_ontology=False)
        .run(embedder)
        .metrics
    )
    assert metrics["top1"] == pytest.approx(4 / 6)  # the same clips and texts as the flute example
    assert not any(
        key.startswith("triplets/") or key.endswith("triplet_accuracy") for key in metrics
    )


def test_a_cache_embeds_each_input_once_across_runs():
    data = toy_data()
    embedder = toy_embedder(data.audio_store)
    cache = EmbeddingCache(embedder)
    probe = ZeroShotInstrumentProbe(data, templates=TEMPLATES)
    cache.prefetch([probe.inputs()])
    first = probe.run(cache).metrics
    assert probe.run(cache).metrics == first and embedder.embedded == {"audio": 6, "text": 8}


# -- end to end -------------------------------------------------------------------------------------
SMALL = [
    "probes.zero_shot_instruments.synthetic.clips_per_class=2",
    "probes.zero_shot_instruments.synthetic.duration_s=0.5",
]


def test_one_epoch_train_logs_the_probe_before_and_after_the_epoch(compose_train):
    cfg = compose_train(
        "probes=[relevance,zero_shot_instruments]",
        *SMALL,
        "data.pairs.n_sounds=16",
        "data.pairs.texts_per_sound=2",
        "data.batch_size=4",
        "trainer.max_epochs=1",
        "logger=csv",
    )
    summary = train(cfg)
    run = json.loads((Path(summary["export_dir"]) / "humanclap_run.json").read_text())
    assert [epoch for epoch, _ in run["history"]] == [-1, 0]
    for _, metrics in run["history"]:
        assert (
            metrics["zero_shot_instruments/n_clips"] == 28
            and metrics["zero_shot_instruments/n_classes"] == 14
        )
        assert metrics["zero_shot_instruments/triplets/n"] == 584
        assert (
            0 <= metrics["zero_shot_instruments/top1"] <= metrics["zero_shot_instruments/top5"] <= 1
        )
        assert "relevance/srcc" in metrics
    before, after = (dict(m) for _, m in run["history"])
    key = "zero_shot_instruments/similarity/positive_mean"
    assert before[key] != after[key]  # the weights changed, and the probe saw it
    header = (
        next((Path(cfg.paths.output_dir) / "csv").rglob("metrics.csv")).read_text().splitlines()[0]
    )
    assert (
        "zero_shot_instruments/top1" in header
        and "zero_shot_instruments/triplets/text/accuracy" in header
    )


def test_evaluate_writes_the_tables_and_the_histogram(compose_evaluate, tiny_backbone):
    cfg = compose_evaluate(
        "probes=[zero_shot_instruments]", *SMALL, "data.pairs.n_sounds=20", "progress=false"
    )
    results = evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    stored = json.loads((out / "metrics.json").read_text())["models"]["tiny"]["metrics"][
        "zero_shot_instruments"
    ]
    expected = (
        ZeroShotInstrumentProbe(synthetic={"clips_per_class": 2, "duration_s": 0.5})
        .run(tiny_backbone)
        .metrics
    )
    assert set(stored) == set(expected)
    for key, value in expected.items():
        assert stored[key] == pytest.approx(value, abs=1e-6), key
        assert results["tiny"]["zero_shot_instruments"][key] == pytest.approx(value, abs=1e-6)
    report = (out / "report.md").read_text()
    for title in (
        "Zero-shot instruments — «A {x} track»",
        "Zero-shot instruments — prompt sensitivity",
        "Zero-shot instruments — family level",
        "Zero-shot instruments — ontology triplets",
    ):
        assert title in report, title
    assert (
        f"| tiny | {stored['triplets/text/accuracy']:.3f} | {stored['triplets/audio/accuracy']:.3f} | 584 | 14 |"
        in report
    )
    png = out / "figures" / "tiny" / "zero_shot_instruments-similarity_histograms.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_bad_probe_config_names_the_probe(compose_evaluate):
    cfg = compose_evaluate(
        "probes=[zero_shot_instruments]",
        *SMALL,
        "probes.zero_shot_instruments.folds=[9]",
        "data.pairs.n_sounds=20",
    )
    with pytest.raises(
        ProbeConfigError,
        match=r"probe 'zero_shot_instruments' cannot be built: .*no clips in "
        r"fold\(s\) \['9'\]; folds present: \['0', '1'\]",
    ):
        evaluate(cfg)
