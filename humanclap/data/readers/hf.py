"""Rated pairs, captions and labelled clips from a Hugging Face dataset (``data=hf``, ``data=hf_labelled``).

Sources, column mapping, the ``Audio`` column and splits: see docs/data.md#hugging-face-datasets
(sources are opened by :mod:`humanclap.data.hf_source`). Bad rows are errors naming the source,
split, row and column, as the CSV readers name file and line.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from humanclap.data.hf_source import (
    HFAudioStore,
    column_values,
    open_source,
    read_audio_column,
    require_columns,
    select_parts,
)
from humanclap.data.pairs import SPLITS, DataError, RatedPair, RatedPairs, check_scale, rescale
from humanclap.data.readers.labelled_audio import LabelledAudio, LabelledClip, prompt_name

PAIR_COLUMNS = {"audio": "audio", "text": "text", "score": "score", "split": "split", "group": None}
LABEL_COLUMNS = {"audio": "audio", "label": "label", "fold": "fold"}
OPTIONAL = ("split", "group", "fold")
"""Roles whose default column may be absent (an explicitly mapped one must exist)."""


def _columns(
    given: Mapping[str, str | None] | None, defaults: dict[str, str | None]
) -> dict[str, str | None]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise DataError(f"columns: unknown role(s) {unknown}; the roles are {list(defaults)}")
    return defaults | given


def _present(part, columns: dict[str, str | None], defaults: dict[str, str | None], option: str):
    """``columns`` with defaulted optional roles whose column is absent set to None, checked."""
    found = set(part.dataset.column_names)
    columns = {
        role: None
        if role in OPTIONAL and column == defaults[role] and column not in found
        else column
        for role, column in columns.items()
    }
    require_columns(part, columns, option)
    return columns


def _text(value, where: str, role: str) -> str:
    if value is None or isinstance(value, (dict, list, bool, bytes)):
        raise DataError(f"{where}: {role} must be a string, got {value!r}")
    text = " ".join(str(value).split())
    if not text:
        raise DataError(f"{where}: empty {role}")
    return text


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        try:
            value = float(str(value).strip())
        except ValueError:
            raise DataError(f"{where}: score {value!r} is not a number") from None
    if not math.isfinite(float(value)):
        raise DataError(f"{where}: score is {value!r}")
    return float(value)


def _split(raw, where: str, split_names: Mapping[str, str], option: str) -> str | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    name = split_names.get(str(raw).strip(), str(raw).strip())
    if name not in SPLITS:
        raise DataError(
            f"{where}: split {name!r} is not one of {list(SPLITS)}; map it with "
            f"'{option}.split_names={{{name}:validation}}' (or train / test)"
        )
    return name


def read_hf_pairs(
    path: str | os.PathLike,
    columns: Mapping[str, str | None] | None = None,
    score_max: float | None = None,
    score_range: tuple[float, float] | None = None,
    splits: Iterable[str] | str | None = None,
    split_names: Mapping[str, str] | None = None,
    audio_root: str | os.PathLike | None = None,
    name: str | None = None,
) -> RatedPairs:
    """Rated (or captioned) pairs from a Hugging Face dataset.

    ``columns`` maps the roles ``audio, text, score, split, group`` to column names (defaults:
    :data:`PAIR_COLUMNS`); ``score: null`` reads captions, every pair a match with score 1.0.
    Ratings are rescaled to [0, 1] from ``[0, score_max]`` or ``score_range`` (neither: they must
    already be in [0, 1]); ratings of the same (clip, text) are averaged (human-clap §III-A). The
    split of a row is its split column's value or else its ``DatasetDict`` split, renamed by
    ``split_names``; ``splits`` reads only some of a ``DatasetDict``'s splits.
    """
    option = "data.pairs"
    columns = _columns(columns, PAIR_COLUMNS)
    if score_max is not None and score_range is not None:
        raise DataError("give score_max or score_range, not both")
    if score_max is not None:
        low, high = 0.0, float(score_max)
    else:
        low, high = map(float, score_range) if score_range is not None else (0.0, 1.0)
    source = open_source(path, f"{option}.path")
    store = HFAudioStore(label=source.label, column=columns["audio"] or "audio")
    rows = []  # (where, key, text, rating or None, split, group)
    for index, part in enumerate(select_parts(source, splits)):
        present = _present(part, columns, PAIR_COLUMNS, f"{option}.columns")
        if present["audio"] is None or present["text"] is None:
            raise DataError(f"{part.where}: columns.audio and columns.text must name columns")
        keys = read_audio_column(store, index, part, source.base, audio_root)
        values = {
            role: column_values(part, column)
            for role, column in present.items()
            if column is not None and role != "audio"
        }
        for row, key in enumerate(keys):
            where = f"{part.where}, row {row}"
            text = _text(values["text"][row], f"{where}, column {present['text']}", "text")
            rating = (
                _number(values["score"][row], f"{where}, column {present['score']}")
                if "score" in values
                else None
            )
            split = (
                _split(values["split"][row], where, dict(split_names or {}), option)
                if "split" in values
                else _split(part.split, part.where, dict(split_names or {}), option)
            )
            group = values["group"][row] if "group" in values else None
            group = None if group is None or str(group).strip() == "" else str(group).strip()
            rows.append((where, key, text, rating, split, group))
    if not rows:
        raise DataError(f"{source.label}: no rows")
    if columns["score"] is not None:
        check_scale([(r[0], r[3]) for r in rows], low, high, option=f"{option}.score_range")
    return RatedPairs(
        _averaged(rows, low, high), store, name=name or Path(str(path)).name or str(path)
    )


def _averaged(rows, low: float, high: float) -> list[RatedPair]:
    """One pair per (clip, text): the mean rating, rescaled; split and group must agree."""
    ratings: dict[tuple[str, str], list] = {}
    first: dict[tuple[str, str], tuple] = {}
    for where, key, text, rating, split, group in rows:
        pair = (key, text)
        if pair in first and first[pair][1:] != (split, group):
            raise DataError(
                f"{where}: ratings of one pair carry different split/group values: "
                f"{first[pair][1:]} ({first[pair][0]}) and {(split, group)}"
            )
        first.setdefault(pair, (where, split, group))
        ratings.setdefault(pair, []).append(rating)
    pairs = []
    for (key, text), values in ratings.items():
        where, split, group = first[(key, text)]
        score = (
            1.0
            if values[0] is None
            else rescale(math.fsum(values) / len(values), low, high, f"{where}: mean rating")
        )
        pairs.append(
            RatedPair(key, text, score, split, group, num_ratings=len(values), source=where)
        )
    return pairs


def read_hf_labelled(
    path: str | os.PathLike,
    columns: Mapping[str, str | None] | None = None,
    labels: Mapping[str, str] | None = None,
    folds: Iterable[int | str] | int | str | None = None,
    splits: Iterable[str] | str | None = None,
    audio_root: str | os.PathLike | None = None,
    name: str | None = None,
) -> LabelledAudio:
    """Labelled clips from a Hugging Face dataset, for classification probes.

    ``columns`` maps ``audio, label, fold`` (defaults :data:`LABEL_COLUMNS`). A ``ClassLabel``
    column gives its names; labels are cleaned up as LAION-CLAP's class-label files do
    (``chirping_birds`` -> ``chirping birds``) and ``labels`` renames raw values (keys as written,
    class indices as strings). A ``DatasetDict``'s splits become folds when there is no fold column.
    """
    import datasets

    option = "data"
    columns = _columns(columns, LABEL_COLUMNS)
    renames = {str(k): str(v) for k, v in dict(labels or {}).items()}
    source = open_source(path, f"{option}.path")
    store = HFAudioStore(label=source.label, column=columns["audio"] or "audio")
    clips, wheres = [], []
    for index, part in enumerate(select_parts(source, splits)):
        present = _present(part, columns, LABEL_COLUMNS, f"{option}.columns")
        if present["audio"] is None or present["label"] is None:
            raise DataError(f"{part.where}: columns.audio and columns.label must name columns")
        keys = read_audio_column(store, index, part, source.base, audio_root)
        feature = part.dataset.features[present["label"]]
        raw_labels = column_values(part, present["label"])
        fold_values = column_values(part, present["fold"]) if present["fold"] is not None else None
        for row, key in enumerate(keys):
            where = f"{part.where}, row {row}"
            raw = raw_labels[row]
            if raw is None:
                raise DataError(f"{where}, column {present['label']}: no label")
            if isinstance(feature, datasets.ClassLabel) and str(raw) not in renames:
                raw = feature.int2str(int(raw))
            raw = str(raw).strip()
            label = renames.get(raw, raw.replace("_", " "))
            fold = fold_values[row] if fold_values is not None else part.split
            clips.append(
                LabelledClip(
                    audio=key,
                    label=prompt_name(label, f"{where}, column {present['label']}"),
                    fold=None if fold is None or str(fold).strip() == "" else str(fold).strip(),
                )
            )
            wheres.append(where)
    if not clips:
        raise DataError(f"{source.label}: no rows")
    data = LabelledAudio(clips, store, name=name or Path(str(path)).name or str(path))
    return data.select_folds(folds)
