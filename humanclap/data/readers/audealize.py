"""Audealize / SocialFX descriptor files: words with the effect settings the crowd chose for them.

The EQ and reverb settings of timbre-semantics §2.3 (Experiment 2), selected by
:func:`read_audealize_descriptors`. The file format, the selection rule and the paper's own word
lists: see docs/data.md#audealize-descriptors.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from humanclap.data.pairs import DataError
from humanclap.data.tables import require_file

log = logging.getLogger(__name__)

Effect = Literal["eq", "reverb"]

SETTINGS_LENGTH: dict[str, int] = {"eq": 40, "reverb": 6}
"""Length of ``settings`` per effect: 40 EQ band values; reverb ``[d, g, m, f, E, wetdry]``."""
EFFECT_BY_LENGTH: dict[int, str] = {n: effect for effect, n in SETTINGS_LENGTH.items()}
REQUIRED_KEYS = ("word", "settings", "num", "agreement", "lang")

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
DEMO_EQ_FILE = RESOURCES / "audealize_eq_demo.json"
"""Our own illustrative EQ descriptors (6 English words), the offline default."""
DEMO_REVERB_FILE = RESOURCES / "audealize_reverb_demo.json"
"""Our own illustrative reverb descriptors (6 English words), the offline default."""

PAPER_EQ_WORDS = (
    "bright",
    "calm",
    "clear",
    "cold",
    "cool",
    "crisp",
    "dark",
    "gentle",
    "hard",
    "harsh",
    "heavy",
    "loud",
    "mellow",
    "peaceful",
    "sharp",
    "smooth",
    "soft",
    "soothing",
    "tinny",
    "warm",
)
"""The 20 EQ descriptors of timbre-semantics Table 1."""
PAPER_REVERB_WORDS = (
    "bass",
    "big",
    "church",
    "clear",
    "deep",
    "distant",
    "distorted",
    "echo",
    "hall",
    "haunting",
    "hollow",
    "loud",
    "low",
    "muffled",
    "sad",
    "soft",
    "spacious",
    "strong",
    "tinny",
    "warm",
)
"""The 20 reverb descriptors of timbre-semantics Table 2."""


@dataclass(frozen=True)
class AudealizeDescriptor:
    """One descriptor word and the effect settings the crowd associated with it."""

    word: str
    settings: tuple[float, ...]
    """40 EQ band values, or reverb ``(d, g, m, f, E, wetdry)``."""
    num: int
    """Number of crowdsourced submissions (the frequency used to pick the top words)."""
    agreement: float
    lang: str

    @property
    def effect(self) -> str:
        """``"eq"`` or ``"reverb"``, from the length of ``settings``."""
        try:
            return EFFECT_BY_LENGTH[len(self.settings)]
        except KeyError:
            raise ValueError(
                f"descriptor '{self.word}': {len(self.settings)} settings match no effect "
                f"({_lengths_text()})"
            ) from None


def _lengths_text() -> str:
    return ", ".join(f"{effect} = {n}" for effect, n in SETTINGS_LENGTH.items())


def effect_of(descriptors: Iterable[AudealizeDescriptor]) -> str:
    """The effect (``"eq"`` / ``"reverb"``) all ``descriptors`` belong to; ValueError if mixed or empty."""
    effects = {d.effect for d in descriptors}
    if len(effects) != 1:
        raise ValueError(
            "no descriptors given" if not effects else f"descriptors mix effects {sorted(effects)}"
        )
    return effects.pop()


def _number(value, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: {key} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise DataError(f"{where}: {key} is not finite ({value!r})")
    return float(value)


def _entry(path: Path, index: int, obj, length: int | None) -> AudealizeDescriptor:
    where = f"{path}, entry {index}"
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    word = obj.get("word")
    if isinstance(word, str) and word.strip():
        where += f" ('{word}')"
    missing = [key for key in REQUIRED_KEYS if key not in obj]
    if missing:
        raise DataError(f"{where}: missing key(s) {missing}; keys found: {list(obj)}")
    if not isinstance(word, str) or not word.strip() or word != word.strip():
        raise DataError(
            f"{where}: word must be a non-empty string without surrounding spaces, got {word!r}"
        )
    lang = obj["lang"]
    if not isinstance(lang, str) or not lang.strip():
        raise DataError(f"{where}: lang must be a non-empty string, got {lang!r}")
    raw = obj["settings"]
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{where}: settings must be a non-empty list of numbers, got {raw!r}"[:300])
    settings = tuple(_number(v, where, f"settings[{i}]") for i, v in enumerate(raw))
    if length is None and len(settings) not in EFFECT_BY_LENGTH:
        raise DataError(f"{where}: {len(settings)} settings match no effect ({_lengths_text()})")
    if length is not None and len(settings) != length:
        raise DataError(
            f"{where}: {len(settings)} settings, but the file's first entry has {length} "
            f"({EFFECT_BY_LENGTH[length]}); every entry of a file must have the same length"
        )
    num = obj["num"]
    if isinstance(num, float) and num.is_integer():
        num = int(num)
    if isinstance(num, bool) or not isinstance(num, int) or num < 0:
        raise DataError(f"{where}: num must be a non-negative integer, got {num!r}")
    agreement = _number(obj["agreement"], where, "agreement")
    return AudealizeDescriptor(
        word=word, settings=settings, num=num, agreement=agreement, lang=lang
    )


def load_audealize_file(path: str | Path) -> list[AudealizeDescriptor]:
    """Every entry of an Audealize descriptor file, validated, in file order."""
    path = require_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from err
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path}: invalid JSON at line {err.lineno}, column {err.colno} ({err.msg})"
        ) from err
    if not isinstance(data, list):
        raise DataError(
            f"{path}: expected a JSON list of descriptor objects, got {type(data).__name__}"
        )
    if not data:
        raise DataError(f"{path}: the list of descriptors is empty")
    descriptors: list[AudealizeDescriptor] = []
    first: dict[str, int] = {}
    for index, obj in enumerate(data):
        descriptor = _entry(path, index, obj, len(descriptors[0].settings) if descriptors else None)
        if descriptor.word in first:
            raise DataError(
                f"{path}, entry {index}: duplicate word '{descriptor.word}' "
                f"(also entry {first[descriptor.word]})"
            )
        first[descriptor.word] = index
        descriptors.append(descriptor)
    return descriptors


def rank_key(descriptor: AudealizeDescriptor) -> tuple[int, float, str]:
    """Sort key of the selection: ``num`` descending, then ``agreement`` descending, then word."""
    return (-descriptor.num, -descriptor.agreement, descriptor.word)


def read_audealize_descriptors(
    path: str | Path,
    top_n: int | None = 20,
    lang: str | None = "English",
    words: Sequence[str] | None = None,
) -> list[AudealizeDescriptor]:
    """The ``top_n`` most frequent descriptors (largest ``num``) of ``lang`` in an Audealize file.

    Args:
        path: ``eqdescriptors.json`` / ``reverbdescriptors.json`` or a file of the same format.
        top_n: how many to keep (timbre-semantics §2.3: 20 per effect); ``None`` = all. Larger than
            what is available: all are kept and an INFO message says so.
        lang: keep only this language (``None`` = all); an unknown language is an error listing
            the languages present.
        words: keep only these words (e.g. :data:`PAPER_EQ_WORDS`); a word missing from the file
            (in ``lang``) is an error.

    Returns the descriptors sorted by ``num`` descending, ties by ``agreement`` descending, then
    alphabetically by word. The whole file is validated, whatever the selection.
    """
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise ValueError(f"top_n must be a positive integer or None, got {top_n!r}")
    path = Path(path)
    descriptors = load_audealize_file(path)
    if lang is not None:
        langs = sorted({d.lang for d in descriptors})
        if lang not in langs:
            raise DataError(
                f"{path}: no descriptors in lang {lang!r}; langs present: {langs} (lang=None keeps all)"
            )
        descriptors = [d for d in descriptors if d.lang == lang]
    if words is not None:
        if isinstance(words, str):
            raise ValueError(f"words must be a list of words, got the string {words!r}")
        by_word = {d.word: d for d in descriptors}
        missing = [w for w in words if w not in by_word]
        if missing:
            raise DataError(
                f"{path}: word(s) {missing} not found" + (f" in lang {lang!r}" if lang else "")
            )
        descriptors = [by_word[w] for w in dict.fromkeys(words)]
    descriptors = sorted(descriptors, key=rank_key)
    if top_n is not None and top_n > len(descriptors):
        log.info(
            "%s: top_n=%d but only %d descriptors%s are available; using all of them",
            path,
            top_n,
            len(descriptors),
            f" in lang {lang!r}" if lang else "",
        )
    return descriptors[:top_n] if top_n is not None else descriptors


def write_audealize_descriptors(
    path: str | Path, descriptors: Iterable[AudealizeDescriptor]
) -> Path:
    """Write ``descriptors`` in the Audealize JSON format (without ``x``/``y``); returns the path."""
    path = Path(path)
    items = [
        json.dumps(
            {
                "word": d.word,
                "lang": d.lang,
                "num": d.num,
                "agreement": d.agreement,
                "settings": [v + 0.0 for v in d.settings],
            },
            ensure_ascii=False,
        )  # + 0.0: no "-0.0"
        for d in descriptors
    ]
    path.write_text(
        "[\n" + ",\n".join(items) + "\n]\n", encoding="utf-8"
    )  # one descriptor per line
    return path
