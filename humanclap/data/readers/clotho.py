"""Clotho (Drossos et al., ICASSP 2020; v2.1, Zenodo record 4783391) as captioned pairs for the retrieval probe.

Each clip has five captions (``clotho_captions_<split>.csv``: ``file_name, caption_1 ... caption_5``);
every caption is a pair with score 1.0, the five kept as five pairs even when two are the same text,
so LAION's protocol counts five captions per clip. Clotho's splits map to humanclap's: development
-> train, validation -> validation, evaluation -> test. Layout: docs/data.md#clotho.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from humanclap.data.audio import FileAudioStore
from humanclap.data.pairs import DataError, RatedPair, RatedPairs
from humanclap.data.tables import read_csv_table, require_columns

CLOTHO_SPLITS = {"development": "train", "validation": "validation", "evaluation": "test"}
CAPTION_COLUMNS = tuple(f"caption_{i}" for i in range(1, 6))
DOWNLOAD = "https://zenodo.org/records/4783391"


def read_clotho(
    root: str | os.PathLike,
    split: Iterable[str] | str = "evaluation",
    name: str = "clotho",
) -> RatedPairs:
    """The caption pairs of Clotho's ``split`` (one name or a list) under ``root``.

    ``root`` holds ``clotho_captions_<split>.csv`` and the clips in ``<split>/`` (as the 7z archives
    extract) or ``clotho_audio_<split>/``. A missing file, column, caption or clip is an error naming
    the file and line.
    """
    root = Path(os.path.expanduser(str(root)))
    if not root.is_dir():
        raise DataError(
            f"{root}: Clotho root is not a directory (download Clotho v2.1 from {DOWNLOAD}, extract "
            "clotho_audio_<split>.7z and put clotho_captions_<split>.csv beside the folders)"
        )
    splits = [split] if isinstance(split, str) else list(split)
    unknown = [s for s in splits if s not in CLOTHO_SPLITS]
    if unknown or not splits:
        raise DataError(
            f"Clotho split(s) {unknown or splits} unknown; Clotho's splits are {list(CLOTHO_SPLITS)}"
        )
    pairs: list[RatedPair] = []
    for clotho_split in splits:
        pairs += _split_pairs(root, clotho_split)
    return RatedPairs(pairs, FileAudioStore(), name=name)


def _split_pairs(root: Path, clotho_split: str) -> list[RatedPair]:
    captions = root / f"clotho_captions_{clotho_split}.csv"
    if not captions.is_file():
        found = sorted(p.name for p in root.glob("clotho_captions_*.csv"))
        raise DataError(
            f"{captions}: no such file; caption files in {root}: {found or 'none'} (Clotho v2.1: {DOWNLOAD})"
        )
    audio_dir = next(
        (d for d in (root / clotho_split, root / f"clotho_audio_{clotho_split}") if d.is_dir()),
        None,
    )
    if audio_dir is None:
        raise DataError(
            f"{root}: no audio folder '{clotho_split}/' (or 'clotho_audio_{clotho_split}/') for "
            f"{captions.name}; extract clotho_audio_{clotho_split}.7z there"
        )
    header, records = read_csv_table(captions)
    require_columns(captions, header, ("file_name", *CAPTION_COLUMNS))
    if not records:
        raise DataError(f"{captions}: no clips")
    pairs = []
    for line, row in records:
        where = f"{captions}, line {line}"
        file_name = row["file_name"].strip()
        if not file_name:
            raise DataError(f"{where}: empty file_name")
        audio = os.path.normpath((audio_dir / file_name).absolute())
        if not os.path.isfile(audio):
            raise DataError(f"{where}: audio file not found: {audio}")
        for column in CAPTION_COLUMNS:
            text = " ".join(row[column].split())
            if not text:
                raise DataError(f"{where}: empty {column}")
            pairs.append(RatedPair(audio, text, 1.0, CLOTHO_SPLITS[clotho_split], source=where))
    return pairs
