"""Before/after pairs with known event order (event-ordering §3.3, "AudioCaps-BeforeAfter").

Two captioned clips A and B are rendered as A then B with a crossfade and captioned with a
connective in the true order, plus the clause-swapped caption as a score-0 negative. Source clips,
captions, audio layout, splits and mixing: see docs/data.md#order-pairs.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from humanclap.data.audio import audio_fingerprint
from humanclap.data.pairs import (
    AudioStore,
    DataError,
    RatedPair,
    RatedPairs,
    SkipReport,
    unique_in_order,
)
from humanclap.text.ordering import lower_first, upper_first

ORDER_CONNECTIVES = ("before", "after", "then", "followed by")
FADE_SHAPES = ("linear", "equal_power")

SKIP_CONNECTIVE = "caption already has a temporal connective (before/after/then/followed by)"
SKIP_SENTENCES = "caption has several sentences"
SKIP_EMPTY = "caption is only punctuation"
SKIP_LOW_SCORE = "score below min_score (not a caption of its clip)"
SKIP_REPEAT = "same caption repeated for the same clip"
SKIP_SPLIT = "split has too few usable clips for an order pair"

_CONNECTIVE = re.compile(r"(?<![\w-])(?:before|after|then|followed\s+by)(?![\w-])", re.IGNORECASE)
_SENTENCE_BREAK = re.compile(r"[.!?;]\s+\S")
_TRAILING = re.compile(r"[\s.!?,;:…]+$")


# -- captions --------------------------------------------------------------------------------------


def clause(caption: str) -> str:
    """A caption as a clause: whitespace collapsed, trailing punctuation removed (case untouched)."""
    return _TRAILING.sub("", " ".join(caption.split()))


def compose(first: str, connective: str, second: str) -> str:
    """ "<First> <connective> <second>" from two captions (rules: docs/data.md#order-pairs)."""
    return f"{upper_first(clause(first))} {connective} {lower_first(clause(second))}"


def order_caption(a: str, b: str, connective: str) -> str:
    """A caption saying that ``a`` happens first, then ``b``: "A before B" ... "B after A"."""
    if connective not in ORDER_CONNECTIVES:
        raise ValueError(
            f"unknown connective {connective!r}; choose from {list(ORDER_CONNECTIVES)}"
        )
    return compose(b, "after", a) if connective == "after" else compose(a, connective, b)


def group_name(connective: str) -> str:
    """The ``group`` of an order pair: the connective, spaces as underscores ("followed_by")."""
    return connective.replace(" ", "_")


def caption_problem(caption: str) -> str | None:
    """Why a caption cannot be a clause of an order caption (a ``SKIP_*`` reason), or ``None``."""
    text = clause(caption)
    if not any(ch.isalnum() for ch in text):
        return SKIP_EMPTY
    if _CONNECTIVE.search(text):
        return SKIP_CONNECTIVE
    if _SENTENCE_BREAK.search(text):
        return SKIP_SENTENCES
    return None


# -- audio -----------------------------------------------------------------------------------------


def fade_samples(crossfade_s: float, len_a: int, len_b: int, sample_rate: int) -> int:
    """Crossfade length in samples: ``crossfade_s`` at ``sample_rate``, at most half the shorter clip."""
    return min(int(round(crossfade_s * sample_rate)), min(len_a, len_b) // 2)


def crossfade(a: np.ndarray, b: np.ndarray, n_fade: int, shape: str = "linear") -> np.ndarray:
    """``a`` then ``b``, overlapping by ``n_fade`` samples (layout: docs/data.md#order-pairs)."""
    if shape not in FADE_SHAPES:
        raise ValueError(f"unknown fade shape {shape!r}; choose from {list(FADE_SHAPES)}")
    if not 0 <= n_fade <= min(a.size, b.size):
        raise ValueError(f"n_fade={n_fade} must be in 0..{min(a.size, b.size)} (the shorter clip)")
    out = np.empty(a.size + b.size - n_fade, dtype=np.float32)
    head = a.size - n_fade
    out[:head] = a[:head]
    out[a.size :] = b[n_fade:]
    if n_fade:
        gain = (np.arange(n_fade, dtype=np.float64) + 1) / (n_fade + 1)
        fade_in, fade_out = (
            (np.sin(gain * np.pi / 2), np.cos(gain * np.pi / 2))
            if shape == "equal_power"
            else (gain, 1 - gain)
        )
        out[head : a.size] = a[head:] * fade_out + b[:n_fade] * fade_in
    return out


@dataclass(frozen=True)
class OrderRecipe:
    first: str
    """Source key of A (heard first)."""
    second: str
    """Source key of B (heard second)."""
    crossfade_s: float


@dataclass(frozen=True)
class OrderLayout:
    len_first: int
    len_second: int
    n_fade: int

    @property
    def second_start(self) -> int:
        return self.len_first - self.n_fade

    @property
    def length(self) -> int:
        return self.len_first + self.len_second - self.n_fade


class OrderAudioStore:
    """``AudioStore`` of order clips: key -> A then B crossfaded, rendered from the source store."""

    def __init__(
        self,
        source: AudioStore,
        recipes: dict[str, OrderRecipe],
        sample_rate: int = 48_000,
        fade_shape: str = "linear",
    ) -> None:
        if fade_shape not in FADE_SHAPES:
            raise ValueError(f"unknown fade shape {fade_shape!r}; choose from {list(FADE_SHAPES)}")
        self.source = source
        self.recipes = recipes
        self.sample_rate = sample_rate
        self.fade_shape = fade_shape

    def _recipe(self, key: str) -> OrderRecipe:
        try:
            return self.recipes[key]
        except KeyError:
            raise KeyError(f"order audio store has no clip '{key}'") from None

    def _clips(self, key: str, sample_rate: int) -> tuple[np.ndarray, np.ndarray, int]:
        recipe = self._recipe(key)
        a = np.asarray(self.source.load(recipe.first, sample_rate), dtype=np.float32)
        b = np.asarray(self.source.load(recipe.second, sample_rate), dtype=np.float32)
        return a, b, fade_samples(recipe.crossfade_s, a.size, b.size, sample_rate)

    def layout(self, key: str, sample_rate: int | None = None) -> OrderLayout:
        """Clip lengths and crossfade of ``key`` at ``sample_rate`` (default: the store's rate)."""
        a, b, n_fade = self._clips(key, sample_rate or self.sample_rate)
        return OrderLayout(a.size, b.size, n_fade)

    def load(self, key: str, sample_rate: int) -> np.ndarray:
        a, b, n_fade = self._clips(key, sample_rate)
        return crossfade(a, b, n_fade, self.fade_shape)

    def fingerprint(self, keys: Sequence[str]) -> str | None:
        """sha256 of the recipes of ``keys`` and of the source audio they use.

        The source is fingerprinted as the provenance report does (files by content, other stores
        by their own ``fingerprint``); a source that cannot be fingerprinted gets the rendered
        clips at the store's rate hashed instead.
        """
        digest = hashlib.sha256(f"order:{self.fade_shape}\0".encode())
        for key in keys:
            r = self._recipe(key)
            digest.update(f"{key}\0{r.first}\0{r.second}\0{r.crossfade_s!r}\0".encode())
        sources = unique_in_order(
            k for key in keys for k in (self.recipes[key].first, self.recipes[key].second)
        )
        source = audio_fingerprint(self.source, sources)
        if source is None:
            for key in keys:
                digest.update(self.load(key, self.sample_rate).tobytes())
        else:
            digest.update(source.encode())
        return digest.hexdigest()


# -- synthesis -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clip:
    key: str
    group: str | None
    captions: tuple[str, ...]


def _usable_clips(
    clips: RatedPairs, min_score: float, skipped: SkipReport
) -> dict[str | None, list[_Clip]]:
    captions: dict[str, list[str]] = {}
    meta: dict[str, tuple[str | None, str | None]] = {}
    for index, pair in enumerate(clips):
        where = f"{clips.name}[{index}]: {pair.text!r}"
        if pair.score < min_score:
            skipped.add(SKIP_LOW_SCORE, where)
            continue
        problem = caption_problem(pair.text)
        if problem:
            skipped.add(problem, where)
            continue
        texts = captions.setdefault(pair.audio, [])
        if pair.text in texts:
            skipped.add(SKIP_REPEAT, where)
            continue
        texts.append(pair.text)
        meta.setdefault(pair.audio, (pair.split, pair.group))
    by_split: dict[str | None, list[_Clip]] = {}
    for key, texts in captions.items():
        split, group = meta[key]
        by_split.setdefault(split, []).append(_Clip(key, group, tuple(texts)))
    return by_split


def _can_pair(pool: list[_Clip], distinct_groups: bool) -> bool:
    if len(pool) < 2:
        return False
    if not distinct_groups:
        return True
    groups = [c.group for c in pool]
    return any(g is None for g in groups) or len(set(groups)) >= 2


def _allocate(n: int, weights: list[int]) -> list[int]:
    """``n`` split in proportion to ``weights`` (largest remainder), each at least 1 if n allows."""
    total = sum(weights)
    exact = [n * w / total for w in weights]
    counts = [int(math.floor(x)) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))[
        : n - sum(counts)
    ]:
        counts[i] += 1
    if n >= len(weights):
        for i in range(len(counts)):
            while counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts


def synthesize_order_pairs(
    clips: RatedPairs,
    n_pairs: int,
    connectives: Sequence[str] = ORDER_CONNECTIVES,
    crossfade_s: float = 1.0,
    negatives: bool = True,
    seed: int = 0,
    sample_rate: int = 48_000,
    min_score: float = 1.0,
    distinct_groups: bool = True,
    fade_shape: str = "linear",
    name: str = "order_synthetic",
) -> RatedPairs:
    """``n_pairs`` order clips from pairs of captioned ``clips`` (rules: docs/data.md#order-pairs).

    Each order clip gets its true-order caption with score 1.0 and, with ``negatives``, the
    clause-swapped caption with score 0.0 (so ``2 * n_pairs`` pairs). ``sample_rate`` is the
    store's reference rate (``fingerprint``, ``layout``); ``load`` renders at any rate.
    """
    connectives = tuple(connectives)
    unknown = [c for c in connectives if c not in ORDER_CONNECTIVES]
    if unknown or not connectives or len(set(connectives)) != len(connectives):
        raise ValueError(
            f"connectives must be distinct, from {list(ORDER_CONNECTIVES)}; got {list(connectives)}"
            + (f" (unknown: {unknown})" if unknown else "")
        )
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, (int, np.integer)) or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive integer, got {n_pairs!r}")
    if not (
        isinstance(crossfade_s, (int, float)) and math.isfinite(crossfade_s) and crossfade_s >= 0
    ):
        raise ValueError(f"crossfade_s must be a finite number >= 0, got {crossfade_s!r}")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if fade_shape not in FADE_SHAPES:
        raise ValueError(f"unknown fade shape {fade_shape!r}; choose from {list(FADE_SHAPES)}")

    skipped = SkipReport()
    pools = _usable_clips(clips, min_score, skipped)
    n_clips = sum(len(pool) for pool in pools.values())
    if n_clips < 2:
        raise DataError(
            f"{clips.name}: need at least 2 usable captioned clips for order pairs, found {n_clips} "
            f"({skipped})"
        )
    splits = [s for s in pools if _can_pair(pools[s], distinct_groups)]
    for split in pools:
        if split not in splits:
            skipped.add(
                SKIP_SPLIT,
                f"split {split!r}: {len(pools[split])} usable clip(s)"
                + (" of one group" if distinct_groups and len(pools[split]) > 1 else ""),
            )
    if not splits:
        raise DataError(
            f"{clips.name}: no split has two usable clips"
            + (" of different groups" if distinct_groups else "")
            + f" to pair; usable clips per split: "
            f"{ {s: len(p) for s, p in pools.items()} } ({skipped})"
        )
    splits.sort(key=lambda s: (s is None, s))
    counts = _allocate(int(n_pairs), [len(pools[s]) for s in splits])
    jobs, offset = [], 0
    for split, count in zip(splits, counts):
        jobs += [(split, connectives[(offset + j) % len(connectives)]) for j in range(count)]
        offset += count
    rng = np.random.default_rng(seed)
    jobs = [jobs[i] for i in rng.permutation(len(jobs))]

    recipes: dict[str, OrderRecipe] = {}
    pairs: list[RatedPair] = []
    used: set[tuple[str, str, str]] = set()
    width = max(6, len(str(n_pairs - 1)))
    for index, (split, connective) in enumerate(jobs):
        pool = pools[split]
        for _ in range(1000):
            i, j = rng.integers(len(pool)), rng.integers(len(pool) - 1)
            a, b = pool[i], pool[j + (j >= i)]
            if distinct_groups and a.group is not None and a.group == b.group:
                continue
            text_a, text_b = (
                a.captions[rng.integers(len(a.captions))],
                b.captions[rng.integers(len(b.captions))],
            )
            if clause(text_a).lower() == clause(text_b).lower():
                continue
            caption = order_caption(text_a, text_b, connective)
            if (a.key, b.key, caption) not in used:
                break
        else:
            raise DataError(
                f"{clips.name}: cannot draw {counts[splits.index(split)]} distinct order pairs from the "
                f"{len(pool)} usable clip(s) of split {split!r}; lower n_pairs or give more clips"
            )
        used.add((a.key, b.key, caption))
        key = f"order/{index:0{width}d}"
        recipes[key] = OrderRecipe(a.key, b.key, float(crossfade_s))
        group = group_name(connective)
        pairs.append(RatedPair(audio=key, text=caption, score=1.0, split=split, group=group))
        if negatives:
            pairs.append(
                RatedPair(
                    audio=key,
                    text=order_caption(text_b, text_a, connective),
                    score=0.0,
                    split=split,
                    group=group,
                )
            )
    store = OrderAudioStore(
        clips.audio_store, recipes, sample_rate=int(sample_rate), fade_shape=fade_shape
    )
    return RatedPairs(
        pairs,
        store,
        name=name,
        skipped=skipped,
        group_sets={"order": [group_name(c) for c in connectives]},
    )


# -- mixing ----------------------------------------------------------------------------------------


class ConcatAudioStore:
    """Routes ``"<i>:<key>"`` to ``key`` in the ``i``-th store (the parts of :func:`concat_pairs`)."""

    def __init__(self, stores: Sequence[AudioStore]) -> None:
        self.stores = list(stores)

    @staticmethod
    def namespaced(index: int, key: str) -> str:
        return f"{index}:{key}"

    def route(self, key: str) -> tuple[int, str]:
        prefix, sep, inner = key.partition(":")
        if not sep or not prefix.isdigit() or int(prefix) >= len(self.stores):
            raise KeyError(
                f"mixed audio store has no clip '{key}' (keys are '<part 0..{len(self.stores) - 1}>:<key>')"
            )
        return int(prefix), inner

    def load(self, key: str, sample_rate: int) -> np.ndarray:
        index, inner = self.route(key)
        return self.stores[index].load(inner, sample_rate)

    def fingerprint(self, keys: Sequence[str]) -> str | None:
        """sha256 over the keys and each part's own audio fingerprint; ``None`` if a part has none."""
        by_part: dict[int, list[str]] = {}
        digest = hashlib.sha256()
        for key in keys:
            index, inner = self.route(key)
            by_part.setdefault(index, []).append(inner)
            digest.update(key.encode() + b"\0")
        for index, inner_keys in sorted(by_part.items()):
            part = audio_fingerprint(self.stores[index], inner_keys)
            if part is None:
                return None
            digest.update(f"{index}:{part}\0".encode())
        return digest.hexdigest()


def concat_pairs(*parts: RatedPairs, name: str | None = None) -> RatedPairs:
    """All pairs of ``parts``, in order, audio keys namespaced ``"<part index>:<key>"``.

    Splits, groups, scores and ``num_ratings`` are kept; ``group_sets`` are merged (a name in
    several parts: the union of its groups); skip reports are merged with each reason prefixed by
    its part's name. ``name`` defaults to the part names joined by ``+``.
    """
    if not parts:
        raise ValueError("concat_pairs needs at least one RatedPairs")
    pairs: list[RatedPair] = []
    skipped = SkipReport()
    group_sets: dict[str, list[str]] = {}
    for index, part in enumerate(parts):
        if not isinstance(part, RatedPairs):
            raise TypeError(
                f"concat_pairs: part {index} is a {type(part).__name__}, not RatedPairs"
            )
        pairs += [
            RatedPair(
                audio=ConcatAudioStore.namespaced(index, p.audio),
                text=p.text,
                score=p.score,
                split=p.split,
                group=p.group,
                num_ratings=p.num_ratings,
            )
            for p in part
        ]
        for set_name, groups in part.group_sets.items():
            group_sets[set_name] = unique_in_order([*group_sets.get(set_name, []), *groups])
        for reason, count in part.skipped.counts.items():
            skipped.counts[f"{part.name}: {reason}"] += count
            skipped.examples.setdefault(
                f"{part.name}: {reason}", part.skipped.examples.get(reason, "")
            )
    return RatedPairs(
        pairs,
        ConcatAudioStore([p.audio_store for p in parts]),
        name=name or "+".join(p.name for p in parts),
        skipped=skipped,
        group_sets=group_sets,
    )


# -- for configs -----------------------------------------------------------------------------------


def order_pairs_from_events(
    n_events: int = 120,
    n_pairs: int = 600,
    duration_s: float = 2.0,
    crossfade_s: float = 1.0,
    connectives: Sequence[str] = ORDER_CONNECTIVES,
    negatives: bool = True,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    fade_shape: str = "linear",
) -> RatedPairs:
    """Order pairs over :func:`~humanclap.data.synthetic.events.synthetic_events` clips (offline).

    The events are split by clip (``val_fraction``, ``test_fraction``) and the order pairs follow
    their clips' splits.
    """
    from humanclap.data.synthetic.events import SAMPLE_RATE, synthetic_events

    events = synthetic_events(
        n_clips=n_events,
        seed=seed,
        duration_s=duration_s,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
    return synthesize_order_pairs(
        events,
        n_pairs=n_pairs,
        connectives=connectives,
        crossfade_s=crossfade_s,
        negatives=negatives,
        seed=seed,
        sample_rate=SAMPLE_RATE,
        fade_shape=fade_shape,
    )


def with_order_pairs(
    base: RatedPairs,
    source: RatedPairs | None = None,
    name: str | None = None,
    **order: object,
) -> RatedPairs:
    """``base`` mixed (:func:`concat_pairs`) with order pairs.

    The order pairs are drawn from ``source`` (captioned clips, e.g. ``read_captions``) with
    :func:`synthesize_order_pairs`'s options if given, else from generated events with
    :func:`order_pairs_from_events`'s options (``n_events``, ``duration_s``, ...); ``order`` holds
    those options (``n_pairs``, ``crossfade_s``, ``connectives``, ``negatives``, ``seed`` ...).
    """
    if source is None:
        return concat_pairs(base, order_pairs_from_events(**order), name=name)
    return concat_pairs(base, synthesize_order_pairs(source, **order), name=name)


__all__ = [
    "ORDER_CONNECTIVES",
    "ConcatAudioStore",
    "OrderAudioStore",
    "OrderLayout",
    "OrderRecipe",
    "caption_problem",
    "clause",
    "compose",
    "concat_pairs",
    "crossfade",
    "fade_samples",
    "order_caption",
    "order_pairs_from_events",
    "synthesize_order_pairs",
    "with_order_pairs",
]
