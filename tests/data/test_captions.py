"""read_captions: CSV and JSONL caption lists, splits, audio_root, skipped rows, errors named by line,
and the AudioCaps layout (a small fixture, plus the real val CSV when ../shared/data is present)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
from fakes import write_csv

from humanclap.data.pairs import DataError
from humanclap.data.readers.captions import SKIP_DUPLICATE, read_captions
from humanclap.data.readers.manifest import SKIP_MISSING_AUDIO
from humanclap.probes.retrieval.probe import RetrievalProbe

AUDIOCAPS = (
    Path(__file__).resolve().parents[1] / "fixtures" / "audiocaps"
)  # MIT, see tests/data/README.md


@pytest.fixture
def audio_dir(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        (folder / name).write_bytes(b"")  # the reader checks existence only
    return folder


def write_captions(path, rows, header=("audio", "caption", "split")):
    return write_csv(path, header, rows)


def write_jsonl(path, objects):
    path.write_text("\n".join(json.dumps(o) for o in objects) + "\n", encoding="utf-8")
    return path


ROWS = [
    ("clips/a.wav", "A dog barks twice", "test"),
    ("clips/a.wav", 'A dog barks, then a man says "quiet"', "test"),
    ("clips/b.wav", "Rain on a tin roof", "train"),
    ("clips/c.wav", "A dog barks twice", "test"),  # the same caption for another clip
]


def _check(pairs, audio_dir, rows=ROWS):
    assert [(p.audio, p.text, p.score, p.split) for p in pairs] == [
        (str(audio_dir / Path(audio).name), text, 1.0, split) for audio, text, split in rows
    ]


def test_csv(tmp_path, audio_dir):
    pairs = read_captions(write_captions(tmp_path / "caps.csv", ROWS))
    _check(pairs, audio_dir)
    assert pairs.name == "caps.csv" and pairs.skipped.total == 0
    assert pairs.splits() == ["test", "train"]


def test_jsonl_and_other_column_names(tmp_path, audio_dir):
    objects = [{"wav": audio, "text": text, "split": split} for audio, text, split in ROWS]
    path = write_jsonl(tmp_path / "caps.jsonl", objects[:2])
    with open(path, "a", encoding="utf-8") as handle:  # a blank line is skipped
        handle.write("\n" + "\n".join(json.dumps(o) for o in objects[2:]) + "\n")
    pairs = read_captions(path, caption_column="text", audio_column="wav", name="mine")
    _check(pairs, audio_dir)
    assert pairs.name == "mine"


def test_split_selects_rows(tmp_path, audio_dir):
    path = write_captions(tmp_path / "caps.csv", ROWS)
    pairs = read_captions(path, split="test")
    _check(pairs, audio_dir, [r for r in ROWS if r[2] == "test"])
    assert pairs.name == "caps.csv:test"
    with pytest.raises(
        DataError,
        match=r"caps.csv: no rows in split 'validation'; "
        r"splits present: \['test', 'train'\]",
    ):
        read_captions(path, split="validation")
    plain = write_captions(
        tmp_path / "plain.csv", [r[:2] for r in ROWS], header=("audio", "caption")
    )
    assert read_captions(plain)[0].split is None
    with pytest.raises(
        DataError,
        match=r"plain.csv: split='test' asked for, but the file has no 'split' column; "
        r"columns found: \['audio', 'caption'\]",
    ):
        read_captions(plain, split="test")


def test_audio_root_and_absolute_paths(tmp_path, audio_dir):
    rows = [("a.wav", "x", ""), (str(audio_dir / "b.wav"), "y", "")]
    pairs = read_captions(write_captions(tmp_path / "caps.csv", rows), audio_root=audio_dir)
    assert [(p.audio, p.split) for p in pairs] == [
        (str(audio_dir / "a.wav"), None),
        (str(audio_dir / "b.wav"), None),
    ]


def test_missing_audio_is_skipped_and_counted(tmp_path, audio_dir, caplog):
    rows = ROWS + [
        ("clips/gone.wav", "x", "test"),
        ("clips/gone.wav", "y", "test"),
        ("clips/lost.wav", "x", "test"),
    ]
    with caplog.at_level(logging.WARNING, logger="humanclap.data.readers.captions"):
        pairs = read_captions(write_captions(tmp_path / "caps.csv", rows))
    _check(pairs, audio_dir)
    assert SKIP_MISSING_AUDIO == "audio file missing"
    assert pairs.skipped.counts == {SKIP_MISSING_AUDIO: 3}
    assert pairs.skipped.examples[SKIP_MISSING_AUDIO].startswith(
        f"{tmp_path / 'caps.csv'}, line 6: "
    )
    assert "skipped 3 caption row(s) whose audio is missing (2 file(s))" in caplog.text
    with pytest.raises(DataError, match=r"none.csv: no captions left \(3 x audio file missing"):
        read_captions(write_captions(tmp_path / "none.csv", rows[-3:]))


def test_the_same_caption_twice_for_one_clip_is_kept_once(tmp_path, audio_dir):
    rows = ROWS + [("clips/a.wav", "A dog barks twice", "test")]
    pairs = read_captions(write_captions(tmp_path / "caps.csv", rows))
    _check(pairs, audio_dir)
    assert (
        pairs.skipped.counts == {SKIP_DUPLICATE: 1}
        and "line 6" in pairs.skipped.examples[SKIP_DUPLICATE]
    )


def test_empty_caption_names_file_and_line(tmp_path, audio_dir):
    with pytest.raises(DataError, match=r"caps.csv, line 3: empty caption"):
        read_captions(
            write_captions(tmp_path / "caps.csv", [ROWS[0], ("clips/b.wav", "   ", "test")])
        )
    path = write_jsonl(
        tmp_path / "caps.jsonl",
        [{"audio": "clips/a.wav", "caption": "x"}, {"audio": "clips/b.wav"}],
    )
    with pytest.raises(
        DataError, match=r"caps.jsonl, line 2: missing required column\(s\) \['caption'\]"
    ):
        read_captions(path)
    path = write_jsonl(tmp_path / "caps.jsonl", [{"audio": "clips/a.wav", "caption": None}])
    with pytest.raises(DataError, match=r"caps.jsonl, line 1: empty caption"):
        read_captions(path)
    with pytest.raises(DataError, match=r"caps.csv, line 2: empty audio path"):
        read_captions(write_captions(tmp_path / "caps.csv", [("", "x", "")]))


def test_missing_columns_are_listed_with_the_columns_found(tmp_path):
    path = write_captions(tmp_path / "caps.csv", [("a.wav", "x")], header=("file", "caption"))
    with pytest.raises(
        DataError,
        match=r"caps.csv: missing required column\(s\) \['audio'\]; "
        r"columns found: \['file', 'caption'\] \(AudioCaps files may give "
        r"youtube_id and start_time instead of 'audio'\)",
    ):
        read_captions(path)
    path = write_captions(tmp_path / "caps.csv", [("a.wav", "x")], header=("audio", "text"))
    with pytest.raises(
        DataError,
        match=r"missing required column\(s\) \['caption'\]; "
        r"columns found: \['audio', 'text'\]",
    ):
        read_captions(path)


def test_empty_files_and_unknown_formats(tmp_path):
    (tmp_path / "h.csv").write_text("audio,caption\n", encoding="utf-8")
    with pytest.raises(DataError, match="h.csv: empty captions file"):
        read_captions(tmp_path / "h.csv")
    (tmp_path / "caps.tsv").write_text("audio\tcaption\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"caps.tsv: unsupported captions format '.tsv'"):
        read_captions(tmp_path / "caps.tsv")


# -- AudioCaps layout --------------------------------------------------------------------------------

AUDIOCAPS_HEADER = ("audiocap_id", "youtube_id", "start_time", "caption")
AUDIOCAPS_ROWS = [  # two clips with captions as in the real val/test files, one clip not downloaded
    ("97151", "vfY_TJq7n_U", "130", "Rustling occurs, ducks quack and water splashes"),
    ("97152", "vfY_TJq7n_U", "130", "Ducks quack while water splashes"),
    ("108945", "tdWhHV3X25Q", "60", "An audience gives applause as a man yells"),
    ("97153", "vfY_TJq7n_U", "130", "Ducks quack while water splashes"),  # repeated verbatim
    ("108946", "tdWhHV3X25Q", "60", "Ducks quack while water splashes"),  # a caption of both clips
    ("111111", "gone_video_", "30", "A car passes by"),
]


def test_audiocaps_layout_names_clips_by_youtube_id_and_start_time(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for name in ("vfY_TJq7n_U_130.wav", "tdWhHV3X25Q_60.wav"):
        (audio / name).write_bytes(b"")
    path = write_captions(tmp_path / "test.csv", AUDIOCAPS_ROWS, header=AUDIOCAPS_HEADER)
    pairs = read_captions(path, audio_root=audio)
    duck, crowd = str(audio / "vfY_TJq7n_U_130.wav"), str(audio / "tdWhHV3X25Q_60.wav")
    assert [(p.audio, p.text) for p in pairs] == [
        (duck, AUDIOCAPS_ROWS[0][3]),
        (duck, AUDIOCAPS_ROWS[1][3]),
        (crowd, AUDIOCAPS_ROWS[2][3]),
        (crowd, AUDIOCAPS_ROWS[4][3]),
    ]
    assert pairs.skipped.counts == {SKIP_DUPLICATE: 1, SKIP_MISSING_AUDIO: 1}
    assert pairs.skipped.examples[SKIP_MISSING_AUDIO].endswith(
        "line 7: " + str(audio / "gone_video__30.wav")
    )

    # One gallery item per clip; the shared caption is one query matching both clips.
    probe = RetrievalProbe(pairs)
    assert [ref.key for ref in probe.inputs().audio] == [duck, crowd]
    assert probe.inputs().texts == [AUDIOCAPS_ROWS[i][3] for i in (0, 1, 2)]
    assert probe.matches.tolist() == [[True, False], [True, True], [False, True]]

    (audio / "vfY_TJq7n_U_130.flac").write_bytes(b"")
    flac = read_captions(path, audio_root=audio, audiocaps_suffix=".flac")
    assert [p.audio for p in flac] == [str(audio / "vfY_TJq7n_U_130.flac")] * 2


def test_audiocaps_layout_in_jsonl_and_an_explicit_audio_column_wins(tmp_path):
    (tmp_path / "abc_20.wav").write_bytes(b"")
    (tmp_path / "mine.wav").write_bytes(b"")
    path = write_jsonl(
        tmp_path / "caps.jsonl",
        [
            {
                "youtube_id": "abc",
                "start_time": 20,
                "caption": "x",
            },  # a JSON number: "20", not "20.0"
            {"youtube_id": "abc", "start_time": 20.0, "caption": "y"},
            {"youtube_id": "abc", "start_time": 20, "caption": "z", "audio": "mine.wav"},
        ],
    )
    assert [Path(p.audio).name for p in read_captions(path)] == [
        "abc_20.wav",
        "abc_20.wav",
        "mine.wav",
    ]
    path = write_jsonl(
        tmp_path / "bad.jsonl", [{"youtube_id": "", "start_time": 20, "caption": "x"}]
    )
    with pytest.raises(DataError, match="bad.jsonl, line 1: empty youtube_id or start_time"):
        read_captions(path)


def test_real_audiocaps_val_file(tmp_path):
    """The real AudioCaps v1 val CSV (MIT): 2475 rows = 495 clips x 5 captions."""
    csv_path = AUDIOCAPS / "audiocaps_v1_val.csv"
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(AUDIOCAPS_HEADER)
    clips = {f"{r['youtube_id']}_{r['start_time']}.wav" for r in rows}
    for name in clips:
        (tmp_path / name).write_bytes(b"")
    pairs = read_captions(csv_path, audio_root=tmp_path)
    assert len(clips) == 495 and len({p.audio for p in pairs}) == 495
    assert pairs[0].audio == str(
        tmp_path / "vfY_TJq7n_U_130.wav"
    )  # first row: vfY_TJq7n_U, start 130
    assert pairs.skipped.counts == {SKIP_DUPLICATE: 85}  # a caption repeated for its own clip
    assert len(pairs) == 2475 - 85
    probe = RetrievalProbe(pairs)
    assert len(probe.inputs().audio) == 495
    assert int(probe.matches.any(dim=1).sum()) == len(
        probe.inputs().texts
    )  # every caption is a query
    assert int((probe.matches.sum(dim=1) > 1).sum()) > 0  # and some match several clips
