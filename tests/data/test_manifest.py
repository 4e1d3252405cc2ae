"""read_manifest: averaging + rescaling by hand, CSV and JSONL, and every bad input named by line."""

from __future__ import annotations

import json
import logging

import pytest
from fakes import write_csv

from humanclap.data.pairs import DataError
from humanclap.data.readers.manifest import SKIP_MISSING_AUDIO, read_manifest

TEXT_A = 'A dog barks, then a man says "quiet"'


@pytest.fixture
def audio_dir(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.wav", "b.wav"):
        (folder / name).write_bytes(b"")  # the reader checks existence only
    return folder


def write_ratings(path, rows, header=("audio", "text", "score", "split", "group", "listener")):
    return write_csv(path, header, rows)


def write_jsonl(path, objects):
    path.write_text("\n".join(json.dumps(o) for o in objects) + "\n", encoding="utf-8")
    return path


GOOD_ROWS = [
    ("clips/a.wav", TEXT_A, "4", "train", "natural", "0050"),
    ("clips/b.wav", "Rain on a roof", "10", "test", "tango", "0050"),
    ("clips/a.wav", TEXT_A, "6", "train", "natural", "0007"),
    ("clips/a.wav", TEXT_A, "8", "train", "natural", "0100"),
]


def _check_good(pairs, audio_dir):
    assert len(pairs) == 2
    a, b = pairs
    assert (a.audio, a.text, a.score, a.num_ratings, a.split, a.group) == (
        str(audio_dir / "a.wav"),
        TEXT_A,
        pytest.approx(0.6),
        3,
        "train",
        "natural",
    )  # (4+6+8)/3 = 6 -> 6/10
    assert (b.audio, b.score, b.num_ratings, b.split, b.group) == (
        str(audio_dir / "b.wav"),
        1.0,
        1,
        "test",
        "tango",
    )


def test_csv_ratings_are_averaged_and_rescaled(tmp_path, audio_dir):
    pairs = read_manifest(write_ratings(tmp_path / "m.csv", GOOD_ROWS))
    _check_good(pairs, audio_dir)
    assert pairs.name == "m.csv" and pairs.skipped.total == 0
    assert pairs.splits() == ["test", "train"]


def test_jsonl_gives_the_same_pairs(tmp_path, audio_dir):
    objects = [
        dict(zip(("audio", "text", "score", "split", "group", "listener"), row))
        for row in GOOD_ROWS
    ]
    for obj in objects:
        obj["score"] = float(obj["score"])
    objects[1]["listener"] = 50  # numbers are accepted and never used as ids
    path = write_jsonl(tmp_path / "m.jsonl", objects[:2])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(
            "\n" + "\n".join(json.dumps(o) for o in objects[2:]) + "\n"
        )  # blank line is skipped
    _check_good(read_manifest(path, name="mine"), audio_dir)


def test_score_range_audio_root_and_absolute_paths(tmp_path, audio_dir):
    rows = [("a.wav", "x", "3", "", "", ""), (str(audio_dir / "b.wav"), "y", "5", "", "", "")]
    path = write_ratings(tmp_path / "sub.csv", rows)
    pairs = read_manifest(path, score_range=(1, 5), audio_root=audio_dir)
    assert [(p.audio, p.score, p.split, p.group) for p in pairs] == [
        (str(audio_dir / "a.wav"), 0.5, None, None),
        (str(audio_dir / "b.wav"), 1.0, None, None),
    ]


def test_only_required_columns(tmp_path, audio_dir):
    path = write_ratings(
        tmp_path / "m.csv", [("clips/a.wav", "x", "7")], header=("audio", "text", "score")
    )
    (pair,) = read_manifest(path)
    assert pair.score == pytest.approx(0.7) and pair.split is None


def test_missing_columns_are_listed_with_the_columns_found(tmp_path):
    path = write_ratings(tmp_path / "m.csv", [("clips/a.wav", "x")], header=("audio", "caption"))
    expected = r"m.csv: missing required column\(s\) \['text', 'score'\]; columns found: \['audio', 'caption'\]"
    with pytest.raises(DataError, match=expected):
        read_manifest(path)
    jpath = write_jsonl(
        tmp_path / "m.jsonl",
        [{"audio": "clips/a.wav", "text": "x", "score": 1}, {"audio": "a", "text": "y"}],
    )
    with pytest.raises(
        DataError, match=r"m.jsonl, line 2: missing required column\(s\) \['score'\]"
    ):
        read_manifest(jpath)


@pytest.mark.parametrize(
    "score, message",
    [
        ("nan", "line 3: score is NaN"),
        ("high", "line 3: score 'high' is not a number"),
        ("11", r"line 3: score 11.0 outside the declared range \[0, 10\]"),
        ("-1", "line 3: score -1.0 outside"),
        ("", "line 3: score '' is not a number"),
    ],
)
def test_bad_scores_name_file_and_line(tmp_path, audio_dir, score, message):
    rows = [GOOD_ROWS[0], ("clips/a.wav", TEXT_A, score, "train", "natural", "0007")]
    with pytest.raises(DataError, match="m.csv, " + message):
        read_manifest(write_ratings(tmp_path / "m.csv", rows))


def test_bad_json_scores_name_the_line(tmp_path, audio_dir):
    path = write_jsonl(tmp_path / "m.jsonl", [{"audio": "clips/a.wav", "text": "x", "score": True}])
    with pytest.raises(DataError, match="m.jsonl, line 1: score True is not a number"):
        read_manifest(path)
    path.write_text(
        '{"audio": "clips/a.wav", "text": "x", "score": 1}\n{not json\n', encoding="utf-8"
    )
    with pytest.raises(DataError, match="m.jsonl, line 2: invalid JSON"):
        read_manifest(path)


def test_empty_text_and_empty_audio(tmp_path, audio_dir):
    with pytest.raises(DataError, match="m.csv, line 3: empty text"):
        read_manifest(
            write_ratings(
                tmp_path / "m.csv", [GOOD_ROWS[0], ("clips/b.wav", "  ", "3", "", "", "")]
            )
        )
    with pytest.raises(DataError, match="m.csv, line 2: empty audio path"):
        read_manifest(write_ratings(tmp_path / "m.csv", [("", "x", "3", "", "", "")]))


def test_a_pair_in_two_splits_is_refused_naming_both_lines(tmp_path, audio_dir):
    rows = GOOD_ROWS[:2] + [("clips/a.wav", TEXT_A, "6", "test", "natural", "0007")]
    with pytest.raises(
        DataError, match=r"m.csv, line 4: .*different split values: 'train' \(line 2\) and 'test'"
    ):
        read_manifest(write_ratings(tmp_path / "m.csv", rows))


def test_missing_audio_is_an_error_by_default(tmp_path, audio_dir):
    rows = GOOD_ROWS + [("clips/gone.wav", "x", "5", "", "", "")]
    with pytest.raises(DataError, match=r"m.csv, line 6: audio file not found: .*clips/gone.wav"):
        read_manifest(write_ratings(tmp_path / "m.csv", rows))


def test_missing_audio_can_be_skipped_counted_and_logged(tmp_path, audio_dir, caplog):
    rows = GOOD_ROWS + [
        ("clips/gone.wav", "x", "5", "", "", ""),
        ("clips/gone.wav", "y", "5", "", "", ""),
        ("clips/lost.wav", "x", "5", "", "", ""),
    ]
    with caplog.at_level(logging.WARNING, logger="humanclap.data.readers.manifest"):
        pairs = read_manifest(write_ratings(tmp_path / "m.csv", rows), on_missing_audio="skip")
    _check_good(pairs, audio_dir)
    assert pairs.skipped.counts == {SKIP_MISSING_AUDIO: 3}
    assert "line 6" in pairs.skipped.examples[SKIP_MISSING_AUDIO]
    assert "skipped 3 rating(s) whose audio is missing (2 file(s))" in caplog.text
    with pytest.raises(ValueError, match="on_missing_audio"):
        read_manifest(tmp_path / "m.csv", on_missing_audio="ignore")


def test_all_audio_missing_leaves_nothing(tmp_path):
    path = write_ratings(tmp_path / "m.csv", [("gone.wav", "x", "5", "", "", "")])
    with pytest.raises(DataError, match="m.csv: no ratings left"):
        read_manifest(path, on_missing_audio="skip")


def test_empty_files_and_unknown_formats(tmp_path):
    for name, content in [("e.csv", ""), ("h.csv", "audio,text,score\n"), ("e.jsonl", "\n\n")]:
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(DataError, match=f"{name}: empty"):
            read_manifest(tmp_path / name)
    (tmp_path / "m.tsv").write_text("audio\ttext\tscore\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"m.tsv: unsupported manifest format '.tsv'"):
        read_manifest(tmp_path / "m.tsv")


def test_ragged_csv_row_names_the_line(tmp_path, audio_dir):
    path = tmp_path / "m.csv"
    path.write_text(
        'audio,text,score\nclips/a.wav,"two\nlines",3\nclips/a.wav,x\n', encoding="utf-8"
    )
    with pytest.raises(DataError, match="m.csv, line 4: 2 fields, the header has 3"):
        read_manifest(path)
