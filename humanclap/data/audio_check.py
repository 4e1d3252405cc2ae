"""Check every clip a run will read before the first step, so a bad file fails in seconds, not at batch 60.

Each unique file is opened once (its header only, unless ``decode=True``); errors name the data line
and the file, or ``skip_bad=True`` drops and counts the pairs. See docs/data.md#checking-audio.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import soundfile as sf

from humanclap.data.audio import MIN_AUDIO_SECONDS, FileAudioStore, read_error, too_short
from humanclap.data.pairs import DataError, RatedPairs, SkipReport

log = logging.getLogger(__name__)

MISSING = "audio file missing"
UNREADABLE = "unreadable audio"
TOO_SHORT = f"audio shorter than {1000 * MIN_AUDIO_SECONDS:g} ms"
NON_FINITE = "non-finite samples (NaN or inf)"
SKIP_OVERRIDE = "data.skip_bad_audio=true"
"""The command-line override that drops the pairs of bad clips instead of stopping."""


@dataclass(frozen=True)
class ClipProblem:
    reason: str
    """One of MISSING, UNREADABLE, TOO_SHORT, NON_FINITE: what the skip report counts."""
    detail: str


def clip_problem(path: str, decode: bool = False, data: bytes | None = None) -> ClipProblem | None:
    """What is wrong with the audio file ``path`` (or the encoded file ``data``, held in memory), or
    None if a run can read it."""
    if data is None and not os.path.isfile(path):
        return ClipProblem(MISSING, "file not found")
    try:
        with sf.SoundFile(path if data is None else io.BytesIO(data)) as handle:
            frames, rate = handle.frames, handle.samplerate
            data = handle.read(dtype="float32", always_2d=True) if decode else None
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        return ClipProblem(UNREADABLE, f"cannot read audio ({read_error(err)})")
    if data is not None:
        frames = data.shape[0]
        if not np.isfinite(data).all():
            return ClipProblem(NON_FINITE, "audio contains non-finite samples (NaN or inf)")
    short = too_short(frames, rate)
    return ClipProblem(TOO_SHORT, short) if short else None


def check_audio(
    parts: Sequence[RatedPairs], skip_bad: bool = False, decode: bool = False
) -> tuple[list[RatedPairs], SkipReport]:
    """``parts`` (e.g. the training and validation pairs) once every clip they read is checked.

    A bad clip is a ``DataError`` naming the first affected pair's line and file and how many clips
    are bad, per reason. With ``skip_bad`` the pairs of bad clips are dropped instead; the returned
    report counts them per reason with an example and is logged as one warning; a part left with
    no pair is an error.
    """
    problems: dict[str, ClipProblem | None] = {}
    started = time.perf_counter()
    for part in parts:
        store = part.audio_store
        check = (
            clip_problem
            if isinstance(store, FileAudioStore)
            else getattr(store, "clip_problem", None)
        )
        if check is not None:  # generated stores have nothing to check
            for pair in part:
                if pair.audio not in problems:
                    problems[pair.audio] = check(pair.audio, decode)
    bad = {path: problem for path, problem in problems.items() if problem is not None}
    if problems:
        log.info(
            "checked %d audio file(s) in %.2f s: %d bad",
            len(problems),
            time.perf_counter() - started,
            len(bad),
        )
    report = SkipReport()
    if not bad:
        return list(parts), report

    if not skip_bad:
        by_reason = ", ".join(
            f"{n} x {reason}" for reason, n in Counter(p.reason for p in bad.values()).items()
        )
        where, path = next(
            (_where(part, index), pair.audio)
            for part in parts
            for index, pair in enumerate(part)
            if pair.audio in bad
        )
        emptied = next(
            (part.name for part in parts if len(part) and all(pair.audio in bad for pair in part)),
            None,
        )
        remedy = (
            f"fix or remove them, or pass {SKIP_OVERRIDE} to drop their pairs"
            if emptied is None
            else f"training reads them: no pair of {emptied} has usable audio, so {SKIP_OVERRIDE} cannot help"
        )
        raise DataError(
            f"{where}: {path}: {bad[path].detail}. {len(bad)} of {len(problems)} audio files fail the "
            f"check ({by_reason}); {remedy}"
        )
    kept_parts = []
    for part in parts:
        kept = []
        for index, pair in enumerate(part):
            problem = bad.get(pair.audio)
            if problem is None:
                kept.append(pair)
            else:
                report.add(problem.reason, f"{_where(part, index)}: {pair.audio}: {problem.detail}")
        if not kept:
            raise DataError(
                f"{part.name}: no pairs left after dropping those whose audio is bad ({report})"
            )
        kept_parts.append(replace(part, pairs=kept) if len(kept) < len(part) else part)
    total = sum(len(part) for part in parts)
    log.warning(
        "%s: dropped %d of %d pairs whose audio is bad (%d of %d files), by reason: %s",
        SKIP_OVERRIDE,
        report.total,
        total,
        len(bad),
        len(problems),
        report,
    )
    return kept_parts, report


NO_AUDIO_PROBE = "text_sensitivity"
"""A probe that reads no audio, for the hint when the audio is missing."""


def require_probe_audio(probes: Mapping[str, Any]) -> None:
    """Refuse probes whose audio files are missing, before any model is loaded.

    Pairs read without their audio (``data.pairs.check_audio=false``) can only be measured by
    probes that read none; any other probe would stop at its first clip with a bare
    ``FileNotFoundError``. The ``DataError`` names the first missing file (and its data line),
    how many of the files the probes read are missing, and which probes read them. Only
    ``FileAudioStore`` files are checked; generated audio is always there.
    """
    exists: dict[str, bool] = {}
    readers: dict[str, list[str]] = {}  # missing file -> probes that read it
    for name, probe in probes.items():
        for ref in probe.inputs().audio:
            if isinstance(ref.store, FileAudioStore):
                if ref.key not in exists:
                    exists[ref.key] = os.path.isfile(ref.key)
                if not exists[ref.key]:
                    readers.setdefault(ref.key, []).append(name)
    if not readers:
        return
    first = next(iter(readers))
    names = list(dict.fromkeys(name for found in readers.values() for name in found))
    line = next(
        (
            pair.source
            for probe in probes.values()
            for pair in getattr(probe, "pairs", ())
            if pair.audio == first and pair.source
        ),
        None,
    )
    raise DataError(
        f"{line + ': ' if line else ''}{first}: audio file not found. {len(readers)} of {len(exists)} audio files "
        f"that probe(s) {', '.join(names)} read are missing. Without the audio only probes that read none can "
        f"run, e.g. probes={NO_AUDIO_PROBE}"
    )


def _where(part: RatedPairs, index: int) -> str:
    """The pair's data line, or its position when it was not read from a file."""
    return part[index].source or f"{part.name}[{index}]"
