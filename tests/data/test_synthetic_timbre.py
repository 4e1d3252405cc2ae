"""The synthetic instruments table behind recipe=timbre: complete, split by instrument, ratings that
follow the measured properties, and the two instrument groups."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pytest
import scipy.stats

from humanclap.data.synthetic.sounds import SAMPLE_RATE, measure
from humanclap.data.synthetic.timbre import TIMBRE_DESCRIPTORS, synthetic_timbre_ratings


@pytest.fixture(scope="module")
def table():
    return synthetic_timbre_ratings(n_instruments=24, listeners=5, rating_noise=0.0, seed=2)


def test_every_instrument_rated_on_every_descriptor_once(table):
    cells = Counter((p.group, p.text) for p in table)
    assert len(cells) == 24 * len(TIMBRE_DESCRIPTORS) == len(table)
    assert set(cells.values()) == {1}
    # One recording per instrument, named by the instrument.
    assert all(p.audio == p.group for p in table)
    assert {p.text for p in table} == set(TIMBRE_DESCRIPTORS)


def test_split_by_instrument_and_groups(table):
    split_of = defaultdict(set)
    for p in table:
        split_of[p.group].add(p.split)
    assert all(len(s) == 1 for s in split_of.values())
    assert Counter(next(iter(s)) for s in split_of.values()) == {"validation": 6, "train": 18}
    assert set(table.group_sets) == {"harmonic", "breathy"}
    assert sorted(sum(table.group_sets.values(), [])) == sorted(split_of)
    assert all(
        name.startswith(group) for group, names in table.group_sets.items() for name in names
    )


def test_ratings_follow_the_measured_properties(table):
    """Noise-free: 'bright' ranks instruments by centroid, 'raspy' by flatness; opposites sum to 1."""
    score = {(p.group, p.text): p.score for p in table}
    names = sorted({p.group for p in table})
    features = {n: measure(table.load_audio(n, SAMPLE_RATE), SAMPLE_RATE) for n in names}
    bright = [score[n, "bright"] for n in names]
    raspy = [score[n, "raspy"] for n in names]
    assert (
        scipy.stats.spearmanr(
            bright, [math.log(features[n]["centroid_hz"]) for n in names]
        ).statistic
        > 0.95
    )
    assert (
        scipy.stats.spearmanr(raspy, [math.log(features[n]["flatness"]) for n in names]).statistic
        > 0.95
    )
    for n in names:  # rounding to the 1-9 scale can move each side by half a step
        assert score[n, "bright"] + score[n, "dark"] == pytest.approx(1.0, abs=1 / 8 + 1e-9)
    # Breathy instruments are rated raspier on average.
    by_group = {
        g: np.mean([score[n, "raspy"] for n in members]) for g, members in table.group_sets.items()
    }
    assert by_group["breathy"] > by_group["harmonic"]
    assert all(0.0 <= p.score <= 1.0 for p in table)


def test_deterministic_and_template():
    a = synthetic_timbre_ratings(
        n_instruments=8, seed=5, template="a {descriptor} sound", descriptors=["bright"]
    )
    b = synthetic_timbre_ratings(
        n_instruments=8, seed=5, template="a {descriptor} sound", descriptors=["bright"]
    )
    assert [(p.audio, p.text, p.score) for p in a] == [(p.audio, p.text, p.score) for p in b]
    assert {p.text for p in a} == {"a bright sound"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"descriptors": ["sparkly"]}, "unknown descriptor"),
        ({"template": "a sound"}, "must contain"),
        ({"n_instruments": 3}, "n_instruments >= 4"),
        ({"n_instruments": 8, "val_fraction": 1.2}, "bad split fractions"),
        (
            {"n_instruments": 4, "val_fraction": 0.5, "test_fraction": 0.4},
            "leave no training instruments",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic_timbre_ratings(**kwargs)
