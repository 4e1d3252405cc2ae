"""Rated audio-text pairs: the unit of data for training and for the relevance probe.

A ``RatedPair`` carries the human score a ∈ [0, 1] of human-clap §III-A ("we rescaled the
subjective score to the range of 0 to 1"), already averaged over the listeners who rated the pair.
Audio is referenced by a key that an ``AudioStore`` turns into a mono float32 waveform at the
backbone's sample rate, so file-backed data (RELATE, manifests) and generated data (the synthetic
default) look the same to datasets and probes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from humanclap.errors import HumanClapError


class DataError(HumanClapError, ValueError):
    """A bad input file, row or value; the message names the file and the row."""


SPLITS = ("train", "validation", "test")
"""The split names a data file may give; the datamodule trains on 'train' and validates on
'validation', ``humanclap.evaluate`` measures 'test' by default."""


@dataclass(frozen=True)
class RatedPair:
    audio: str
    """Key of the clip in the pair set's ``AudioStore`` (a resolved path for file data)."""
    text: str
    score: float
    """Mean human rating rescaled to [0, 1]."""
    split: str | None = None
    group: str | None = None
    """Subset label for per-subset metrics, e.g. 'natural', 'audioldm2' (human-clap Table II)."""
    num_ratings: int = 1
    source: str | None = field(default=None, compare=False)
    """Where the pair was read, e.g. "ratings.csv, line 17" (averaged pairs: their first row), so
    errors found later (a clip that cannot be decoded) name the line to fix. Not part of equality."""


class AudioStore(Protocol):
    """Maps an audio key to a mono float32 waveform at ``sample_rate``."""

    def load(self, key: str, sample_rate: int) -> np.ndarray: ...


@dataclass
class SkipReport:
    """Rows left out on purpose, counted by reason, so nothing disappears silently."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        if not self.counts:
            return "no rows skipped"
        return "; ".join(
            f"{n} x {reason} (e.g. {self.examples[reason]})" for reason, n in self.counts.items()
        )


@dataclass
class RatedPairs(Sequence[RatedPair]):
    """An ordered set of rated pairs with the store that holds their audio."""

    pairs: list[RatedPair]
    audio_store: AudioStore
    name: str = "pairs"
    skipped: SkipReport = field(default_factory=SkipReport)
    group_sets: dict[str, list[str]] = field(default_factory=dict)
    """Named unions of groups the data defines, e.g. RELATE's ``synthesized`` = all generators."""

    def __post_init__(self) -> None:
        for index, pair in enumerate(self.pairs):
            validate_pair(pair, f"{self.name}[{index}]")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index):  # type: ignore[override]
        return self.pairs[index]

    def __iter__(self) -> Iterator[RatedPair]:
        return iter(self.pairs)

    def splits(self) -> list[str]:
        return sorted({p.split for p in self.pairs if p.split is not None})

    def select(self, split: str) -> RatedPairs:
        """The pairs of one split; an unknown split is an error that lists the known ones."""
        chosen = [p for p in self.pairs if p.split == split]
        if not chosen:
            raise DataError(
                f"{self.name}: no pairs in split '{split}'; splits present: {self.splits() or 'none'}"
            )
        return self._with(chosen, name=f"{self.name}:{split}")

    def split_by_audio(self, val_fraction: float, seed: int = 0) -> RatedPairs:
        """Assign 'train'/'validation' to pairs without a split, keeping all pairs of a clip together."""
        if not 0 < val_fraction < 1:
            raise DataError(f"{self.name}: val_fraction must be in (0, 1), got {val_fraction}")
        clips = unique_in_order(p.audio for p in self.pairs if p.split is None)
        if len(clips) < 2:
            raise DataError(
                f"{self.name}: need at least 2 clips without a split to make a validation split"
            )
        order = np.random.default_rng(seed).permutation(len(clips))
        n_val = min(len(clips) - 1, max(1, int(round(val_fraction * len(clips)))))
        validation = {clips[i] for i in order[:n_val]}
        pairs = [
            p
            if p.split is not None
            else replace(p, split="validation" if p.audio in validation else "train")
            for p in self.pairs
        ]
        return self._with(pairs, name=self.name)

    def _with(self, pairs: list[RatedPair], name: str) -> RatedPairs:
        return RatedPairs(
            pairs, self.audio_store, name=name, skipped=self.skipped, group_sets=self.group_sets
        )

    def load_audio(self, key: str, sample_rate: int) -> np.ndarray:
        return self.audio_store.load(key, sample_rate)


def validate_pair(pair: RatedPair, where: str) -> None:
    if not isinstance(pair.text, str) or not pair.text.strip():
        raise DataError(f"{where}: empty text")
    if not isinstance(pair.audio, str) or not pair.audio:
        raise DataError(f"{where}: empty audio reference")
    if not (
        isinstance(pair.score, (int, float))
        and math.isfinite(pair.score)
        and 0.0 <= pair.score <= 1.0
    ):
        raise DataError(f"{where}: score {pair.score!r} is not a finite number in [0, 1]")


def rescale(score: float, low: float, high: float, where: str) -> float:
    """Map a rating on the declared scale [low, high] to [0, 1]; refuse NaN and out-of-range."""
    if not high > low:
        raise DataError(f"{where}: score range [{low}, {high}] is empty")
    if not math.isfinite(score):
        raise DataError(f"{where}: score is {score!r}")
    if not low <= score <= high:
        raise DataError(f"{where}: score {score} outside the declared range [{low}, {high}]")
    return (score - low) / (high - low)


COMMON_SCALES = ((0, 1), (1, 5), (0, 5), (1, 7), (1, 9), (1, 10), (0, 10), (0, 100))
"""Rating scales a score-range hint may suggest, narrowest first."""


def check_scale(ratings: Sequence[tuple[str, float]], low: float, high: float, option: str) -> None:
    """Refuse ratings that cannot be on the declared scale [low, high], saying which scale fits.

    ``ratings``: (where, rating) of every row; ``option``: the override that declares the scale,
    e.g. ``data.pairs.score_range``. Errors:

    * a rating outside [low, high]: the first is named, with how many are outside; when most are,
      the narrowest of ``COMMON_SCALES`` holding them all is suggested (0-100 data declared 0-10);
    * every rating in [0, 1], not all 0, while the scale runs from 0 (or below) to 5 or more: 0-1
      data read as 0-10 would train as scores of at most 0.1. All-zero data reads the same on
      either scale and passes.
    """
    for where, rating in ratings:
        if not math.isfinite(rating) or not high > low:
            rescale(rating, low, high, where)  # raises the plain error: NaN, inf, empty range
    outside = [(where, rating) for where, rating in ratings if not low <= rating <= high]
    if outside:
        where, rating = outside[0]
        message = (
            f"{where}: score {rating} outside the declared range [{low}, {high}]; "
            f"{len(outside)} of {len(ratings)} ratings are outside it"
        )
        values = [rating for _, rating in ratings]
        fits = [
            scale for scale in COMMON_SCALES if scale[0] <= min(values) and max(values) <= scale[1]
        ]
        if 2 * len(outside) > len(ratings) and fits:
            a, b = fits[0]
            message += (
                f". They span {min(values):g} to {max(values):g}: "
                f"if that is a {a}-{b} scale, pass '{option}=[{a},{b}]'"
            )
        raise DataError(message)
    if not ratings:
        return
    where, top = max(ratings, key=lambda item: item[1])
    if low <= 0 and high >= 5 and 0 < top <= 1 and all(rating >= 0 for _, rating in ratings):
        raise DataError(
            f"{where}: the highest of all {len(ratings)} ratings is {top:g}, but the declared score range is "
            f"[{low}, {high}], so the ratings would train as scores of at most {(top - low) / (high - low):.2g}. "
            f"If they are on a 0-1 scale, pass '{option}=[0,1]'"
        )


def unique_in_order(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
