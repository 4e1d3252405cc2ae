"""Benchmarks laid out as one CSV table of clips, each with a class index, a class name and a fold
(ESC-50, UrbanSound8K): one reader, one :class:`FoldTable` layout per set.

Class names as LAION-CLAP's zero-shot evaluation writes them (``chirping_birds`` -> ``chirping
birds``); clips in class-index order so classes come in the set's own order. See
docs/data.md#esc-50-and-urbansound8k.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FoldTable:
    """Where a set keeps its table and clips, and which columns hold what."""

    title: str  # "ESC-50"
    table: Path  # relative to the root
    file_column: str
    fold_column: str
    index_column: str
    class_column: str
    folds: int
    source: str  # where to get it, for the error of a wrong folder
    audio_in_fold_folders: bool  # UrbanSound8K: audio/fold<N>/<file>; ESC-50: audio/<file>

    def is_root(self, path: str | Path) -> bool:
        return Path(path, self.table).is_file()

    def audio_layout(self, root: Path) -> str:
        return f"{root / 'audio'}/" + (
            f"fold<N>/<{self.file_column}>" if self.audio_in_fold_folders else "*.wav"
        )


def read_fold_table(
    layout: FoldTable,
    root: str | Path,
    folds: Iterable[int | str] | int | str | None,
    labels: Mapping[str, str] | None,
    name: str,
) -> LabelledAudio:
    """The clips of ``root`` in ``layout``. A folder without the table, a missing column, a bad
    fold or class index and a missing audio file (of the selected folds) are errors naming the
    folder, or the file and line."""
    root = Path(root).expanduser()
    table = root / layout.table
    if not table.is_file():
        found = "no such directory" if not root.is_dir() else f"it has no {layout.table}"
        raise DataError(
            f"{root}: not an {layout.title} folder ({found}); expected {table} and "
            f"{layout.audio_layout(root)}: pass {layout.source}"
        )
    header, records = read_csv_table(table)
    require_columns(
        table,
        header,
        (layout.file_column, layout.fold_column, layout.index_column, layout.class_column),
    )
    if not records:
        raise DataError(f"{table}: no clips")
    labels = dict(labels or {})
    rows = []
    for line, row in records:
        where = f"{table}, line {line}"
        index = row[layout.index_column].strip()
        if not index.isdigit():
            raise DataError(
                f"{where}: {layout.index_column} {row[layout.index_column]!r} is not a class "
                "index (0, 1, ...)"
            )
        fold = fold_number(row[layout.fold_column], layout.folds, where)
        folder = root / "audio" / (f"fold{fold}" if layout.audio_in_fold_folders else "")
        clip = LabelledClip(
            audio=_resolve_audio(folder, row[layout.file_column].strip(), where),
            label=laion_label(row[layout.class_column].strip(), labels, where),
            fold=fold,
        )
        rows.append(IndexedClip(int(index), clip, where))
    return class_indexed(rows, name, folds)
