"""Labelled audio for classification probes: one class label (and optionally a family and a fold)
per clip.

A CSV manifest (``path, label[, family, fold]``) or the TinySOL metadata (two-tower §"Method
Summary"); labels must read as prompt words. See docs/data.md#labelled-audio-and-tinysol.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from humanclap.data.audio import FileAudioStore
from humanclap.data.pairs import AudioStore, DataError, unique_in_order
from humanclap.data.tables import read_csv_table, require_columns, require_file

MANIFEST_COLUMNS = ("path", "label")
TINYSOL_COLUMNS = ("Path", "Fold", "Family", "Instrument (abbr.)")
TINYSOL_METADATA = "TinySOL_metadata.csv"

# TinySOL abbreviation -> (TinySOL's full name, prompt name). Prompt names follow the 14 labels of
# the two-tower paper's TinySOL evaluation (tuba, french_horn, ..., violoncello, saxophone) with
# spaces for underscores, so results are comparable with it.
TINYSOL_INSTRUMENTS: dict[str, tuple[str, str]] = {
    "BTb": ("Bass Tuba", "tuba"),
    "Hn": ("French Horn", "french horn"),
    "Tbn": ("Trombone", "trombone"),
    "TpC": ("Trumpet in C", "trumpet"),
    "Acc": ("Accordion", "accordion"),
    "Cb": ("Contrabass", "contrabass"),
    "Va": ("Viola", "viola"),
    "Vc": ("Cello", "violoncello"),
    "Vn": ("Violin", "violin"),
    "ASax": ("Alto Saxophone", "saxophone"),
    "Bn": ("Bassoon", "bassoon"),
    "ClBb": ("Clarinet in Bb", "clarinet"),
    "Fl": ("Flute", "flute"),
    "Ob": ("Oboe", "oboe"),
}
# TinySOL family -> prompt name ("A {x} track" with the family, as the paper's family-level test).
TINYSOL_FAMILIES: dict[str, str] = {
    "Brass": "brass",
    "Keyboards": "keyboards",
    "Strings": "strings",
    "Winds": "winds",
}

_NOT_WORDS = re.compile(r"[_/\\{}]")


def prompt_name(value: str, where: str, what: str = "label") -> str:
    """``value`` (stripped, inner white space folded) if it reads as words for a prompt; else a DataError."""
    name = " ".join(str(value).split())
    if not name:
        raise DataError(f"{where}: empty {what}")
    if not any(ch.isalpha() for ch in name) or _NOT_WORDS.search(name):
        raise DataError(
            f"{where}: {what} {name!r} is not a prompt-able name (it must read as words: a letter, "
            f"no '_', '/', '\\', '{{', '}}'); map it to one with labels={{{name!r}: 'violin', ...}}"
        )
    return name


@dataclass(frozen=True)
class LabelledClip:
    audio: str
    """Key of the clip in the set's ``AudioStore`` (a resolved path for file data)."""
    label: str
    """Class name, prompt-able (docs/data.md#labelled-audio-and-tinysol)."""
    family: str | None = None
    fold: str | None = None


@dataclass
class LabelledAudio(Sequence[LabelledClip]):
    """An ordered set of labelled clips with the store that holds their audio."""

    clips: list[LabelledClip]
    audio_store: AudioStore
    name: str = "labelled"

    def __post_init__(self) -> None:
        if not self.clips:
            raise DataError(f"{self.name}: no clips")
        families: dict[str, str | None] = {}
        for index, clip in enumerate(self.clips):
            where = f"{self.name}[{index}]"
            if not isinstance(clip.audio, str) or not clip.audio:
                raise DataError(f"{where}: empty audio reference")
            prompt_name(clip.label, where)
            if clip.family is not None:
                prompt_name(clip.family, where, "family")
            first = families.setdefault(clip.label, clip.family)
            if first != clip.family:
                raise DataError(
                    f"{where}: label {clip.label!r} is in family {clip.family!r} here and in "
                    f"{first!r} before; a class belongs to one family"
                )

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index):  # type: ignore[override]
        return self.clips[index]

    @property
    def classes(self) -> list[str]:
        """The labels, in order of first appearance."""
        return unique_in_order(c.label for c in self.clips)

    @property
    def families(self) -> list[str] | None:
        """The families in order of first appearance; None unless every clip has one."""
        if any(c.family is None for c in self.clips):
            return None
        return unique_in_order(c.family for c in self.clips)  # type: ignore[misc]

    def folds(self) -> list[str]:
        return sorted({c.fold for c in self.clips if c.fold is not None}, key=_fold_order)

    def select_folds(self, folds: Iterable[int | str] | int | str | None) -> LabelledAudio:
        """The clips of ``folds`` (None: all); a selection without clips is an error naming the folds present."""
        if folds is None:
            return self
        if isinstance(folds, (int, str)):
            folds = [folds]
        wanted = [str(f).strip() for f in folds]
        if not wanted:
            raise DataError(
                f"{self.name}: folds=[] selects nothing; give fold values or folds=null for all clips"
            )
        chosen = [c for c in self.clips if c.fold in wanted]
        if not chosen:
            raise DataError(
                f"{self.name}: no clips in fold(s) {wanted}; folds present: {self.folds() or 'none'}"
            )
        return LabelledAudio(chosen, self.audio_store, name=f"{self.name}:folds={','.join(wanted)}")


def _fold_order(fold: str) -> tuple[int, int | str]:
    return (0, int(fold)) if fold.lstrip("-").isdigit() else (1, fold)


def _resolve_audio(root: Path, relative: str, where: str) -> str:
    if not relative:
        raise DataError(f"{where}: empty path")
    return os.path.normpath(Path(root, os.path.expanduser(relative)).absolute())


def _selected_with_audio(
    clips: list[LabelledClip],
    wheres: list[str],
    name: str,
    folds: Iterable[int | str] | int | str | None,
) -> LabelledAudio:
    """The clips of ``folds``; only their audio files must exist (a missing one: an error naming its line)."""
    data = LabelledAudio(clips, FileAudioStore(), name=name).select_folds(folds)
    chosen = set(map(id, data.clips))
    for clip, where in zip(clips, wheres):
        if id(clip) in chosen and not os.path.isfile(clip.audio):
            raise DataError(f"{where}: audio file not found: {clip.audio}")
    return data


def _mapped(value: str, labels: Mapping[str, str], where: str, what: str) -> str:
    return prompt_name(labels.get(value, value), where, what)


def laion_label(raw: str, labels: Mapping[str, str], where: str) -> str:
    """A dataset's class name as LAION-CLAP's zero-shot evaluation writes it in the prompt: ``_`` as
    a space (``chirping_birds`` -> ``chirping birds``, LAION-AI/CLAP
    ``class_labels/ESC50_class_labels_indices_space.json``). ``labels``, keyed by the raw name or
    the cleaned one, renames a class."""
    cleaned = " ".join(raw.replace("_", " ").split())
    return prompt_name(labels.get(raw, labels.get(cleaned, cleaned)), where)


def fold_number(value: str, count: int, where: str) -> str:
    """``value`` as a fold "1" .. ``count`` (as text), or a DataError naming ``where``."""
    text = value.strip()
    if not text.isdigit() or not 1 <= int(text) <= count:
        raise DataError(f"{where}: fold {value!r} is not one of 1..{count}")
    return str(int(text))


@dataclass(frozen=True)
class IndexedClip:
    """A clip read from a benchmark's table, with its class index and the file line it came from."""

    index: int
    clip: LabelledClip
    where: str


def class_indexed(
    rows: list[IndexedClip],
    name: str,
    folds: Iterable[int | str] | int | str | None,
) -> LabelledAudio:
    """The clips in class-index order (stable), so ``classes`` come in the dataset's own order
    (ESC-50 ``target``, UrbanSound8K ``classID``). One index must name one label and one label one
    index: a clash is an error naming both lines. Only the selected folds' audio must exist."""
    label_of: dict[int, IndexedClip] = {}
    index_of: dict[str, IndexedClip] = {}
    for row in rows:
        first = label_of.setdefault(row.index, row)
        if first.clip.label != row.clip.label:
            raise DataError(
                f"{row.where}: class index {row.index} is {row.clip.label!r} here and "
                f"{first.clip.label!r} at {first.where}"
            )
        first = index_of.setdefault(row.clip.label, row)
        if first.index != row.index:
            raise DataError(
                f"{row.where}: class {row.clip.label!r} has index {row.index} here and "
                f"{first.index} at {first.where}"
            )
    ordered = sorted(rows, key=lambda row: row.index)
    return _selected_with_audio(
        [row.clip for row in ordered], [row.where for row in ordered], name, folds
    )


def read_labelled_manifest(
    path: str | Path,
    audio_root: str | Path | None = None,
    folds: Iterable[int | str] | int | str | None = None,
    labels: Mapping[str, str] | None = None,
    families: Mapping[str, str] | None = None,
    name: str | None = None,
) -> LabelledAudio:
    """Clips of a CSV manifest with columns ``path, label`` and optional ``family, fold``.

    ``labels`` / ``families`` map raw values to prompt names (values not in them must already be
    prompt-able). Missing columns, empty labels and missing audio files are errors naming the
    file and line.
    """
    path = Path(path)
    header, records = read_csv_table(path)
    require_columns(path, header, MANIFEST_COLUMNS)
    if not records:
        raise DataError(f"{path}: empty manifest (no clips)")
    labels, families = dict(labels or {}), dict(families or {})
    root = Path(audio_root) if audio_root is not None else path.parent
    clips, wheres = [], []
    for line, row in records:
        wheres.append(where := f"{path}, line {line}")
        label = _mapped(row["label"].strip(), labels, where, "label")
        family = row.get("family", "").strip()
        fold = row.get("fold", "").strip()
        clips.append(
            LabelledClip(
                audio=_resolve_audio(root, row["path"].strip(), where),
                label=label,
                family=_mapped(family, families, where, "family") if family else None,
                fold=fold or None,
            )
        )
    return _selected_with_audio(clips, wheres, name or path.name, folds)


def read_tinysol(
    audio_root: str | Path,
    metadata: str | Path | None = None,
    folds: Iterable[int | str] | int | str | None = None,
    labels: Mapping[str, str] | None = None,
    name: str = "tinysol",
) -> LabelledAudio:
    """TinySOL clips from ``TinySOL_metadata.csv`` (default: ``<audio_root>/TinySOL_metadata.csv``).

    The label is the prompt name of the ``Instrument (abbr.)`` column from
    :data:`TINYSOL_INSTRUMENTS`, overridden or extended by ``labels`` (abbreviation -> name; e.g.
    for OrchideaSOL's extra instruments). An abbreviation without a name is an error naming it and
    the line. ``Family`` becomes the family (lower case, :data:`TINYSOL_FAMILIES`), ``Fold`` the fold.
    """
    root = Path(audio_root)
    if not root.is_dir():
        raise DataError(
            f"{root}: TinySOL audio root is not a directory (extract TinySOL.tar.gz from Zenodo "
            "record 3685367 and point audio_root at the folder that holds Brass/, Keyboards/, ...)"
        )
    metadata = Path(metadata) if metadata is not None else root / TINYSOL_METADATA
    header, records = read_csv_table(require_file(metadata))
    require_columns(metadata, header, TINYSOL_COLUMNS)
    if not records:
        raise DataError(f"{metadata}: no clips")
    names = {abbr: prompt for abbr, (_, prompt) in TINYSOL_INSTRUMENTS.items()} | dict(labels or {})
    clips, wheres = [], []
    for line, row in records:
        wheres.append(where := f"{metadata}, line {line}")
        abbr = row["Instrument (abbr.)"].strip()
        if abbr not in names:
            full = row.get("Instrument (in full)", "").strip()
            raise DataError(
                f"{where}: instrument {abbr!r}{f' ({full})' if full else ''} has no prompt-able "
                f"name; known: {sorted(names)}; add one with labels={{{abbr!r}: '<name>'}}"
            )
        family = row["Family"].strip()
        clips.append(
            LabelledClip(
                audio=_resolve_audio(root, row["Path"].strip(), where),
                label=prompt_name(names[abbr], where),
                family=prompt_name(TINYSOL_FAMILIES.get(family, family.lower()), where, "family"),
                fold=row["Fold"].strip() or None,
            )
        )
    return _selected_with_audio(clips, wheres, name, folds)
