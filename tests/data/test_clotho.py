"""Clotho in its real layout (clotho_captions_<split>.csv + <split>/ wavs): the reader, its errors, and
retrieval with LAION's protocol worked out by hand."""

from __future__ import annotations

import pytest
from fakes import MemoryStore, VectorEmbedder, unit, write_csv, write_wav

from humanclap.data.pairs import DataError, RatedPairs
from humanclap.data.readers.clotho import read_clotho
from humanclap.probes.metrics import ranking_means
from humanclap.probes.retrieval.probe import RetrievalProbe

HEADER = ["file_name", "caption_1", "caption_2", "caption_3", "caption_4", "caption_5"]
# Two clips, A at 0 degrees and B at 90 degrees; their captions at these angles (cos = cos of the gap).
# "a1" and "a5" are the same text. See test_laion_protocol_by_hand for the rankings.
CAPTIONS = {
    "A.wav": [("a1", 10), ("a2", 20), ("a3", 75), ("a4", 30), ("a1", 10)],
    "B.wav": [("b1", 100), ("b2", 110), ("b3", 120), ("b4", 50), ("b5", 140)],
}


def clotho(root, split="evaluation", captions=CAPTIONS):
    (root / split).mkdir(parents=True, exist_ok=True)
    for name in captions:
        write_wav(root / split / name)
    rows = [[name, *(text for text, _ in texts)] for name, texts in captions.items()]
    write_csv(root / f"clotho_captions_{split}.csv", HEADER, rows)
    return root


def test_reads_five_pairs_per_clip_in_the_mapped_split(tmp_path):
    pairs = read_clotho(clotho(tmp_path))
    assert len(pairs) == 10
    assert {p.split for p in pairs} == {"test"} and {p.score for p in pairs} == {1.0}
    assert [p.text for p in pairs[:5]] == ["a1", "a2", "a3", "a4", "a1"]  # the repeat is kept
    assert pairs[0].audio == str(tmp_path / "evaluation" / "A.wav")
    assert pairs[0].source == f"{tmp_path / 'clotho_captions_evaluation.csv'}, line 2"
    clotho(tmp_path, "development")
    both = read_clotho(tmp_path, split=["development", "evaluation"])
    assert [p.split for p in both][::5] == ["train", "train", "test", "test"]


def test_layout_errors_name_what_is_missing(tmp_path):
    with pytest.raises(
        DataError, match="Clotho root is not a directory.*zenodo.org/records/4783391"
    ):
        read_clotho(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"split\(s\) \['test'\] unknown; Clotho's splits are"):
        read_clotho(tmp_path, split="test")
    with pytest.raises(
        DataError, match=r"clotho_captions_evaluation.csv: no such file; caption files in"
    ):
        read_clotho(tmp_path)
    clotho(tmp_path)
    (tmp_path / "evaluation" / "B.wav").unlink()
    with pytest.raises(
        DataError, match=r"clotho_captions_evaluation.csv, line 3: audio file not found: .*B.wav"
    ):
        read_clotho(tmp_path)
    write_csv(
        tmp_path / "clotho_captions_evaluation.csv", HEADER[:-1], [["A.wav", "a", "b", "c", "d"]]
    )
    with pytest.raises(DataError, match=r"missing required column\(s\) \['caption_5'\]"):
        read_clotho(tmp_path)


def test_laion_protocol_by_hand(tmp_path):
    read = read_clotho(clotho(tmp_path))
    store = MemoryStore({p.audio for p in read})
    pairs = RatedPairs(read.pairs, store, name="clotho")
    clips = {read[0].audio: unit(0), read[5].audio: unit(90)}
    texts = {text: unit(angle) for captions in CAPTIONS.values() for text, angle in captions}
    embedder = VectorEmbedder(store, clips, texts)

    laion = RetrievalProbe(pairs, protocol="laion").run(embedder).metrics
    # t2a, one query per caption row (10): each ranks its own clip of the two. Only a3 (75 degrees:
    # cos A .259 < cos B .966) ranks it second; R@1 = 9/10, MRR = mAP@10 = (9 + 1/2) / 10.
    assert laion["t2a/n_queries"] == 10
    assert laion["t2a/R@1"] == pytest.approx(0.9)
    assert laion["t2a/MRR"] == pytest.approx(0.95)
    assert laion["t2a/mAP@10"] == pytest.approx(0.95)
    # a2t over the 10 caption rows. A: a1 = a5 .985, a2 .940, a4 .866, b4 .643, a3 .259, ...
    #   -> its captions at ranks 1, 2, 3, 4, 6: AP = (1/1 + 2/2 + 3/3 + 4/4 + 5/6) / 5 = 0.96667
    # B: b1 .985, a3 .966, b2 .940, b3 .866, b4 .766, b5 .643, ...
    #   -> ranks 1, 3, 4, 5, 6: AP = (1/1 + 2/3 + 3/4 + 4/5 + 5/6) / 5 = 0.81
    assert laion["a2t/R@1"] == 1.0
    assert laion["a2t/mAP@10"] == pytest.approx((29 / 30 + 0.81) / 2)
    # The default protocol: 9 distinct texts ("a1" once), so t2a R@1 = 8/9.
    unique = RetrievalProbe(pairs).run(embedder).metrics
    assert unique["t2a/n_queries"] == 9 and unique["t2a/R@1"] == pytest.approx(8 / 9)


def test_map_over_all_matches_counts_the_ones_missed():
    """One query, matches at ranks 1 and 12: found-only AP@10 = 1; over both matches (LAION) = 1/2."""
    import torch

    ranks = torch.tensor([[1.0, 12.0]])
    assert ranking_means(ranks, (1,), 10)["mAP@10"] == 1.0
    assert ranking_means(ranks, (1,), 10, relevant=torch.tensor([2]))["mAP@10"] == 0.5


def test_training_on_clotho_says_it_is_an_evaluation_set(compose_train, tmp_path):
    from humanclap.train import DataConfigError, train

    with pytest.raises(
        DataConfigError,
        match=r"^data=clotho is an evaluation set, not training data: evaluate it with python -m "
        r"humanclap.evaluate data=clotho data.root=<folder> .*data=hf",
    ):
        train(compose_train("data=clotho", f"data.root={tmp_path}"))
