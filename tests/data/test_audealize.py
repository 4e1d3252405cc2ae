"""Audealize descriptor files: selection by num (ties), language filter, every validation error, the
shipped demo files, and (when present) the real Audealize files."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import tomllib

from humanclap.data.pairs import DataError
from humanclap.data.readers.audealize import (
    DEMO_EQ_FILE,
    DEMO_REVERB_FILE,
    PAPER_EQ_WORDS,
    PAPER_REVERB_WORDS,
    AudealizeDescriptor,
    effect_of,
    load_audealize_file,
    read_audealize_descriptors,
    write_audealize_descriptors,
)

AUDEALIZE = Path("/work/shared/data/audealize")
ROOT = Path(__file__).resolve().parents[2]


def reverb(word, num, agreement=0.5, lang="English", settings=(0.05, 0.8, 0.0, 4000.0, 0.5, 1.0)):
    return AudealizeDescriptor(word, tuple(settings), num, agreement, lang)


def eq(word, num, agreement=0.5, lang="English", value=0.0):
    return AudealizeDescriptor(word, (value,) * 40, num, agreement, lang)


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def entry(word="warm", settings=None, num=3, agreement=0.5, lang="English", **extra):
    obj = {
        "word": word,
        "settings": [0.0] * 6 if settings is None else settings,
        "num": num,
        "agreement": agreement,
        "lang": lang,
        "x": 0.1,
        "y": 0.2,
    }
    obj.update(extra)
    return obj


# -- selection ------------------------------------------------------------------------------------


def test_top_n_by_num_ties_broken_by_agreement_then_word(tmp_path):
    items = [
        reverb("c", 5, 0.2),
        reverb("a", 9),
        reverb("b", 5, 0.2),
        reverb("d", 5, 0.9),
        reverb("e", 1),
        reverb("f", 7),
    ]
    path = write_audealize_descriptors(tmp_path / "r.json", items)
    chosen = read_audealize_descriptors(path, top_n=4)
    # num 9, 7, then the three num=5: agreement 0.9 first, then 'b' before 'c' at equal agreement.
    assert [d.word for d in chosen] == ["a", "f", "d", "b"]
    assert [d.word for d in read_audealize_descriptors(path, top_n=None)] == [
        "a",
        "f",
        "d",
        "b",
        "c",
        "e",
    ]
    # The order does not depend on the file's order.
    path2 = write_audealize_descriptors(tmp_path / "r2.json", items[::-1])
    assert read_audealize_descriptors(path2, top_n=None) == read_audealize_descriptors(
        path, top_n=None
    )


def test_lang_filter_default_english_none_keeps_all(tmp_path):
    items = [
        eq("warm", 10),
        eq("cálido", 20, lang="Español"),
        eq("bright", 5),
        eq("brillante", 1, lang="Español"),
    ]
    path = write_audealize_descriptors(tmp_path / "eq.json", items)
    assert [d.word for d in read_audealize_descriptors(path)] == ["warm", "bright"]
    assert [d.word for d in read_audealize_descriptors(path, lang="Español")] == [
        "cálido",
        "brillante",
    ]
    assert [d.word for d in read_audealize_descriptors(path, lang=None, top_n=3)] == [
        "cálido",
        "warm",
        "bright",
    ]


def test_unknown_lang_lists_the_langs_present(tmp_path):
    path = write_audealize_descriptors(
        tmp_path / "eq.json", [eq("warm", 1), eq("cálido", 1, lang="Español")]
    )
    with pytest.raises(DataError, match=r"eq.json.*'Deutsch'.*\['English', 'Español'\]"):
        read_audealize_descriptors(path, lang="Deutsch")


def test_top_n_larger_than_available_is_clamped_and_logged(tmp_path, caplog):
    path = write_audealize_descriptors(tmp_path / "r.json", [reverb("a", 2), reverb("b", 1)])
    with caplog.at_level(logging.INFO, logger="humanclap.data.readers.audealize"):
        chosen = read_audealize_descriptors(path, top_n=20)
    assert [d.word for d in chosen] == ["a", "b"]
    assert "top_n=20 but only 2 descriptors" in caplog.text


@pytest.mark.parametrize("top_n", [0, -1, 2.5, True, "3"])
def test_top_n_must_be_a_positive_integer(tmp_path, top_n):
    path = write_audealize_descriptors(tmp_path / "r.json", [reverb("a", 2)])
    with pytest.raises(ValueError, match="top_n"):
        read_audealize_descriptors(path, top_n=top_n)


def test_explicit_words_are_selected_and_ranked_and_missing_ones_named(tmp_path):
    path = write_audealize_descriptors(
        tmp_path / "r.json", [reverb("a", 2), reverb("b", 5), reverb("c", 9)]
    )
    assert [d.word for d in read_audealize_descriptors(path, words=["a", "b"], top_n=None)] == [
        "b",
        "a",
    ]
    assert [d.word for d in read_audealize_descriptors(path, words=["a", "b", "c"], top_n=1)] == [
        "c"
    ]
    with pytest.raises(DataError, match=r"\['zz'\] not found"):
        read_audealize_descriptors(path, words=["a", "zz"])
    with pytest.raises(ValueError, match="string"):
        read_audealize_descriptors(path, words="a")


def test_write_then_read_round_trips(tmp_path):
    items = [eq("warm", 10, 0.25, value=-0.5), eq("dark", 3, 0.75, value=1.25)]
    path = write_audealize_descriptors(tmp_path / "eq.json", items)
    assert load_audealize_file(path) == items
    assert all("-0.0" not in line for line in path.read_text().splitlines())


def test_effect_is_inferred_from_the_settings_length():
    assert eq("a", 1).effect == "eq" and reverb("a", 1).effect == "reverb"
    assert effect_of([eq("a", 1), eq("b", 2)]) == "eq"
    assert effect_of([reverb("a", 1)]) == "reverb"
    with pytest.raises(ValueError, match="mix"):
        effect_of([eq("a", 1), reverb("b", 1)])
    with pytest.raises(ValueError, match="no descriptors"):
        effect_of([])
    with pytest.raises(ValueError, match="7 settings"):
        _ = AudealizeDescriptor("odd", (0.0,) * 7, 1, 0.5, "English").effect


# -- validation -----------------------------------------------------------------------------------


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nope.json: no such file"):
        read_audealize_descriptors(tmp_path / "nope.json")


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n{"word": "warm",\n')
    with pytest.raises(DataError, match=r"bad.json: invalid JSON at line \d+"):
        read_audealize_descriptors(path)


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"word": "warm"}, "expected a JSON list.*got dict"),
        ([], "empty"),
        ([entry(), 3], r"entry 1: expected a JSON object, got int"),
    ],
)
def test_structure_errors(tmp_path, obj, message):
    with pytest.raises(DataError, match=message):
        read_audealize_descriptors(write_json(tmp_path / "d.json", obj))


def test_missing_keys_name_entry_and_word(tmp_path):
    bad = entry(word="dark")
    del bad["num"], bad["lang"]
    path = write_json(tmp_path / "d.json", [entry(), bad])
    with pytest.raises(
        DataError,
        match=r"d.json, entry 1 \('dark'\): missing key\(s\) \['num', 'lang'\]; keys found",
    ):
        read_audealize_descriptors(path)


@pytest.mark.parametrize(
    "bad, message",
    [
        (entry(word=""), "word must be a non-empty string"),
        (entry(word=" warm "), "word must be"),
        (entry(word=7), "word must be"),
        (entry(lang=""), "lang must be"),
        (entry(settings=[]), "settings must be a non-empty list"),
        (entry(settings="0,1"), "settings must be a non-empty list"),
        (entry(settings=[0.0] * 5 + ["x"]), r"settings\[5\] must be a number"),
        (entry(settings=[0.0] * 5 + [True]), r"settings\[5\] must be a number"),
        (entry(num=-1), "num must be a non-negative integer"),
        (entry(num=2.5), "num must be a non-negative integer"),
        (entry(num=True), "num must be a non-negative integer"),
        (entry(num="3"), "num must be a non-negative integer"),
        (entry(agreement="high"), "agreement must be a number"),
    ],
)
def test_bad_values_name_entry_and_word(tmp_path, bad, message):
    path = write_json(tmp_path / "d.json", [entry(word="ok"), bad])
    with pytest.raises(DataError, match=r"d.json, entry 1.*" + message):
        read_audealize_descriptors(path)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(tmp_path, literal):
    path = tmp_path / "d.json"
    path.write_text(
        json.dumps([entry(word="ok"), entry(word="bad", agreement=float(literal))])
    )  # writes NaN etc.
    assert literal in path.read_text()
    with pytest.raises(DataError, match=r"entry 1 \('bad'\): agreement is not finite"):
        read_audealize_descriptors(path)
    settings = [0.0] * 5 + [float("nan")]
    path.write_text(json.dumps([entry(word="bad", settings=settings)]))  # json writes NaN
    with pytest.raises(DataError, match=r"entry 0 \('bad'\): settings\[5\] is not finite"):
        read_audealize_descriptors(path)


def test_settings_length_must_match_an_effect_and_be_consistent(tmp_path):
    with pytest.raises(
        DataError, match=r"entry 0 \('odd'\): 7 settings match no effect \(eq = 40, reverb = 6\)"
    ):
        read_audealize_descriptors(
            write_json(tmp_path / "a.json", [entry(word="odd", settings=[0.0] * 7)])
        )
    path = write_json(
        tmp_path / "b.json",
        [entry(word="a", settings=[0.0] * 40), entry(word="b", settings=[0.0] * 6)],
    )
    with pytest.raises(
        DataError, match=r"entry 1 \('b'\): 6 settings, but the file's first entry has 40 \(eq\)"
    ):
        read_audealize_descriptors(path)


def test_duplicate_words_name_both_entries(tmp_path):
    path = write_json(
        tmp_path / "d.json",
        [entry(word="warm"), entry(word="dark"), entry(word="warm", lang="Español")],
    )
    with pytest.raises(DataError, match=r"entry 2: duplicate word 'warm' \(also entry 0\)"):
        read_audealize_descriptors(path, lang=None)


def test_whole_file_is_validated_whatever_the_selection(tmp_path):
    path = write_json(
        tmp_path / "d.json", [entry(word="a", num=9), entry(word="b", lang="Español", num=-3)]
    )
    with pytest.raises(DataError, match="entry 1"):
        read_audealize_descriptors(path, top_n=1)


# -- shipped demo files ---------------------------------------------------------------------------


def test_demo_eq_file_loads_with_sensible_curves():
    descriptors = read_audealize_descriptors(DEMO_EQ_FILE)
    assert effect_of(descriptors) == "eq" and len(descriptors) == 6
    assert all(len(d.settings) == 40 and d.lang == "English" for d in descriptors)
    by_word = {d.word: d.settings for d in descriptors}
    assert set(by_word) == {"bright", "warm", "boomy", "thin", "muffled", "harsh"}
    assert by_word["bright"][-1] > by_word["bright"][0]  # rises toward the highs
    assert by_word["muffled"][-1] < by_word["muffled"][0]  # cuts the highs
    assert by_word["thin"][0] < by_word["thin"][-1]  # cuts the lows
    assert max(range(40), key=lambda i: by_word["boomy"][i]) < 5  # bass bump (< 161 Hz)
    assert 21 <= max(range(40), key=lambda i: by_word["harsh"][i]) <= 26  # 2.4-3.9 kHz
    # boomy and thin tie on num and agreement: the word decides.
    assert [d.word for d in descriptors][-2:] == ["boomy", "thin"]


def test_demo_reverb_file_loads_with_sensible_settings():
    descriptors = read_audealize_descriptors(DEMO_REVERB_FILE)
    assert effect_of(descriptors) == "reverb" and len(descriptors) == 6
    by_word = {d.word: d.settings for d in descriptors}
    assert by_word["dry"][0] < 0.02 and by_word["cavernous"][1] >= 0.9  # d short / g high
    assert min(by_word, key=lambda w: by_word[w][3]) == "muffled"  # lowest low-pass cut-off
    assert all(
        0.01 <= s[0] <= 0.1 and 0 < s[1] < 1 and abs(s[2]) <= 0.012 and s[5] == 1.0
        for s in by_word.values()
    )


def test_demo_files_are_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "resources/*.json" in config["tool"]["setuptools"]["package-data"]["humanclap"]
    assert DEMO_EQ_FILE.parent == ROOT / "humanclap" / "resources"


# -- the real Audealize files (optional: GPLv2, not shipped) --------------------------------------


@pytest.mark.parametrize(
    "name, effect, first, n_english",
    [("eqdescriptors.json", "eq", "warm", 294), ("reverbdescriptors.json", "reverb", "echo", 369)],
)
def test_real_audealize_files(name, effect, first, n_english):
    path = AUDEALIZE / name
    if not path.is_file():
        pytest.skip(
            f"{path} not present (the Audealize data is GPLv2 and not shipped with the repo)"
        )
    top = read_audealize_descriptors(path)
    assert len(top) == 20 and top[0].word == first and effect_of(top) == effect
    assert [d.num for d in top] == sorted((d.num for d in top), reverse=True)
    assert len(read_audealize_descriptors(path, top_n=None)) == n_english
    paper = PAPER_EQ_WORDS if effect == "eq" else PAPER_REVERB_WORDS
    assert {d.word for d in read_audealize_descriptors(path, top_n=None, words=paper)} == set(paper)
    assert all(math.isfinite(v) for d in top for v in d.settings)
