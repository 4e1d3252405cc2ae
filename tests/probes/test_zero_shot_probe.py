"""Zero-shot instrument probe (two-tower paper): metrics equal hand-computed values on a fake
embedder (a tie included), prompt sensitivity with a negated template, the paper's definition
prompts (label removal on hand-made definitions, their metrics by hand, the shipped definitions),
the report's marking of the paper's and our templates, family level, ontology triplets on text vs
class-mean audio, diagnostics, bad input; end to end through a 1-epoch train (the epoch callback)
and humanclap.evaluate on the offline default."""

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
from humanclap.data.readers.labelled_audio import TINYSOL_INSTRUMENTS, LabelledAudio, LabelledClip
from humanclap.data.synthetic.instruments import INSTRUMENTS
from humanclap.evaluate import evaluate
from humanclap.probes.build import ProbeConfigError
from humanclap.probes.cache import EmbeddingCache
from humanclap.probes.zero_shot.definitions import (
    DEFAULT_DEFINITIONS,
    contains_label,
    load_definitions,
    remove_label,
)
from humanclap.probes.zero_shot.metrics import classification_metrics, pessimistic_ranks
from humanclap.probes.zero_shot.probe import ZeroShotInstrumentProbe, template_source
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


# -- definition prompts (two-tower paper) ----------------------------------------------------------


@pytest.mark.parametrize(
    "definition, label, expected",
    [
        # the name, its plural and possessive, any case; not a derived word or another name
        (
            "The violin is bowed; Violins sing, and a violin's neck is short.",
            "violin",
            "The is bowed; sing, and a neck is short.",
        ),
        ("A violinist tunes the viola.", "violin", "A violinist tunes the viola."),
        ("The VIOLIN-like tone of violins’ strings.", "violin", "The -like tone of strings."),
        # each word of a multi-word name, wherever it stands
        (
            "The French horn, or horn, is coiled; horns sound mellow.",
            "french horn",
            "The, or, is coiled; sound mellow.",
        ),
        # function words of the name stay; a one-letter word of it goes
        (
            "A trumpet in C sounds in C; the trumpet's bell flares.",
            "trumpet in c",
            "A in sounds in; the bell flares.",
        ),
        ("Basses and the bass's strings.", "bass", "and the strings."),  # -es
        ("Bodies, a body and the body's curve.", "body", ", a and the curve."),  # -y -> -ies
    ],
)
def test_remove_label_on_hand_made_definitions(definition, label, expected):
    assert remove_label(definition, label) == expected
    assert contains_label(definition, label) == (definition != expected)
    assert not contains_label(remove_label(definition, label), label)


def test_the_shipped_definitions_cover_the_tinysol_classes_and_lose_their_labels():
    definitions = load_definitions("default")
    names = {name for _, name in TINYSOL_INSTRUMENTS.values()}
    assert set(definitions) == names == set(INSTRUMENTS)  # TinySOL's and the synthetic default's
    for label, text in definitions.items():
        assert contains_label(text, label), label  # each names its class ...
        bare = remove_label(text, label)
        assert not contains_label(bare, label) and len(bare.split()) >= 40, (
            label
        )  # ... and not after
        others = [other for other in definitions if other != label and contains_label(text, other)]
        assert others == [], (label, others)  # no other class is named
    assert load_definitions(DEFAULT_DEFINITIONS) == definitions


DEFINITIONS = {  # hand-made, one per toy class; the label-removed texts are the keys of NO_LABEL
    "violin": "The violin is small and bright.",
    "Viola": "The viola is a little larger.",  # class names match case-insensitively
    "flute": "A flute is blown across an edge.",
    "kazoo": "A kazoo buzzes.",  # a class the data does not have: ignored
}
NO_LABEL = {  # label removed -> vector: violin's and viola's swapped
    "The is small and bright.": TEXT["viola"],
    "The is a little larger.": TEXT["violin"],
    "A is blown across an edge.": TEXT["flute"],
}


def definition_embedder(store: MemoryStore) -> VectorEmbedder:
    """The toy embedder, each definition as its class's "A {x} track" vector, NO_LABEL as above."""
    embedder = toy_embedder(store)
    embedder.text_vectors.update(
        {text: TEXT[label.lower()] for label, text in DEFINITIONS.items() if label != "kazoo"}
    )
    embedder.text_vectors.update(NO_LABEL)
    return embedder


def test_definition_prompts_are_measured_like_templates_by_hand():
    data = toy_data()
    embedder = definition_embedder(data.audio_store)
    probe = ZeroShotInstrumentProbe(data, templates=TEMPLATES, definitions=DEFINITIONS)
    assert probe.definitions["definition_no_label"] == {
        "violin": "The is small and bright.",
        "viola": "The is a little larger.",
        "flute": "A is blown across an edge.",
    }
    metrics = probe.run(embedder).metrics
    # Definitions embed as the "A {x} track" texts: the same values (hand-computed above).
    for key in ("top1", "top2", "f1_weighted", "roc_auc", "pr_auc", "n_tied", "triplet_accuracy"):
        assert metrics[f"prompt/definition/{key}"] == pytest.approx(
            metrics[f"prompt/a_x_track/{key}"]
        ), key
    assert metrics["prompt/definition/top1"] == pytest.approx(4 / 6)
    # Without labels violin's and viola's texts swap: cos(clip, violin text) = clip[1] / N,
    # cos(clip, viola text) = clip[0] / N, flute clip[2] / N.
    #   c1 (.6, .8, 0) -> viola, c2 (.707, .707, 0) tie -> viola, c3 (.8, .6, 0) -> violin,
    #   c4 (0, .8, .6) -> viola (right), c5, c6 -> flute (right): Top-1 3/6, every true class
    #   second at worst: Top-2 1; c2 ties.
    bare = {k.removeprefix("prompt/definition_no_label/"): v for k, v in metrics.items()}
    assert bare["top1"] == pytest.approx(0.5) and bare["top2"] == 1.0 and bare["n_tied"] == 1
    # F1: violin 0 (no TP), viola P 1/3 R 1/2 -> 0.4, flute 1; support 2 each -> 1.4/3.
    assert bare["f1_weighted"] == pytest.approx(1.4 / 3)
    # ROC-AUC: violin (c1 .6, c2 .707 vs .8, 0, .6, 0) (2.5 + 3)/8; viola (c3 .6, c4 .8 vs .8,
    # .707, 0, .6) (1.5 + 3.5)/8; flute 1.
    assert bare["roc_auc"] == pytest.approx((5.5 / 8 + 5 / 8 + 1) / 3)
    # AP: violin P 1/2 at R 1/2 (.707), P 2/4 at R 1 (.6 tie) -> .5; viola .8 tie P 1/2 at R 1/2,
    # .6 tie P 2/5 at R 1 -> .45; flute 1.
    assert bare["pr_auc"] == pytest.approx((0.5 + 0.45 + 1) / 3, abs=1e-6)
    # Triplets on the swapped texts: cos(violin, viola) = .1875 < cos(violin, flute) = .25 fails,
    # cos(viola, violin) = .1875 > cos(viola, flute) = 0 holds -> 1/2.
    assert bare["triplet_accuracy"] == 0.5
    # Headline and spread stay those of the templates.
    assert metrics["top1"] == pytest.approx(4 / 6)
    assert metrics["spread/top1/range"] == pytest.approx(4 / 6 - 1 / 6)
    # 3 classes x (2 templates + 2 definition prompts) + 2 family texts.
    assert embedder.embedded == {"audio": 6, "text": 14}


def test_the_report_marks_the_papers_templates_and_ours():
    data = toy_data()
    embedder = definition_embedder(data.audio_store)
    embedder.text_vectors.update({f"Hear {c}": TEXT[c] for c in TEXT})
    templates = ["A {x} track", "A no {x} track", "Hear {x}"]
    assert [template_source(t) for t in templates] == ["paper", "ours", "config"]
    out = ZeroShotInstrumentProbe(data, templates=templates, definitions=DEFINITIONS).run(embedder)
    notes = {title: table.note for title, table in out.tables.items()}
    assert notes["Zero-shot instruments — «A {x} track»"].startswith(
        "Prompt: the two-tower paper's. two-tower zero-shot classification"
    )
    assert notes["Zero-shot instruments — «A no {x} track»"].startswith(
        "Prompt: ours, not the paper's (a negation check: a text tower that reads ranks the named "
        "class last)."
    )
    assert notes["Zero-shot instruments — «Hear {x}»"].startswith(
        "Prompt: from the config, not the paper's."
    )
    sensitivity = out.tables["Zero-shot instruments — prompt sensitivity"]
    assert [h for h, _ in sensitivity.columns[:3]] == [
        "«A {x} track» Top-1",
        "«A no {x} track» (ours) Top-1",
        "«Hear {x}» (config) Top-1",
    ]
    assert sensitivity.note.endswith(
        "Templates: the two-tower paper's: «A {x} track»; ours, not the paper's: «A no {x} track» "
        "(a negation check: a text tower that reads ranks the named class last); from the config, "
        "not the paper's: «Hear {x}»."
    )
    definition = out.tables["Zero-shot instruments — definition"]
    bare = out.tables["Zero-shot instruments — definition without its label"]
    assert [key for _, key in bare.columns][:2] == [
        "prompt/definition_no_label/top1",
        "prompt/definition_no_label/top2",
    ]
    assert definition.note.startswith("Prompt: the two-tower paper's definition prompt")
    assert "definitions: given in the config" in definition.note
    assert "E.g. violin: «The is small and bright.»" in bare.note
    assert "| fake | 0.500 | 1.000 | 1.000 | 0.467 |" in bare.render({"fake": out.metrics})
    for table in out.tables.values():
        assert all(key in out.metrics for _, key in table.columns)


def test_bad_definitions_are_refused_with_clear_errors(tmp_path):
    data = toy_data()
    with pytest.raises(
        ValueError,
        match=r"zero-shot probe on toy: definitions: no definition for 1 class\(es\): 'flute'; "
        r"give a definitions file",
    ):
        ZeroShotInstrumentProbe(data, definitions={"violin": "v", "viola": "v"})
    with pytest.raises(ValueError, match=r"the definition of 'viola' is nothing but its label"):
        ZeroShotInstrumentProbe(data, definitions={**DEFINITIONS, "Viola": "Violas."})
    with pytest.raises(ValueError, match=r"'Violin' is defined twice"):
        load_definitions({"violin": "a", "Violin": "b"})
    with pytest.raises(ValueError, match=r"definitions: no file .*nope\.json"):
        load_definitions(tmp_path / "nope.json")
    (tmp_path / "list.json").write_text('["a violin"]')
    with pytest.raises(ValueError, match=r"list\.json: must be a non-empty JSON object"):
        load_definitions(tmp_path / "list.json")
    (tmp_path / "empty.json").write_text('{"violin": " "}')
    with pytest.raises(ValueError, match=r"the definition of 'violin' must be a non-empty string"):
        load_definitions(tmp_path / "empty.json")
    (tmp_path / "ok.json").write_text(json.dumps(DEFINITIONS))
    assert ZeroShotInstrumentProbe(data, definitions=tmp_path / "ok.json").definitions[
        "definition"
    ]["viola"] == ("The viola is a little larger.")


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
        ZeroShotInstrumentProbe(
            synthetic={"clips_per_class": 2, "duration_s": 0.5}, definitions="default"
        )
        .run(tiny_backbone)
        .metrics
    )
    assert "prompt/definition_no_label/top1" in stored  # the recipe's default: the shipped file
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
        "Zero-shot instruments — definition",
        "Zero-shot instruments — definition without its label",
    ):
        assert title in report, title
    assert "Prompt: ours, not the paper's (a negation check" in report
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
