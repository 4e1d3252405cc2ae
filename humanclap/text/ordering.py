"""Event-ordering text manipulations (event-ordering §3.2): pure functions of one sentence.

The ordering probes (``humanclap.probes.ordering.bat``, ``clause_swap``, ``as_then_swap``,
``text_sensitivity``) ask whether a model notices when a caption's temporal connective or the order
of its two events is changed. Each manipulation here takes one sentence and returns a
:class:`Manipulation`: the new sentence, or no sentence and the *reason* it was skipped. Nothing
is changed silently: a sentence whose manipulation would be ambiguous (which connective, where a
clause ends) is skipped, and :class:`ManipulationStats` counts the skips by reason. What is not
skipped is changed by the purely textual rules below, whose known limits are listed with them.

**Connectives.** :func:`find_connectives` finds, case-insensitively and as whole words (not inside
``afternoon``, ``aftermath`` or hyphenated words), the *order* connectives ``before``, ``after``,
``then``, ``followed by`` (any whitespace between the two words) and the *simultaneity*
connectives ``as``, ``while``, ``during``. An occurrence inside one of these fixed phrases is not a
connective (it is reported with ``fixed_phrase`` set and ignored by every manipulation):

====================  =================================================================
``as well as``        "Chirping as well as continuous running water"
``as ... as``         ``as <one word> as``: "revving as high as it can go", "as soon as"
``as well``           "a dog barks as well"
``such as``           "farm animals such as a horse"
``as if``             "squealing as if it were in pain"
``as though``
``so as to``
``as opposed to``
``known as``
``same as``
``before and after``  "A cat meowing before and after plastic rattling" (both words)
``one after another`` ``one [up to 3 words] after|before another|the other``:
                      "one after the other", "One explosion after another"
``now and then``      "every now and then"
====================  =================================================================

``as a`` is *not* excluded: in AudioCaps it is almost always temporal ("A man speaks as a dog
barks"; it occurs 2616 times in the 22,848 AudioCaps captions with a connective).

**Skip reasons** (checked in this order; the first that applies is reported):

* ``no_connective`` -- none of the connectives the manipulation acts on;
* ``fixed_phrase`` -- they only occur inside fixed phrases (which phrase: ``Manipulation.detail``);
* ``several_connectives`` -- more than one connective the manipulation acts on (e.g. "A before B
  after C", "A then B then C", "A as B, then C"): which one to change, or where the clauses
  end, is ambiguous;
* ``several_sentences`` -- (clause swap only) the text has more than one sentence (``.``, ``!``,
  ``?`` or ``;`` followed by more text), so the extent of the clauses is unknown;
* ``connective_at_start`` -- (clause swap, as/then swap) the connective (with the ``and`` that is
  moved or dropped with it) opens the sentence ("Then a dog barks", "And then a dog barks", "As
  the wind blows, a bird sings"): there is no first clause, or "as"/"then" would change the
  sentence's structure rather than its meaning;
* ``connective_at_end`` -- (clause swap, as/then swap) nothing but punctuation follows it ("a man
  speaking after", "silence after that").

**The manipulations** (the input is stripped of surrounding whitespace; everything not named here
is kept verbatim, including inner punctuation and spacing):

* :func:`swap_before_after` -- the single ``before`` <-> ``after`` (BAT). Case is kept per word
  ("Before" -> "After", "AFTER" -> "BEFORE"); "after which" -> "before which", "shortly before" ->
  "shortly after". Other connectives (then, followed by, as, ...) are left alone and do not block
  the swap. It may open or close the sentence ("Before a dog barks, a man speaks" -> "After ...").
* :func:`swap_clauses` -- "A <sep> B" -> "B <sep> A" for the single order connective (before,
  after, then, followed by; simultaneity connectives stay inside their clause and move with it).
  The separator ``<sep>`` is moved verbatim and is the connective together with: a preceding comma,
  a preceding ``and`` ("A, and then B"), an auxiliary ``is|are|was|were`` before ``followed by``
  ("A is followed by B" -> "B is followed by A"), a preceding adverb ``just|shortly|soon|
  immediately|right|closely|directly`` before before/after/followed by ("shortly before", "closely
  followed by"; not before "then": "turns right then stops") and a following
  ``which`` or ``that`` after before/after ("after which", "after that"). ``briefly`` and
  ``quickly`` are *not* taken along: they usually modify clause A ("whistles briefly followed by").
  Trailing ``.``/``!``/``?``/``…`` stay at the end. **Capitalisation:** if A begins with an
  upper-case letter (a capitalised sentence), B's first letter is upper-cased and A's first letter
  lower-cased -- unless A's first word looks like a proper noun or acronym: ``I`` (and "I'm",
  ...) or a word with an upper-case letter after its first character ("TV", "ATV", "McDonald").
  Capitalised names ("Rachel") cannot be told from a capitalised first word and are lower-cased.
  If A does not begin with an upper-case letter, neither clause's case is changed.
  As in the paper, the swap is purely textual. Known limits: a clause with an omitted subject is
  moved as it is ("A man sneezes then speaks" -> "Speaks then a man sneezes"); commas inside a
  clause stay with it ("A woman talks before something pops, she screams" -> "Something pops, she
  screams before a woman talks"); an ``and`` in the separator moves with it ("A door is closed,
  and followed by a man talking" -> "A man talking, and followed by a door is closed"); a
  pronoun ``that`` opening clause B is taken for "before/after that" ("before that ends ...").
* :func:`swap_as_then` -- the single temporal ``as`` <-> ``then`` (event-ordering Table 3), case kept
  per word. "then" -> "as" also drops an ``and`` directly before it ("A and then B" -> "A as B",
  "A, and then B" -> "A, as B"); "as" -> "then" adds nothing. Known limit: a clause with an
  omitted subject reads oddly ("A man sneezes then speaks" -> "A man sneezes as speaks").

Every function is pure and deterministic.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

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
_CONNECTIVE = re.compile(_WORD.format(r"followed\s+by|before|after|then|as|while|during"), re.IGNORECASE)
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
    "before": re.compile(rf"(?:\s*,)?\s*(?:\band\s+)?(?:\b(?:{_CLAUSE_ADVERBS})\s+)?$", re.IGNORECASE),
    "followed by": re.compile(
        rf"(?:\s*,)?\s*(?:\band\s+)?(?:\b(?:is|are|was|were)\s+)?(?:\b(?:{_CLAUSE_ADVERBS})\s+)?$", re.IGNORECASE),
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
        found.append(Connective(
            word=" ".join(match.group(1).lower().split()), start=start, end=end, written=match.group(1),
            fixed_phrase=phrase, at_sentence_start=_at_sentence_start(text, start),
            at_end=not text[end:].strip(" \t\n\r.,;:!?…\"')]")))
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
        return {f"{prefix}{reason}": float(self.skipped[reason]) for reason in SKIP_REASONS if self.skipped[reason]}

    def __str__(self) -> str:
        kept = ", ".join(f"{word} {n}" for word, n in self.kept.items())
        text = f"kept {self.n_kept}" + (f" ({kept})" if kept else "")
        if not self.skipped:
            return text + ", none skipped"
        parts = []
        for reason in SKIP_REASONS:
            if self.skipped[reason]:
                extra = (" [" + ", ".join(f"{p} {n}" for p, n in self.fixed_phrases.most_common()) + "]"
                         if reason == FIXED_PHRASE else "")
                parts.append(f"{self.skipped[reason]} x {reason}{extra} (e.g. {self.examples[reason]!r})")
        return f"{text}; skipped {self.n_skipped}: " + "; ".join(parts)


def manipulate_all(texts: Iterable[str], manipulation: Callable[[str], Manipulation]
                   ) -> tuple[list[Manipulation], ManipulationStats]:
    """Apply ``manipulation`` to each text: (every result in order, the counts)."""
    stats = ManipulationStats()
    return [stats.add(manipulation(text)) for text in texts], stats


# -- the manipulations ----------------------------------------------------------------------------

def swap_before_after(text: str) -> Manipulation:
    """The single "before" <-> "after" (see the module docstring)."""
    text = text.strip()
    relevant, skip = _single(text, "before_after", {"before", "after"})
    if skip:
        return skip
    (c,) = relevant
    other = "after" if c.word == "before" else "before"
    return Manipulation("before_after", text, text[:c.start] + _match_case(c.written, other) + text[c.end:],
                        c.word)


def swap_clauses(text: str) -> Manipulation:
    """"A <sep> B" -> "B <sep> A" around the single order connective (see the module docstring)."""
    text = text.strip()
    kind = "clause_swap"
    relevant, skip = _single(text, kind, set(ORDER_CONNECTIVES))
    if skip:
        return skip
    (c,) = relevant
    punctuation = _TRAILING.search(text)
    body, end = text[:punctuation.start()], text[punctuation.start():].strip()
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
    """The single temporal "as" <-> "then" (see the module docstring)."""
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
    return Manipulation(kind, text, text[:start] + _match_case(c.written, other) + text[c.end:], c.word)


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
            return [], Manipulation(kind, text, None, found[0].word, FIXED_PHRASE, ", ".join(phrases))
        return [], Manipulation(kind, text, None, None, NO_CONNECTIVE)
    if len(relevant) > 1:
        return [], Manipulation(kind, text, None, relevant[0].word, SEVERAL_CONNECTIVES,
                                ", ".join(c.word for c in relevant))
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
