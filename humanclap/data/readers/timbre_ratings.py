"""Timbre-descriptor ratings (instruments x descriptors) as rated pairs.

A table in the CCMusic layout (timbre-semantics §2.2) becomes one pair per (instrument, descriptor)
cell, the rating rescaled to [0, 1]. See docs/data.md#timbre-ratings.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from humanclap.data.audio import FileAudioStore
from humanclap.data.pairs import DataError, RatedPair, RatedPairs, check_scale, rescale
from humanclap.data.tables import read_csv_table, require_columns

INSTRUMENT_ID = "instrument_id"
INSTRUMENT_NAME = "instrument_name"
INSTRUMENT_GROUP = "instrument_group"
AUDIO = "audio"


def check_template(template: str, *, exactly_once: bool = False) -> str:
    """``template`` if it is a format string whose only field is ``{descriptor}``; else a DataError.

    ``exactly_once``: the field must also occur only once (for prompts like ``"a {descriptor} sound"``).
    """
    if not isinstance(template, str):
        raise DataError(f"template must be a string, got {template!r}")
    try:
        fields = [
            field for _, field, _, _ in string.Formatter().parse(template) if field is not None
        ]
    except ValueError as err:
        raise DataError(f"template {template!r} is not a format string ({err})") from err
    if set(fields) != {"descriptor"}:
        raise DataError(
            f"template {template!r} must contain {{descriptor}} and no other field "
            f"(found {sorted(set(fields))})"
        )
    if exactly_once and len(fields) > 1:
        raise DataError(
            f"template {template!r} must contain {{descriptor}} exactly once "
            f"(found it {len(fields)} times)"
        )
    return template


def _recordings(
    recordings: Mapping | str | Path, audio_root: str | Path | None, default_root: Path
) -> dict[str, str]:
    """instrument_id -> absolute audio path, from a dict or a CSV ``instrument_id,audio``."""
    if isinstance(recordings, Mapping):
        items = [(str(k).strip(), str(v), f"recordings[{k!r}]") for k, v in recordings.items()]
        root = Path(audio_root) if audio_root is not None else default_root
    else:
        table = Path(recordings)
        header, records = read_csv_table(table)
        require_columns(table, header, (INSTRUMENT_ID, AUDIO))
        items = [
            (row[INSTRUMENT_ID].strip(), row[AUDIO].strip(), f"{table}, line {line}")
            for line, row in records
        ]
        root = Path(audio_root) if audio_root is not None else table.parent
    paths: dict[str, str] = {}
    for instrument, audio, where in items:
        if not instrument or not audio:
            raise DataError(f"{where}: empty {INSTRUMENT_ID} or {AUDIO}")
        if instrument in paths:
            raise DataError(f"{where}: duplicate recording for {INSTRUMENT_ID} {instrument!r}")
        paths[instrument] = os.path.normpath(Path(root, os.path.expanduser(audio)).absolute())
    return paths


def read_timbre_ratings(
    ratings_csv: str | Path,
    recordings: Mapping | str | Path,
    scale: tuple[float, float] = (1, 9),
    template: str = "{descriptor}",
    audio_root: str | Path | None = None,
) -> RatedPairs:
    """Pairs (instrument recording, descriptor text, rescaled rating) from an instruments x descriptors table.

    ``recordings`` maps instrument_id -> audio path (a dict, or a CSV with columns
    ``instrument_id,audio``). Relative paths resolve against ``audio_root``, else the recordings
    CSV's directory (for a dict: the ratings CSV's directory). Every rated instrument needs an
    existing recording; recordings of unrated instruments are ignored. An ``instrument_group``
    column, if present, fills ``group_sets`` (group -> instrument names, in table order).
    """
    check_template(template)
    path = Path(ratings_csv)
    header, records = read_csv_table(path)
    require_columns(path, header, (INSTRUMENT_ID, INSTRUMENT_NAME))
    has_groups = INSTRUMENT_GROUP in header
    descriptors = [
        c for c in header if c and c not in (INSTRUMENT_ID, INSTRUMENT_NAME, INSTRUMENT_GROUP)
    ]
    if not descriptors:
        raise DataError(
            f"{path}: no descriptor columns besides {INSTRUMENT_ID}, {INSTRUMENT_NAME}"
            f"{', ' + INSTRUMENT_GROUP if has_groups else ''}; columns found: {header}"
        )
    if not records:
        raise DataError(f"{path}: no instruments")
    audio = _recordings(recordings, audio_root, path.parent)
    low, high = scale
    seen: dict[str, int] = {}
    cells: list[tuple[str, float]] = []  # (where, rating), checked against the scale as a whole
    cell_pairs: list[RatedPair] = []  # scores filled in once the scale is checked
    group_sets: dict[str, list[str]] = {}
    for line, row in records:
        instrument, name = row[INSTRUMENT_ID].strip(), row[INSTRUMENT_NAME].strip()
        where = f"{path}, line {line}"
        if not instrument or not name:
            raise DataError(f"{where}: empty {INSTRUMENT_ID} or {INSTRUMENT_NAME}")
        if instrument in seen:
            raise DataError(
                f"{where}: duplicate {INSTRUMENT_ID} {instrument!r} (first at line {seen[instrument]})"
            )
        seen[instrument] = line
        if has_groups:
            group = row[INSTRUMENT_GROUP].strip()
            if not group:
                raise DataError(
                    f"{where}: empty {INSTRUMENT_GROUP} for instrument {instrument!r} ({name})"
                )
            members = group_sets.setdefault(group, [])
            if name not in members:
                members.append(name)
        if instrument not in audio:
            raise DataError(f"{where}: no recording for instrument {instrument!r} ({name})")
        if not os.path.isfile(audio[instrument]):
            raise DataError(
                f"{where}: recording of instrument {instrument!r} ({name}) not found: {audio[instrument]}"
            )
        for descriptor in descriptors:
            cell = f"{where}, column {descriptor!r}"
            raw = row[descriptor].strip()
            try:
                value = float(raw)
            except ValueError:
                raise DataError(f"{cell}: rating {raw!r} is not a number") from None
            cells.append((cell, value))
            cell_pairs.append(
                RatedPair(
                    audio=audio[instrument],
                    text=template.format(descriptor=descriptor),
                    score=0.0,
                    group=name,
                    source=where,
                )
            )
    check_scale(cells, low, high, option="data.pairs.scale")
    pairs = [
        replace(pair, score=rescale(value, low, high, cell))
        for pair, (cell, value) in zip(cell_pairs, cells)
    ]
    return RatedPairs(pairs, FileAudioStore(), name=path.name, group_sets=group_sets)
