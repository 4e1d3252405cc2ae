"""read_timbre_ratings: instruments x descriptors table -> rescaled pairs; every bad input named."""

from __future__ import annotations

import pytest

from humanclap.data.pairs import DataError
from humanclap.data.readers.timbre_ratings import read_timbre_ratings

TABLE = "instrument_id,instrument_name,bright,dark\n001,er_hu,9,1\n002,violin,5,3.4\n"


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "wav").mkdir()
    for name in ("erhu.wav", "violin.wav"):
        (tmp_path / "wav" / name).write_bytes(b"")  # existence is checked, audio is loaded later
    ratings = tmp_path / "timbre.csv"
    ratings.write_text(TABLE, encoding="utf-8")
    return tmp_path, ratings, {"001": "wav/erhu.wav", "002": "wav/violin.wav"}


def test_pairs_are_rescaled_from_the_nine_point_scale(setup):
    root, ratings, recordings = setup
    pairs = read_timbre_ratings(ratings, recordings, template="a {descriptor} sound")
    erhu, violin = str(root / "wav" / "erhu.wav"), str(root / "wav" / "violin.wav")
    assert [(p.audio, p.text, round(p.score, 12), p.group) for p in pairs] == [
        (erhu, "a bright sound", 1.0, "er_hu"),  # (9-1)/8
        (erhu, "a dark sound", 0.0, "er_hu"),  # (1-1)/8
        (violin, "a bright sound", 0.5, "violin"),  # (5-1)/8
        (violin, "a dark sound", 0.3, "violin"),  # (3.4-1)/8
    ]
    assert pairs.name == "timbre.csv" and all(p.num_ratings == 1 and p.split is None for p in pairs)


def test_recordings_csv_its_directory_and_audio_root(setup):
    root, ratings, _ = setup
    table = root / "wav" / "recordings.csv"
    table.write_text(
        "instrument_id,audio\n002,violin.wav\n001,erhu.wav\n003,unrated.wav\n", encoding="utf-8"
    )
    pairs = read_timbre_ratings(table.parent.parent / "timbre.csv", table, scale=(0, 10))
    assert pairs[0].audio == str(root / "wav" / "erhu.wav") and pairs[0].score == pytest.approx(0.9)
    assert pairs[0].text == "bright"
    pairs = read_timbre_ratings(
        ratings, {"001": "erhu.wav", "002": "violin.wav"}, audio_root=root / "wav"
    )
    assert pairs[3].audio == str(root / "wav" / "violin.wav")


def test_instrument_without_recording_is_named(setup):
    _, ratings, recordings = setup
    del recordings["002"]
    with pytest.raises(
        DataError, match=r"timbre.csv, line 3: no recording for instrument '002' \(violin\)"
    ):
        read_timbre_ratings(ratings, recordings)


def test_recording_file_missing_is_named(setup):
    root, ratings, recordings = setup
    (root / "wav" / "violin.wav").unlink()
    with pytest.raises(
        DataError, match=r"line 3: recording of instrument '002' \(violin\) not found: .*violin.wav"
    ):
        read_timbre_ratings(ratings, recordings)


@pytest.mark.parametrize(
    "cell, message",
    [
        ("9.5", r"score 9.5 outside the declared range \[1, 9\]"),
        ("0", "score 0.0 outside"),
        ("loud", "rating 'loud' is not a number"),
        ("", "rating '' is not a number"),
        ("nan", "score is nan"),
    ],
)
def test_bad_ratings_name_file_line_and_column(setup, cell, message):
    _, ratings, recordings = setup
    ratings.write_text(TABLE.replace("5,3.4", f"5,{cell}"), encoding="utf-8")
    with pytest.raises(DataError, match=f"timbre.csv, line 3, column 'dark': {message}"):
        read_timbre_ratings(ratings, recordings)


def test_duplicate_instrument_id(setup):
    _, ratings, recordings = setup
    ratings.write_text(TABLE + "001,gao_hu,2,2\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"timbre.csv, line 4: duplicate instrument_id '001' \(first at line 2\)"
    ):
        read_timbre_ratings(ratings, recordings)
    table = ratings.parent / "rec.csv"
    table.write_text(
        "instrument_id,audio\n001,wav/erhu.wav\n001,wav/violin.wav\n", encoding="utf-8"
    )
    with pytest.raises(
        DataError, match=r"rec.csv, line 3: duplicate recording for instrument_id '001'"
    ):
        read_timbre_ratings(ratings, table)


def test_no_descriptor_columns_and_missing_columns(setup):
    _, ratings, recordings = setup
    ratings.write_text("instrument_id,instrument_name\n001,er_hu\n", encoding="utf-8")
    with pytest.raises(DataError, match="timbre.csv: no descriptor columns"):
        read_timbre_ratings(ratings, recordings)
    ratings.write_text("id,name,bright\n001,er_hu,3\n", encoding="utf-8")
    expected = r"timbre.csv: missing required column\(s\) \['instrument_id', 'instrument_name'\]; columns found: \['id', 'name', 'bright'\]"  # noqa: E501
    with pytest.raises(DataError, match=expected):
        read_timbre_ratings(ratings, recordings)


@pytest.mark.parametrize(
    "template", ["a sound", "a {timbre} sound", "{descriptor} {other}", "a {descriptor"]
)
def test_template_must_have_descriptor_and_nothing_else(setup, template):
    _, ratings, recordings = setup
    with pytest.raises(DataError, match="template"):
        read_timbre_ratings(ratings, recordings, template=template)
