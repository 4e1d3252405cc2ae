"""The generated captioned sound-event set: determinism, balance, splits, captions, and that the
classes are told apart by simple measurements of the rendered audio."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from humanclap.data.synthetic.events import (
    EVENT_CLASSES,
    SAMPLE_RATE,
    EventRecipe,
    synthetic_events,
)
from humanclap.data.synthetic.order import caption_problem

SR = SAMPLE_RATE


@pytest.fixture(scope="module")
def events():
    return synthetic_events(n_clips=60, seed=1)


def _keys(pairs):
    return list(dict.fromkeys(p.audio for p in pairs))


def test_shape_captions_groups_and_scores(events):
    assert events.name == "synthetic_events" and len(events) == 60
    assert Counter(p.group for p in events) == {kind: 6 for kind in EVENT_CLASSES}  # balanced
    for pair in events:
        assert pair.score == 1.0 and pair.text in EVENT_CLASSES[pair.group]
        assert events.audio_store.recipes[pair.audio].kind == pair.group
    wave = events.load_audio(events[0].audio, SR)
    assert wave.dtype == np.float32 and wave.shape == (2 * SR,)
    assert all(p.audio == f"events/{i:05d}" for i, p in enumerate(events))
    # Several caption variants are used across the clips of a class.
    assert all(len({p.text for p in events if p.group == kind}) >= 2 for kind in EVENT_CLASSES)


def test_no_caption_has_a_temporal_connective_or_punctuation_only():
    for captions in EVENT_CLASSES.values():
        assert len(captions) >= 3
        for caption in captions:
            assert caption_problem(caption) is None, caption
    all_captions = [c for captions in EVENT_CLASSES.values() for c in captions]
    assert len(set(all_captions)) == len(all_captions)


def test_determinism_by_seed(events):
    again = synthetic_events(n_clips=60, seed=1)
    other = synthetic_events(n_clips=60, seed=2)
    assert again.pairs == events.pairs
    keys = _keys(events)
    assert all(np.array_equal(events.load_audio(k, SR), again.load_audio(k, SR)) for k in keys)
    assert events.audio_store.fingerprint(keys) == again.audio_store.fingerprint(keys)
    assert other.pairs != events.pairs
    assert other.audio_store.fingerprint(keys) != events.audio_store.fingerprint(keys)


def test_split_by_clip_with_fractions(events):
    splits = defaultdict(set)
    for pair in events:
        splits[pair.audio].add(pair.split)
    assert all(len(s) == 1 for s in splits.values())
    assert Counter(next(iter(s)) for s in splits.values()) == {
        "train": 36,
        "validation": 12,
        "test": 12,
    }
    several = synthetic_events(
        n_clips=20, captions_per_clip=3, val_fraction=0.25, test_fraction=0.0, seed=0
    )
    assert len(several) == 60 and several.splits() == ["train", "validation"]
    for key in _keys(several):
        texts = [p.text for p in several if p.audio == key]
        assert len(set(texts)) == 3 and len({p.split for p in several if p.audio == key}) == 1


def test_levels_and_silence_around_the_event(events):
    for key in _keys(events):
        wave = events.load_audio(key, SR).astype(np.float64)
        assert np.isfinite(wave).all()
        assert 0.003 < np.abs(wave).max() <= 0.9 + 1e-6
        active = np.flatnonzero(np.abs(wave) > 0)
        assert wave[0] == 0.0 and wave[-1] == 0.0  # event inside the clip, silence around
        rms_db = 20 * np.log10(np.sqrt(np.mean(wave[active[0] : active[-1] + 1] ** 2)))
        assert -36.0 < rms_db < -13.0


def _features(wave: np.ndarray) -> np.ndarray:
    """Log energy in 12 log-spaced bands (normalised) + active duration + centroid trend."""
    wave = wave.astype(np.float64)
    power = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(wave.size, 1 / SR)
    edges = np.geomspace(30, 20_000, 13)
    bands = np.log(
        np.array([power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in zip(edges, edges[1:])])
        + 1e-9
    )
    bands -= bands.max()
    frames = wave[: wave.size // 960 * 960].reshape(-1, 960)
    energy = (frames**2).sum(axis=1)
    active = energy > 1e-3 * energy.max()
    spectra = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    centroid = (spectra * np.fft.rfftfreq(960, 1 / SR)).sum(axis=1) / (spectra.sum(axis=1) + 1e-20)
    idx = np.flatnonzero(active)
    half = idx[: idx.size // 2], idx[idx.size // 2 :]
    trend = (
        np.log(centroid[half[1]].mean() + 1) - np.log(centroid[half[0]].mean() + 1)
        if idx.size > 1
        else 0.0
    )
    return np.concatenate([bands / 5, [active.sum() / active.size * 4, 3 * trend]])


def test_classes_are_told_apart_by_simple_features():
    """A nearest-centroid classifier on hand-made features, fitted on train clips, labels the
    held-out clips: the classes differ audibly (what a model has to learn before their order)."""
    events = synthetic_events(n_clips=120, seed=3)
    features = {k: _features(events.load_audio(k, SR)) for k in _keys(events)}
    kind = {p.audio: p.group for p in events}
    split = {p.audio: p.split for p in events}
    centroids = {
        c: np.mean([features[k] for k in features if kind[k] == c and split[k] == "train"], axis=0)
        for c in EVENT_CLASSES
    }
    held_out = [k for k in features if split[k] != "train"]
    correct = sum(
        min(centroids, key=lambda c: np.linalg.norm(features[k] - centroids[c])) == kind[k]
        for k in held_out
    )
    assert correct / len(held_out) >= 0.9


@pytest.mark.parametrize(
    "kind, check",
    [
        ("hum", lambda f, w: f < 300),
        ("beep", lambda f, w: f > 1200),
        ("bell", lambda f, w: 300 < f < 2000),
    ],
)
def test_dominant_frequency_of_tonal_classes(kind, check):
    events = synthetic_events(n_clips=30, classes=[kind], seed=4)
    for key in _keys(events):
        wave = events.load_audio(key, SR)
        spectrum = np.abs(np.fft.rfft(wave))
        assert check(np.argmax(spectrum) * SR / wave.size, wave), key


def test_chirps_rise_and_falling_tones_fall():
    events = synthetic_events(n_clips=10, classes=["rising_chirp", "falling_tone"], seed=5)
    for key in _keys(events):
        wave = events.load_audio(key, SR)
        active = np.flatnonzero(np.abs(wave) > 1e-4)
        segment = wave[active[0] : active[-1]]
        first, last = segment[: segment.size // 4], segment[-segment.size // 4 :]
        peak = [np.argmax(np.abs(np.fft.rfft(x))) * SR / x.size for x in (first, last)]
        rising = events.audio_store.recipes[key].kind == "rising_chirp"
        assert (peak[1] > 1.5 * peak[0]) if rising else (peak[0] > 1.5 * peak[1]), (key, peak)


def test_other_sample_rates_and_durations_render_the_same_event():
    events = synthetic_events(n_clips=10, classes=["beep"], seed=6)
    key = events[0].audio
    low = events.load_audio(key, 16_000)
    high = events.load_audio(key, SR)
    assert low.shape == (32_000,)
    f_low = np.argmax(np.abs(np.fft.rfft(low))) * 16_000 / low.size
    f_high = np.argmax(np.abs(np.fft.rfft(high))) * SR / high.size
    assert f_low == pytest.approx(f_high, abs=2.0)
    short = synthetic_events(
        n_clips=20, duration_s=0.3, seed=0
    )  # events longer than the clip are shortened
    for k in _keys(short):
        wave = short.load_audio(k, SR)
        assert wave.shape == (int(0.3 * SR),) and np.abs(wave).max() > 0
    recipe = EventRecipe(
        kind="thud", pitch=100.0, variation=0.5, length_s=0.3, onset=0.5, level_db=-20, seed=1
    )
    assert np.array_equal(recipe.render(1.0, SR), recipe.render(1.0, SR))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_clips=1),
        dict(duration_s=0),
        dict(classes=["purr"]),
        dict(classes=[]),
        dict(captions_per_clip=0),
        dict(captions_per_clip=4),
        dict(val_fraction=0.0),
        dict(n_clips=3, val_fraction=0.5, test_fraction=0.4),
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        synthetic_events(**{"n_clips": 20, **kwargs})
