"""``data=hf`` / ``data=hf_labelled``: Hugging Face datasets built offline (``Dataset.from_dict`` +
``Audio``, ``save_to_disk``, ``to_parquet``) from generated audio, read with humanclap's own decoder."""

from __future__ import annotations

import math

import datasets
import numpy as np
import pytest
from fakes import write_wav

from humanclap.data.audio import load_audio
from humanclap.data.audio_check import check_audio
from humanclap.data.hf_source import HFAudioStore
from humanclap.data.pairs import DataError
from humanclap.data.readers.hf import read_hf_labelled, read_hf_pairs
from humanclap.features.identity import clip_identity

RATE = 16_000


@pytest.fixture
def clips(tmp_path):
    """Three 0.1 s tones at different pitches, as wav files."""
    folder = tmp_path / "wav"
    folder.mkdir()
    return [
        str(write_wav(folder / f"c{i}.wav", frequency=220.0 * (i + 1), sample_rate=RATE))
        for i in range(3)
    ]


def ratings(clips):
    """Four ratings on a 0-10 scale: clip 0 rated twice with the same text (mean 7)."""
    return {
        "audio": [clips[0], clips[0], clips[1], clips[2]],
        "text": ["a dog barks", "a dog barks", "rain falls", "a bell rings"],
        "rating": [6.0, 8.0, 2.0, 10.0],
        "split": ["train", "train", "validation", "train"],
    }


def saved(tmp_path, columns, name="saved"):
    """save_to_disk embeds the audio as bytes."""
    dataset = datasets.Dataset.from_dict(columns).cast_column("audio", datasets.Audio())
    dataset.save_to_disk(str(tmp_path / name))
    return tmp_path / name


def test_saved_folder_reads_pairs_averaged_and_rescaled(tmp_path, clips):
    folder = saved(tmp_path, ratings(clips))
    pairs = read_hf_pairs(folder, columns={"score": "rating"}, score_max=10)
    assert [(p.text, p.score, p.split, p.num_ratings) for p in pairs] == [
        ("a dog barks", 0.7, "train", 2),
        ("rain falls", 0.2, "validation", 1),
        ("a bell rings", 1.0, "train", 1),
    ]
    assert isinstance(pairs.audio_store, HFAudioStore)
    assert pairs[0].audio.startswith("c0.wav#sha256=")
    assert pairs[0].source == f"{folder}, row 0"
    # The bytes decode to exactly what the file decodes to, at any rate (resampled the same way).
    for pair, path in zip(pairs, clips):
        for rate in (RATE, 48_000):
            np.testing.assert_array_equal(
                pairs.load_audio(pair.audio, rate), load_audio(path, rate)
            )


def test_parquet_keeps_paths_and_reads_them_as_files(tmp_path, clips):
    dataset = datasets.Dataset.from_dict(ratings(clips)).cast_column("audio", datasets.Audio())
    dataset.to_parquet(str(tmp_path / "ratings.parquet"))
    pairs = read_hf_pairs(
        tmp_path / "ratings.parquet", columns={"score": "rating"}, score_range=[0, 10]
    )
    assert [p.audio for p in pairs] == [clips[0], clips[1], clips[2]]
    assert [p.score for p in pairs] == [0.7, 0.2, 1.0]
    np.testing.assert_array_equal(pairs.load_audio(clips[1], RATE), load_audio(clips[1], RATE))
    # A glob of shards reads the same.
    glob_pairs = read_hf_pairs(
        str(tmp_path / "*.parquet"), columns={"score": "rating"}, score_max=10
    )
    assert [(p.audio, p.text, p.score) for p in glob_pairs] == [
        (p.audio, p.text, p.score) for p in pairs
    ]


def test_dataset_dict_splits_and_captions(tmp_path, clips):
    captions = {"audio": clips, "text": ["low tone", "middle tone", "high tone"]}
    dataset = datasets.Dataset.from_dict(captions).cast_column("audio", datasets.Audio())
    dev = datasets.Dataset.from_dict({"audio": clips[:1], "text": ["a low tone"]})
    dev = dev.cast_column("audio", datasets.Audio())
    datasets.DatasetDict({"train": dataset, "dev": dev}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(
        DataError, match=r"split 'dev' is not one of .*split_names=\{dev:validation\}"
    ):
        read_hf_pairs(tmp_path / "dd", columns={"score": None})
    pairs = read_hf_pairs(
        tmp_path / "dd", columns={"score": None}, split_names={"dev": "validation"}
    )
    assert [(p.text, p.score, p.split) for p in pairs] == [
        ("low tone", 1.0, "train"),
        ("middle tone", 1.0, "train"),
        ("high tone", 1.0, "train"),
        ("a low tone", 1.0, "validation"),
    ]
    assert pairs[0].audio == pairs[3].audio  # the same bytes: one clip
    only = read_hf_pairs(tmp_path / "dd", columns={"score": None}, splits=["train"])
    assert len(only) == 3
    with pytest.raises(
        DataError, match=r"no split\(s\) \['test'\]; splits present: \['train', 'dev'\]"
    ):
        read_hf_pairs(tmp_path / "dd", columns={"score": None}, splits="test")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"text": ["a", None, "b", "c"]}, r"row 1, column text: text must be a string, got None"),
        ({"text": ["a", "  ", "b", "c"]}, r"row 1, column text: empty text"),
        ({"rating": [1.0, math.nan, 2.0, 3.0]}, r"row 1, column rating: score is nan"),
        (
            {"rating": [1.0, 11.0, 2.0, 3.0]},
            r"row 1: score 11.0 outside the declared range \[0.0, 10.0\]",
        ),
        ({"split": ["train", "holdout", "train", "train"]}, r"row 1: split 'holdout'"),
    ],
)
def test_bad_rows_are_named(tmp_path, clips, change, message):
    folder = saved(tmp_path, ratings(clips) | change)
    with pytest.raises(DataError, match=message):
        read_hf_pairs(folder, columns={"score": "rating"}, score_max=10)


def test_bad_columns_sources_and_paths_are_named(tmp_path, clips):
    folder = saved(tmp_path, ratings(clips))
    with pytest.raises(
        DataError,
        match=r"no column 'score' \(the score column\); columns found: .*data.pairs.columns.score=<column>",
    ):
        read_hf_pairs(folder)
    with pytest.raises(
        DataError,
        match=r"score 6.0 outside the declared range \[0.0, 1.0\].*pass 'data.pairs.score_range=\[1,10\]'",
    ):
        read_hf_pairs(folder, columns={"score": "rating"})
    with pytest.raises(DataError, match=r"unknown role\(s\) \['rating'\]"):
        read_hf_pairs(folder, columns={"rating": "score"})
    with pytest.raises(DataError, match="does not exist locally"):
        read_hf_pairs(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither a datasets.save_to_disk folder"):
        read_hf_pairs(tmp_path / "empty")
    # A path-only audio column whose file is gone.
    table = datasets.Dataset.from_dict(
        ratings(clips) | {"audio": [clips[0], "gone.wav", clips[1], clips[2]]}
    )
    table.to_parquet(str(tmp_path / "gone.parquet"))
    with pytest.raises(
        DataError, match=r"gone.parquet, row 1, column audio: audio file not found: .*gone.wav"
    ):
        read_hf_pairs(tmp_path / "gone.parquet", columns={"score": "rating"}, score_max=10)


def test_a_hub_id_offline_says_how_to_save_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as in every test; the message must not depend on it
    with pytest.raises(DataError) as error:
        read_hf_pairs("someone/rated-clips")
    message = str(error.value)
    assert "HF_HUB_OFFLINE is set" in message
    assert (
        "datasets.load_dataset('someone/rated-clips').save_to_disk('data/rated-clips')" in message
    )
    assert message.endswith("then pass data.pairs.path=data/rated-clips")


def test_undecodable_bytes_are_named_by_the_audio_check(tmp_path, clips):
    rows = ratings(clips)
    rows["audio"] = [{"bytes": open(c, "rb").read(), "path": c} for c in clips[:1]] * 2 + [
        {"bytes": b"not audio at all", "path": "broken.wav"},
        {"bytes": open(clips[2], "rb").read(), "path": clips[2]},
    ]
    folder = saved(tmp_path, rows)
    pairs = read_hf_pairs(folder, columns={"score": "rating"}, score_max=10)
    with pytest.raises(
        DataError,
        match=r"saved, row 2: broken.wav#sha256=\w+: cannot read audio \(Format not recognised.\)\. "
        r"1 of 3 .*data.skip_bad_audio=true",
    ):
        check_audio([pairs])
    kept, report = check_audio([pairs], skip_bad=True)
    assert [p.text for p in kept[0]] == ["a dog barks", "a bell rings"] and report.total == 1


def test_feature_cache_identity_is_the_content(tmp_path, clips):
    first = read_hf_pairs(
        saved(tmp_path, ratings(clips), "one"), columns={"score": "rating"}, score_max=10
    )
    again = read_hf_pairs(
        saved(tmp_path, ratings(clips), "two"), columns={"score": "rating"}, score_max=10
    )
    ids = [clip_identity(first.audio_store, p.audio) for p in first]
    assert ids == [clip_identity(again.audio_store, p.audio) for p in again]
    assert len(set(ids)) == 3
    assert first.audio_store.fingerprint([p.audio for p in first]) == again.audio_store.fingerprint(
        [p.audio for p in again]
    )


def test_labelled_clips_from_class_labels_and_splits(tmp_path, clips):
    features = datasets.Features(
        {
            "audio": datasets.Value("string"),
            "category": datasets.ClassLabel(names=["chirping_birds", "dog", "rain"]),
        }
    )
    table = datasets.Dataset.from_dict({"audio": clips, "category": [0, 1, 2]}, features=features)
    table = table.cast_column("audio", datasets.Audio())  # casting files in: no encoder needed
    datasets.DatasetDict({"1": table, "2": table.select([2, 0])}).save_to_disk(str(tmp_path / "l"))
    data = read_hf_labelled(tmp_path / "l", columns={"label": "category"})
    assert [(c.label, c.fold) for c in data] == [
        ("chirping birds", "1"),
        ("dog", "1"),
        ("rain", "1"),
        ("rain", "2"),
        ("chirping birds", "2"),
    ]
    assert data.folds() == ["1", "2"]
    renamed = read_hf_labelled(
        tmp_path / "l", columns={"label": "category"}, labels={"1": "dog barking"}, folds=[2]
    )
    assert [c.label for c in renamed] == ["rain", "chirping birds"]
    assert (
        read_hf_labelled(
            tmp_path / "l", columns={"label": "category"}, labels={"1": "dog barking"}
        )[1].label
        == "dog barking"
    )


def test_a_saved_labelled_folder_is_probe_data(tmp_path, clips):
    """probes.zero_shot_classification.data=<save_to_disk folder> reads columns audio, label[, fold]."""
    from humanclap.probes.zero_shot.probe import load_labelled_audio

    table = datasets.Dataset.from_dict(
        {"audio": clips, "label": ["dog_bark", "rain", "siren"], "fold": [1, 1, 2]}
    ).cast_column("audio", datasets.Audio())
    table.save_to_disk(str(tmp_path / "labelled"))
    data = load_labelled_audio(str(tmp_path / "labelled"), folds=[1])
    assert [(c.label, c.fold) for c in data] == [("dog bark", "1"), ("rain", "1")]
