"""Noun/verb-only texts: the NV condition of event-ordering §3.1 (Table 2).

:func:`nouns_and_verbs` for one text, :func:`nv_transform` for a :class:`RatedPairs` set (also as a
wrapping ``pairs`` node of a data config); the tagger is spaCy or NLTK, neither a dependency.
See docs/data.md#nv-text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence

from humanclap.data.pairs import DataError, RatedPair, RatedPairs, SkipReport

Tagger = Callable[[list[str]], Sequence[tuple[str, str]]]
"""tokens -> (token, tag) per token; tags from the Penn Treebank or the universal tagset."""
TaggerSpec = str | Tagger | None

SPACY_MODEL = "en_core_web_sm"
INSTALL_SPACY = f"pip install spacy && python -m spacy download {SPACY_MODEL}"
INSTALL_NLTK = (
    "pip install nltk && python -m nltk.downloader averaged_perceptron_tagger_eng punkt_tab"
)
SKIP_EMPTY = "no noun or verb left"

UNIVERSAL_KEEP = frozenset({"NOUN", "PROPN", "VERB"})
BE_FORMS = frozenset(
    {"am", "is", "are", "was", "were", "be", "been", "being", "'re", "'m", "’re", "’m"}
)
_TOKEN = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*")
_FINAL = re.compile(r"([.!?])[\s\"')\]]*$")


class TaggerUnavailable(ImportError):
    """No usable POS tagger; the message names what to install or download."""


def is_noun_or_verb(word: str, tag: str) -> bool:
    """Penn ``NN*``/``VB*`` (not a form of *be*) or universal ``NOUN``/``PROPN``/``VERB``."""
    if tag in UNIVERSAL_KEEP:
        return True
    if tag.startswith("NN"):
        return True
    return tag.startswith("VB") and word.lower() not in BE_FORMS


def tokenize(text: str) -> list[str]:
    """Word tokens for a custom tagger: letters/digits with inner hyphens and apostrophes."""
    return _TOKEN.findall(text)


# -- backends --------------------------------------------------------------------------------------


@functools.cache
def _spacy_tagger() -> Callable[[str], list[tuple[str, str]]]:
    try:
        import spacy
    except ImportError as err:
        raise TaggerUnavailable(
            f"spaCy is not installed ({err}); install it with: {INSTALL_SPACY}"
        ) from err
    try:
        nlp = spacy.load(SPACY_MODEL, disable=["parser", "ner", "lemmatizer"])
    except OSError as err:
        raise TaggerUnavailable(
            f"spaCy is installed but its model {SPACY_MODEL} is not ({err}); "
            f"download it with: python -m spacy download {SPACY_MODEL}"
        ) from err
    return lambda text: [(token.text, token.pos_) for token in nlp(text)]


@functools.cache
def _nltk_tagger() -> Callable[[str], list[tuple[str, str]]]:
    try:
        import nltk
    except ImportError as err:
        raise TaggerUnavailable(
            f"NLTK is not installed ({err}); install it with: {INSTALL_NLTK}"
        ) from err

    def tag(text: str) -> list[tuple[str, str]]:
        return list(nltk.pos_tag(nltk.word_tokenize(text)))

    try:
        tag("A dog barks.")
    except LookupError as err:
        missing = " ".join(str(err).split())[:300]
        raise TaggerUnavailable(
            "NLTK is installed but its tokenizer/tagger data is not; download it with: "
            "python -m nltk.downloader averaged_perceptron_tagger_eng punkt_tab "
            f"(NLTK < 3.9: averaged_perceptron_tagger punkt). NLTK said: {missing}"
        ) from err
    return tag


def _custom(tagger: Tagger) -> Callable[[str], list[tuple[str, str]]]:
    def tag(text: str) -> list[tuple[str, str]]:
        tokens = tokenize(text)
        tagged = list(tagger(tokens)) if tokens else []
        if len(tagged) != len(tokens):
            raise ValueError(
                f"tagger returned {len(tagged)} (word, tag) pairs for {len(tokens)} tokens of {text!r}"
            )
        return [(str(word), str(tag)) for word, tag in tagged]

    return tag


def resolve_tagger(tagger: TaggerSpec = "auto") -> Callable[[str], list[tuple[str, str]]]:
    """text -> [(token, tag), ...] for ``tagger`` (docs/data.md#nv-text); raises ``TaggerUnavailable``."""
    if callable(tagger):
        return _custom(tagger)
    if tagger is None or tagger == "auto":
        problems = []
        for backend in (_spacy_tagger, _nltk_tagger):
            try:
                return backend()
            except TaggerUnavailable as err:
                problems.append(str(err))
        raise TaggerUnavailable(
            "the noun/verb-only transform needs a POS tagger and none is available. Install one of:\n"
            f"  spaCy (the paper's tagger): {INSTALL_SPACY}\n  NLTK: {INSTALL_NLTK}\n"
            "Found: " + " | ".join(problems)
        )
    if tagger == "spacy":
        return _spacy_tagger()
    if tagger == "nltk":
        return _nltk_tagger()
    raise ValueError(
        f"tagger must be 'auto', 'spacy', 'nltk' or a callable tokens -> [(word, tag)], got {tagger!r}"
    )


# -- the transform ---------------------------------------------------------------------------------


def _keep(tagged: Iterable[tuple[str, str]], text: str) -> str:
    words = [w for w, t in tagged if any(ch.isalnum() for ch in w) and is_noun_or_verb(w, t)]
    if not words:
        return ""
    out = " ".join(words)
    stripped = text.strip()
    if stripped[:1].isupper():
        out = out[:1].upper() + out[1:]
    final = _FINAL.search(stripped)
    return out + (final.group(1) if final else "")


def nouns_and_verbs(text: str, tagger: TaggerSpec = "auto") -> str:
    """``text`` with only its nouns and verbs (the paper's NV condition); ``""`` if none."""
    return _keep(resolve_tagger(tagger)(text), text)


def nv_transform(
    pairs: RatedPairs,
    tagger: TaggerSpec = "auto",
    splits: Sequence[str] | None = None,
    name: str | None = None,
) -> RatedPairs:
    """``pairs`` with noun/verb-only texts (only in ``splits`` if given); emptied pairs are skipped.

    Raises ``TaggerUnavailable`` before touching any text when no tagger loads, and ``DataError``
    when no pair is left.
    """
    tag = resolve_tagger(tagger)
    chosen = None if splits is None else set(splits)
    if chosen is not None:
        missing = sorted(chosen - set(pairs.splits()))
        if missing:
            raise DataError(
                f"{pairs.name}: nv_transform splits {missing} not present; splits: {pairs.splits() or 'none'}"
            )
    cache: dict[str, str] = {}
    skipped = SkipReport()
    skipped.counts.update(pairs.skipped.counts)
    skipped.examples.update(pairs.skipped.examples)
    out: list[RatedPair] = []
    for index, pair in enumerate(pairs):
        if chosen is not None and pair.split not in chosen:
            out.append(pair)
            continue
        if pair.text not in cache:
            cache[pair.text] = _keep(tag(pair.text), pair.text)
        text = cache[pair.text]
        if not text:
            skipped.add(SKIP_EMPTY, f"{pairs.name}[{index}]: {pair.text!r}")
            continue
        out.append(
            RatedPair(
                audio=pair.audio,
                text=text,
                score=pair.score,
                split=pair.split,
                group=pair.group,
                num_ratings=pair.num_ratings,
            )
        )
    if not out:
        raise DataError(
            f"{pairs.name}: no pair left after keeping only nouns and verbs ({skipped})"
        )
    return RatedPairs(
        out,
        pairs.audio_store,
        name=name or f"{pairs.name}:nv",
        skipped=skipped,
        group_sets=pairs.group_sets,
    )


__all__ = [
    "INSTALL_NLTK",
    "INSTALL_SPACY",
    "Tagger",
    "TaggerUnavailable",
    "is_noun_or_verb",
    "nouns_and_verbs",
    "nv_transform",
    "resolve_tagger",
    "tokenize",
]
