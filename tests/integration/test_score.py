"""``python -m humanclap.score``: CLAPScore of unrated (clip, prompt) pairs, several models side by side.

Two subprocess runs (the command as printed; a bad input's one-line error); the rest in-process. Every
CLAPScore is checked against the tiny model run by hand, the summary against numpy and scipy.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy
import torch
from cli import _env, run_module
from fakes import MemoryStore, VectorEmbedder, run_threaded_ranks, unit, write_csv, write_wav
from omegaconf import OmegaConf
from scipy import stats

from humanclap.backbones import from_pretrained, tiny_clap
from humanclap.backbones.resolve import resolve_model
from humanclap.data.audio import load_audio
from humanclap.data.pairs import DataError
from humanclap.data.readers.prompts import Prompt, PromptedClips
from humanclap.errors import HumanClapError
from humanclap.probes.cache import EmbeddingCache
from humanclap.reports.provenance import weights_fingerprint
from humanclap.score import (
    PromptScorer,
    ScoreSettingError,
    bootstrap_batch,
    score,
    scoring_pairs,
    summarize,
)

COMMAND = "python -m humanclap.score data.path=prompts.csv 'models=[tiny,tiny]'"
CLIPS = {"hum.wav": 220.0, "beep.wav": 440.0, "whistle.wav": 880.0, "chirp.wav": 1760.0}
ROWS = [
    ("clips/hum.wav", "a low hum"),
    ("clips/beep.wav", "a beep"),
    ("clips/whistle.wav", "a high whistle"),
    ("clips/chirp.wav", "rain on a roof"),
    ("clips/hum.wav", "a dog barks"),
]
IDS = [
    "clips/hum.wav#1",
    "clips/beep.wav",
    "clips/whistle.wav",
    "clips/chirp.wav",
    "clips/hum.wav#2",
]
COLUMNS = ["id", "audio", "text", "model", "clap_score", "cosine"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder as a user has it: clips/ of generated audio, prompts.csv (audio,text) and, for the
    folder layout, by_file.csv (file,text)."""
    root = tmp_path_factory.mktemp("project")
    (root / "clips").mkdir()
    for name, frequency in CLIPS.items():
        write_wav(root / "clips" / name, frames=8_000, frequency=frequency)
    write_csv(root / "prompts.csv", ["audio", "text"], ROWS)
    write_csv(
        root / "by_file.csv",
        ["file", "text"],
        [(audio.removeprefix("clips/"), text) for audio, text in ROWS],
    )
    return root


def _by_hand(backbone, project: Path) -> dict[tuple[str, str], float]:
    """cos(E_a(a), E_t(t)) of every pair, each clip read and embedded by hand (no embedding cache,
    no feature cache)."""
    found = {}
    for audio, text in ROWS:
        wave = load_audio(project / audio, backbone.sample_rate)
        a = backbone.embed_audio([wave])
        t = backbone.embed_text([text])
        found[(audio, text)] = float((a * t).sum())
    return found


@pytest.fixture(scope="module")
def direct(project) -> dict[tuple[str, str], float]:
    """The cosines of the tiny model loaded as evaluate loads it (``model=tiny``, seed 0)."""
    found = _by_hand(resolve_model("tiny", seed=0).backbone, project)
    assert any(c > 0 for c in found.values()) and any(c < 0 for c in found.values())
    return found


def _rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _check_scores(
    rows: list[dict], direct: dict, models: list[str], audio_prefix: str = ""
) -> None:
    """One row per (pair, model), models one after the other, pairs in input order; each clap_score
    is max(cos, 0) of the hand-computed cosine (to 1e-6) and exactly max(cosine column, 0)."""
    assert [r["model"] for r in rows] == [m for m in models for _ in ROWS]
    for row, (audio, text) in zip(rows, ROWS * len(models)):
        assert (audio_prefix + row["audio"], row["text"]) == (audio, text)
        cosine, clap_score = float(row["cosine"]), float(row["clap_score"])
        assert cosine == pytest.approx(direct[(audio, text)], abs=1e-6)
        assert clap_score == pytest.approx(max(direct[(audio, text)], 0.0), abs=1e-6)
        assert clap_score == max(cosine, 0.0)


def test_the_command_as_printed_scores_with_two_models_side_by_side(project, direct):
    finished = run_module(project, "humanclap.score", *shlex.split(COMMAND)[3:])
    (run_dir,) = (project / "outputs").iterdir()
    assert re.fullmatch(r"score-\d{8}-\d{6}", run_dir.name)
    assert {"scores.csv", "summary.json", "score.log"} <= {p.name for p in run_dir.iterdir()}

    columns, rows = _rows(run_dir / "scores.csv")
    assert columns == COLUMNS
    _check_scores(rows, direct, ["tiny", "tiny-2"])
    assert [r["id"] for r in rows] == IDS * 2

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["command"] == COMMAND
    assert list(summary["models"]) == ["tiny", "tiny-2"]
    assert summary["bootstrap"] == {
        "statistic": "mean",
        "confidence_level": 0.95,
        "method": "BCa",
        "n_resamples": 9999,
        "seed": 0,
        "batch": 9999,
    }
    expected_weights = weights_fingerprint(resolve_model("tiny", seed=0).backbone)
    for name in ("tiny", "tiny-2"):
        model = summary["models"][name]
        scores = np.array([float(r["clap_score"]) for r in rows if r["model"] == name])
        # computed here independently: numpy for mean and std, scipy's bootstrap as documented
        interval = stats.bootstrap(
            (scores,), np.mean, n_resamples=9999, method="BCa", rng=np.random.default_rng(0)
        ).confidence_interval
        assert model["n"] == 5 and model["std_ddof"] == 1
        assert model["mean"] == pytest.approx(np.mean(scores), abs=1e-15)
        assert model["std"] == pytest.approx(np.std(scores, ddof=1), abs=1e-15)
        assert model["ci95"] == pytest.approx([interval.low, interval.high], abs=1e-15)
        assert model["ci95"][0] <= model["mean"] <= model["ci95"][1]
        assert (model["ci95_method"], model["ci95_note"]) == ("BCa", None)
        assert model["zero_fraction"] == pytest.approx(np.mean(scores == 0))
        assert model["weights_sha256"] == expected_weights and model["kind"] == "config"
        assert model["embedded"] == {"audio": 4, "text": 5}  # each unique clip and text once
    data = summary["data"]
    assert (data["pairs"], data["clips"], data["texts"], data["rated"]) == (5, 4, 5, False)
    assert len(data["table_sha256"]) == len(data["audio_sha256"]) == 64
    assert summary["world_size"] == 1 and summary["versions"]["scipy"] == scipy.__version__

    # the console: a table row per model and where the files are
    mean = summary["models"]["tiny-2"]["mean"]
    assert re.search(rf"^\| tiny-2 \| 5 \| {mean:.3f} \|", finished.output, re.MULTILINE)
    assert f"wrote {run_dir / 'scores.csv'} and {run_dir / 'summary.json'}" in finished.output


def test_a_bad_input_is_one_sentence_on_the_command_line(project, tmp_path):
    write_csv(tmp_path / "prompts.csv", ["audio", "text"], [("gone.wav", "a dog")])
    result = subprocess.run(
        [sys.executable, "-m", "humanclap.score", "data.path=prompts.csv"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"error: prompts.csv: 1 audio file(s) named in column 'audio' not found under {tmp_path}: "
        "'gone.wav' (line 2); relative paths are read from the table's folder "
        "(data.audio_root=<folder> sets another)"
    )


def test_the_folder_layout_scores_the_same_and_runs_are_deterministic(
    compose_score, project, direct
):
    overrides = [
        f"data.path={project / 'clips'}",
        f"data.prompts={project / 'by_file.csv'}",
        "model=tiny",
        "progress=false",
    ]
    cfg = compose_score(*overrides)
    returned = score(cfg)
    out = Path(cfg.paths.output_dir)
    columns, rows = _rows(out / "scores.csv")
    assert columns == COLUMNS and list(returned) == ["tiny"]
    _check_scores(rows, direct, ["tiny"], audio_prefix="clips/")
    assert [r["id"] for r in rows] == [i.removeprefix("clips/") for i in IDS]
    assert returned["tiny"].clap_score.tolist() == [float(r["clap_score"]) for r in rows]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["name"] == "clips"
    assert summary["command"] == "python -m humanclap.score " + shlex.join(overrides)

    again = compose_score(*overrides)
    again.paths.output_dir = str(out.parent / "again")
    score(again)
    assert (out.parent / "again" / "scores.csv").read_bytes() == (out / "scores.csv").read_bytes()
    repeated = json.loads((out.parent / "again" / "summary.json").read_text())
    for document in (summary, repeated):
        document.pop("created")
        document["models"]["tiny"].pop("seconds")
        document.pop("config")
    assert repeated == summary


def test_different_models_side_by_side_keep_their_own_scores(
    compose_score, project, direct, tmp_path
):
    other = tiny_clap(seed=3)
    directory = other.save_pretrained(tmp_path / "tiny-seed3")
    cfg = compose_score(
        f"data.path={project / 'prompts.csv'}",
        f"models=[{directory},tiny]",
        "names=[seed3,seed0]",
        "progress=false",
    )
    returned = score(cfg)
    assert list(returned) == ["seed3", "seed0"]
    _, rows = _rows(Path(cfg.paths.output_dir) / "scores.csv")
    by_hand = _by_hand(from_pretrained(str(directory)), project)
    assert by_hand != pytest.approx(direct, abs=1e-3)  # another model, other scores
    _check_scores(rows[: len(ROWS)], by_hand, ["seed3"])
    _check_scores(rows[len(ROWS) :], direct, ["seed0"])
    summary = json.loads((Path(cfg.paths.output_dir) / "summary.json").read_text())
    assert summary["models"]["seed3"]["weights_sha256"] == weights_fingerprint(other)
    assert summary["models"]["seed3"]["kind"] == "transformers_dir"
    assert summary["models"]["seed0"]["mean"] == pytest.approx(
        np.mean([max(c, 0.0) for c in direct.values()]), abs=1e-6
    )


def test_rated_data_is_scored_with_its_human_score(compose_score, project, direct, tmp_path):
    ratings = write_csv(
        tmp_path / "ratings.csv",
        ["audio", "text", "score", "split"],
        [(*ROWS[0], "2", "test"), (*ROWS[1], "8", "train"), (*ROWS[2], "5", "test")],
    )
    data = ["data=manifest", f"data.pairs.path={ratings}", f"data.pairs.audio_root={project}"]
    cfg = compose_score(*data, "split=test")
    score(cfg)
    columns, rows = _rows(Path(cfg.paths.output_dir) / "scores.csv")
    assert columns == [*COLUMNS, "human_score"]
    assert [(r["audio"], r["text"], float(r["human_score"])) for r in rows] == [
        (str(project / ROWS[0][0]), ROWS[0][1], 0.2),
        (str(project / ROWS[2][0]), ROWS[2][1], 0.5),
    ]
    for row, pair in zip(rows, (ROWS[0], ROWS[2])):
        assert float(row["clap_score"]) == pytest.approx(max(direct[pair], 0.0), abs=1e-6)
    summary = json.loads((Path(cfg.paths.output_dir) / "summary.json").read_text())
    assert summary["data"]["rated"] and summary["data"]["name"] == "ratings.csv:test"
    with pytest.raises(DataError, match=r"no split 'holdout'; splits present: \['test', 'train'\]"):
        score(compose_score(*data, "split=holdout"))


BAD_INPUT = {
    "prompt-without-audio": r"by_file.csv: 1 prompt\(s\) name no audio file in .*'x.wav' \(line 7\)",
    "audio-without-prompt": r"clips: 1 of 5 audio file\(s\) have no prompt in .*: 'extra.wav'; add",
    "missing-column": r"q.csv: missing required column\(s\) \['text'\]; columns found: \['audio', 'x'\]",
    "empty-text": r"p.csv, line 3: empty text$",
    "no-path": r"^data.path is not set \(\?\?\? in the data config\): pass data.path=<prompts.csv",
    "split-of-prompts": r"split=test: prompts.csv holds prompts, which have no splits; pass split=null",
    "bootstrap-method": r"bootstrap.method='bca' is not one of BCa, percentile, basic",
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_named(compose_score, project, tmp_path, case):
    """Through the command's own function, before any model is loaded."""
    (tmp_path / "clips").mkdir()
    for name in [*CLIPS, "extra.wav"]:
        write_wav(tmp_path / "clips" / name)
    by_file = (project / "by_file.csv").read_text(encoding="utf-8") + "x.wav,wind\n"
    (tmp_path / "by_file.csv").write_text(by_file, encoding="utf-8")
    rows = [("clips/beep.wav", "a beep"), ("clips/hum.wav", " ")]
    table = tmp_path / "p.csv"
    args = {
        "prompt-without-audio": [f"data.path={project / 'clips'}", f"data.prompts={tmp_path / 'by_file.csv'}"],
        "audio-without-prompt": [f"data.path={tmp_path / 'clips'}", f"data.prompts={project / 'by_file.csv'}"],
        "missing-column": [f"data.path={write_csv(tmp_path / 'q.csv', ['audio', 'x'], rows)}"],
        "empty-text": [f"data.path={write_csv(table, ['audio', 'text'], rows)}"],
        "no-path": [],
        "split-of-prompts": [f"data.path={project / 'prompts.csv'}", "split=test"],
        "bootstrap-method": [f"data.path={project / 'prompts.csv'}", "bootstrap.method=bca"],
    }[case]  # fmt: skip
    with pytest.raises(HumanClapError, match=BAD_INPUT[case]):
        score(compose_score(*args))


# -- the summary -------------------------------------------------------------------------------------


def test_summary_matches_numpy_and_scipy_for_every_method():
    values = np.random.default_rng(5).uniform(0, 0.6, size=40)
    for method in ("BCa", "percentile", "basic"):
        found = summarize(values, seed=3, n_resamples=2000, method=method)
        interval = stats.bootstrap(
            (values,), np.mean, n_resamples=2000, method=method, rng=np.random.default_rng(3)
        ).confidence_interval
        assert found == {
            "n": 40,
            "mean": pytest.approx(np.mean(values), abs=1e-15),
            "std": pytest.approx(np.std(values, ddof=1), abs=1e-15),
            "ci95": pytest.approx([interval.low, interval.high], abs=1e-15),
            "ci95_method": method,
            "ci95_note": None,
        }
    # another seed, another interval; the same seed, the same one
    assert summarize(values, seed=4)["ci95"] != summarize(values, seed=3)["ci95"]
    assert summarize(values, seed=3) == summarize(values, seed=3)


def test_many_pairs_are_resampled_in_recorded_batches():
    """Memory stays bounded (batch x n values at once); the batch is in summary.json, so scipy
    reproduces the interval from it."""
    values = np.random.default_rng(0).uniform(0, 1, size=3000)
    batch = bootstrap_batch(len(values), 9999)
    assert batch == 1333
    interval = stats.bootstrap(
        (values,), np.mean, batch=batch, method="BCa", rng=np.random.default_rng(0)
    ).confidence_interval
    assert summarize(values)["ci95"] == pytest.approx([interval.low, interval.high], abs=1e-15)


def test_degenerate_samples_get_a_stated_result_not_nan():
    assert summarize([0.25]) == {
        "n": 1,
        "mean": 0.25,
        "std": None,
        "ci95": None,
        "ci95_method": None,
        "ci95_note": "one pair: no spread to resample, so no interval",
    }
    assert summarize([0.0, 0.0, 0.0]) == {
        "n": 3,
        "mean": 0.0,
        "std": 0.0,
        "ci95": [0.0, 0.0],
        "ci95_method": None,
        "ci95_note": "all 3 scores equal 0: every resample has this mean",
    }
    # BCa needs resamples on both sides of the mean; with one there is none: percentile instead
    fallback = summarize([0.1, 0.2, 0.3, 0.5], n_resamples=1)
    assert fallback["ci95_method"] == "percentile" and all(np.isfinite(fallback["ci95"]))
    assert "no BCa interval for these scores (NaN)" in fallback["ci95_note"]
    with pytest.raises(ScoreSettingError, match=r"bootstrap.n_resamples=0: give a positive"):
        summarize([0.1, 0.2], n_resamples=0)


# -- DDP ---------------------------------------------------------------------------------------------


def test_two_ranks_embed_half_each_and_both_get_every_score(monkeypatch):
    """The scorer goes through the evaluation's EmbeddingCache: under DDP each clip and text is
    embedded by one rank only, and every rank ends with the scores of a single process."""
    keys = [f"clip{i}" for i in range(5)]
    texts = [f"text {i}" for i in range(5)]
    store = MemoryStore(keys)
    pairs = PromptedClips(
        [Prompt(key, key, key, text) for key, text in zip(keys, texts)]
        + [Prompt("again", keys[0], keys[0], texts[4])],
        store,
    )

    def embedder():
        return VectorEmbedder(
            store,
            {key: unit(40 * i) for i, key in enumerate(keys)},
            {text: unit(25 * i + 10) for i, text in enumerate(texts)},
        )

    single = PromptScorer(pairs).scores(EmbeddingCache(embedder()))
    expected = torch.tensor(
        [np.cos(np.radians(15 * i - 10)) for i in range(5)] + [np.cos(np.radians(110))]
    )
    assert torch.allclose(single[0], expected.float(), atol=1e-6)
    assert torch.equal(single[1], single[0].clamp(min=0))

    embedders = {0: embedder(), 1: embedder()}
    results, _ = run_threaded_ranks(
        monkeypatch,
        2,
        lambda rank: PromptScorer(pairs, batch_size=2).scores(EmbeddingCache(embedders[rank])),
    )
    for rank in (0, 1):
        assert all(torch.equal(a, b) for a, b in zip(results[rank], single))
    assert embedders[0].embedded == {"audio": 3, "text": 3}  # items 0, 2, 4
    assert embedders[1].embedded == {"audio": 2, "text": 2}  # items 1, 3


def test_rated_pairs_without_their_audio_are_refused(tmp_path):
    """Rated data read without its audio (RELATE's data.pairs.check_audio=false) cannot be scored."""
    pair = {"_target_": "humanclap.data.pairs.RatedPair", "text": "a dog", "score": 0.5}
    data = OmegaConf.create(
        {
            "pairs": {
                "_target_": "humanclap.data.pairs.RatedPairs",
                "pairs": [
                    {**pair, "audio": str(tmp_path / "gone.wav"), "source": "REL.csv, line 2"},
                    {**pair, "audio": str(tmp_path / "gone.wav"), "text": "a cat"},
                ],
                "audio_store": {"_target_": "humanclap.data.audio.FileAudioStore"},
                "name": "REL.csv",
            }
        }
    )
    with pytest.raises(
        DataError,
        match=rf"^REL.csv, line 2: {tmp_path}/gone.wav: audio file not found. 1 audio file\(s\) "
        r"of REL.csv are missing; scoring needs every clip$",
    ):
        scoring_pairs(data)
