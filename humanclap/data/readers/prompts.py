"""Unrated (audio, prompt) pairs, e.g. generated clips and the prompts they were generated from, for
``python -m humanclap.score``.

Two layouts (docs/scoring.md#inputs):

* a table: ``path=<file.csv|file.jsonl>`` with one row per pair, columns ``audio,text[,id]``; audio
  paths are relative to ``audio_root`` (default: the table's directory) or absolute;
* a folder of clips: ``path=<folder>`` and ``prompts=<file.csv|file.jsonl>`` with columns
  ``file,text[,id]``, ``file`` naming a clip of the folder (``a.wav``; without its suffix, ``a``, when
  that is unambiguous). Every audio file of the folder must have a prompt and every prompt a file.
  Only the folder itself is listed; ``recursive=True`` lists its subfolders too (names such as
  ``model_a/a.wav``). Audio files are those with a suffix in :data:`AUDIO_SUFFIXES`; hidden files and
  other suffixes are ignored.

Each pair gets an ``id``: the ``id_column`` value if given (unique, not empty), else the clip's name as
written (the folder layout: its file name), with ``#1``, ``#2``, ... appended when one clip has several
prompts. A pair repeated (same clip, same text) is an error, so no pair counts twice in a mean. Every
bad row is an error naming file and line; several missing or unprompted clips are counted, the first
few named.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from humanclap.data.audio import FileAudioStore
from humanclap.data.pairs import AudioStore, DataError, RatedPairs
from humanclap.data.tables import (
    read_table,
    require_file,
)

AUDIO_SUFFIXES = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aiff",
    ".aif",
    ".aifc",
    ".au",
    ".caf",
    ".w64",
    ".rf64",
)
"""File suffixes listed as clips in a folder: formats libsndfile reads (mp3 since libsndfile 1.1)."""
SHOWN = 5
"""How many names an error about several files lists."""


@dataclass(frozen=True)
class Prompt:
    """One (clip, text) pair to score."""

    id: str
    audio: str
    """The clip as the input names it (a table: its audio column; a folder: the file's name in it;
    rated pairs: their audio key, a resolved path for files)."""
    key: str
    """The clip's key in the ``audio_store`` (a resolved path for files)."""
    text: str
    source: str | None = None
    """Where the pair was read, e.g. "prompts.csv, line 3"."""
    human_score: float | None = None
    """The human rating in [0, 1] of rated data (``RatedPair.score``); None for prompts."""


@dataclass
class PromptedClips(Sequence[Prompt]):
    """Pairs to score, in input order, with the store that holds their audio; ids are unique."""

    items: list[Prompt]
    audio_store: AudioStore = field(default_factory=FileAudioStore)
    name: str = "prompts"
    rated: bool = False
    """True when every pair carries a human score (read from rated pairs)."""

    def __post_init__(self) -> None:
        if not self.items:
            raise DataError(f"{self.name}: no pairs to score")
        first: dict[str, Prompt] = {}
        for item in self.items:
            if item.id in first:
                raise DataError(
                    f"{_where(item)}: id {item.id!r} is also the id of {_where(first[item.id])}; "
                    f"ids must be unique"
                )
            first[item.id] = item

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):  # type: ignore[override]
        return self.items[index]

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self.items)


def read_prompts(
    path: str | Path,
    prompts: str | Path | None = None,
    audio_root: str | Path | None = None,
    audio_column: str = "audio",
    text_column: str = "text",
    id_column: str | None = None,
    file_column: str = "file",
    recursive: bool = False,
    name: str | None = None,
) -> PromptedClips:
    """Read (clip, prompt) pairs from a table, or from a folder of clips and a table of their prompts.

    See the module docstring for both layouts; every error is a :class:`DataError` naming the file
    and the line.
    """
    path = Path(os.path.expanduser(str(path)))
    if path.is_dir():
        if prompts is None:
            raise DataError(
                f"{path} is a folder of clips: name the table of their prompts with "
                f"data.prompts=<prompts.csv|prompts.jsonl> (columns {file_column},{text_column})"
            )
        if audio_root is not None:
            raise DataError(
                f"data.audio_root={audio_root} is for a table's relative audio paths; the clips of "
                f"{path} are named relative to that folder (leave audio_root unset)"
            )
        return _read_folder(
            path, Path(prompts), file_column, text_column, id_column, recursive, name
        )
    if prompts is not None:
        raise DataError(
            f"data.prompts={prompts} names the prompts of a folder of clips, but data.path={path} is "
            + ("a file" if path.is_file() else "not a folder (no such file or folder)")
            + f": give a table with columns {audio_column},{text_column} as data.path alone, or a "
            f"folder as data.path"
        )
    require_file(path)
    return _read_table(path, audio_root, audio_column, text_column, id_column, name)


def prompted_from_pairs(pairs: RatedPairs) -> PromptedClips:
    """Rated pairs as pairs to score, each keeping its human score."""
    keys = [pair.audio for pair in pairs]
    ids = _default_ids(keys)
    return PromptedClips(
        [
            Prompt(id_, pair.audio, pair.audio, pair.text, pair.source, pair.score)
            for id_, pair in zip(ids, pairs)
        ],
        pairs.audio_store,
        name=pairs.name,
        rated=True,
    )


# -- the two layouts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    line: int
    audio: str
    text: str
    id: str | None


def _read_table(
    path: Path,
    audio_root: str | Path | None,
    audio_column: str,
    text_column: str,
    id_column: str | None,
    name: str | None,
) -> PromptedClips:
    rows = _rows(path, audio_column, text_column, id_column)
    root = Path(os.path.expanduser(str(audio_root))) if audio_root is not None else path.parent
    keys = [os.path.normpath(Path(root, os.path.expanduser(row.audio)).absolute()) for row in rows]
    missing = [(row, key) for row, key in zip(rows, keys) if not os.path.isfile(key)]
    if missing:
        unique = list(dict.fromkeys(key for _, key in missing))
        shown = ", ".join(
            f"{row.audio!r} (line {row.line})" for row, _ in _first_per_key(missing)[:SHOWN]
        )
        raise DataError(
            f"{path}: {len(unique)} audio file(s) named in column '{audio_column}' not found under "
            f"{os.path.abspath(root)}: {shown}{_more(len(unique))}; relative paths are read from "
            + ("data.audio_root" if audio_root is not None else "the table's folder")
            + " (data.audio_root=<folder> sets another)"
        )
    return _prompted(path, rows, [row.audio for row in rows], keys, name)


def _read_folder(
    folder: Path,
    prompts: Path,
    file_column: str,
    text_column: str,
    id_column: str | None,
    recursive: bool,
    name: str | None,
) -> PromptedClips:
    prompts = Path(os.path.expanduser(str(prompts)))
    require_file(prompts)
    clips = _audio_files(folder, recursive)
    rows = _rows(prompts, file_column, text_column, id_column)
    by_stem: dict[str, list[str]] = {}
    for clip in clips:
        by_stem.setdefault(str(Path(clip).with_suffix("")), []).append(clip)
    matched: list[str] = []
    unmatched: list[_Row] = []
    for row in rows:
        given = row.audio.replace("\\", "/").removeprefix("./")
        if given in clips:
            matched.append(given)
            continue
        candidates = by_stem.get(given, [])
        if len(candidates) > 1:
            raise DataError(
                f"{prompts}, line {row.line}: {file_column} {row.audio!r} matches "
                f"{len(candidates)} clips of {folder} ({', '.join(candidates)}); name one with its suffix"
            )
        if candidates:
            matched.append(candidates[0])
        else:
            unmatched.append(row)
    problems = []
    if unmatched:
        shown = ", ".join(f"{row.audio!r} (line {row.line})" for row in unmatched[:SHOWN])
        where = "and its subfolders" if recursive else "(subfolders only with data.recursive=true)"
        problems.append(
            f"{prompts}: {len(unmatched)} prompt(s) name no audio file in {folder} {where}: "
            f"{shown}{_more(len(unmatched))}"
        )
    prompted = set(matched)
    unprompted = [clip for clip in clips if clip not in prompted]
    if unprompted:
        shown = ", ".join(repr(clip) for clip in unprompted[:SHOWN])
        problems.append(
            f"{folder}: {len(unprompted)} of {len(clips)} audio file(s) have no prompt in {prompts}: "
            f"{shown}{_more(len(unprompted))}; add a row ({file_column},{text_column}) for each, or move "
            f"them out of the folder"
        )
    if problems:
        raise DataError("; and ".join(problems))
    keys = [os.path.normpath((folder / clip).absolute()) for clip in matched]
    return _prompted(prompts, rows, matched, keys, name or folder.name)


def _audio_files(folder: Path, recursive: bool) -> list[str]:
    """Names (relative, with '/') of the folder's audio files, sorted; hidden files left out."""
    paths = folder.rglob("*") if recursive else folder.iterdir()
    names = sorted(
        path.relative_to(folder).as_posix()
        for path in paths
        if path.suffix.lower() in AUDIO_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    )
    if not names:
        raise DataError(
            f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)})"
            + (
                ""
                if recursive
                else " in the folder itself (subfolders only with data.recursive=true)"
            )
        )
    return names


def _prompted(
    table: Path, rows: list[_Row], audio: list[str], keys: list[str], name: str | None
) -> PromptedClips:
    seen: dict[tuple[str, str], int] = {}
    for row, key in zip(rows, keys):
        first = seen.setdefault((key, row.text), row.line)
        if first != row.line:
            raise DataError(
                f"{table}, line {row.line}: repeats the pair of line {first} (same clip, same text); "
                f"each pair is scored once, so remove the repeat"
            )
    given = [row.id for row in rows]
    ids = given if all(i is not None for i in given) else _default_ids(audio)
    items = [
        Prompt(str(id_), clip, key, row.text, f"{table}, line {row.line}")
        for id_, clip, key, row in zip(ids, audio, keys, rows)
    ]
    return PromptedClips(items, FileAudioStore(), name=name or table.name)


def _default_ids(audio: list[str]) -> list[str]:
    """The clip's name; ``<name>#<k>`` for the k-th pair of a clip that has several."""
    counts = Counter(audio)
    seen: Counter = Counter()
    ids = []
    for clip in audio:
        seen[clip] += 1
        ids.append(clip if counts[clip] == 1 else f"{clip}#{seen[clip]}")
    return ids


# -- tables ------------------------------------------------------------------------------------------


def _rows(path: Path, audio_column: str, text_column: str, id_column: str | None) -> list[_Row]:
    """The rows of a CSV or JSONL table, each checked: the columns present, values non-empty strings."""
    required = [audio_column, text_column] + ([id_column] if id_column else [])
    records = read_table(path, required, "table")
    if not records:
        raise DataError(f"{path}: no rows (nothing to score)")
    rows = []
    ids: dict[str, int] = {}
    for line, record in records:
        where = f"{path}, line {line}"
        audio = _value(record.get(audio_column), where, audio_column)
        text = _value(record.get(text_column), where, text_column)
        id_ = _value(record.get(id_column), where, id_column) if id_column else None
        if id_ is not None:
            first = ids.setdefault(id_, line)
            if first != line:
                raise DataError(
                    f"{where}: {id_column} {id_!r} is also the {id_column} of line {first}; "
                    f"ids must be unique"
                )
        rows.append(_Row(line, audio, text, id_))
    return rows


def _value(value, where: str, column: str) -> str:
    """A cell as a stripped, non-empty string (JSON numbers as written; lists, objects, booleans refused)."""
    if isinstance(value, (dict, list, bool)):
        raise DataError(f"{where}: {column} must be a string, got {value!r}")
    text = "" if value is None else str(value).strip()
    if not text:
        raise DataError(f"{where}: empty {column}")
    return text


def _first_per_key(missing: list[tuple[_Row, str]]) -> list[tuple[_Row, str]]:
    first: dict[str, tuple[_Row, str]] = {}
    for row, key in missing:
        first.setdefault(key, (row, key))
    return list(first.values())


def _more(count: int) -> str:
    return f" and {count - SHOWN} more" if count > SHOWN else ""


def _where(item: Prompt) -> str:
    return item.source or f"pair {item.id!r}"
