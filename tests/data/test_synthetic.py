"""The embedded synthetic data set: determinism, splits, the rating grid, and that ratings follow
properties measured independently (scipy) on the rendered audio."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import scipy.signal
import scipy.stats

from humanclap.data.synthetic.sounds import (
    DESCRIPTORS,
    SAMPLE_RATE,
    TEMPLATES,
    SoundRecipe,
    measure,
    synthetic_pairs,
)

SR = SAMPLE_RATE


def _audio(pairs, key):
    return pairs.audio_store.load(key, SR)


def _keys(pairs) -> list[str]:
    return list(dict.fromkeys(p.audio for p in pairs))


# -- determinism, splits, grid ---------------------------------------------------------------------


def test_same_seed_same_data_other_seed_other_data():
    first = synthetic_pairs(n_sounds=12, texts_per_sound=3, seed=3)
    again = synthetic_pairs(n_sounds=12, texts_per_sound=3, seed=3)
    other = synthetic_pairs(n_sounds=12, texts_per_sound=3, seed=4)
    assert first.pairs == again.pairs
    assert all(np.array_equal(_audio(first, k), _audio(again, k)) for k in _keys(first))
    assert first.pairs != other.pairs
    assert _keys(first) == _keys(
        other
    )  # same keys 'synthetic/00000'..., different sounds behind them
    assert not any(np.allclose(_audio(first, k), _audio(other, k)) for k in _keys(first))
    wave = _audio(first, _keys(first)[0])
    assert wave.dtype == np.float32 and wave.shape == (SR,)


def test_splits_are_by_sound_and_respect_fractions():
    pairs = synthetic_pairs(
        n_sounds=20, texts_per_sound=3, val_fraction=0.25, test_fraction=0.15, seed=1
    )
    assert len(pairs) == 20 * 3
    splits_of = defaultdict(set)
    for pair in pairs:
        splits_of[pair.audio].add(pair.split)
    assert len(splits_of) == 20
    assert all(len(s) == 1 for s in splits_of.values())  # no clip in two splits
    sounds_per_split = defaultdict(int)
    for (split,) in splits_of.values():
        sounds_per_split[split] += 1
    assert dict(sounds_per_split) == {"validation": 5, "test": 3, "train": 12}
    assert pairs.splits() == ["test", "train", "validation"]
    # select keeps the audio store: the validation split's clips load.
    validation = pairs.select("validation")
    assert len(validation) == 15 and _audio(validation, validation[0].audio).shape == (SR,)

    default = synthetic_pairs(n_sounds=10, texts_per_sound=1)
    assert sorted(p.split for p in default) == ["train"] * 8 + ["validation"] * 2
    tiny = synthetic_pairs(n_sounds=2, texts_per_sound=1, val_fraction=0.1)
    assert sorted(p.split for p in tiny) == ["train", "validation"]  # at least one validation sound


@pytest.mark.parametrize("listeners", [1, 3, 5])
def test_scores_lie_on_the_listener_grid(listeners):
    pairs = synthetic_pairs(
        n_sounds=15, texts_per_sound=5, listeners=listeners, rating_noise=1.5, seed=2
    )
    grid = 10 * listeners  # mean of `listeners` integer votes 0..10, rescaled by 1/10
    scores = np.array([p.score for p in pairs])
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    assert np.allclose(scores * grid, np.round(scores * grid), atol=1e-9)
    assert len(set(np.round(scores * grid))) > 5  # not a degenerate grid
    assert all(p.num_ratings == listeners for p in pairs)


def test_texts_describe_their_group_and_are_distinct_per_sound():
    pairs = synthetic_pairs(n_sounds=6, texts_per_sound=32, seed=5)
    expected = {
        template.format(d=word)
        for words in DESCRIPTORS.values()
        for word in words
        for template in TEMPLATES
    }
    assert len(expected) == 32
    for key in _keys(pairs):
        texts = [p.text for p in pairs if p.audio == key]
        assert sorted(texts) == sorted(expected)  # all 32 texts, each once
    for pair in pairs:
        assert any(word in pair.text for word in DESCRIPTORS[pair.group])


# -- ratings follow measured properties ------------------------------------------------------------

POLES = {
    "bright": "brightness",
    "dark": "brightness",
    "high-pitched": "pitch",
    "low-pitched": "pitch",
    "loud": "loudness",
    "quiet": "loudness",
    "noisy": "noisiness",
    "pure": "noisiness",
}


def _independent_properties(wave: np.ndarray) -> dict[str, float]:
    """Welch PSD based centroid and flatness, RMS from the samples (not humanclap's `measure`)."""
    freqs, psd = scipy.signal.welch(wave.astype(np.float64), fs=SR, nperseg=2048)
    freqs, psd = freqs[1:], psd[1:]  # without the DC bin
    return {
        "centroid": float(np.sum(freqs * psd) / np.sum(psd)),
        "flatness": float(scipy.stats.gmean(psd) / np.mean(psd)),
        "rms_db": float(20 * np.log10(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))),
    }


def test_mean_ratings_follow_measured_properties():
    pairs = synthetic_pairs(n_sounds=40, texts_per_sound=32, seed=11)
    ratings = defaultdict(lambda: defaultdict(list))
    for pair in pairs:
        (word,) = [w for w in POLES if w in pair.text.split()]
        assert POLES[word] == pair.group
        ratings[word][pair.audio].append(pair.score)
    keys = _keys(pairs)
    measured = {key: _independent_properties(_audio(pairs, key)) for key in keys}
    properties = {
        "brightness": [measured[k]["centroid"] for k in keys],
        "pitch": [pairs.audio_store.recipes[k].f0 for k in keys],
        "loudness": [measured[k]["rms_db"] for k in keys],
        "noisiness": [measured[k]["flatness"] for k in keys],
    }
    for attribute, (first, second) in DESCRIPTORS.items():
        mean_first = [np.mean(ratings[first][k]) for k in keys]
        mean_second = [np.mean(ratings[second][k]) for k in keys]
        rho_first = scipy.stats.spearmanr(properties[attribute], mean_first).statistic
        rho_second = scipy.stats.spearmanr(properties[attribute], mean_second).statistic
        assert rho_first > 0.85, (first, rho_first)
        assert rho_second < -0.85, (second, rho_second)


# -- measure on analytic signals -------------------------------------------------------------------


def test_measure_on_analytic_signals():
    t = np.arange(SR) / SR
    sine = np.sin(2 * np.pi * 1000.0 * t)  # exactly 1000 periods: all power in one FFT bin
    features = measure(sine, SR)
    assert features["centroid_hz"] == pytest.approx(1000.0, rel=1e-9)
    assert features["flatness"] < 1e-10
    assert features["rms_db"] == pytest.approx(
        20 * math.log10(1 / math.sqrt(2)), abs=1e-6
    )  # -3.0103 dBFS
    assert features["rms_db"] == pytest.approx(-3.0103, abs=1e-4)

    # White noise: periodogram bins are exponential, so geometric / arithmetic mean -> exp(-γ) = 0.5615.
    noise = np.random.default_rng(0).standard_normal(SR)
    noisy = measure(noise, SR)
    assert noisy["flatness"] > 0.5
    assert noisy["flatness"] == pytest.approx(math.exp(-np.euler_gamma), abs=0.02)
    assert noisy["centroid_hz"] == pytest.approx(
        SR / 4, rel=0.02
    )  # flat spectrum: middle of 0..Nyquist
    assert noisy["rms_db"] == pytest.approx(0.0, abs=0.1)

    assert measure(np.full(1000, 0.5), SR)["rms_db"] == pytest.approx(
        20 * math.log10(0.5), abs=1e-9
    )


# -- SoundRecipe.render ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "duration_s, sample_rate", [(1.0, 48_000), (0.75, 48_000), (0.5, 16_000), (0.123, 44_100)]
)
def test_render_duration_and_fundamental(duration_s, sample_rate):
    recipe = SoundRecipe(f0=443.3, rolloff=1.0, noise_mix=0.0, level_db=-20.0, seed=5)
    wave = recipe.render(duration_s, sample_rate)
    n = int(round(duration_s * sample_rate))
    assert wave.dtype == np.float32 and wave.shape == (n,)
    assert wave[0] == 0.0 and wave[-1] == 0.0  # fades in and out
    spectrum = np.abs(np.fft.rfft(wave.astype(np.float64)))
    peak = int(np.argmax(spectrum))
    f0_bin = round(443.3 * n / sample_rate)  # f0 rounded to the FFT bin spacing sample_rate / n
    assert peak == f0_bin
    assert peak * sample_rate / n == pytest.approx(443.3, abs=sample_rate / n / 2)
    # Harmonic k has amplitude k ** -rolloff.
    assert spectrum[2 * peak] / spectrum[peak] == pytest.approx(2**-1.0, rel=0.02)
    assert spectrum[3 * peak] / spectrum[peak] == pytest.approx(3**-1.0, rel=0.02)


@pytest.mark.parametrize("noise_mix", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("level_db", [-6.0, -30.0])
def test_render_level(noise_mix, level_db):
    wave = SoundRecipe(
        f0=300.0, rolloff=1.5, noise_mix=noise_mix, level_db=level_db, seed=3
    ).render(1.0, SR)
    rms_db = 20 * np.log10(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
    # RMS is set to level_db before the 10 ms linear fades; the fades remove on average
    # 2 * fade * (1 - mean(ramp^2)) samples' worth of power.
    fade = int(0.01 * SR)
    ramp = np.linspace(0, 1, fade)
    lost = 2 * fade * (1 - np.mean(ramp**2)) / SR
    assert rms_db == pytest.approx(level_db + 10 * math.log10(1 - lost), abs=0.01)
    assert rms_db < level_db


def test_store_renders_other_sample_rates_exactly():
    pairs = synthetic_pairs(n_sounds=3, texts_per_sound=1)
    key = pairs[0].audio
    assert pairs.load_audio(key, 16_000).shape == (16_000,)
    assert np.array_equal(
        pairs.load_audio(key, 16_000), pairs.audio_store.recipes[key].render(1.0, 16_000)
    )
    with pytest.raises(KeyError, match="no clip"):
        pairs.load_audio("synthetic/99999", SR)


# -- argument checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_sounds=1),
        dict(texts_per_sound=0),
        dict(listeners=0),
        dict(val_fraction=0.0),
        dict(val_fraction=1.0),
        dict(val_fraction=-0.2),
        dict(test_fraction=-0.1),
        dict(test_fraction=1.0),
        dict(val_fraction=0.5, test_fraction=0.5),
        dict(val_fraction=0.7, test_fraction=0.4),
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        synthetic_pairs(**{"n_sounds": 4, **kwargs})


@pytest.mark.parametrize(
    "kwargs", [{"duration_s": 0}, {"rating_noise": -1.0}, {"n_sounds": 2, "val_fraction": 0.75}]
)
def test_arguments_that_cannot_make_a_data_set(kwargs):
    with pytest.raises(ValueError):
        synthetic_pairs(**kwargs)
