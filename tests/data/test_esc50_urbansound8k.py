"""ESC-50 and UrbanSound8K readers on stand-in folders in the real layouts: LAION-CLAP class names,
class order, folds, the folder detection of the zero-shot probes, and errors naming file and line."""

from __future__ import annotations

import re

import pytest
from fakes import ESC50_HEADER, US8K_HEADER, write_csv, write_esc50, write_urbansound8k

from humanclap.data.audio import FileAudioStore
from humanclap.data.pairs import DataError
from humanclap.data.readers.esc50 import read_esc50
from humanclap.data.readers.urbansound8k import read_urbansound8k
from humanclap.probes.zero_shot.probe import load_labelled_audio

# 3 classes x 2 folds, CSV order scrambled; class order follows target.
ESC50_CLIPS = [
    (2, 14, "chirping_birds"),
    (1, 0, "dog"),
    (1, 14, "chirping_birds"),
    (1, 30, "door_wood_knock"),
    (2, 30, "door_wood_knock"),
    (2, 0, "dog"),
]
US8K_CLIPS = [
    (10, 3, "dog_bark"),
    (1, 0, "air_conditioner"),
    (1, 3, "dog_bark"),
    (10, 0, "air_conditioner"),
    (1, 9, "street_music"),
    (10, 9, "street_music"),
]


def test_esc50_reads_laion_names_in_target_order_with_folds(tmp_path):
    paths = write_esc50(tmp_path, ESC50_CLIPS)
    data = read_esc50(tmp_path)
    assert data.name == "esc50" and isinstance(data.audio_store, FileAudioStore)
    assert data.classes == ["dog", "chirping birds", "door wood knock"]  # targets 0, 14, 30
    assert data.folds() == ["1", "2"]
    # Stable sort by target: CSV lines 3, 7 (dog), 2, 4 (birds), 5, 6 (door).
    assert [c.audio for c in data] == [str(paths[i]) for i in (1, 5, 0, 2, 3, 4)]
    assert [c.fold for c in data] == ["1", "2", "2", "1", "1", "2"]
    assert all(c.family is None for c in data)
    one = read_esc50(tmp_path, folds=[2])
    assert [c.label for c in one] == ["dog", "chirping birds", "door wood knock"]
    assert {c.fold for c in one} == {"2"} and one.name == "esc50:folds=2"
    renamed = read_esc50(tmp_path, labels={"dog": "dog barking", "door wood knock": "knocking"})
    assert renamed.classes == ["dog barking", "chirping birds", "knocking"]


def test_urbansound8k_reads_fold_folders_and_laion_names(tmp_path):
    paths = write_urbansound8k(tmp_path, US8K_CLIPS)
    data = read_urbansound8k(tmp_path, folds=None)
    assert data.name == "urbansound8k"
    assert data.classes == ["air conditioner", "dog bark", "street music"]  # classID 0, 3, 9
    assert data.folds() == ["1", "10"]  # numeric order
    assert [c.audio for c in data] == [str(paths[i]) for i in (1, 3, 0, 2, 4, 5)]
    assert str(paths[0]).endswith("/audio/fold10/200000-3-0-0.wav")
    assert [c.fold for c in read_urbansound8k(tmp_path, folds=10)] == ["10"] * 3


def test_a_directory_is_recognised_by_its_layout(tmp_path):
    write_esc50(tmp_path / "ESC-50-master", ESC50_CLIPS)
    write_urbansound8k(tmp_path / "UrbanSound8K", US8K_CLIPS)
    esc50 = load_labelled_audio(tmp_path / "ESC-50-master", folds=[1])
    assert esc50.name == "esc50:folds=1" and esc50.classes[1] == "chirping birds"
    us8k = load_labelled_audio(str(tmp_path / "UrbanSound8K"), labels={"dog_bark": "barking dog"})
    assert us8k.name == "urbansound8k" and us8k.classes[1] == "barking dog"
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match=r"other: not a labelled-audio folder: no meta/esc50\.csv"):
        load_labelled_audio(tmp_path / "other")


def test_not_an_esc50_or_urbansound8k_folder_says_what_was_expected(tmp_path):
    with pytest.raises(
        DataError,
        match=r"nope: not an ESC-50 folder \(no such directory\); expected .*nope/meta/esc50\.csv "
        r"and .*: pass the ESC-50-master folder of github\.com/karolpiczak/ESC-50",
    ):
        read_esc50(tmp_path / "nope")
    with pytest.raises(
        DataError,
        match=r"not an UrbanSound8K folder \(it has no metadata/UrbanSound8K\.csv\); expected "
        r".*audio/fold<N>/<slice_file_name>: pass the UrbanSound8K folder from "
        r"urbansounddataset\.weebly\.com",
    ):
        read_urbansound8k(tmp_path)


def test_a_missing_column_names_the_file_and_the_columns(tmp_path):
    (tmp_path / "meta").mkdir()
    header = [h for h in ESC50_HEADER if h != "category"]
    write_csv(tmp_path / "meta" / "esc50.csv", header, [["1-1-A-0.wav", 1, 0, "False", 1, "A"]])
    with pytest.raises(
        DataError, match=r"meta/esc50\.csv: missing required column\(s\) \['category'\]"
    ):
        read_esc50(tmp_path)
    (tmp_path / "us" / "metadata").mkdir(parents=True)
    header = [h for h in US8K_HEADER if h != "classID"]
    write_csv(tmp_path / "us" / "metadata" / "UrbanSound8K.csv", header, [])
    with pytest.raises(
        DataError, match=r"UrbanSound8K\.csv: missing required column\(s\) \['classID'\]"
    ):
        read_urbansound8k(tmp_path / "us")


def test_a_missing_audio_file_names_its_line(tmp_path):
    paths = write_esc50(tmp_path, ESC50_CLIPS)
    paths[3].unlink()  # line 5
    with pytest.raises(
        DataError,
        match=rf"meta/esc50\.csv, line 5: audio file not found: {re.escape(str(paths[3]))}",
    ):
        read_esc50(tmp_path)
    assert len(read_esc50(tmp_path, folds=[2])) == 3  # only the selected folds' audio must exist
    us = write_urbansound8k(tmp_path / "us", US8K_CLIPS)
    us[0].unlink()
    with pytest.raises(
        DataError, match=r"UrbanSound8K\.csv, line 2: audio file not found: .*fold10"
    ):
        read_urbansound8k(tmp_path / "us")


@pytest.mark.parametrize(
    "clips, message",
    [
        ([(6, 0, "dog")], r"esc50\.csv, line 2: fold '6' is not one of 1\.\.5"),
        ([(1, 0, "dog"), ("x", 0, "dog")], r"esc50\.csv, line 3: fold 'x' is not one of 1\.\.5"),
        ([(1, "dog", "dog")], r"esc50\.csv, line 2: target 'dog' is not a class index"),
        (
            [(1, 0, "dog"), (1, 0, "cat")],
            r"esc50\.csv, line 3: class index 0 is 'cat' here and 'dog' at .*esc50\.csv, line 2",
        ),
        ([(1, 0, "{dog}")], r"esc50\.csv, line 2: label '\{dog\}' is not a prompt-able name"),
    ],
    ids=["fold-range", "fold-text", "target", "index-clash", "label"],
)
def test_bad_rows_name_their_line(tmp_path, clips, message):
    write_esc50(tmp_path, clips, audio=False)
    with pytest.raises(DataError, match=message):
        read_esc50(tmp_path)


def test_bad_urbansound8k_folds_name_their_line(tmp_path):
    write_urbansound8k(tmp_path, [(1, 0, "siren"), (11, 0, "siren")], audio=False)
    with pytest.raises(
        DataError, match=r"UrbanSound8K\.csv, line 3: fold '11' is not one of 1\.\.10"
    ):
        read_urbansound8k(tmp_path)
