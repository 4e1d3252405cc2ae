"""RELATE relevance ratings (``scores/REL.csv``) as rated pairs, the data of human-clap §II-B.

Split as the file's ``in RELATE dataset`` column says, ``excluded`` rows dropped, ratings averaged
per (wavname, text) and divided by 10 (§III-A); ``rescreen=True`` re-applies the paper's listener
screening. The two layouts and the rules: see docs/data.md#relate.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from humanclap.data.audio import FileAudioStore
from humanclap.data.pairs import SPLITS, DataError, RatedPair, RatedPairs, SkipReport, rescale
from humanclap.data.tables import read_csv_table, require_columns

log = logging.getLogger(__name__)

WAVNAME = "wavname"
TEXT = "text"
SCORE = "score"
LISTENER = "listener_id"
AUDIO_TYPE = "audio type"
ANCHOR_LABEL = "anchor label"
SPLIT = "in RELATE dataset"
IN_AUDIOCAPS = "in AudioCaps"
REQUIRED_COLUMNS = (WAVNAME, TEXT, SCORE, LISTENER, AUDIO_TYPE, SPLIT)
"""``ANCHOR_LABEL`` is optional (older layout); ``IN_AUDIOCAPS`` is not used."""

EXCLUDED = "excluded"
ANCHOR_AUDIO_TYPE = "anchor"
"""Older layout: value of ``audio type`` that marks an anchor row."""
SCORE_MAX = 10
ANCHOR_LIMIT = 2.0
"""Screening threshold of human-clap §II-B: a mean anchor score above it removes the listener."""
NATURAL = "natural"
GENERATORS = {
    "audiocaps": NATURAL,
    "audioldm": "audioldm",
    "audioldm2": "audioldm2",
    "tango": "tango",
    "tango2": "tango2",
}
"""First component of ``wavname`` -> group name."""

NO_AUDIO_OVERRIDE = "data.pairs.check_audio=false"
"""The command-line override of ``recipes/data/relate.yaml`` that reads the ratings without the audio."""

SKIP_EXCLUDED = f"row marked '{EXCLUDED}' in '{SPLIT}'"
SKIP_SCREENED = f"row of a listener whose mean anchor score > {ANCHOR_LIMIT:g} (rescreen)"


@dataclass(frozen=True)
class RelateRating:
    """One validated row of REL.csv."""

    line: int
    wavname: str
    text: str
    score: int
    listener: str
    anchor: bool
    split: str
    group: str


def _parse_row(path: Path, line: int, row: dict[str, str], has_label: bool) -> RelateRating:
    where = f"{path}, line {line}"
    wavname, text, listener = row[WAVNAME].strip(), row[TEXT], row[LISTENER].strip()
    if not wavname:
        raise DataError(f"{where}: empty {WAVNAME}")
    if not text.strip():
        raise DataError(f"{where}: empty {TEXT}")
    if not listener:
        raise DataError(f"{where}: empty {LISTENER}")
    raw = row[SCORE].strip()
    if not (raw.isascii() and raw.isdigit() and 0 <= int(raw) <= SCORE_MAX):
        raise DataError(f"{where}: {SCORE} {raw!r} is not an integer 0..{SCORE_MAX}")
    split = row[SPLIT].strip()
    if split not in SPLITS + (EXCLUDED,):
        raise DataError(
            f"{where}: unknown {SPLIT} value {split!r}; expected one of {list(SPLITS) + [EXCLUDED]}"
        )
    generator = wavname.lstrip("/").split("/")[0]
    if generator not in GENERATORS:
        raise DataError(
            f"{where}: unknown generator {generator!r} in {WAVNAME} {wavname!r}; expected one of {list(GENERATORS)}"
        )
    if has_label:
        label = row[ANCHOR_LABEL].strip().lower()
        if label not in ("true", "false"):
            raise DataError(f"{where}: {ANCHOR_LABEL} {row[ANCHOR_LABEL]!r} is not True/False")
        anchor = label == "true"
    else:
        anchor = row[AUDIO_TYPE].strip() == ANCHOR_AUDIO_TYPE
    return RelateRating(
        line, wavname, text, int(raw), listener, anchor, split, GENERATORS[generator]
    )


def read_relate_ratings(csv_path: str | Path) -> list[RelateRating]:
    """Every row of REL.csv (either layout), validated, in file order."""
    path = Path(csv_path)
    header, records = read_csv_table(path)
    require_columns(path, header, REQUIRED_COLUMNS)
    if not records:
        raise DataError(f"{path}: no ratings")
    has_label = ANCHOR_LABEL in header
    return [_parse_row(path, line, row, has_label) for line, row in records]


def screened_listeners(
    ratings: list[RelateRating], limit: float = ANCHOR_LIMIT
) -> dict[str, float]:
    """Listener -> mean anchor score, for the listeners the paper's rule removes (mean > limit)."""
    anchors: dict[str, list[int]] = {}
    for rating in ratings:
        if rating.anchor:
            anchors.setdefault(rating.listener, []).append(rating.score)
    means = {listener: sum(scores) / len(scores) for listener, scores in anchors.items()}
    return {listener: mean for listener, mean in means.items() if mean > limit}


def read_relate(
    csv_path: str | Path,
    audio_root: str | Path | None = None,
    rescreen: bool = False,
    check_audio: bool = True,
) -> RatedPairs:
    """RELATE ratings averaged per (wavname, text), rescaled to [0, 1], split as the file says.

    Audio keys are ``audio_root / wavname`` (leading '/' dropped). ``check_audio=True`` requires
    every kept pair's file to exist; ``False`` reads the ratings without the audio, for probes that
    need none (``text_sensitivity``); whatever does read audio then stops at the first missing file
    (``humanclap.data.audio_check``). ``audio_root=None`` (no audio at all) needs ``check_audio=False``;
    the keys are then the wavnames relative to the current directory.
    ``RatedPairs.skipped`` counts the dropped rows by reason.
    """
    path = Path(csv_path)
    if audio_root is None and check_audio:
        raise DataError(
            f"{path}: no audio folder given: pass the folder unpacked from RELATE_wave.zip (it holds "
            f"audiocaps/, audioldm/, ...), e.g. data.pairs.audio_root=/data/RELATE_wave, or "
            f"{NO_AUDIO_OVERRIDE} to read the ratings without the audio"
        )
    ratings = read_relate_ratings(path)
    skipped = SkipReport()
    if rescreen:
        if not any(r.anchor for r in ratings):
            raise DataError(f"{path}: rescreen=True but the file has no anchor rows")
        screened = screened_listeners(ratings)
        kept = []
        for r in ratings:
            if r.listener in screened:
                skipped.add(
                    SKIP_SCREENED,
                    f"{len(screened)} listener(s), first: {r.listener} (line {r.line})",
                )
            else:
                kept.append(r)
        ratings = kept
    grouped: dict[tuple[str, str], list[RelateRating]] = {}
    for r in ratings:
        if r.split == EXCLUDED:
            skipped.add(SKIP_EXCLUDED, f"line {r.line}")
            continue
        same = grouped.setdefault((r.wavname, r.text), [])
        if same and same[0].split != r.split:
            raise DataError(
                f"{path}, line {r.line}: {r.wavname} with the same text is in split {r.split!r} "
                f"here and in {same[0].split!r} at line {same[0].line}"
            )
        same.append(r)
    if not grouped:
        raise DataError(f"{path}: no ratings left in train/validation/test ({skipped})")

    root = Path(audio_root if audio_root is not None else "")
    pairs = []
    for (wavname, text), rows in grouped.items():
        mean = sum(r.score for r in rows) / len(rows)
        pairs.append(
            RatedPair(
                audio=str(root / wavname.lstrip("/")),
                text=text,
                score=rescale(mean, 0, SCORE_MAX, f"{path}, line {rows[0].line}"),
                split=rows[0].split,
                group=rows[0].group,
                num_ratings=len(rows),
                source=f"{path}, line {rows[0].line}",
            )
        )
    if check_audio:
        lines = {}  # audio file -> first line that needs it
        for (wavname, _), rows in grouped.items():
            lines.setdefault(str(root / wavname.lstrip("/")), rows[0].line)
        missing = [file for file in lines if not Path(file).is_file()]
        if missing:
            raise DataError(
                f"{path}: {len(missing)} of {len(lines)} audio files missing under {root}; first: "
                f"{missing[0]} (line {lines[missing[0]]}). To read the ratings without the audio (probes that "
                f"need none, e.g. probes=text_sensitivity), pass {NO_AUDIO_OVERRIDE}"
            )
    log.info(
        "%s: %d pairs %s; skipped %s",
        path,
        len(pairs),
        dict(Counter(p.split for p in pairs)),
        skipped,
    )
    synthesized = sorted({p.group for p in pairs} - {NATURAL})
    return RatedPairs(
        pairs,
        FileAudioStore(),
        name=path.name,
        skipped=skipped,
        group_sets={"synthesized": synthesized} if synthesized else {},
    )
