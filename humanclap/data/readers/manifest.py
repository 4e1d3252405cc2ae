"""Rated pairs from a user's own manifest: one human rating per CSV row or JSONL line.

Ratings of one pair are averaged and rescaled from ``score_range`` to [0, 1] (human-clap §III-A);
errors name the file and the line. Columns and rules: see docs/data.md#rating-manifests. The CSV
helpers live in :mod:`humanclap.data.tables`.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from humanclap.data.audio import FileAudioStore
from humanclap.data.pairs import (
    SPLITS,
    DataError,
    RatedPair,
    RatedPairs,
    SkipReport,
    check_scale,
    rescale,
)
from humanclap.data.tables import (
    read_table,
)

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("audio", "text", "score")
OPTIONAL_COLUMNS = ("split", "group", "listener")
SKIP_MISSING_AUDIO = "audio file missing"


def _string(value, where: str, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list, bool)):
        raise DataError(f"{where}: {column} must be a string, got {value!r}")
    return str(value).strip()


def _score(value, where: str) -> float:
    if isinstance(value, bool) or value is None:
        raise DataError(f"{where}: score {value!r} is not a number")
    try:
        score = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: score {value!r} is not a number") from None
    if math.isnan(score):
        raise DataError(f"{where}: score is NaN")
    return score


def _mean(scores: list[float], low: float, high: float) -> float:
    """Mean of in-range ratings, clamped so float rounding cannot push it off the scale."""
    return min(max(math.fsum(scores) / len(scores), low), high)


def read_manifest(
    path: str | Path,
    score_range: tuple[float, float] = (0, 10),
    audio_root: str | Path | None = None,
    on_missing_audio: str = "error",
    name: str | None = None,
) -> RatedPairs:
    """Read a ``.csv`` or ``.jsonl`` manifest of human ratings into averaged, rescaled pairs.

    Relative audio paths resolve against ``audio_root`` (default: the manifest's directory).
    ``on_missing_audio="skip"`` drops ratings whose audio file is missing, counts them in
    ``RatedPairs.skipped`` and logs a warning with the count; the default ``"error"`` refuses.
    """
    path = Path(path)
    if on_missing_audio not in ("error", "skip"):
        raise ValueError(f"on_missing_audio must be 'error' or 'skip', got {on_missing_audio!r}")
    low, high = score_range
    records = read_table(path, REQUIRED_COLUMNS, "manifest")
    if not records:
        raise DataError(f"{path}: empty manifest (no ratings)")

    row_scores = [_score(row.get("score"), f"{path}, line {line}") for line, row in records]
    check_scale(
        [(f"{path}, line {line}", score) for (line, _), score in zip(records, row_scores)],
        low,
        high,
        option="data.pairs.score_range",
    )

    root = Path(audio_root) if audio_root is not None else path.parent
    skipped = SkipReport()
    ratings: dict[tuple[str, str], list[float]] = {}
    labels: dict[tuple[str, str], dict[str, tuple[str | None, int]]] = {}
    pair_line: dict[tuple[str, str], int] = {}  # the line of each pair's first rating
    exists: dict[str, bool] = {}
    for (line, row), score in zip(records, row_scores):
        where = f"{path}, line {line}"
        audio = _string(row.get("audio"), where, "audio")
        text = _string(row.get("text"), where, "text")
        if not audio:
            raise DataError(f"{where}: empty audio path")
        if not text:
            raise DataError(f"{where}: empty text")
        split = _string(row.get("split"), where, "split")
        if split and split not in SPLITS:
            raise DataError(
                f"{where}: unknown split {split!r}; expected one of {list(SPLITS)}, or an empty value "
                f"to let the datamodule hold out clips for validation"
            )
        audio_path = os.path.normpath(Path(root, os.path.expanduser(audio)).absolute())
        if audio_path not in exists:
            exists[audio_path] = os.path.isfile(audio_path)
        if not exists[audio_path]:
            if on_missing_audio == "error":
                raise DataError(f"{where}: audio file not found: {audio_path}")
            skipped.add(SKIP_MISSING_AUDIO, f"{where}: {audio_path}")
            continue
        key = (audio_path, text)
        ratings.setdefault(key, []).append(score)
        pair_line.setdefault(key, line)
        seen = labels.setdefault(key, {})
        for column in ("split", "group"):
            value = _string(row.get(column), where, column) or None
            if column not in seen:
                seen[column] = (value, line)
            elif seen[column][0] != value:
                first, first_line = seen[column]
                raise DataError(
                    f"{where}: ratings of one pair carry different {column} values: "
                    f"{first!r} (line {first_line}) and {value!r} ({audio!r}, {text!r})"
                )
        _string(
            row.get("listener"), where, "listener"
        )  # optional; kept as a string, never a number

    if skipped.total:
        missing_files = sum(1 for ok in exists.values() if not ok)
        log.warning(
            "%s: skipped %d rating(s) whose audio is missing (%d file(s)); %s",
            path,
            skipped.total,
            missing_files,
            skipped,
        )
    if not ratings:
        raise DataError(f"{path}: no ratings left ({skipped})")
    pairs = [
        RatedPair(
            audio=audio,
            text=text,
            score=rescale(
                _mean(scores, low, high), low, high, f"{path}: mean of {audio!r}, {text!r}"
            ),
            split=labels[(audio, text)]["split"][0],
            group=labels[(audio, text)]["group"][0],
            num_ratings=len(scores),
            source=f"{path}, line {pair_line[(audio, text)]}",
        )
        for (audio, text), scores in ratings.items()
    ]
    return RatedPairs(pairs, FileAudioStore(), name=name or path.name, skipped=skipped)
