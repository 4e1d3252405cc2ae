"""read_relate on hand-checked fixtures in both REL.csv layouts, every bad row, and the real file."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from humanclap.data.pairs import DataError
from humanclap.data.readers import relate
from humanclap.data.readers.relate import (
    SKIP_EXCLUDED,
    SKIP_SCREENED,
    read_relate,
    read_relate_ratings,
    screened_listeners,
)

REAL_REL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "relate" / "REL.csv"
"""The real file in the development workspace (../shared/data); absent in a user's clone."""

CURRENT = [
    "wavname",
    "text",
    "score",
    "listener_id",
    "audio type",
    "anchor label",
    "in RELATE dataset",
    "in AudioCaps",
]
OLDER = [c for c in CURRENT if c != "anchor label"]
TEXT1 = 'A dog barks, then a man says "hi"'

# (wavname, text, score, listener, audio type, anchor, split); line = index + 2.
# Listener 0007 rates anchors 2 and 3 (mean 2.5: screened), 0100 rates 1 and 3 (mean 2.0: kept),
# 0050 rates 0; 0200 has no anchors.
ROWS = [
    ("/audiocaps/train/1.wav", TEXT1, 8, "0050", "natural", False, "train"),  # line 2
    ("/audiocaps/train/1.wav", TEXT1, 6, "0100", "natural", False, "train"),
    ("/audiocaps/train/1.wav", TEXT1, 4, "0007", "natural", False, "train"),
    ("/audioldm2/test/2.wav", "Wind blows", 10, "0050", "audioldm", False, "validation"),  # line 5
    ("/audioldm2/test/2.wav", "Wind blows", 5, "0100", "audioldm", False, "validation"),
    ("/tango2/test/3.wav", "Rain falls", 3, "0007", "tango", False, "test"),
    ("/tango/train/4.wav", "Birds sing", 9, "0050", "tango", False, "train"),
    ("/audioldm/train/4.wav", "Birds sing", 2, "0050", "audioldm", False, "excluded"),
    ("/audiocaps/train/9.wav", "Birds sing", 0, "0050", "natural", True, "excluded"),  # line 10
    ("/audiocaps/train/9.wav", "A car passes", 2, "0007", "natural", True, "excluded"),
    ("/audiocaps/test/8.wav", "Wind blows", 3, "0007", "natural", True, "excluded"),
    ("/audiocaps/train/9.wav", "A car passes", 1, "0100", "natural", True, "excluded"),
    (
        "/audiocaps/test/8.wav",
        "Wind blows",
        3,
        "0100",
        "natural",
        True,
        "train",
    ),  # anchor kept in train
    ("/audiocaps/train/1.wav", TEXT1, 0, "0200", "natural", False, "excluded"),  # line 15
]


def write_rel(path, rows=ROWS, layout="current"):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CURRENT if layout == "current" else OLDER)
        for wav, text, score, listener, kind, anchor, split in rows:
            in_audiocaps = "" if anchor else wav.split("/")[2]
            if layout == "current":
                writer.writerow(
                    [wav, text, score, listener, kind, str(anchor), split, in_audiocaps]
                )
            else:
                writer.writerow(
                    [wav, text, score, listener, "anchor" if anchor else kind, split, in_audiocaps]
                )
    return path


def summary(pairs, root):
    return {
        (p.audio[len(str(root)) + 1 :], p.text): (
            round(p.score, 12),
            p.num_ratings,
            p.split,
            p.group,
        )
        for p in pairs
    }


@pytest.mark.parametrize("layout", ["current", "older"])
def test_both_layouts_average_rescale_split_and_group(tmp_path, layout):
    path = write_rel(tmp_path / "REL.csv", layout=layout)
    pairs = read_relate(path, tmp_path / "audio", check_audio=False)
    assert summary(pairs, tmp_path / "audio") == {
        ("audiocaps/train/1.wav", TEXT1): (
            0.6,
            3,
            "train",
            "natural",
        ),  # (8+6+4)/3/10; 0200's excluded 0 ignored
        ("audioldm2/test/2.wav", "Wind blows"): (0.75, 2, "validation", "audioldm2"),
        ("tango2/test/3.wav", "Rain falls"): (0.3, 1, "test", "tango2"),
        ("tango/train/4.wav", "Birds sing"): (0.9, 1, "train", "tango"),
        ("audiocaps/test/8.wav", "Wind blows"): (
            0.3,
            1,
            "train",
            "natural",
        ),  # anchor row kept as the file says
    }
    assert pairs.skipped.counts == {SKIP_EXCLUDED: 6}
    assert pairs.name == "REL.csv"
    # Tables II/III's "synthesized" column = every generator but natural, kept through split selection.
    assert pairs.group_sets == {"synthesized": ["audioldm2", "tango", "tango2"]}
    assert pairs.select("train").group_sets == pairs.group_sets


@pytest.mark.parametrize("layout", ["current", "older"])
def test_rescreen_drops_every_row_of_the_listener_above_2_but_keeps_exactly_2(tmp_path, layout):
    path = write_rel(tmp_path / "REL.csv", layout=layout)
    assert screened_listeners(read_relate_ratings(path)) == {"0007": 2.5}
    pairs = read_relate(path, tmp_path / "audio", rescreen=True, check_audio=False)
    assert summary(pairs, tmp_path / "audio") == {
        ("audiocaps/train/1.wav", TEXT1): (
            0.7,
            2,
            "train",
            "natural",
        ),  # (8+6)/2/10: 0007's 4 is gone, 0100 stays
        ("audioldm2/test/2.wav", "Wind blows"): (0.75, 2, "validation", "audioldm2"),
        ("tango/train/4.wav", "Birds sing"): (0.9, 1, "train", "tango"),
        ("audiocaps/test/8.wav", "Wind blows"): (
            0.3,
            1,
            "train",
            "natural",
        ),  # 0100's anchor (mean exactly 2.0)
    }
    assert pairs.skipped.counts == {SKIP_SCREENED: 4, SKIP_EXCLUDED: 4}
    assert pairs.skipped.examples[SKIP_SCREENED] == "1 listener(s), first: 0007 (line 4)"


def test_listener_ids_stay_zero_padded_strings(tmp_path):
    ratings = read_relate_ratings(write_rel(tmp_path / "REL.csv"))
    assert [r.listener for r in ratings[:3]] == ["0050", "0100", "0007"]
    assert [r.line for r in ratings[:2]] == [2, 3]
    assert sum(r.anchor for r in ratings) == 5


def test_audio_paths_and_check_audio(tmp_path):
    path = write_rel(tmp_path / "REL.csv")
    root = tmp_path / "RELATE" / "audio"
    with pytest.raises(
        DataError,
        match=r"REL.csv: 5 of 5 audio files missing under .*first: .*audiocaps/train/1.wav \(line 2\)",
    ):
        read_relate(path, root)
    for wav in {row[0] for row in ROWS if row[6] != "excluded"}:
        (root / wav.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / wav.lstrip("/")).write_bytes(b"")
    pairs = read_relate(path, root)
    assert pairs[0].audio == str(root / "audiocaps" / "train" / "1.wav")
    (root / "tango2/test/3.wav").unlink()
    with pytest.raises(
        DataError, match=r"1 of 5 audio files missing .*tango2/test/3.wav \(line 7\)"
    ):
        read_relate(path, root)
    assert (
        len(read_relate(path, root, rescreen=True)) == 4
    )  # 3.wav was only rated by the screened listener


def _with(index, **changes):
    rows = [list(r) for r in ROWS]
    names = ["wavname", "text", "score", "listener", "kind", "anchor", "split"]
    for key, value in changes.items():
        rows[index][names.index(key)] = value
    return rows


@pytest.mark.parametrize(
    "rows, message",
    [
        (_with(3, score=11), r"line 5: score '11' is not an integer 0..10"),
        (_with(3, score="7.5"), r"line 5: score '7.5' is not an integer 0..10"),
        (_with(3, score=""), r"line 5: score '' is not an integer 0..10"),
        (_with(3, score="-1"), r"line 5: score '-1' is not an integer"),
        (_with(4, split="dev"), r"line 6: unknown in RELATE dataset value 'dev'"),
        (_with(5, wavname="/musicgen/test/3.wav"), r"line 7: unknown generator 'musicgen'"),
        (_with(5, text=" "), r"line 7: empty text"),
        (_with(5, listener=""), r"line 7: empty listener_id"),
        (_with(6, anchor="maybe"), r"line 8: anchor label 'maybe' is not True/False"),
        (
            _with(4, split="test"),
            r"line 6: /audioldm2/test/2.wav with the same text is in split 'test' here and in 'validation' at line 5",
        ),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, rows, message):
    path = write_rel(tmp_path / "REL.csv", rows)
    with pytest.raises(DataError, match="REL.csv, " + message):
        read_relate(path, tmp_path, check_audio=False)


def test_missing_columns_and_ragged_rows(tmp_path):
    path = tmp_path / "REL.csv"
    path.write_text(
        "wavname,text,score,listener_id,audio type\n/audiocaps/train/1.wav,x,3,0001,natural\n",
        encoding="utf-8",
    )
    with pytest.raises(
        DataError,
        match=r"REL.csv: missing required column\(s\) \['in RELATE dataset'\]; columns found: \[",
    ):
        read_relate(path, tmp_path, check_audio=False)
    write_rel(path)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("/audiocaps/train/1.wav,x,3\n")
    with pytest.raises(DataError, match="REL.csv, line 16: 3 fields, the header has 8"):
        read_relate(path, tmp_path, check_audio=False)


def test_rescreen_needs_anchors_and_nothing_left_is_an_error(tmp_path):
    no_anchor = [r for r in ROWS if not r[5]]
    path = write_rel(tmp_path / "REL.csv", no_anchor)
    with pytest.raises(DataError, match="REL.csv: rescreen=True but the file has no anchor rows"):
        read_relate(path, tmp_path, rescreen=True, check_audio=False)
    write_rel(path, [r for r in ROWS if r[6] == "excluded"])
    with pytest.raises(DataError, match="REL.csv: no ratings left"):
        read_relate(path, tmp_path, check_audio=False)


def test_column_constants_match_the_current_header():
    assert [
        relate.WAVNAME,
        relate.TEXT,
        relate.SCORE,
        relate.LISTENER,
        relate.AUDIO_TYPE,
        relate.ANCHOR_LABEL,
        relate.SPLIT,
        relate.IN_AUDIOCAPS,
    ] == CURRENT


# --- the real file: counts computed independently with the csv module -----------------------------

GENERATOR_GROUPS = {
    "audiocaps": "natural",
    "audioldm": "audioldm",
    "audioldm2": "audioldm2",
    "tango": "tango",
    "tango2": "tango2",
}


@pytest.fixture(scope="module")
def real_rel():
    path = REAL_REL
    if not path.exists():
        pytest.skip(f"reference data {path} not present (only in the development workspace)")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return path, rows


def _expected(rows, drop_listeners=frozenset()):
    scores, splits = defaultdict(list), {}
    for row in rows:
        if row["in RELATE dataset"] != "excluded" and row["listener_id"] not in drop_listeners:
            key = (row["wavname"], row["text"])
            scores[key].append(int(row["score"]))
            splits[key] = row["in RELATE dataset"]
    return scores, splits


def test_real_rel_csv_split_counts_groups_and_scores(real_rel):
    path, rows = real_rel
    assert len(rows) == 28770
    pairs = read_relate(path, "/nonexistent/RELATE/audio", check_audio=False)
    scores, splits = _expected(rows)
    assert (
        Counter(p.split for p in pairs)
        == Counter(splits.values())
        == {"train": 2864, "validation": 1288, "test": 1311}
    )
    assert Counter(p.group for p in pairs) == Counter(
        GENERATOR_GROUPS[w.split("/")[1]] for w, _ in scores
    )
    assert {p.group for p in pairs} == set(GENERATOR_GROUPS.values())
    assert sum(p.num_ratings for p in pairs) == sum(len(s) for s in scores.values()) == 17774
    for pair in pairs:
        key = ("/" + pair.audio[len("/nonexistent/RELATE/audio/") :], pair.text)
        assert pair.score == pytest.approx(sum(scores[key]) / len(scores[key]) / 10, abs=1e-12)
        assert pair.num_ratings == len(scores[key])
    excluded = sum(r["in RELATE dataset"] == "excluded" for r in rows)
    assert pairs.skipped.counts == {SKIP_EXCLUDED: excluded}
    # The file keeps 14 anchor rows (mismatched pairs) in train/validation; they stay where it puts them.
    kept_anchors = [
        r for r in rows if r["anchor label"] == "True" and r["in RELATE dataset"] != "excluded"
    ]
    assert len(kept_anchors) == 14


def test_real_rel_csv_listener_ids_keep_leading_zeros(real_rel):
    path, rows = real_rel
    ratings = read_relate_ratings(path)
    assert [r.listener for r in ratings] == [row["listener_id"] for row in rows]
    assert all(len(r.listener) == 4 for r in ratings) and ratings[0].listener == "0000"
    assert sum(r.listener.startswith("0") for r in ratings) > 0


def test_real_rel_csv_rescreen_removes_the_253_listeners(real_rel):
    path, rows = real_rel
    anchors = defaultdict(list)
    for row in rows:
        if row["anchor label"] == "True":
            anchors[row["listener_id"]].append(int(row["score"]))
    bad = {listener for listener, s in anchors.items() if sum(s) / len(s) > 2}
    assert len(bad) == 253
    assert set(screened_listeners(read_relate_ratings(path))) == bad
    pairs = read_relate(path, "/nonexistent", rescreen=True, check_audio=False)
    bad_rows = sum(row["listener_id"] in bad for row in rows)
    assert pairs.skipped.counts[SKIP_SCREENED] == bad_rows
    assert pairs.skipped.examples[SKIP_SCREENED].startswith("253 listener(s)")
    assert pairs.skipped.counts[SKIP_EXCLUDED] == sum(
        r["in RELATE dataset"] == "excluded" and r["listener_id"] not in bad for r in rows
    )
    scores, splits = _expected(rows, drop_listeners=bad)
    assert sum(p.num_ratings for p in pairs) == sum(len(s) for s in scores.values())
    assert Counter(p.split for p in pairs) == Counter(splits.values())


def test_real_rel_csv_counts_behind_the_readme_and_the_paper(real_rel):
    """What the README says about the public file: humanclap's splits (train 2,864 / validation 1,288 /
    test 1,311) are the release's own two halves, by the AudioCaps split of the text: train = the
    release's "Train" (2,862 pairs, 9,963 ratings, RELATE README) plus 2 anchor pairs the file keeps;
    validation + test = its "Test" (2,598 pairs, 7,797 ratings) plus 1 anchor pair. human-clap §II-B/§IV
    instead trained on 2,383 AudioCaps-train pairs (1,925 / 458) and tested on all 2,405 AudioCaps-test pairs."""
    path, rows = real_rel
    pairs = read_relate(path, check_audio=False)  # no audio folder needed to count
    assert Counter(p.split for p in pairs) == {"train": 2864, "validation": 1288, "test": 1311}
    kept = [r for r in rows if r["in RELATE dataset"] != "excluded"]
    audiocaps_split = {
        (r["wavname"], r["text"]): (r["in RELATE dataset"], r["in AudioCaps"], r["anchor label"])
        for r in kept
    }
    assert Counter(audiocaps_split.values()) == {
        ("train", "train", "False"): 2862,
        ("train", "", "True"): 2,
        ("validation", "test", "False"): 1287,
        ("validation", "", "True"): 1,
        ("test", "test", "False"): 1311,
    }
    ratings = Counter((r["in AudioCaps"], r["anchor label"]) for r in kept)
    assert (ratings[("train", "False")], ratings[("test", "False")]) == (9963, 7797)
