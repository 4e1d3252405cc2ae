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

from humanclap.data.readers.fold_table import FoldTable, read_fold_table
from humanclap.data.readers.labelled_audio import LabelledAudio

URBANSOUND8K = FoldTable(
    title="UrbanSound8K",
    table=Path("metadata", "UrbanSound8K.csv"),
    file_column="slice_file_name",
    fold_column="fold",
    index_column="classID",
    class_column="class",
    folds=10,
    source="the UrbanSound8K folder from urbansounddataset.weebly.com",
    audio_in_fold_folders=True,
)
US8K_TABLE = URBANSOUND8K.table


def is_urbansound8k_root(path: str | Path) -> bool:
    return URBANSOUND8K.is_root(path)


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
    folder ``audio/fold<N>``; ``folds`` keeps some. Errors:
    :func:`humanclap.data.readers.fold_table.read_fold_table`.
    """
    return read_fold_table(URBANSOUND8K, root, folds, labels, name)
