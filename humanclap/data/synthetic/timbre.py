"""The embedded default for ``recipe=timbre``: a synthetic instruments × descriptors ratings table.

Shaped like the CCMusic data of timbre-semantics §2.2, with ratings that follow properties measured
on each generated instrument. See docs/data.md#timbre-table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from humanclap.data.pairs import RatedPair, RatedPairs, rescale
from humanclap.data.synthetic.sounds import (
    SAMPLE_RATE,
    SoundRecipe,
    SyntheticAudioStore,
    assign_splits,
    measure,
    property_ratings,
)

# descriptor -> (property in synthetic.property_ratings, True if the descriptor is its high end)
TIMBRE_DESCRIPTORS: dict[str, tuple[str, bool]] = {
    "bright": ("brightness", True),
    "dark": ("brightness", False),
    "raspy": ("noisiness", True),
    "pure": ("noisiness", False),
    "thin": ("pitch", True),
    "full": ("pitch", False),
}
GROUPS = {"harmonic": (0.0, 0.25), "breathy": (0.25, 0.8)}  # range of the noise mix
SCALE = (1, 9)


def synthetic_timbre_ratings(
    n_instruments: int = 48,
    descriptors: Sequence[str] = tuple(TIMBRE_DESCRIPTORS),
    template: str = "{descriptor}",
    listeners: int = 5,
    rating_noise: float = 0.8,
    val_fraction: float = 0.25,
    test_fraction: float = 0.0,
    duration_s: float = 1.0,
    seed: int = 0,
) -> RatedPairs:
    """Every instrument rated on every descriptor; split by instrument, ``group`` = instrument name.

    ``RatedPairs.group_sets`` maps each instrument group ("harmonic", "breathy") to its
    instruments, which the relevance and timbre-correlation probes report separately.
    """
    unknown = [d for d in descriptors if d not in TIMBRE_DESCRIPTORS]
    if unknown or not descriptors:
        raise ValueError(f"unknown descriptor(s) {unknown}; choose from {list(TIMBRE_DESCRIPTORS)}")
    if "{descriptor}" not in template:
        raise ValueError(f"template {template!r} must contain {{descriptor}}")
    if n_instruments < 4 or listeners < 1 or rating_noise < 0 or duration_s <= 0:
        raise ValueError(
            "synthetic_timbre_ratings needs n_instruments >= 4, listeners >= 1, rating_noise >= 0, "
            "duration_s > 0"
        )
    rng = np.random.default_rng(seed)
    split_of = assign_splits(n_instruments, val_fraction, test_fraction, rng, "instruments")
    group_names = list(GROUPS)
    recipes, group_of = {}, {}
    for index in range(n_instruments):
        group = group_names[index % len(group_names)]
        low, high = GROUPS[group]
        name = f"{group}-{index:03d}"
        recipes[name] = SoundRecipe(
            f0=float(np.exp(rng.uniform(math.log(80.0), math.log(1600.0)))),
            rolloff=float(rng.uniform(0.3, 3.0)),
            noise_mix=float(rng.uniform(low, high)),
            level_db=float(rng.uniform(-26.0, -14.0)),
            seed=int(rng.integers(2**31)),
        )
        group_of[name] = group
    store = SyntheticAudioStore(recipes, duration_s)
    pairs = []
    for index, (name, recipe) in enumerate(recipes.items()):
        ideal = property_ratings(
            recipe.f0, measure(store.load(name, SAMPLE_RATE), SAMPLE_RATE)
        )  # 0-10
        for descriptor in descriptors:
            prop, high_end = TIMBRE_DESCRIPTORS[descriptor]
            on_scale = (
                SCALE[0]
                + (SCALE[1] - SCALE[0]) * (ideal[prop] if high_end else 10 - ideal[prop]) / 10
            )
            votes = np.clip(
                np.round(on_scale + rating_noise * rng.standard_normal(listeners)), *SCALE
            )
            score = rescale(float(votes.mean()), *SCALE, where=f"synthetic instrument {name}")
            pairs.append(
                RatedPair(
                    audio=name,
                    text=template.format(descriptor=descriptor),
                    score=score,
                    split=split_of[index],
                    group=name,
                    num_ratings=listeners,
                )
            )
    group_sets = {g: [n for n in recipes if group_of[n] == g] for g in group_names}
    return RatedPairs(pairs, store, name="synthetic_timbre", group_sets=group_sets)
