"""ESC-50 (Piczak, "ESC: Dataset for Environmental Sound Classification", ACM MM 2015): 2000 clips
of 5 s, 50 classes of 40 clips, 5 folds, from the ``ESC-50-master`` folder of
github.com/karolpiczak/ESC-50.

Layout: ``<root>/meta/esc50.csv`` (``filename,fold,target,category,esc10,src_file,take``) and the
clips in ``<root>/audio/<filename>``. Class names as LAION-CLAP's zero-shot evaluation writes
them (``chirping_birds`` -> ``chirping birds``). See docs/data.md#esc-50-and-urbansound8k.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from humanclap.data.pairs import DataError
from humanclap.data.readers.labelled_audio import (
    IndexedClip,
    LabelledAudio,
    LabelledClip,
    _resolve_audio,
    class_indexed,
    fold_number,
    laion_label,
)
from humanclap.data.tables import read_csv_table, require_columns

ESC50_TABLE = Path("meta", "esc50.csv")
ESC50_COLUMNS = ("filename", "fold", "target", "category")
ESC50_FOLDS = 5
ESC50_SOURCE = "the ESC-50-master folder of github.com/karolpiczak/ESC-50"


def is_esc50_root(path: str | Path) -> bool:
    return Path(path, ESC50_TABLE).is_file()


def read_esc50(
    root: str | Path,
    folds: Iterable[int | str] | int | str | None = None,
    labels: Mapping[str, str] | None = None,
    name: str = "esc50",
) -> LabelledAudio:
    """The clips of an ESC-50 folder, in class order (``target`` 0 = dog ... 49 = hand saw).

    Label: ``category`` with ``_`` as a space, as LAION-CLAP (``class_labels/
    ESC50_class_labels_indices_space.json``); ``labels`` renames classes (keyed by the CSV's
    category or the cleaned name). Fold: the ``fold`` column ("1" .. "5"); ``folds`` keeps some.
    A folder without ``meta/esc50.csv``, a missing column, a bad fold or target and a missing
    audio file are errors naming the folder, or the file and line.
    """
    root = Path(root).expanduser()
    table = root / ESC50_TABLE
    if not table.is_file():
        found = "no such directory" if not root.is_dir() else f"it has no {ESC50_TABLE}"
        raise DataError(
            f"{root}: not an ESC-50 folder ({found}); expected {root / ESC50_TABLE} and "
            f"{root / 'audio'}/*.wav: pass {ESC50_SOURCE}"
        )
    header, records = read_csv_table(table)
    require_columns(table, header, ESC50_COLUMNS)
    if not records:
        raise DataError(f"{table}: no clips")
    labels = dict(labels or {})
    rows = []
    for line, row in records:
        where = f"{table}, line {line}"
        target = row["target"].strip()
        if not target.isdigit():
            raise DataError(f"{where}: target {row['target']!r} is not a class index (0, 1, ...)")
        clip = LabelledClip(
            audio=_resolve_audio(root / "audio", row["filename"].strip(), where),
            label=laion_label(row["category"].strip(), labels, where),
            fold=fold_number(row["fold"], ESC50_FOLDS, where),
        )
        rows.append(IndexedClip(int(target), clip, where))
    return class_indexed(rows, name, folds)
