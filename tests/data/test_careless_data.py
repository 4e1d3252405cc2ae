"""Careless data and bad audio are caught before the first training step, with the data line, the
file and a hint that works as printed; with data.skip_bad_audio=true bad clips are counted skips."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import soundfile as sf
from fakes import MemoryStore, write_csv, write_wav
from hydra.utils import instantiate

from humanclap.data.audio import FileAudioStore, load_audio
from humanclap.data.audio_check import MISSING, NON_FINITE, TOO_SHORT, UNREADABLE, check_audio
from humanclap.data.pairs import DataError, RatedPair, RatedPairs
from humanclap.data.readers.captions import read_captions
from humanclap.data.readers.manifest import read_manifest
from humanclap.data.readers.relate import read_relate
from humanclap.data.readers.timbre_ratings import read_timbre_ratings
from humanclap.lit.datamodule import RatedPairDataModule
from humanclap.lit.dataset import warn_long_texts

MANIFEST = ("audio", "text", "score", "split")
LONG_TEXT = "Thunder rolls over the hills while " + "rain " * 994  # 5,005 characters, 1,000 words


def _hint(message: str) -> str:
    """The override an error message tells the user to pass."""
    return re.search(r"pass '?([\w.]+=[^' ]+?)'?(?: |$)", message).group(1)


# --- score range -------------------------------------------------------------------------------

ZERO_ONE_ROWS = [
    ("a.wav", "a dog barks", "0.2", "train"),
    ("b.wav", "rain", "0.9", "validation"),
    ("a.wav", "a dog barks", "0.5", "train"),
    ("b.wav", "a car", "0", "validation"),
]


@pytest.fixture
def clips(tmp_path):
    """a.wav .. d.wav: 0.1 s at 16 kHz, long enough for every check."""
    for name in "abcd":
        write_wav(tmp_path / f"{name}.wav")
    return tmp_path


def test_zero_one_ratings_under_the_default_0_10_range_are_refused_with_the_range_that_fits(clips):
    path = write_csv(clips / "m.csv", MANIFEST, ZERO_ONE_ROWS)
    with pytest.raises(DataError) as error:
        read_manifest(path)
    message = str(error.value)
    assert message == (
        f"{path}, line 3: the highest of all 4 ratings is 0.9, but the declared score range is "
        f"[0, 10], so the ratings would train as scores of at most 0.09. If they are on a 0-1 scale, "
        f"pass 'data.pairs.score_range=[0,1]'"
    )
    assert _hint(message) == "data.pairs.score_range=[0,1]"
    pairs = read_manifest(path, score_range=(0, 1))
    assert [(p.text, round(p.score, 12)) for p in pairs] == [
        ("a dog barks", 0.35),
        ("rain", 0.9),
        ("a car", 0.0),
    ]


@pytest.mark.parametrize(
    "scores, score_range",
    [
        (["0", "0"], (0, 10)),  # all zero: the same on either scale
        (["0.5", "2"], (0, 10)),  # one rating above 1
        (["1", "1"], (1, 5)),  # every rating at the floor of a 1-5 scale
        (["0.2", "0.9"], (0, 4)),  # a 0-4 scale is too narrow to call 0-1 data impossible
    ],
)
def test_low_ratings_that_can_be_on_the_declared_scale_pass(clips, scores, score_range):
    rows = [("a.wav", "x", scores[0], "train"), ("b.wav", "y", scores[1], "validation")]
    assert (
        len(read_manifest(write_csv(clips / "m.csv", MANIFEST, rows), score_range=score_range)) == 2
    )


def test_0_10_ratings_declared_0_1_are_refused_with_the_range_that_fits(clips):
    rows = [
        ("a.wav", "x", "3", "train"),
        ("b.wav", "y", "7", "train"),
        ("c.wav", "z", "10", "train"),
        ("d.wav", "w", "0.5", "train"),
    ]
    path = write_csv(clips / "m.csv", MANIFEST, rows)
    with pytest.raises(DataError) as error:
        read_manifest(path, score_range=(0, 1))
    assert str(error.value) == (
        f"{path}, line 2: score 3.0 outside the declared range [0, 1]; 3 of 4 ratings are "
        f"outside it. They span 0.5 to 10: if that is a 0-10 scale, pass "
        f"'data.pairs.score_range=[0,10]'"
    )


def test_one_typo_out_of_range_names_its_line_without_suggesting_another_scale(clips):
    rows = [
        ("a.wav", "x", "4", "train"),
        ("b.wav", "y", "11", "train"),
        ("c.wav", "z", "6", "train"),
    ]
    path = write_csv(clips / "m.csv", MANIFEST, rows)
    with pytest.raises(DataError) as error:
        read_manifest(path)
    assert str(error.value) == (
        f"{path}, line 3: score 11.0 outside the declared range [0, 10]; "
        f"1 of 3 ratings are outside it"
    )


def test_timbre_table_on_another_scale_names_the_cell_and_the_scale_that_fits(clips):
    table = clips / "timbre.csv"
    table.write_text(
        "instrument_id,instrument_name,bright,dark\n001,er_hu,90,10\n002,violin,50,34\n",
        encoding="utf-8",
    )
    recordings = {"001": "a.wav", "002": "b.wav"}
    with pytest.raises(DataError) as error:
        read_timbre_ratings(table, recordings)
    assert str(error.value) == (
        f"{table}, line 2, column 'bright': score 90.0 outside the declared range [1, 9]; "
        f"4 of 4 ratings are outside it. They span 10 to 90: if that is a 0-100 scale, pass "
        f"'data.pairs.scale=[0,100]'"
    )
    pairs = read_timbre_ratings(table, recordings, scale=(0, 100))
    assert [round(p.score, 12) for p in pairs] == [0.9, 0.1, 0.5, 0.34]
    assert pairs[3].source == f"{table}, line 3"


# --- split values and provenance ---------------------------------------------------------------


def test_unknown_split_value_is_refused_listing_the_known_ones(clips):
    rows = [("a.wav", "x", "4", "train"), ("b.wav", "y", "6", "val")]
    path = write_csv(clips / "m.csv", MANIFEST, rows)
    expected = f"{path}, line 3: unknown split 'val'; expected one of ['train', 'validation', 'test'], or an empty"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_manifest(path)


def test_empty_split_values_and_no_split_column_are_allowed(clips):
    rows = [("a.wav", "x", "4", ""), ("b.wav", "y", "6", "test")]
    assert [p.split for p in read_manifest(write_csv(clips / "m.csv", MANIFEST, rows))] == [
        None,
        "test",
    ]
    rows = [("a.wav", "x", "4"), ("b.wav", "y", "6")]
    assert [p.split for p in read_manifest(write_csv(clips / "n.csv", MANIFEST[:3], rows))] == [
        None,
        None,
    ]


def test_pairs_remember_their_first_line(clips):
    path = write_csv(
        clips / "m.csv",
        MANIFEST,
        [("a.wav", "x", "4", "train"), ("b.wav", "y", "6", "train"), ("a.wav", "x", "8", "train")],
    )
    assert [p.source for p in read_manifest(path)] == [f"{path}, line 2", f"{path}, line 3"]
    captions = write_csv(
        clips / "c.csv", ("audio", "caption"), [("a.wav", "a tone"), ("b.wav", "a beep")]
    )
    assert [p.source for p in read_captions(captions)] == [
        f"{captions}, line 2",
        f"{captions}, line 3",
    ]
    # Provenance is not part of a pair's identity.
    assert RatedPair("a.wav", "x", 0.5, source="m.csv, line 2") == RatedPair("a.wav", "x", 0.5)


# --- short clips --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frames, rate, ok",
    [
        (1, 48_000, False),
        (479, 48_000, False),
        (480, 48_000, True),
        (159, 16_000, False),
        (160, 16_000, True),
    ],
)
def test_load_audio_refuses_clips_under_10_ms(tmp_path, frames, rate, ok):
    path = write_wav(tmp_path / "clip.wav", frames, rate)
    if ok:
        assert load_audio(path, 48_000).size == 480
    else:
        expected = (
            f"{path}: audio is {frames} sample(s) at {rate} Hz ({1000 * frames / rate:.3g} ms); clips must "
            f"last at least 10 ms ({rate // 100} samples at this rate)"
        )
        with pytest.raises(DataError, match=re.escape(expected)):
            load_audio(path, 48_000)


# --- the audio check before the first step ------------------------------------------------------


@pytest.fixture
def bad_manifest(clips):
    """7 pairs over 6 files: bad.wav (not audio; 2 training pairs) and short.wav (1 sample; validation)."""
    (clips / "bad.wav").write_bytes(b"RIFF but not really a wave file")
    write_wav(clips / "short.wav", frames=1)
    rows = [
        ("a.wav", "a dog barks", "4", "train"),  # line 2
        ("b.wav", "rain", "6", "train"),
        ("bad.wav", "a bell rings", "5", "train"),  # line 4
        ("c.wav", "wind", "7", "validation"),
        ("bad.wav", "a gong", "3", "train"),  # line 6
        ("short.wav", "a click", "5", "validation"),  # line 7
        ("d.wav", "birds", "2", "validation"),
    ]
    return write_csv(clips / "m.csv", MANIFEST, rows)


def test_a_bad_clip_fails_when_the_datamodule_is_built_naming_line_and_file(
    bad_manifest, tiny_backbone
):
    with pytest.raises(DataError) as error:
        RatedPairDataModule(read_manifest(bad_manifest), tiny_backbone.featurizer)
    message = str(error.value)
    bad = bad_manifest.parent / "bad.wav"
    assert message.startswith(f"{bad_manifest}, line 4: {bad}: cannot read audio (")
    assert message.endswith(
        "). 2 of 6 audio files fail the check (1 x unreadable audio, 1 x audio shorter than "
        "10 ms); fix or remove them, or pass data.skip_bad_audio=true to drop their pairs"
    )
    assert _hint(message) == "data.skip_bad_audio=true"


def test_skip_bad_audio_drops_their_pairs_and_counts_them_per_reason(
    bad_manifest, tiny_backbone, caplog
):
    with caplog.at_level(logging.WARNING, logger="humanclap.data.audio_check"):
        data = RatedPairDataModule(
            read_manifest(bad_manifest), tiny_backbone.featurizer, skip_bad_audio=True
        )
    assert [p.text for p in data.train_pairs] == ["a dog barks", "rain"]
    assert [p.text for p in data.val_pairs] == ["wind", "birds"]
    assert data.audio_skipped.counts == {UNREADABLE: 2, TOO_SHORT: 1}
    folder = bad_manifest.parent
    assert data.audio_skipped.examples[UNREADABLE].startswith(
        f"{bad_manifest}, line 4: {folder / 'bad.wav'}: cannot"
    )
    assert data.audio_skipped.examples[TOO_SHORT] == (
        f"{bad_manifest}, line 7: {folder / 'short.wav'}: audio is 1 sample(s) at 16000 Hz (0.0625 ms); clips must "
        f"last at least 10 ms (160 samples at this rate)"
    )
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "humanclap.data.audio_check"]
    assert warning.startswith(
        "data.skip_bad_audio=true: dropped 3 of 7 pairs whose audio is bad (2 of 6 files), "
        "by reason: 2 x unreadable audio (e.g. "
    )


def test_a_split_left_empty_by_skipping_is_an_error(clips, tiny_backbone):
    (clips / "bad.wav").write_bytes(b"")
    path = write_csv(
        clips / "m.csv",
        MANIFEST,
        [("a.wav", "x", "4", "train"), ("bad.wav", "y", "6", "validation")],
    )
    with pytest.raises(
        DataError,
        match=re.escape(
            "m.csv:validation: no pairs left after dropping those whose audio is bad (1 x unreadable audio (e.g. "
            f"{path}, line 3: {clips / 'bad.wav'}: cannot read audio"
        ),
    ):
        RatedPairDataModule(read_manifest(path), tiny_backbone.featurizer, skip_bad_audio=True)


def test_a_file_removed_after_reading_is_named(clips, tiny_backbone):
    path = write_csv(
        clips / "m.csv", MANIFEST, [("a.wav", "x", "4", "train"), ("b.wav", "y", "6", "validation")]
    )
    pairs = read_manifest(path)
    (clips / "b.wav").unlink()
    with pytest.raises(
        DataError, match=re.escape(f"{path}, line 3: {clips / 'b.wav'}: file not found. 1 of 2")
    ):
        RatedPairDataModule(pairs, tiny_backbone.featurizer)
    assert check_audio([pairs], skip_bad=True)[1].counts == {MISSING: 1}


def test_relate_pairs_name_their_rel_csv_line(tmp_path, tiny_backbone):
    header = [
        "wavname",
        "text",
        "score",
        "listener_id",
        "audio type",
        "anchor label",
        "in RELATE dataset",
        "in AudioCaps",
    ]
    rows = [
        (
            "/audiocaps/train/1.wav",
            "a dog barks",
            8,
            "0050",
            "natural",
            "False",
            "train",
            "train",
        ),  # line 2
        ("/audiocaps/train/1.wav", "a dog barks", 6, "0100", "natural", "False", "train", "train"),
        (
            "/audiocaps/train/2.wav",
            "rain",
            3,
            "0050",
            "natural",
            "False",
            "train",
            "train",
        ),  # line 4
        ("/audiocaps/val/3.wav", "wind", 5, "0050", "natural", "False", "validation", "val"),
    ]
    rel = write_csv(tmp_path / "REL.csv", header, rows)
    for folder in ("train", "val"):
        (tmp_path / "audiocaps" / folder).mkdir(parents=True)
    write_wav(tmp_path / "audiocaps" / "train" / "1.wav")
    (tmp_path / "audiocaps" / "train" / "2.wav").write_bytes(b"\0" * 44)
    write_wav(tmp_path / "audiocaps" / "val" / "3.wav")
    pairs = read_relate(rel, tmp_path)
    assert [p.source for p in pairs] == [f"{rel}, line 2", f"{rel}, line 4", f"{rel}, line 5"]
    with pytest.raises(
        DataError, match=re.escape(f"{rel}, line 4: {tmp_path}/audiocaps/train/2.wav: cannot read")
    ):
        RatedPairDataModule(pairs, tiny_backbone.featurizer)


def test_decoding_finds_nan_samples_a_header_does_not_show(tmp_path):
    path = tmp_path / "nan.wav"
    wave = np.zeros(1_600, dtype=np.float32)
    wave[800] = np.nan
    sf.write(path, wave, 16_000, subtype="FLOAT")
    pairs = RatedPairs([RatedPair(str(path), "silence", 0.5)], FileAudioStore(), name="mine")
    (checked,), report = check_audio([pairs])
    assert checked is pairs and report.total == 0
    with pytest.raises(
        DataError,
        match=re.escape(
            f"mine[0]: {path}: audio contains non-finite samples (NaN or inf). "
            f"1 of 1 audio files fail the check (1 x {NON_FINITE})"
        ),
    ):
        check_audio([pairs], decode=True)
    with pytest.raises(
        DataError,
        match=re.escape(
            f"mine: no pairs left after dropping those whose audio is bad "
            f"(1 x {NON_FINITE} (e.g. mine[0]: {path}:"
        ),
    ):
        check_audio([pairs], skip_bad=True, decode=True)


def test_stores_without_files_are_not_checked():
    pairs = RatedPairs(
        [RatedPair("x", "a", 0.5), RatedPair("y", "b", 0.5)], MemoryStore(["x", "y"])
    )
    (checked,), report = check_audio([pairs])
    assert checked is pairs and report.total == 0 and not pairs.audio_store.loads


# --- long texts ---------------------------------------------------------------------------------


class WordTokenizer:
    """One token per word plus <s> and </s>, like a CLAP tokenizer but countable by hand."""

    def num_special_tokens_to_add(self) -> int:
        return 2

    def __call__(self, texts, truncation, verbose):
        assert truncation is False
        return {"input_ids": [[0] + [5] * len(text.split()) + [2] for text in texts]}


class WordFeaturizer:
    tokenizer = WordTokenizer()


def test_texts_over_77_tokens_get_one_warning_with_count_length_and_first_words(caplog):
    texts = [
        "a dog barks",
        "a dog barks",
        "a " * 75,
        "b " * 76,
        LONG_TEXT,
    ]  # 77, 78 and 1,002 tokens
    with caplog.at_level(logging.WARNING, logger="humanclap.lit.dataset"):
        message = warn_long_texts(texts, WordFeaturizer(), what="training texts")
    assert message == (
        "2 of 4 training texts are longer than the text tower's 77 tokens and are cut to 77; "
        "the longest has 1002 tokens: "
        "'Thunder rolls over the hills while rain rain rain rain rain rain ...'"
    )
    assert [r.getMessage() for r in caplog.records if r.name == "humanclap.lit.dataset"] == [
        message
    ]
    assert warn_long_texts(texts[:3], WordFeaturizer()) is None


def test_the_datamodule_warns_once_about_long_texts(clips, tiny_backbone, caplog):
    rows = [
        ("a.wav", "a dog barks", "4", "train"),
        ("b.wav", LONG_TEXT, "6", "train"),
        ("c.wav", "wind", "7", "validation"),
    ]
    with caplog.at_level(logging.WARNING, logger="humanclap.lit.dataset"):
        RatedPairDataModule(
            read_manifest(write_csv(clips / "m.csv", MANIFEST, rows)), tiny_backbone.featurizer
        )
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "humanclap.lit.dataset"]
    assert re.fullmatch(
        r"1 of 3 training and validation texts are longer than the text tower's 77 tokens and are "
        r"cut to 77; the longest has \d{3,} tokens: 'Thunder rolls over the hills while rain .*\.\.\.'",
        warning,
    )


# --- the hints work as printed ------------------------------------------------------------------


def test_printed_overrides_work_on_the_command_line(bad_manifest, compose_train, tiny_backbone):
    with pytest.raises(DataError) as score_error:
        read_manifest(write_csv(bad_manifest.parent / "low.csv", MANIFEST, ZERO_ONE_ROWS))
    with pytest.raises(DataError) as audio_error:
        RatedPairDataModule(read_manifest(bad_manifest), tiny_backbone.featurizer)
    cfg = compose_train(
        "data=manifest", f"data.pairs.path={bad_manifest}", _hint(str(audio_error.value))
    )
    data = instantiate(cfg.data, _partial_=True)(featurizer=tiny_backbone.featurizer)
    assert data.audio_skipped.total == 3
    cfg = compose_train(
        "data=manifest",
        f"data.pairs.path={bad_manifest.parent / 'low.csv'}",
        _hint(str(score_error.value)),
    )
    assert len(instantiate(cfg.data.pairs)) == 3


@pytest.mark.parametrize("data", ["manifest", "relate", "captions", "timbre_ratings"])
def test_every_file_data_config_has_the_audio_options(compose_train, data):
    cfg = compose_train(f"data={data}", "data.skip_bad_audio=true", "data.decode_audio=true")
    assert cfg.data.skip_bad_audio is True and cfg.data.decode_audio is True
