"""Zero-shot classification probe on stand-in ESC-50 / UrbanSound8K folders: per-fold top-1, top-5
and macro F1, their mean and std over folds and the pooled values equal hand-computed ones on a fake
embedder (a tie counted against the model); per-template metrics, the fold table, the confusion
matrix; the run's labelled data in build_probes; end to end through humanclap.evaluate (in process
and the real command line) and a one-epoch train (the epoch callback)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from cli import run_module
from fakes import MemoryStore, VectorEmbedder, write_esc50, write_urbansound8k
from omegaconf import OmegaConf

from humanclap.data.pairs import DataError
from humanclap.data.readers.esc50 import read_esc50
from humanclap.data.readers.labelled_audio import LabelledAudio, LabelledClip
from humanclap.evaluate import evaluate
from humanclap.probes.build import ProbeConfigError, build_probes
from humanclap.probes.zero_shot.classification import ZeroShotClassificationProbe
from humanclap.train import DataConfigError, train

S = 1 / math.sqrt(2)
# ESC-50 targets and categories of six classes; class order = target order.
CLASSES = [
    (0, "dog"),
    (1, "rooster"),
    (14, "chirping_birds"),
    (19, "thunderstorm"),
    (30, "door_wood_knock"),
    (43, "car_horn"),
]
NAMES = ["dog", "rooster", "chirping birds", "thunderstorm", "door wood knock", "car horn"]
# The class texts of the first template are the axes, so cos(clip, class c) = clip[c] / |clip|.
VECTORS = {  # (fold, class): clip vector    top-1 (ties against the model)     rank of the true class
    (1, "dog"): [1, 0, 0, 0, 0, 0],  # dog                           1
    (1, "rooster"): [0.6, 0.8, 0, 0, 0, 0],  # rooster                       1
    (1, "chirping_birds"): [0, S, S, 0, 0, 0],  # tie with rooster -> rooster    2
    (1, "thunderstorm"): [0.5, 0.4, 0.3, 0, 0.2, 0.1],  # dog; thunderstorm last   6
    (1, "door_wood_knock"): [0, 0, 0, 0, 1, 0],  # door wood knock               1
    (1, "car_horn"): [0, 0, 0, 0, 0.8, 0.6],  # door wood knock               2
    (2, "dog"): [0.8, 0, 0, 0, 0, 0.6],  # dog                           1
    (2, "rooster"): [0, 1, 0, 0, 0, 0],  # rooster                       1
    (2, "chirping_birds"): [0, 0, 1, 0, 0, 0],  # chirping birds                1
    (2, "thunderstorm"): [0, 0, 0, 1, 0, 0],  # thunderstorm                  1
    (2, "door_wood_knock"): [0, 0, 0.6, 0, 0.8, 0],  # door wood knock               1
    (2, "car_horn"): [0, 0, 0, 0.8, 0, 0.6],  # thunderstorm                  2
}
TEMPLATES = ["This is a sound of {label}.", "No {label} here"]  # the second: minus the first


def stand_in_esc50(root: Path) -> LabelledAudio:
    """The ESC-50 folder of VECTORS, read by the real reader, its audio swapped for a MemoryStore."""
    clips = [(fold, target, category) for fold in (1, 2) for target, category in CLASSES]
    write_esc50(root, clips)
    data = read_esc50(root)
    return LabelledAudio(data.clips, MemoryStore({c.audio for c in data}), name=data.name)


def fake_embedder(data: LabelledAudio) -> VectorEmbedder:
    category = {name: raw for (_, raw), name in zip(CLASSES, NAMES)}
    clips = {c.audio: VECTORS[(int(c.fold), category[c.label])] for c in data}
    axes = np.eye(len(NAMES)).tolist()
    texts = {f"This is a sound of {name}.": axis for name, axis in zip(NAMES, axes)}
    texts.update({f"No {name} here": [-v for v in axis] for name, axis in zip(NAMES, axes)})
    return VectorEmbedder(data.audio_store, clips, texts)


@pytest.fixture
def measured(tmp_path):
    data = stand_in_esc50(tmp_path / "ESC-50-master")
    embedder = fake_embedder(data)
    probe = ZeroShotClassificationProbe(data, templates=TEMPLATES)
    return probe.run(embedder), probe, embedder


def test_per_fold_mean_std_and_pooled_metrics_equal_hand_computed_values(measured):
    result, probe, embedder = measured
    m = result.metrics
    assert probe.classes == NAMES and probe.folds == ["1", "2"]
    assert m["n_classes"] == 6 and m["n_folds"] == 2
    assert m["fold1/n_clips"] == m["fold2/n_clips"] == 6 and m["all/n_clips"] == 12
    # Fold 1: right are dog, rooster, door wood knock -> top-1 3/6; the chirping-birds tie goes to
    # rooster (counted against the model, n_tied 1). Top-5 misses thunderstorm only (ranked 6th).
    assert m["fold1/top1"] == pytest.approx(3 / 6) and m["fold1/top5"] == pytest.approx(5 / 6)
    assert m["fold1/n_tied"] == 1 and m["fold2/n_tied"] == 0 and m["all/n_tied"] == 1
    # Predictions dog, rooster, rooster, dog, door, door. F1 = 2TP / (2TP + FP + FN):
    # dog 2/(2+1) = 2/3, rooster 2/3, door 2/3, chirping birds 0, thunderstorm 0, car horn 0
    # -> macro (3 x 2/3) / 6 = 1/3.
    assert m["fold1/f1_macro"] == pytest.approx(1 / 3)
    # Fold 2: car horn goes to thunderstorm (ranked 2nd) -> top-1 5/6, top-5 1.
    # F1: thunderstorm 2/(2+1) = 2/3, car horn 0, the other four 1 -> (4 + 2/3) / 6 = 7/9.
    assert m["fold2/top1"] == pytest.approx(5 / 6) and m["fold2/top5"] == 1.0
    assert m["fold2/f1_macro"] == pytest.approx(7 / 9)
    # Over folds: mean and population std (ddof=0) of two values a, b: (a + b) / 2 and |a - b| / 2.
    assert m["mean/top1"] == pytest.approx(2 / 3) and m["std/top1"] == pytest.approx(1 / 6)
    assert m["mean/top5"] == pytest.approx(11 / 12) and m["std/top5"] == pytest.approx(1 / 12)
    assert m["mean/f1_macro"] == pytest.approx(5 / 9) and m["std/f1_macro"] == pytest.approx(2 / 9)
    # All 12 clips at once: top-1 8/12, top-5 11/12. F1: dog TP 2 FP 1 -> 4/5, rooster 4/5,
    # door 4/5, chirping birds TP 1 FN 1 -> 2/3, thunderstorm TP 1 FP 1 FN 1 -> 1/2, car horn 0
    # -> (12/5 + 2/3 + 1/2) / 6 = 107/180 (not the mean over folds, 5/9).
    assert m["all/top1"] == pytest.approx(8 / 12) and m["all/top5"] == pytest.approx(11 / 12)
    assert m["all/f1_macro"] == pytest.approx(107 / 180)
    assert embedder.embedded == {"audio": 12, "text": 12}  # each clip once, 6 classes x 2 prompts


def test_every_template_is_measured_under_its_slug(measured):
    m = measured[0].metrics
    first = "prompt/this_is_a_sound_of_label/"
    assert {k: v for k, v in m.items() if k.startswith(first)} == {
        first + k: v
        for k, v in m.items()
        if k.split("/")[0] in ("fold1", "fold2", "mean", "std", "all")
    }
    # "No {label} here" embeds as minus the class axes: the ranking reverses, and a clip is right
    # only if its class has the strictly lowest cosine -- fold 1's thunderstorm clip alone (the
    # others' true class ties with, or beats, a zero).
    negated = "prompt/no_label_here/"
    assert m[negated + "fold1/top1"] == pytest.approx(1 / 6) and m[negated + "fold2/top1"] == 0
    assert m[negated + "mean/top1"] == pytest.approx(1 / 12)
    assert m[negated + "std/top1"] == pytest.approx(1 / 12)
    assert m[negated + "all/top1"] == pytest.approx(1 / 12)


def test_the_fold_table_has_a_row_per_fold_then_mean_std_and_all(measured):
    result, _, _ = measured
    title, table = next(iter(result.tables.items()))
    assert title == "Zero-shot classification — «This is a sound of {label}.»"
    rendered = table.render({"fake": result.metrics})
    assert rendered.splitlines()[:6] == [
        "| model | fold | Top-1 | Top-5 | F1 (macro) | clips |",
        "|---|---|---:|---:|---:|---:|",
        "| fake | 1 | 0.500 | 0.833 | 0.333 | 6 |",
        "| fake | 2 | 0.833 | 1.000 | 0.778 | 6 |",
        "| fake | mean ± std | 0.667 ± 0.167 | 0.917 ± 0.083 | 0.556 ± 0.222 | – |",
        "| fake | all | 0.667 | 0.917 | 0.594 | 12 |",
    ]
    assert "population std, ddof=0" in rendered
    for table in result.tables.values():
        assert all(key in result.metrics for _, key in table.columns)
    assert "Zero-shot classification — prompt sensitivity" in result.tables


def test_confusion_matrix_counts_top1_with_ties_against_the_model(measured):
    figure = measured[0].figures["confusion"]()
    counts = np.asarray(figure.axes[0].images[0].get_array())
    expected = np.zeros((6, 6), dtype=int)
    for true, predicted in [(0, 0), (1, 1), (2, 1), (3, 0), (4, 4), (5, 4)]:  # fold 1
        expected[true, predicted] += 1
    for true, predicted in [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 3)]:  # fold 2
        expected[true, predicted] += 1
    assert counts.tolist() == expected.tolist()  # rows = true class, columns = predicted
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == NAMES


def test_clips_without_folds_give_pooled_metrics_only_and_no_top5_under_5_classes():
    store = MemoryStore({"a", "b", "c"})
    data = LabelledAudio(
        [LabelledClip("a", "dog"), LabelledClip("b", "cat"), LabelledClip("c", "cow")], store
    )
    embedder = VectorEmbedder(
        store,
        {"a": [1, 0, 0], "b": [1, 0, 0], "c": [0, 0, 1]},
        {f"This is a sound of {x}.": v for x, v in zip(["dog", "cat", "cow"], np.eye(3).tolist())},
    )
    result = ZeroShotClassificationProbe(data).run(embedder)
    keys = {k for k in result.metrics if not k.startswith("prompt/")}
    assert keys == {
        "n_classes",
        "n_folds",
        *(f"all/{m}" for m in ("top1", "f1_macro", "n_tied", "n_clips")),
    }
    # b (cat) is taken for a dog: dog F1 2/3, cat 0, cow 1 -> macro 5/9.
    assert result.metrics["all/top1"] == pytest.approx(2 / 3)
    assert result.metrics["all/f1_macro"] == pytest.approx(5 / 9)
    rendered = next(iter(result.tables.values())).render({"fake": result.metrics})
    assert "| fake | all | 0.667 | 0.556 | 3 |" in rendered and "| fake | mean" not in rendered


def test_bad_input_is_refused_with_clear_errors(tmp_path):
    data = stand_in_esc50(tmp_path)
    with pytest.raises(ValueError, match=r"'This is \{x\}' must contain \{label\}"):
        ZeroShotClassificationProbe(data, templates=["This is {x}"])
    with pytest.raises(ValueError, match=r"no labelled audio to classify: give data=<ESC-50"):
        ZeroShotClassificationProbe()
    with pytest.raises(DataError, match=r"no clips in fold\(s\) \['3'\]; folds present"):
        ZeroShotClassificationProbe(data, folds=[3])
    one = LabelledAudio([LabelledClip("a", "dog")], MemoryStore({"a"}), name="one")
    with pytest.raises(ValueError, match=r"on one: needs at least 2 classes"):
        ZeroShotClassificationProbe(one)


# -- the run's data -----------------------------------------------------------------------------
SPEC = {"_target_": "humanclap.probes.zero_shot.classification.ZeroShotClassificationProbe"}
RELEVANCE = {"_target_": "humanclap.probes.relevance.probe.RelevanceProbe"}


def test_build_probes_gives_the_run_labelled_data_to_the_probe_only(tmp_path):
    data = stand_in_esc50(tmp_path)
    probe = build_probes({"zero_shot_classification": SPEC}, data)["zero_shot_classification"]
    assert probe.data is data
    own = {**SPEC, "data": str(tmp_path), "folds": [2]}
    assert build_probes({"z": own}, None)["z"].data.name == "esc50:folds=2"
    with pytest.raises(
        ProbeConfigError,
        match=r"probe 'relevance' measures rated pairs .* but the run's data esc50 is labelled "
        r"audio: evaluate it on rated pairs",
    ):
        build_probes({"relevance": RELEVANCE}, data)
    with pytest.raises(
        ProbeConfigError,
        match=r"probe 'zero_shot_classification' classifies labelled audio, but the run's data is "
        r"not labelled audio: give it its own with probes\.zero_shot_classification\.data=<ESC-50",
    ):
        build_probes({"zero_shot_classification": SPEC}, None)


def test_evaluate_urbansound8k_in_process(compose_evaluate, tmp_path):
    root = tmp_path / "UrbanSound8K"
    write_urbansound8k(
        root, [(f, i, c) for f in (1, 2) for i, c in ((0, "siren"), (3, "dog_bark"))]
    )
    common = ("data=urbansound8k", f"data.root={root}", "probes=[zero_shot_classification]")
    with pytest.raises(
        DataError,
        match=r"urbansound8k is labelled audio with folds, not splits: pass split=null .* "
        r"data\.folds=\[1,2\] \(got split=test\)",
    ):
        evaluate(compose_evaluate(*common))
    cfg = compose_evaluate(*common, "split=null", "progress=false", "figures=false")
    results = evaluate(cfg)["tiny"]["zero_shot_classification"]
    assert {"fold1/top1", "fold2/top1", "mean/top1", "std/f1_macro", "all/top1"} <= set(results)
    assert "fold1/top5" not in results  # 2 classes
    document = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    data = document["data"]["zero_shot_classification"]
    assert (data["name"], data["clips"], data["classes"], data["folds"]) == (
        "urbansound8k",
        4,
        2,
        ["1", "2"],
    )
    assert len(data["table_sha256"]) == len(data["audio_sha256"]) == 64
    with pytest.raises(ProbeConfigError, match=r"probe 'relevance' measures rated pairs"):
        evaluate(compose_evaluate(*common[:2], "split=null", "probes=[relevance]"))


# -- training -----------------------------------------------------------------------------------
TINY_TRAIN = [
    "data.pairs.n_sounds=16",
    "data.pairs.texts_per_sound=2",
    "data.batch_size=4",
    "trainer.max_epochs=1",
    "logger=csv",
]


def test_one_epoch_train_logs_the_probe_on_its_own_folder(compose_train, tmp_path):
    root = tmp_path / "ESC-50-master"
    write_esc50(root, [(f, t, c) for f in (1, 2) for t, c in CLASSES])
    cfg = compose_train(
        "probes=[relevance,zero_shot_classification]",
        f"probes.zero_shot_classification.data={root}",
        *TINY_TRAIN,
    )
    summary = train(cfg)
    run = json.loads((Path(summary["export_dir"]) / "humanclap_run.json").read_text())
    assert [epoch for epoch, _ in run["history"]] == [-1, 0]
    for _, metrics in run["history"]:
        assert metrics["zero_shot_classification/all/n_clips"] == 12
        assert 0 <= metrics["zero_shot_classification/mean/top1"] <= 1
        assert "zero_shot_classification/fold2/f1_macro" in metrics and "relevance/srcc" in metrics
    header = next((Path(cfg.paths.output_dir) / "csv").rglob("metrics.csv")).read_text()
    assert "zero_shot_classification/mean/top5" in header.splitlines()[0]
    report = (Path(cfg.paths.output_dir) / "report.md").read_text()
    assert "| epoch 0 | mean ± std |" in report


def test_training_needs_labelled_data_for_the_probe_and_refuses_an_evaluation_set(
    compose_train, tmp_path
):
    with pytest.raises(ProbeConfigError, match=r"probes\.zero_shot_classification\.data=<ESC-50"):
        train(compose_train("probes=[zero_shot_classification]", *TINY_TRAIN))
    cfg = compose_train("data=esc50", f"data.root={tmp_path}")
    assert OmegaConf.select(cfg, "data._target_").endswith("read_esc50")
    with pytest.raises(
        DataConfigError,
        match=r"^data=esc50 is an evaluation set of labelled audio, not rated pairs to train on: "
        r".*probes\.zero_shot_classification\.data=<folder>$",
    ):
        train(cfg)


# -- the command line ---------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_evaluates_an_esc50_folder(tmp_path):
    root = tmp_path / "ESC-50-master"
    write_esc50(root, [(f, t, c) for f in (1, 2) for t, c in CLASSES[:3]])
    out = tmp_path / "out"
    run_module(
        tmp_path,
        "humanclap.evaluate",
        "data=esc50",
        f"data.root={root}",
        "split=null",
        "probes=[zero_shot_classification]",
        "progress=false",
        f"hydra.run.dir={out}",
    )
    metrics = json.loads((out / "metrics.json").read_text())["models"]["tiny"]["metrics"]
    found = metrics["zero_shot_classification"]
    for key in ("fold1/top1", "fold2/top1", "fold1/f1_macro", "mean/top1", "std/top1", "all/top1"):
        assert 0 <= found[key] <= 1, key
    png = out / "figures" / "tiny" / "zero_shot_classification-confusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| tiny | mean ± std |" in (out / "report.md").read_text()
