"""RELATE ratings without the audio: ``data.pairs.check_audio=false`` runs the probes that need no audio,
records the missing audio in metrics.json, and refuses audio probes and training with the file and count.

Hand-written REL.csv files in the release layout, so every test runs in a fresh clone.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import write_csv, write_wav

from humanclap.data.pairs import DataError
from humanclap.data.readers.relate import read_relate
from humanclap.evaluate import evaluate
from humanclap.lit.datamodule import RatedPairDataModule
from humanclap.reports.provenance import pairs_fingerprint

REPO = Path(__file__).resolve().parents[2]
HEADER = [
    "wavname",
    "text",
    "score",
    "listener_id",
    "audio type",
    "anchor label",
    "in RELATE dataset",
    "in AudioCaps",
]
# Captions with temporal connectives, so text_sensitivity has something to manipulate. Line = index + 2.
ROWS = [
    (
        "/audiocaps/test/1.wav",
        "A dog barks before a man speaks",
        8,
        "0050",
        "natural",
        "False",
        "test",
        "test",
    ),
    (
        "/audiocaps/test/1.wav",
        "A dog barks before a man speaks",
        6,
        "0100",
        "natural",
        "False",
        "test",
        "test",
    ),
    (
        "/audioldm/test/2.wav",
        "Wind blows then rain falls",
        9,
        "0050",
        "audioldm",
        "False",
        "test",
        "test",
    ),
    (
        "/tango/test/3.wav",
        "A car passes after a horn honks",
        7,
        "0050",
        "tango",
        "False",
        "test",
        "test",
    ),
    (
        "/tango2/test/4.wav",
        "Birds sing as water flows",
        2,
        "0050",
        "tango",
        "False",
        "test",
        "test",
    ),
    (
        "/audiocaps/train/5.wav",
        "A bell rings then a door closes",
        9,
        "0050",
        "natural",
        "False",
        "train",
        "train",
    ),
    (
        "/audiocaps/test/6.wav",
        "A cat meows followed by a dog barking",
        9,
        "0050",
        "natural",
        "False",
        "validation",
        "test",
    ),
]
TEST_CLIPS = [
    "audiocaps/test/1.wav",
    "audioldm/test/2.wav",
    "tango/test/3.wav",
    "tango2/test/4.wav",
]
NO_AUDIO = "data.pairs.check_audio=false"


@pytest.fixture
def rel(tmp_path) -> Path:
    return write_csv(tmp_path / "REL.csv", HEADER, ROWS)


def _clip(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_wav(path)


def _hint(message: str) -> str:
    """The override a message tells the user to pass."""
    return re.search(r"pass (\S+=\S+)", message).group(1)


def test_check_audio_is_a_declared_key_of_data_relate(compose_evaluate, compose_train, rel):
    cfg = compose_evaluate("data=relate", f"data.pairs.csv_path={rel}", NO_AUDIO)
    assert cfg.data.pairs.check_audio is False and cfg.data.pairs.audio_root is None
    assert compose_train("data=relate").data.pairs.check_audio is True


def test_missing_audio_error_names_file_and_count_and_its_hint_works(
    compose_evaluate, rel, tmp_path
):
    with pytest.raises(DataError) as error:
        read_relate(rel, tmp_path / "RELATE_wave")
    assert str(error.value) == (
        f"{rel}: 6 of 6 audio files missing under {tmp_path / 'RELATE_wave'}; first: "
        f"{tmp_path / 'RELATE_wave/audiocaps/test/1.wav'} (line 2). To read the ratings without the audio (probes "
        f"that need none, e.g. probes=text_sensitivity), pass data.pairs.check_audio=false"
    )
    assert _hint(str(error.value)) == NO_AUDIO
    cfg = compose_evaluate(
        "data=relate",
        f"data.pairs.csv_path={rel}",
        f"data.pairs.audio_root={tmp_path / 'x'}",
        _hint(str(error.value)),
        "probes=text_sensitivity",
        "progress=false",
        "figures=false",
    )
    assert (
        evaluate(cfg)["tiny"]["text_sensitivity"]["before_after/n"] == 2
    )  # "before" and "after" captions


def test_no_audio_folder_is_an_error_unless_the_audio_is_not_read(rel):
    with pytest.raises(DataError) as error:
        read_relate(rel)
    assert str(error.value) == (
        f"{rel}: no audio folder given: pass the folder unpacked from RELATE_wave.zip (it holds audiocaps/, "
        f"audioldm/, ...), e.g. data.pairs.audio_root=/data/RELATE_wave, or data.pairs.check_audio=false to read "
        f"the ratings without the audio"
    )
    pairs = read_relate(rel, check_audio=False)
    assert [
        p.audio for p in pairs.select("test")
    ] == TEST_CLIPS  # relative to the current directory


def test_text_sensitivity_runs_and_metrics_json_says_the_audio_is_missing(compose_evaluate, rel):
    """The command of the issue, as composed: no audio_root, no audio."""
    cfg = compose_evaluate(
        "data=relate",
        f"data.pairs.csv_path={rel}",
        NO_AUDIO,
        "probes=text_sensitivity",
        "progress=false",
        "figures=false",
    )
    metrics = evaluate(cfg)["tiny"]["text_sensitivity"]
    # Test texts with score >= 0.5: "... before ...", "... then ...", "... after ..." ("as" scores 0.2).
    assert (metrics["before_after/n"], metrics["clause_swap/n"], metrics["as_then/n"]) == (2, 3, 1)
    document = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    data = document["data"]["text_sensitivity"]
    assert {
        key: data[key]
        for key in (
            "name",
            "pairs",
            "clips",
            "audio_sha256",
            "audio_missing",
            "audio_missing_first",
        )
    } == {
        "name": "REL.csv:test",
        "pairs": 4,
        "clips": 4,
        "audio_sha256": None,
        "audio_missing": 4,
        "audio_missing_first": "audiocaps/test/1.wav",
    }
    assert len(data["table_sha256"]) == 64
    assert document["models"]["tiny"]["embedded"]["audio"] == 0


def test_probes_that_bring_their_own_audio_also_run(compose_evaluate, rel):
    cfg = compose_evaluate(
        "data=relate",
        f"data.pairs.csv_path={rel}",
        NO_AUDIO,
        "progress=false",
        "figures=false",
        "probes=[text_sensitivity,zero_shot_instruments]",
        "probes.zero_shot_instruments.synthetic.clips_per_class=1",
    )
    results = evaluate(cfg)["tiny"]
    assert results["zero_shot_instruments"]["n_clips"] == 14


@pytest.mark.parametrize(
    "probes, readers",
    [
        ("relevance", "relevance"),
        ("[text_sensitivity,relevance,retrieval]", "relevance, retrieval"),
    ],
)
def test_a_probe_that_reads_audio_names_the_first_missing_file_and_the_count(
    compose_evaluate, rel, tmp_path, probes, readers
):
    root = tmp_path / "RELATE_wave"
    _clip(root / "audioldm/test/2.wav")  # one of the four test clips is there
    cfg = compose_evaluate(
        "data=relate",
        f"data.pairs.csv_path={rel}",
        f"data.pairs.audio_root={root}",
        NO_AUDIO,
        f"probes={probes}",
        "progress=false",
    )
    with pytest.raises(DataError) as error:
        evaluate(cfg)
    assert str(error.value) == (
        f"{rel}, line 2: {root / 'audiocaps/test/1.wav'}: audio file not found. 3 of 4 audio files that probe(s) "
        f"{readers} read are missing. Without the audio only probes that read none can run, e.g. "
        f"probes=text_sensitivity"
    )
    assert not (tmp_path / "evaluation" / "metrics.json").exists()


def test_fingerprint_counts_missing_files_and_hashes_complete_audio(rel, tmp_path):
    root = tmp_path / "RELATE_wave"
    test = read_relate(rel, root, check_audio=False).select("test")
    _clip(root / "audioldm/test/2.wav")
    partial = pairs_fingerprint(test)
    assert (partial["audio_sha256"], partial["audio_missing"], partial["audio_missing_first"]) == (
        None,
        3,
        str(root / "audiocaps/test/1.wav"),
    )
    for clip in TEST_CLIPS:
        _clip(root / clip)
    complete = pairs_fingerprint(test)
    assert len(complete["audio_sha256"]) == 64 and complete["audio_missing"] == 0
    assert (
        "audio_missing_first" not in complete
        and complete["table_sha256"] == partial["table_sha256"]
    )


def test_training_without_the_audio_stops_naming_the_file(rel, tmp_path, tiny_backbone):
    """Training reads every clip: ratings read without the audio fail before the first step, and
    data.skip_bad_audio=true is not offered when it would leave a split empty."""
    pairs = read_relate(rel, tmp_path / "RELATE_wave", check_audio=False)
    with pytest.raises(DataError) as error:
        RatedPairDataModule(pairs, tiny_backbone.featurizer)
    assert str(error.value) == (
        f"{rel}, line 7: {tmp_path / 'RELATE_wave/audiocaps/train/5.wav'}: file not found. 2 of 2 audio files fail "
        f"the check (2 x audio file missing); training reads them: no pair of REL.csv:train has usable audio, so "
        f"data.skip_bad_audio=true cannot help"
    )


@pytest.mark.slow
def test_the_issue_command_runs_as_printed(rel, tmp_path):
    """``python -m humanclap.evaluate data=relate data.pairs.csv_path=REL.csv data.pairs.check_audio=false
    probes=text_sensitivity`` exits 0 (was: `Key 'check_audio' is not in struct`, then a FileNotFoundError)."""
    env = {
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "HUMANCLAP_CACHE": str(tmp_path / "cache"),
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "humanclap.evaluate",
            "data=relate",
            f"data.pairs.csv_path={rel}",
            NO_AUDIO,
            "probes=text_sensitivity",
            "figures=false",
            "progress=false",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (metrics,) = (tmp_path / "outputs").glob("evaluate-*/metrics.json")
    assert json.loads(metrics.read_text())["data"]["text_sensitivity"]["audio_missing"] == 4
