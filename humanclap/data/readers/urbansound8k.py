"""UrbanSound8K (Salamon, Jacoby and Bello, "A Dataset and Taxonomy for Urban Sound Research", ACM
MM 2014): 8732 clips of up to 4 s, 10 classes, 10 predefined folds; from
urbansounddataset.weebly.com.

Layout: ``<root>/metadata/UrbanSound8K.csv`` (``slice_file_name,fsID,start,end,salience,fold,
classID,class``) and the clips in ``<root>/audio/fold<N>/<slice_file_name>``. Class names as
LAION-CLAP's zero-shot evaluation (``dog_bark`` -> ``dog bark``). See
docs/data.md#esc-50-and-urbansound8k.
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

US8K_TABLE = Path("metadata", "UrbanSound8K.csv")
US8K_COLUMNS = ("slice_file_name", "fold", "classID", "class")
US8K_FOLDS = 10
US8K_SOURCE = "the UrbanSound8K folder from urbansounddataset.weebly.com"


def is_urbansound8k_root(path: str | Path) -> bool:
    return Path(path, US8K_TABLE).is_file()


def read_urbansound8k(
    root: str | Path,
    folds: Iterable[int | str] | int | str | None = None,
    labels: Mapping[str, str] | None = None,
    name: str = "urbansound8k",
) -> LabelledAudio:
    """The clips of an UrbanSound8K folder, in class order (``classID`` 0 = air conditioner ... 9 =
    street music).

    Label: ``class`` with ``_`` as a space, as LAION-CLAP (``class_labels/
    UrbanSound8K_class_labels_indices.json``); ``labels`` renames classes (keyed by the CSV's class
    or the cleaned name). Fold: the ``fold`` column ("1" .. "10"), which also names the clip's
    folder ``audio/fold<N>``; ``folds`` keeps some. A folder without
    ``metadata/UrbanSound8K.csv``, a missing column, a bad fold or classID and a missing audio file
    are errors naming the folder, or the file and line.
    """
    root = Path(root).expanduser()
    table = root / US8K_TABLE
    if not table.is_file():
        found = "no such directory" if not root.is_dir() else f"it has no {US8K_TABLE}"
        raise DataError(
            f"{root}: not an UrbanSound8K folder ({found}); expected {root / US8K_TABLE} and "
            f"{root / 'audio'}/fold<N>/<slice_file_name>: pass {US8K_SOURCE}"
        )
    header, records = read_csv_table(table)
    require_columns(table, header, US8K_COLUMNS)
    if not records:
        raise DataError(f"{table}: no clips")
    labels = dict(labels or {})
    rows = []
    for line, row in records:
        where = f"{table}, line {line}"
        index = row["classID"].strip()
        if not index.isdigit():
            raise DataError(f"{where}: classID {row['classID']!r} is not a class index (0, 1, ...)")
        fold = fold_number(row["fold"], US8K_FOLDS, where)
        clip = LabelledClip(
            audio=_resolve_audio(
                root / "audio" / f"fold{fold}", row["slice_file_name"].strip(), where
            ),
            label=laion_label(row["class"].strip(), labels, where),
            fold=fold,
        )
        rows.append(IndexedClip(int(index), clip, where))
    return class_indexed(rows, name, folds)
