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

from humanclap.data.readers.fold_table import FoldTable, read_fold_table
from humanclap.data.readers.labelled_audio import LabelledAudio

ESC50 = FoldTable(
    title="ESC-50",
    table=Path("meta", "esc50.csv"),
    file_column="filename",
    fold_column="fold",
    index_column="target",
    class_column="category",
    folds=5,
    source="the ESC-50-master folder of github.com/karolpiczak/ESC-50",
    audio_in_fold_folders=False,
)
ESC50_TABLE = ESC50.table


def is_esc50_root(path: str | Path) -> bool:
    return ESC50.is_root(path)


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
    Errors: :func:`humanclap.data.readers.fold_table.read_fold_table`.
    """
    return read_fold_table(ESC50, root, folds, labels, name)
