"""Event-ordering text manipulations (event-ordering §3.2): pure functions of one sentence.

:func:`swap_before_after`, :func:`swap_clauses` and :func:`swap_as_then` return a
:class:`Manipulation`: the new sentence, or none and the reason it was skipped (counted by
:class:`ManipulationStats`). Connectives, fixed phrases, skip reasons and the exact rules:
see docs/probes.md#text-manipulations.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

ORDER_CONNECTIVES = ("before", "after", "then", "followed by")
SIMULTANEITY_CONNECTIVES = ("as", "while", "during")
CONNECTIVES = ORDER_CONNECTIVES + SIMULTANEITY_CONNECTIVES

NO_CONNECTIVE = "no_connective"
FIXED_PHRASE = "fixed_phrase"
SEVERAL_CONNECTIVES = "several_connectives"
SEVERAL_SENTENCES = "several_sentences"
CONNECTIVE_AT_START = "connective_at_start"
CONNECTIVE_AT_END = "connective_at_end"
SKIP_REASONS = {
    NO_CONNECTIVE: "none of the connectives the manipulation acts on",
    FIXED_PHRASE: "the connective only occurs inside a fixed phrase (such as, as well as, ...)",
    SEVERAL_CONNECTIVES: "more than one connective the manipulation acts on",
    SEVERAL_SENTENCES: "more than one sentence",
    CONNECTIVE_AT_START: "the connective opens the sentence",
    CONNECTIVE_AT_END: "nothing follows the connective",
}
"""Every skip reason, in the order the manipulations check them."""

_WORD = r"(?<![\w-])({})(?![\w-])"
_CONNECTIVE = re.compile(
    _WORD.format(r"followed\s+by|before|after|then|as|while|during"), re.IGNORECASE
)
FIXED_PHRASES: dict[str, str] = {
    "as well as": r"\bas\s+well\s+as\b",
    "as ... as": r"\bas\s+[a-z]+\s+as\b",
    "as well": r"\bas\s+well\b",
    "such as": r"\bsuch\s+as\b",
    "as if": r"\bas\s+if\b",
    "as though": r"\bas\s+though\b",
    "so as to": r"\bso\s+as\s+to\b",
    "as opposed to": r"\bas\s+opposed\s+to\b",
    "known as": r"\bknown\s+as\b",
    "same as": r"\bsame\s+as\b",
    "before and after": r"\b(?:before\s+and\s+after|after\s+and\s+before)\b",
    "one after another": r"\bone(?:\s+[a-z]+){0,3}?\s+(?:after|before)\s+(?:another|the\s+other)\b",
    "now and then": r"\bnow\s+and\s+then\b",
}
"""Phrases whose connective words are not temporal connectives (name -> case-insensitive regex).
The first phrase (in this order) that covers an occurrence names it."""
_FIXED = [(name, re.compile(pattern, re.IGNORECASE)) for name, pattern in FIXED_PHRASES.items()]

_CLAUSE_ADVERBS = r"just|shortly|soon|immediately|right|closely|directly"
_LEADS = {  # what is taken along with the connective on its left (matched up to the connective)
    "then": re.compile(r"(?:\s*,)?\s*(?:\band\s+)?$", re.IGNORECASE),
    "before": re.compile(
        rf"(?:\s*,)?\s*(?:\band\s+)?(?:\b(?:{_CLAUSE_ADVERBS})\s+)?$", re.IGNORECASE
    ),
    "followed by": re.compile(
        rf"(?:\s*,)?\s*(?:\band\s+)?(?:\b(?:is|are|was|were)\s+)?(?:\b(?:{_CLAUSE_ADVERBS})\s+)?$",
        re.IGNORECASE,
    ),
}
_LEADS["after"] = _LEADS["before"]
_TAIL = re.compile(r"\s+(?:which|that)(?![\w-])", re.IGNORECASE)
_AND_BEFORE = re.compile(r"\band\s+$", re.IGNORECASE)
_TRAILING = re.compile(r"[\s.!?…]*$")
_SENTENCE_BREAK = re.compile(r"[.!?;]\s+\S")
_PROPER_FIRST_WORD = re.compile(r"^(?:I(?![\w])|\S[^\s]*?[A-Z])")


@dataclass(frozen=True)
class Connective:
    """One occurrence of a connective in a text."""

    word: str
    """Canonical lower-case form: "before", "after", "then", "followed by", "as", "while", "during"."""
    start: int
    end: int
    """Span of the connective's words in the text."""
    written: str
    """The words as written (case and spacing kept)."""
    fixed_phrase: str | None = None
    """Name of the fixed phrase (``FIXED_PHRASES``) it is part of: then it is not a connective."""
    at_sentence_start: bool = False
    at_end: bool = False
    """Nothing but punctuation and whitespace follows it."""

    @property
    def temporal(self) -> bool:
        return self.fixed_phrase is None


def find_connectives(text: str) -> list[Connective]:
    """Every whole-word occurrence of a connective (``CONNECTIVES``), in text order."""
    fixed = [(name, m.start(), m.end()) for name, pattern in _FIXED for m in pattern.finditer(text)]
    found = []
    for match in _CONNECTIVE.finditer(text):
        start, end = match.span(1)
        phrase = next((name for name, s, e in fixed if s <= start and end <= e), None)
        found.append(
            Connective(
                word=" ".join(match.group(1).lower().split()),
                start=start,
                end=end,
                written=match.group(1),
                fixed_phrase=phrase,
                at_sentence_start=_at_sentence_start(text, start),
                at_end=not text[end:].strip(" \t\n\r.,;:!?…\"')]"),
            )
        )
    return found


def _at_sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip().rstrip("\"'([")
    return not before or before[-1] in ".!?;:"


@dataclass(frozen=True)
class Manipulation:
    """The result of one manipulation of one sentence: ``text`` is None when it was skipped."""

    kind: str
    """"before_after", "clause_swap" or "as_then"."""
    original: str
    text: str | None
    connective: str | None
    """The connective acted on (canonical form); for a skip the first relevant one, if any."""
    skip: str | None = None
    """Why it was skipped (a key of ``SKIP_REASONS``)."""
    detail: str = ""
    """For a skip: the fixed phrase(s) or the connectives found."""

    @property
    def ok(self) -> bool:
        return self.text is not None


@dataclass
class ManipulationStats:
    """Counts of one manipulation over many sentences: kept by connective, skipped by reason."""

    kept: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    """reason -> the first sentence skipped for it."""
    fixed_phrases: Counter = field(default_factory=Counter)
    """fixed phrase -> sentences skipped because their only connectives were in it."""

    def add(self, result: Manipulation) -> Manipulation:
        """Count ``result`` and return it."""
        if result.ok:
            self.kept[result.connective] += 1
        else:
            self.skipped[result.skip] += 1
            self.examples.setdefault(result.skip, result.original)
            if result.skip == FIXED_PHRASE:
                self.fixed_phrases.update(result.detail.split(", "))
        return result

    @property
    def n_kept(self) -> int:
        return sum(self.kept.values())

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def metrics(self, prefix: str = "skipped/") -> dict[str, float]:
        """``{prefix + reason: count}`` for every reason that occurred (in ``SKIP_REASONS`` order)."""
        return {
            f"{prefix}{reason}": float(self.skipped[reason])
            for reason in SKIP_REASONS
            if self.skipped[reason]
        }

    def __str__(self) -> str:
        kept = ", ".join(f"{word} {n}" for word, n in self.kept.items())
        text = f"kept {self.n_kept}" + (f" ({kept})" if kept else "")
        if not self.skipped:
            return text + ", none skipped"
        parts = []
        for reason in SKIP_REASONS:
            if self.skipped[reason]:
                extra = (
                    " [" + ", ".join(f"{p} {n}" for p, n in self.fixed_phrases.most_common()) + "]"
                    if reason == FIXED_PHRASE
                    else ""
                )
                parts.append(
                    f"{self.skipped[reason]} x {reason}{extra} (e.g. {self.examples[reason]!r})"
                )
        return f"{text}; skipped {self.n_skipped}: " + "; ".join(parts)


def manipulate_all(
    texts: Iterable[str], manipulation: Callable[[str], Manipulation]
) -> tuple[list[Manipulation], ManipulationStats]:
    """Apply ``manipulation`` to each text: (every result in order, the counts)."""
    stats = ManipulationStats()
    return [stats.add(manipulation(text)) for text in texts], stats


# -- the manipulations ----------------------------------------------------------------------------


def swap_before_after(text: str) -> Manipulation:
    """The single "before" <-> "after" (see docs/probes.md#text-manipulations)."""
    text = text.strip()
    relevant, skip = _single(text, "before_after", {"before", "after"})
    if skip:
        return skip
    (c,) = relevant
    other = "after" if c.word == "before" else "before"
    return Manipulation(
        "before_after",
        text,
        text[: c.start] + _match_case(c.written, other) + text[c.end :],
        c.word,
    )


def swap_clauses(text: str) -> Manipulation:
    """ "A <sep> B" -> "B <sep> A" around the single order connective (docs/probes.md#text-manipulations)."""
    text = text.strip()
    kind = "clause_swap"
    relevant, skip = _single(text, kind, set(ORDER_CONNECTIVES))
    if skip:
        return skip
    (c,) = relevant
    punctuation = _TRAILING.search(text)
    body, end = text[: punctuation.start()], text[punctuation.start() :].strip()
    if _SENTENCE_BREAK.search(body):
        return Manipulation(kind, text, None, c.word, SEVERAL_SENTENCES)
    if c.at_sentence_start:
        return Manipulation(kind, text, None, c.word, CONNECTIVE_AT_START)
    lead = _LEADS[c.word].search(text, 0, c.start)
    sep_start, sep_end = lead.start(), c.end
    if c.word in ("before", "after"):
        tail = _TAIL.match(text, c.end)
        if tail:
            sep_end = tail.end()
    first, second = text[:sep_start].strip(), body[sep_end:].strip()
    if not first:
        return Manipulation(kind, text, None, c.word, CONNECTIVE_AT_START)
    if not second:
        return Manipulation(kind, text, None, c.word, CONNECTIVE_AT_END)
    if first[0].isupper():
        second, first = upper_first(second), lower_first(first)
    separator = text[sep_start:sep_end].strip()
    joined = f"{second}{'' if separator.startswith(',') else ' '}{separator} {first}{end}"
    return Manipulation(kind, text, joined, c.word)


def swap_as_then(text: str) -> Manipulation:
    """The single temporal "as" <-> "then" (see docs/probes.md#text-manipulations)."""
    text = text.strip()
    kind = "as_then"
    relevant, skip = _single(text, kind, {"as", "then"})
    if skip:
        return skip
    (c,) = relevant
    start = c.start
    if c.word == "then":  # "and then" -> "as"
        conjunction = _AND_BEFORE.search(text, 0, c.start)
        start = conjunction.start() if conjunction else c.start
    if _at_sentence_start(text, start):
        return Manipulation(kind, text, None, c.word, CONNECTIVE_AT_START)
    if c.at_end:
        return Manipulation(kind, text, None, c.word, CONNECTIVE_AT_END)
    other = "then" if c.word == "as" else "as"
    return Manipulation(
        kind, text, text[:start] + _match_case(c.written, other) + text[c.end :], c.word
    )


MANIPULATIONS: dict[str, Callable[[str], Manipulation]] = {
    "before_after": swap_before_after,
    "clause_swap": swap_clauses,
    "as_then": swap_as_then,
}
"""The manipulations by name (the ``kind`` of their results)."""


def _single(text: str, kind: str, words: set[str]) -> tuple[list[Connective], Manipulation | None]:
    """The one temporal connective among ``words``, or the skip (no / fixed-phrase-only / several)."""
    found = [c for c in find_connectives(text) if c.word in words]
    relevant = [c for c in found if c.temporal]
    if not relevant:
        phrases = list(dict.fromkeys(c.fixed_phrase for c in found))
        if phrases:
            return [], Manipulation(
                kind, text, None, found[0].word, FIXED_PHRASE, ", ".join(phrases)
            )
        return [], Manipulation(kind, text, None, None, NO_CONNECTIVE)
    if len(relevant) > 1:
        return [], Manipulation(
            kind,
            text,
            None,
            relevant[0].word,
            SEVERAL_CONNECTIVES,
            ", ".join(c.word for c in relevant),
        )
    return relevant, None


def upper_first(text: str) -> str:
    """``text`` with its first letter upper-cased (a sentence start)."""
    return text[:1].upper() + text[1:]


def lower_first(text: str) -> str:
    """``text`` with its first letter lower-cased, unless its first word looks like a proper noun or
    an acronym ("I", "TV", "McDonald": an upper-case letter after the first character)."""
    if _PROPER_FIRST_WORD.match(text):
        return text
    return text[:1].lower() + text[1:]


def _match_case(template: str, word: str) -> str:
    """``word`` in the case of ``template``: UPPER, Capitalised or lower."""
    letters = [ch for ch in template if ch.isalpha()]
    if len(letters) > 1 and all(ch.isupper() for ch in letters):
        return word.upper()
    if letters and letters[0].isupper():
        return word[0].upper() + word[1:]
    return word
