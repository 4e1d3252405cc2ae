"""Labelled-audio readers (CSV manifest, TinySOL metadata), fold selection, prompt-able labels,
and the synthetic TinySOL-like default."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from fakes import MemoryStore, write_csv

from humanclap.data.pairs import DataError
from humanclap.data.readers.instrument_ontology import Ontology
from humanclap.data.readers.labelled_audio import (
    TINYSOL_INSTRUMENTS,
    LabelledAudio,
    LabelledClip,
    prompt_name,
    read_labelled_manifest,
    read_tinysol,
)
from humanclap.data.synthetic.instruments import INSTRUMENTS, synthetic_instruments
from humanclap.data.synthetic.sounds import SAMPLE_RATE, measure
from humanclap.probes.zero_shot.probe import load_labelled_audio

REAL_TINYSOL = (
    Path(__file__).resolve().parents[1] / "fixtures" / "tinysol" / "TinySOL_metadata.csv"
)  # CC BY 4.0, see tests/data/README.md
TINYSOL_HEADER = [
    "Path",
    "Fold",
    "Family",
    "Instrument (abbr.)",
    "Instrument (in full)",
    "Technique (abbr.)",
    "Technique (in full)",
    "Pitch",
    "Pitch ID",
    "Dynamics",
    "Dynamics ID",
    "Instance ID",
    "String ID (if applicable)",
    "Needed digital retuning",
]


def touch(root: Path, relative: str) -> None:
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    (root / relative).write_bytes(b"")


@pytest.fixture
def manifest(tmp_path):
    for name in ("a.wav", "b.wav", "sub/c.wav", "d.wav"):
        touch(tmp_path, name)
    return write_csv(
        tmp_path / "labels.csv",
        ["path", "label", "family", "fold"],
        [
            ["a.wav", "violin", "strings", "0"],
            ["b.wav", "  Bb   Clarinet ", "winds", "1"],
            ["sub/c.wav", "violin", "strings", "1"],
            ["d.wav", "Vc", "strings", "0"],
        ],
    )


# -- CSV manifest --------------------------------------------------------------------------------
def test_manifest_resolves_paths_and_keeps_order_families_and_folds(manifest, tmp_path):
    data = read_labelled_manifest(manifest, labels={"Vc": "cello"})
    assert [c.audio for c in data] == [
        str(tmp_path / n) for n in ("a.wav", "b.wav", "sub/c.wav", "d.wav")
    ]
    assert data.classes == ["violin", "Bb Clarinet", "cello"]  # white space folded, Vc mapped
    assert data.families == ["strings", "winds"]
    assert data.folds() == ["0", "1"]
    fold0 = data.select_folds([0])
    assert [c.label for c in fold0] == ["violin", "cello"] and fold0.name == "labels.csv:folds=0"
    assert len(data.select_folds(["1", 0])) == 4


def test_manifest_paths_resolve_against_audio_root(tmp_path):
    root = tmp_path / "audio"
    touch(root, "x.wav")
    path = write_csv(tmp_path / "m.csv", ["path", "label"], [["x.wav", "flute"]])
    data = read_labelled_manifest(path, audio_root=root)
    assert data[0] == LabelledClip(audio=str(root / "x.wav"), label="flute")
    assert data.families is None and data.folds() == []


def test_manifest_missing_column_names_the_file_and_the_columns_found(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["path", "instrument"], [["x.wav", "flute"]])
    with pytest.raises(
        DataError,
        match=r"m\.csv: missing required column\(s\) \['label'\]; columns found: "
        r"\['path', 'instrument'\]",
    ):
        read_labelled_manifest(path)


def test_manifest_missing_audio_file_names_the_line(tmp_path):
    touch(tmp_path, "x.wav")
    path = write_csv(
        tmp_path / "m.csv", ["path", "label"], [["x.wav", "flute"], ["gone.wav", "oboe"]]
    )
    with pytest.raises(DataError, match=r"m\.csv, line 3: audio file not found: .*gone\.wav"):
        read_labelled_manifest(path)


@pytest.mark.parametrize(
    "label, message",
    [
        ("   ", "line 2: empty label"),
        ("cls_07", "line 2: label 'cls_07' is not a prompt-able name"),
        ("17", "line 2: label '17' is not a prompt-able name"),
        ("strings/violin", "line 2: label 'strings/violin' is not a prompt-able name"),
    ],
)
def test_manifest_label_without_a_prompt_able_name_is_refused(tmp_path, label, message):
    touch(tmp_path, "x.wav")
    path = write_csv(tmp_path / "m.csv", ["path", "label"], [["x.wav", label]])
    with pytest.raises(DataError, match=message):
        read_labelled_manifest(path)


def test_a_mapping_makes_an_id_prompt_able(tmp_path):
    touch(tmp_path, "x.wav")
    path = write_csv(tmp_path / "m.csv", ["path", "label"], [["x.wav", "cls_07"]])
    assert read_labelled_manifest(path, labels={"cls_07": "harp"}).classes == ["harp"]
    assert prompt_name("  french   horn ", "here") == "french horn"


def test_empty_fold_selection_lists_the_folds_present(manifest):
    with pytest.raises(
        DataError, match=r"no clips in fold\(s\) \['4'\]; folds present: \['0', '1'\]"
    ):
        read_labelled_manifest(manifest, folds=[4], labels={"Vc": "cello"})
    with pytest.raises(DataError, match=r"folds=\[\] selects nothing"):
        read_labelled_manifest(manifest, folds=[], labels={"Vc": "cello"})


def test_a_class_in_two_families_is_refused():
    clips = [LabelledClip("a", "violin", "strings"), LabelledClip("b", "violin", "winds")]
    with pytest.raises(
        DataError, match=r"toy\[1\]: label 'violin' is in family 'winds' here and in 'strings'"
    ):
        LabelledAudio(clips, MemoryStore({"a", "b"}), name="toy")


# -- TinySOL -------------------------------------------------------------------------------------
def tinysol_row(path, fold, family, abbr, full):
    return [
        path,
        fold,
        family,
        abbr,
        full,
        "ord",
        "ordinario",
        "A4",
        "69",
        "mf",
        "2",
        "0",
        "",
        "FALSE",
    ]


@pytest.fixture
def tinysol(tmp_path):
    rows = [
        tinysol_row(
            "Winds/Clarinet_Bb/ordinario/ClBb-ord-A4-mf-N-N.wav",
            "0",
            "Winds",
            "ClBb",
            "Clarinet in Bb",
        ),
        tinysol_row(
            "Strings/Violoncello/ordinario/Vc-ord-A3-mf-1c-N.wav", "1", "Strings", "Vc", "Cello"
        ),
        tinysol_row(
            "Keyboards/Accordion/ordinario/Acc-ord-A4-mf-N-N.wav",
            "0",
            "Keyboards",
            "Acc",
            "Accordion",
        ),
    ]
    for row in rows:
        touch(tmp_path, row[0])
    write_csv(tmp_path / "TinySOL_metadata.csv", TINYSOL_HEADER, rows)
    return tmp_path


def test_tinysol_labels_families_and_folds(tinysol):
    data = read_tinysol(tinysol)
    assert data.classes == ["clarinet", "violoncello", "accordion"]  # the paper's label names
    assert data.families == ["winds", "strings", "keyboards"]
    assert data[0].audio == str(tinysol / "Winds/Clarinet_Bb/ordinario/ClBb-ord-A4-mf-N-N.wav")
    assert read_tinysol(tinysol, folds=[1]).classes == ["violoncello"]
    assert read_tinysol(tinysol, labels={"Vc": "cello"}).classes == [
        "clarinet",
        "cello",
        "accordion",
    ]
    assert load_labelled_audio(tinysol, folds=0).classes == [
        "clarinet",
        "accordion",
    ]  # a directory = TinySOL


def test_tinysol_abbreviation_without_a_name_is_refused(tinysol):
    metadata = tinysol / "TinySOL_metadata.csv"
    rows = list(csv.reader(open(metadata)))[1:] + [
        tinysol_row("Strings/Harp/Hp-ord-A4-mf-N-N.wav", "2", "Strings", "Hp", "Harp")
    ]
    touch(tinysol, rows[-1][0])
    write_csv(metadata, TINYSOL_HEADER, rows)
    with pytest.raises(
        DataError,
        match=r"TinySOL_metadata\.csv, line 5: instrument 'Hp' \(Harp\) has no prompt-able "
        r"name.*labels=\{'Hp': '<name>'\}",
    ):
        read_tinysol(tinysol)
    assert read_tinysol(tinysol, labels={"Hp": "harp"}).classes[-1] == "harp"


def test_tinysol_missing_metadata_audio_and_empty_fold(tinysol, tmp_path):
    with pytest.raises(DataError, match=r"elsewhere.*not a directory"):
        read_tinysol(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"other\.csv: no such file"):
        read_tinysol(tinysol, metadata=tinysol / "other.csv")
    with pytest.raises(
        DataError, match=r"no clips in fold\(s\) \['3'\]; folds present: \['0', '1'\]"
    ):
        read_tinysol(tinysol, folds=[3])
    (tinysol / "Strings/Violoncello/ordinario/Vc-ord-A3-mf-1c-N.wav").unlink()
    with pytest.raises(DataError, match=r"line 3: audio file not found: .*Vc-ord-A3-mf-1c-N\.wav"):
        read_tinysol(tinysol)
    assert len(read_tinysol(tinysol, folds=[0])) == 2  # only the selected folds' files must exist


def test_the_real_tinysol_metadata(tmp_path):
    with open(REAL_TINYSOL, newline="") as handle:
        for row in csv.DictReader(handle):
            touch(
                tmp_path, row["Path"]
            )  # the audio is not shipped; existence is all the reader checks
    data = read_tinysol(tmp_path, metadata=REAL_TINYSOL)
    assert len(data) == 2913 and len(data.classes) == 14
    assert sorted(data.classes) == sorted(prompt for _, prompt in TINYSOL_INSTRUMENTS.values())
    assert data.families == ["brass", "keyboards", "strings", "winds"]
    assert data.folds() == ["0", "1", "2", "3", "4"] and len(data.select_folds([0])) == 583
    assert sum(c.label == "accordion" for c in data) == 689
    Ontology.load().require(data.classes)  # the shipped ontology covers every TinySOL class


# -- synthetic default -----------------------------------------------------------------------------
def test_synthetic_instruments_are_deterministic_with_folds_and_distinct_spectra():
    data = synthetic_instruments(clips_per_class=5, duration_s=0.5, seed=0)
    assert data.classes == list(INSTRUMENTS) and len(data) == 70
    assert data.families == ["brass", "keyboards", "strings", "winds"]
    assert [c.fold for c in data if c.label == "oboe"] == ["0", "1", "2", "3", "4"]
    again = synthetic_instruments(clips_per_class=5, duration_s=0.5, seed=0)
    other = synthetic_instruments(clips_per_class=5, duration_s=0.5, seed=1)
    key = data[0].audio
    assert np.array_equal(
        data.audio_store.load(key, SAMPLE_RATE), again.audio_store.load(key, SAMPLE_RATE)
    )
    assert not np.array_equal(
        data.audio_store.load(key, SAMPLE_RATE), other.audio_store.load(key, SAMPLE_RATE)
    )
    # Distinct spectra: breathy, steep flute vs bright trumpet vs dull low tuba (median of 5 clips).
    centroid = {
        label: np.median(
            [
                measure(data.audio_store.load(c.audio, SAMPLE_RATE), SAMPLE_RATE)["centroid_hz"]
                for c in data
                if c.label == label
            ]
        )
        for label in ("tuba", "trumpet")
    }
    flatness = {
        label: np.median(
            [
                measure(data.audio_store.load(c.audio, SAMPLE_RATE), SAMPLE_RATE)["flatness"]
                for c in data
                if c.label == label
            ]
        )
        for label in ("trumpet", "flute")
    }
    assert centroid["tuba"] < centroid["trumpet"] and flatness["flute"] > 5 * flatness["trumpet"]
    assert load_labelled_audio(
        "synthetic", folds=[2], synthetic={"clips_per_class": 3}
    ).folds() == ["2"]
    with pytest.raises(
        DataError,
        match=r"nowhere\.txt: not 'synthetic', a TinySOL, ESC-50 or UrbanSound8K folder or a \.csv",
    ):
        load_labelled_audio("nowhere.txt")
