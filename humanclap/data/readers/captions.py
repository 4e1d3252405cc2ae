"""Captioned clips (AudioCaps, Clotho-style lists, your own) as pairs for the retrieval probe.

One row per (clip, caption), every pair score 1.0; AudioCaps' own CSVs name their clips
``{youtube_id}_{start_time}.wav``. Columns, the AudioCaps layout and what is skipped:
see docs/data.md#captions.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from humanclap.data.audio import FileAudioStore
from humanclap.data.pairs import DataError, RatedPair, RatedPairs, SkipReport
from humanclap.data.readers.manifest import SKIP_MISSING_AUDIO
from humanclap.data.tables import read_csv_table, read_jsonl_table, require_columns

log = logging.getLogger(__name__)

SPLIT_COLUMN = "split"
AUDIOCAPS_COLUMNS = ("youtube_id", "start_time")
SKIP_DUPLICATE = "same caption repeated for the same clip (kept once)"

Record = tuple[int, dict]


def _string(value, where: str, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON start_time 20.0 -> "20", as AudioCaps writes it
    if isinstance(value, (dict, list, bool)):
        raise DataError(f"{where}: {column} must be a string, got {value!r}")
    return str(value).strip()


def read_captions(
    path: str | Path,
    audio_root: str | Path | None = None,
    split: str | None = None,
    caption_column: str = "caption",
    audio_column: str = "audio",
    audiocaps_suffix: str = ".wav",
    name: str | None = None,
) -> RatedPairs:
    """Read a ``.csv`` or ``.jsonl`` list of captioned clips into pairs with score 1.0.

    See docs/data.md#captions for the columns, the AudioCaps layout and what is skipped.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        header, records = read_csv_table(path)
        _check_columns(path, header, caption_column, audio_column)
    elif suffix == ".jsonl":
        records = read_jsonl_table(path)
    else:
        raise DataError(
            f"{path}: unsupported captions format {suffix or '(no extension)'!r}; use .csv or .jsonl"
        )
    if not records:
        raise DataError(f"{path}: empty captions file (no rows)")
    if split is not None:
        columns = (
            header
            if suffix == ".csv"
            else list(dict.fromkeys(k for _, row in records for k in row))
        )
        if SPLIT_COLUMN not in columns:
            raise DataError(
                f"{path}: split={split!r} asked for, but the file has no '{SPLIT_COLUMN}' column; "
                f"columns found: {columns}"
            )

    root = Path(audio_root) if audio_root is not None else path.parent
    skipped = SkipReport()
    exists: dict[str, bool] = {}
    seen: set[tuple[str, str]] = set()
    splits_present: set[str] = set()
    pairs: list[RatedPair] = []
    for line, row in records:
        where = f"{path}, line {line}"
        if suffix == ".jsonl":
            _check_columns(path, row.keys(), caption_column, audio_column, f", line {line}")
        row_split = _string(row.get(SPLIT_COLUMN), where, SPLIT_COLUMN) or None
        if row_split is not None:
            splits_present.add(row_split)
        if split is not None and row_split != split:
            continue
        caption = _string(row.get(caption_column), where, caption_column)
        if not caption:
            raise DataError(f"{where}: empty caption")
        audio = _audio_name(row, where, audio_column, audiocaps_suffix)
        audio_path = os.path.normpath(Path(root, os.path.expanduser(audio)).absolute())
        if audio_path not in exists:
            exists[audio_path] = os.path.isfile(audio_path)
        if not exists[audio_path]:
            skipped.add(SKIP_MISSING_AUDIO, f"{where}: {audio_path}")
            continue
        if (audio_path, caption) in seen:
            skipped.add(SKIP_DUPLICATE, f"{where}: {caption!r}")
            continue
        seen.add((audio_path, caption))
        pairs.append(
            RatedPair(audio=audio_path, text=caption, score=1.0, split=row_split, source=where)
        )

    if split is not None and split not in splits_present:
        raise DataError(
            f"{path}: no rows in split '{split}'; splits present: {sorted(splits_present) or 'none'}"
        )
    if skipped.counts[SKIP_MISSING_AUDIO]:
        missing_files = sum(1 for ok in exists.values() if not ok)
        log.warning(
            "%s: skipped %d caption row(s) whose audio is missing (%d file(s)); %s",
            path,
            skipped.counts[SKIP_MISSING_AUDIO],
            missing_files,
            skipped,
        )
    if not pairs:
        raise DataError(f"{path}: no captions left ({skipped})")
    default_name = path.name if split is None else f"{path.name}:{split}"
    return RatedPairs(pairs, FileAudioStore(), name=name or default_name, skipped=skipped)


def _check_columns(
    path: Path, found, caption_column: str, audio_column: str, where: str = ""
) -> None:
    """Either the audio column or AudioCaps' youtube_id + start_time, and the caption column."""
    found = list(found)
    audiocaps = audio_column not in found and all(c in found for c in AUDIOCAPS_COLUMNS)
    try:
        require_columns(
            path, found, [caption_column] + ([] if audiocaps else [audio_column]), where
        )
    except DataError as err:
        raise DataError(
            f"{err} (AudioCaps files may give {' and '.join(AUDIOCAPS_COLUMNS)} "
            f"instead of '{audio_column}')"
        ) from None


def _audio_name(row: dict, where: str, audio_column: str, audiocaps_suffix: str) -> str:
    if audio_column in row:
        audio = _string(row[audio_column], where, audio_column)
        if not audio:
            raise DataError(f"{where}: empty audio path")
        return audio
    youtube_id, start_time = (_string(row.get(c), where, c) for c in AUDIOCAPS_COLUMNS)
    if not youtube_id or not start_time:
        raise DataError(f"{where}: empty youtube_id or start_time")
    return f"{youtube_id}_{start_time}{audiocaps_suffix}"
