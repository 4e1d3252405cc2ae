"""Hugging Face datasets as a source of clips: open a saved folder, parquet/arrow files or a hub id,
and read its ``Audio`` column without decoding it.

``datasets`` 5 decodes ``Audio`` columns through torchcodec, which humanclap does not depend on, so
the column is cast to ``Audio(decode=False)`` (``{"bytes", "path"}`` per row) and decoded by
humanclap's own loader (:func:`humanclap.data.audio.decode_audio_bytes`): the same checks,
resampling and error messages as files. See docs/data.md#hugging-face-datasets.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from humanclap.data.audio import decode_audio_bytes, load_audio
from humanclap.data.pairs import DataError

DATASET_FILES = (".parquet", ".arrow")
SAVE_COMMAND = (
    "python -c \"import datasets; datasets.load_dataset('{id}').save_to_disk('{folder}')\""
)


@dataclass
class DatasetPart:
    """One split of a source (``split`` None: a source without splits) and where its rows are named."""

    split: str | None
    dataset: Any  # datasets.Dataset
    where: str  # "data/saved (split test)"


@dataclass(frozen=True)
class Source:
    parts: list[DatasetPart]
    label: str
    """How errors name the source: the path or hub id as given."""
    base: Path | None
    """The folder relative audio paths resolve against (None for a hub id)."""


def open_source(path: str | os.PathLike, option: str = "data.pairs.path") -> Source:
    """The dataset(s) ``path`` names: a ``save_to_disk`` folder (a Dataset or a DatasetDict), a folder
    of parquet/arrow shards in the hub's layout, a ``.parquet``/``.arrow`` file or a glob of them, or a
    hub id. ``option`` is the override that gave ``path``, for the hints of errors."""
    import datasets

    text = os.path.expanduser(str(path))
    local = Path(text)
    if any(ch in text for ch in "*?["):
        files = sorted(glob.glob(text, recursive=True))
        if not files:
            raise DataError(f"{path}: the glob matches no file")
        return _from_files(files, str(path), local.parent)
    if local.is_dir():
        if (local / "state.json").is_file() or (local / "dataset_dict.json").is_file():
            try:
                loaded = datasets.load_from_disk(str(local))
            except (OSError, ValueError, FileNotFoundError) as error:
                raise DataError(
                    f"{path}: cannot load this save_to_disk folder ({error})"
                ) from error
            return Source(_parts(loaded, str(path)), str(path), local)
        if not any(next(local.rglob(f"*{suffix}"), None) for suffix in DATASET_FILES):
            raise DataError(
                f"{path}: neither a datasets.save_to_disk folder (state.json or dataset_dict.json) nor "
                f"a folder of {' / '.join(DATASET_FILES)} files"
            )
        return Source(_parts(_load(str(local), str(path)), str(path)), str(path), local)
    if local.is_file():
        return _from_files([text], str(path), local.parent)
    from humanclap.backbones.pretrained import hub_unreachable, looks_like_hub_id, missing_path

    if not looks_like_hub_id(text):
        raise DataError(missing_path("dataset", str(path)))
    reason = hub_unreachable()
    if reason:
        folder = f"data/{text.split('/')[-1]}"
        raise DataError(
            f"{missing_path('dataset', str(path))} As a hub id it cannot be fetched: {reason}. If it "
            f"is a hub dataset, save it once where the hub is reachable:\n"
            f"    {SAVE_COMMAND.format(id=text, folder=folder)}\nthen pass {option}={folder}"
        )
    return Source(_parts(_load(text, str(path)), str(path)), str(path), None)


def _from_files(files: Sequence[str], label: str, base: Path) -> Source:
    suffixes = {Path(f).suffix.lower() for f in files}
    if not suffixes <= set(DATASET_FILES) or len(suffixes) != 1:
        raise DataError(
            f"{label}: expected .parquet or .arrow file(s) (one kind), got {sorted(suffixes)}"
        )
    builder = "parquet" if ".parquet" in suffixes else "arrow"
    loaded = _load(builder, label, data_files=list(files), split="train")
    return Source(_parts(loaded, label), label, base)


def _load(source: str, label: str, **kwargs):
    import datasets

    try:
        return datasets.load_dataset(source, **kwargs)
    except (
        OSError,
        ValueError,
    ) as error:  # ConnectionError, DatasetNotFoundError, ArrowInvalid ...
        raise DataError(f"{label}: cannot load the dataset ({error})") from error


def _parts(loaded, label: str) -> list[DatasetPart]:
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        return [
            DatasetPart(split, part, f"{label} (split {split})") for split, part in loaded.items()
        ]
    return [DatasetPart(None, loaded, label)]


def select_parts(source: Source, splits: Iterable[str] | str | None) -> list[DatasetPart]:
    """The parts of the splits asked for (None: all); an unknown split names those present."""
    if splits is None:
        return source.parts
    wanted = [splits] if isinstance(splits, str) else list(splits)
    present = [part.split for part in source.parts]
    unknown = [s for s in wanted if s not in present]
    if unknown:
        raise DataError(
            f"{source.label}: no split(s) {unknown}; splits present: "
            f"{[s for s in present if s is not None] or 'none (one table)'}"
        )
    return [part for part in source.parts if part.split in wanted]


def require_columns(part: DatasetPart, columns: dict[str, str | None], option: str) -> None:
    """Every mapped column present; the error lists the columns found and the override to map one."""
    found = list(part.dataset.column_names)
    for role, column in columns.items():
        if column is not None and column not in found:
            raise DataError(
                f"{part.where}: no column '{column}' (the {role} column); columns found: {found}. "
                f"Map another with {option}.{role}=<column>"
            )


def column_values(part: DatasetPart, column: str) -> list:
    """The values of a non-audio column, in row order."""
    return part.dataset.select_columns([column]).with_format(None)[column]


# -- audio -----------------------------------------------------------------------------------------


@dataclass(eq=False)  # hashed by identity: probes key their embeddings by (store, key)
class HFAudioStore:
    """``AudioStore`` over the ``Audio`` columns of Hugging Face datasets.

    A clip held as bytes has the key ``<name>#sha256=<first 16 hex digits>``: rows holding the same
    bytes share it (a clip rated with several texts, or captioned five times, is one clip). A clip
    held as a path has its resolved path as key and is read like any file. Picklable into DataLoader
    workers (a ``datasets.Dataset`` pickles as a reference to its memory-mapped files).
    """

    label: str
    column: str
    tables: dict[int, Any] = field(default_factory=dict)
    """Part index -> the part's dataset reduced to the audio column, cast to Audio(decode=False)."""
    rows: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    """Key of a clip held as bytes -> (part index, row, full sha256)."""
    wheres: dict[int, str] = field(default_factory=dict)

    def load(self, key: str, sample_rate: int) -> np.ndarray:
        if key not in self.rows:
            return load_audio(key, sample_rate)
        return decode_audio_bytes(self._bytes(key), self._where(key), sample_rate)

    def clip_identity(self, key: str) -> str | None:
        """What names the clip in the feature cache: its content hash, or its file's path, size and mtime."""
        if key in self.rows:
            return f"hf-bytes\0{self.rows[key][2]}"
        try:
            stat = os.stat(key)
        except OSError:
            return None
        return f"file\0{os.path.realpath(key)}\0{stat.st_size}\0{stat.st_mtime_ns}"

    def fingerprint(self, keys: Sequence[str]) -> str | None:
        """sha256 over the clips' contents (bytes: their hash; files: their bytes)."""
        digest = hashlib.sha256()
        for key in keys:
            digest.update(key.encode() + b"\0")
            if key in self.rows:
                digest.update(self.rows[key][2].encode())
                continue
            if not os.path.isfile(key):
                return None
            with open(key, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    def clip_problem(self, key: str, decode: bool = False):
        """What is wrong with the clip (:func:`humanclap.data.audio_check.clip_problem`), or None."""
        from humanclap.data.audio_check import clip_problem

        if key not in self.rows:
            return clip_problem(key, decode)
        return clip_problem(self._where(key), decode, data=self._bytes(key))

    def describe(self, key: str) -> str:
        return self._where(key) if key in self.rows else key

    def _bytes(self, key: str) -> bytes:
        part, row, _ = self.rows[key]
        return self.tables[part][row][self.column]["bytes"]

    def _where(self, key: str) -> str:
        part, row, _ = self.rows[key]
        return f"{self.wheres[part]}, row {row}, column {self.column}"


def read_audio_column(
    store: HFAudioStore, index: int, part: DatasetPart, base: Path | None, audio_root
) -> list[str]:
    """The key of every row's clip in ``part`` (registered in ``store``); errors name the row.

    A row's audio is its ``bytes`` when present, else its ``path`` (relative paths resolve against
    ``audio_root``, default the dataset's folder), which must exist.
    """
    import datasets

    column = store.column
    dataset = part.dataset
    feature = dataset.features[column]
    if isinstance(feature, datasets.Audio):
        dataset = dataset.cast_column(column, datasets.Audio(decode=False))
    dataset = dataset.select_columns([column])
    store.tables[index], store.wheres[index] = dataset, part.where
    root = Path(os.path.expanduser(str(audio_root))) if audio_root is not None else base
    keys: list[str] = []
    for batch in dataset.with_format("arrow").iter(batch_size=256):
        values = batch.column(column)
        for entry in values.to_pylist():
            row = len(keys)
            where = f"{part.where}, row {row}, column {column}"
            keys.append(_clip_key(store, index, row, entry, where, root))
    return keys


def _clip_key(store: HFAudioStore, index: int, row: int, entry, where: str, root) -> str:
    if isinstance(entry, str):
        entry = {"bytes": None, "path": entry}
    if not isinstance(entry, dict) or not ({"bytes", "path"} & set(entry)):
        raise DataError(
            f"{where}: holds {type(entry).__name__} {str(entry)[:60]!r}, not audio (an Audio feature, "
            "a {bytes, path} struct or a file path)"
        )
    data, path = entry.get("bytes"), entry.get("path")
    if data:
        sha = hashlib.sha256(data).hexdigest()
        name = os.path.basename(path) if path else "clip"
        key = f"{name}#sha256={sha[:16]}"
        if key not in store.rows:
            store.rows[key] = (index, row, sha)
        return key
    if not path:
        raise DataError(f"{where}: no audio (neither bytes nor a path)")
    if root is None and not os.path.isabs(path):
        raise DataError(f"{where}: relative audio path {path!r} and no audio_root to resolve it")
    resolved = os.path.normpath(Path(root or "", os.path.expanduser(path)).absolute())
    if not os.path.isfile(resolved):
        raise DataError(f"{where}: audio file not found: {resolved}")
    return resolved
