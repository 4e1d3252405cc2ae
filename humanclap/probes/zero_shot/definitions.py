"""Definition prompts of the zero-shot instrument probe (two-tower paper, arXiv 2407.18058).

Besides label templates the paper prompts with a *definition* of each instrument, and with the same
definition with the instrument's label removed (can the text tower infer the instrument from its
description? The abstract: text towers "do not yet leverage additional textual context or infer
instruments accurately from their descriptions"). A definitions file maps class -> definition;
:func:`remove_label` derives the label-removed variant. The rule and the shipped defaults:
docs/probes.md#definition-prompts and humanclap/resources/README.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_DEFINITIONS = (
    Path(__file__).resolve().parents[2] / "resources" / "instrument_definitions.json"
)
"""Our own definitions of the 14 TinySOL classes (sources: humanclap/resources/README.md)."""

KEPT_WORDS = frozenset({"a", "an", "and", "at", "by", "for", "in", "of", "on", "or", "the", "to"})
"""Function words of a multi-word label that are not removed ("trumpet in c" removes "trumpet" and
"c", not every "in" of the definition)."""

_WORD_SPLIT = re.compile(r"[\s\-]+")
_APOSTROPHE = "['\u2019]"


def _key(name: str) -> str:
    return " ".join(str(name).casefold().split())


def label_words(label: str) -> list[str]:
    """The words of ``label`` that :func:`remove_label` removes: split at white space and hyphens,
    without :data:`KEPT_WORDS` (in lower case, in order, without repeats)."""
    words = [w for w in _WORD_SPLIT.split(label.casefold()) if w and w not in KEPT_WORDS]
    return list(dict.fromkeys(words))


def _inflected(word: str) -> str:
    """A regex of ``word`` with its regular inflections: plural -s / -es (-y -> -ies) and the
    possessive 's / s' (straight or curly apostrophe)."""
    forms = [re.escape(word) + "(?:e?s)?"]
    if word.endswith("y") and len(word) > 1:
        forms.append(re.escape(word[:-1]) + "ies")
    return rf"(?:{'|'.join(forms)})(?:{_APOSTROPHE}s?)?"


def remove_label(definition: str, label: str) -> str:
    """``definition`` with every whole-word occurrence of each word of ``label`` removed
    (:func:`label_words`), case-insensitively, with its plural and possessive forms; then runs of
    spaces become one and no space is left before punctuation.

    Whole words only: "violin" removes "violin", "Violins" and "violin's" but not "violinist" or
    "viola"; a hyphenated compound loses the label part ("violin-like" -> "-like"). The rest of the
    text is kept as written, articles included ("The violin is" -> "The is"), as the paper's code does.
    """
    text = definition
    for word in label_words(label):
        text = re.sub(
            rf"(?<![\w]){_inflected(word)}(?![\w])", "", text, flags=re.IGNORECASE | re.UNICODE
        )
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" +([,.;:!?)])", r"\1", text)
    text = re.sub(r"\( +", "(", text)
    return text.strip()


def contains_label(text: str, label: str) -> bool:
    """Whether any word of ``label`` (or a plural / possessive of it) is still a whole word of ``text``."""
    return any(
        re.search(rf"(?<![\w]){_inflected(word)}(?![\w])", text, flags=re.IGNORECASE)
        for word in label_words(label)
    )


def load_definitions(source: str | Path | Mapping[str, str] | None) -> dict[str, str]:
    """class -> definition from a JSON file holding one object ``{"<class>": "<definition>", ...}``,
    ``"default"`` (:data:`DEFAULT_DEFINITIONS`) or a mapping; ``None`` gives ``{}``."""
    if source is None:
        return {}
    where = "definitions"
    if isinstance(source, Mapping):
        raw = dict(source)
    else:
        path = DEFAULT_DEFINITIONS if str(source) == "default" else Path(source).expanduser()
        where = str(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(
                f"definitions: no file {path} (a JSON object {{class: definition}}, 'default' for "
                f"{DEFAULT_DEFINITIONS.name}, or null for no definition prompts)"
            ) from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not JSON ({err})") from None
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"{where}: must be a non-empty JSON object {{class: definition}}")
    definitions: dict[str, str] = {}
    for name, text in raw.items():
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: the definition of {name!r} must be a non-empty string")
        if _key(name) in {_key(k) for k in definitions}:
            raise ValueError(f"{where}: {name!r} is defined twice (names match case-insensitively)")
        definitions[str(name)] = " ".join(text.split())
    return definitions


def class_definitions(
    definitions: Mapping[str, str], classes: Sequence[str], where: str
) -> tuple[dict[str, str], dict[str, str]]:
    """(class -> definition, class -> definition without its label) for ``classes``, looked up
    case-insensitively; ValueError naming the classes without a definition, or a definition that
    is nothing but its label."""
    by_key = {_key(name): text for name, text in definitions.items()}
    missing = [c for c in classes if _key(c) not in by_key]
    if missing:
        raise ValueError(
            f"{where}: no definition for {len(missing)} class(es): "
            + ", ".join(repr(c) for c in missing)
            + "; give a definitions file that covers them (JSON {class: definition}) or "
            "definitions=null for no definition prompts"
        )
    full = {c: by_key[_key(c)] for c in classes}
    bare = {c: remove_label(text, c) for c, text in full.items()}
    empty = [c for c, text in bare.items() if not any(ch.isalnum() for ch in text)]
    if empty:
        raise ValueError(
            f"{where}: the definition of {empty[0]!r} is nothing but its label: {full[empty[0]]!r}"
        )
    return full, bare
