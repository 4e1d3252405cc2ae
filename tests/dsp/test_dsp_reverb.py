"""Audealize reverberator (humanclap.dsp.reverb) against an independent sample-by-sample reference.

The reference below evaluates the difference equations of the structure described in
humanclap/dsp/reverb.py (combs, all-passes, Web Audio low-pass, clean delay, gains) one sample at a
time in plain Python, with its own prime search and coefficient formulas.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from humanclap.dsp.reverb import (
    AudealizeReverb,
    ReverbSettings,
    mix_gains,
    prev_prime,
    wet_dry_gains,
)

AUDEALIZE_DIR = Path("/work/shared/data/audealize")


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % p for p in range(2, int(n**0.5) + 1))


def slow_prev_prime(x: float) -> int:
    n = int(math.floor(x))
    while n > 2 and not is_prime(n):
        n -= 1
    return max(n, 2)


def delay_section(x: np.ndarray, delay: int, g1: float, g2: float) -> np.ndarray:
    """y[n] = g1·x[n] + x[n−D] + g2·y[n−D], one sample at a time."""
    y = np.zeros_like(x)
    for n in range(len(x)):
        y[n] = g1 * x[n] + (x[n - delay] + g2 * y[n - delay] if n >= delay else 0.0)
    return y


def web_audio_lowpass(x: np.ndarray, cutoff: float, fs: int) -> np.ndarray:
    if cutoff >= fs / 2:
        return x.copy()
    w0 = 2 * math.pi * cutoff / fs
    alpha = math.sin(w0) / (2 * 10 ** (1.0 / 20))
    b = [(1 - math.cos(w0)) / 2, 1 - math.cos(w0), (1 - math.cos(w0)) / 2]
    a = [1 + alpha, -2 * math.cos(w0), 1 - alpha]
    y = np.zeros_like(x)
    for n in range(len(x)):
        acc = sum(b[k] * x[n - k] for k in range(3) if n >= k)
        acc -= sum(a[k] * y[n - k] for k in (1, 2) if n >= k)
        y[n] = acc / a[0]
    return y


def slow_reverb(x: np.ndarray, d, g, m, f, E, wetdry, fs) -> np.ndarray:
    """Mono (mean of L/R) Audealize reverb output, sample by sample."""
    wet = math.cos((1 - wetdry) * math.pi / 2) * x
    dry = math.cos(wetdry * math.pi / 2) * x
    rt = d * math.log(0.001) / math.log(g)
    combs = sum(
        delay_section(
            wet, slow_prev_prime(d * (15 - k) / 15 * fs), 0.0, 0.001 ** (d * (15 - k) / 15 / rt)
        )
        for k in range(6)
    )
    g1 = 1 / (E + 1)
    reverb_gain, clean_gain = math.cos(g1 * 3 * math.pi / 8), math.cos((1 - g1) * math.pi / 8)
    scale = 0.4 / (reverb_gain + clean_gain)
    clean = np.zeros_like(x)
    lag = round(0.01 * fs)
    clean[lag:] = wet[: len(x) - lag]
    channels = []
    for sign in (+1, -1):
        allpass = delay_section(combs, slow_prev_prime((0.016 + sign * m / 2) * fs), -0.1, 0.1)
        channels.append(
            0.45
            * (dry + scale * (reverb_gain * web_audio_lowpass(allpass, f, fs) + clean_gain * clean))
        )
    return (channels[0] + channels[1]) / 2


HAND_SETTINGS = [
    ReverbSettings(d=0.02, g=0.7, m=0.004, f=1_500.0, E=0.5),
    ReverbSettings(
        d=0.013, g=0.95, m=-0.006, f=5_000.0, E=0.0
    ),  # f above Nyquist at 8 kHz: identity
    ReverbSettings(d=0.001, g=0.3, m=0.0, f=300.0, E=1.0),  # tiny d: 7- and 5-sample combs
]


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(0).normal(size=1_200)


# -- the fast implementation equals the difference equations -----------------------------------
def test_matches_sample_loop_reference(noise):
    fs, amounts = 8_000, [0.3, 0.6, 1.0]
    out = AudealizeReverb(sample_rate=fs)(noise, HAND_SETTINGS, amounts)
    assert out.shape == (3, 3, noise.size) and out.dtype == torch.float64
    for row, s in enumerate(HAND_SETTINGS):
        for level, amount in enumerate(amounts):
            expected = slow_reverb(noise, s.d, s.g, s.m, s.f, s.E, amount, fs)
            np.testing.assert_allclose(out[row, level].numpy(), expected, rtol=0, atol=1e-9)


def test_stereo_impulse_response_matches_reference():
    fs, n, s = 8_000, 1_000, HAND_SETTINGS[0]
    h = AudealizeReverb(sample_rate=fs).impulse_response(s, n)
    assert h.shape == (2, n)
    impulse = np.zeros(n)
    impulse[0] = 1.0
    # wetdry = 1 and dry gain cos(π/2) ~ 6e-17: the reference output is 0.45 · mean_c(h_c)
    expected_mono = slow_reverb(impulse, s.d, s.g, s.m, s.f, s.E, 1.0, fs) / 0.45
    np.testing.assert_allclose(h.mean(0).numpy(), expected_mono, rtol=0, atol=1e-12)
    assert not torch.allclose(h[0], h[1])  # m != 0: the all-passes differ
    mono = AudealizeReverb(sample_rate=fs).mono_impulse_response(s, n)
    torch.testing.assert_close(mono, h.mean(0), rtol=0, atol=1e-14)


# -- delays and gains -------------------------------------------------------------------------
def test_prev_prime_hand_cases():
    assert prev_prime(2_400) == 2_399
    assert prev_prime(2_400.9) == 2_399
    assert [prev_prime(x) for x in (0.3, 1.9, 2.0, 2.9, 3.0, 7.0, 8.0, 9.9, 10.0)] == [
        2,
        2,
        2,
        2,
        3,
        7,
        7,
        7,
        7,
    ]
    for x in np.random.default_rng(1).uniform(3, 6_000, size=50):
        assert prev_prime(x) == slow_prev_prime(x)


def test_comb_and_allpass_delays_are_the_specified_primes():
    s = ReverbSettings(d=0.05, g=0.8, m=0.002, f=2_000.0, E=0.5)
    design = AudealizeReverb(sample_rate=48_000).design(s)
    assert design.comb_delays[0] == 2_399  # 0.05 s · 48 kHz = 2400 -> 2399
    for k, delay in enumerate(design.comb_delays):
        target = math.floor(0.05 * (15 - k) / 15 * 48_000)
        assert (
            is_prime(delay)
            and delay <= target
            and not any(is_prime(n) for n in range(delay + 1, target + 1))
        )
    assert design.allpass_delays == (
        slow_prev_prime(0.017 * 48_000),
        slow_prev_prime(0.015 * 48_000),
    )
    assert design.clean_delay == 480
    # g2_k = 0.001^(delay_k/rt) with the unrounded delay, i.e. g^((15−k)/15); comb 0 has gain g
    np.testing.assert_allclose(
        design.comb_gains, [0.8 ** ((15 - k) / 15) for k in range(6)], rtol=1e-12
    )


def test_mix_gains_formulas():
    reverb_gain, clean_gain, scale = mix_gains(0.0)  # g1 = 1
    assert reverb_gain == pytest.approx(math.cos(3 * math.pi / 8)) and clean_gain == 1.0
    assert scale == pytest.approx(0.4 / (1 + math.cos(3 * math.pi / 8)))
    assert wet_dry_gains(0.0) == (0.0, 1.0) and wet_dry_gains(1.0) == (1.0, 0.0)
    assert wet_dry_gains(0.3) == pytest.approx((math.cos(0.35 * math.pi), math.cos(0.15 * math.pi)))


# -- wet/dry ----------------------------------------------------------------------------------
def test_wetdry_zero_is_exactly_the_scaled_input(noise):
    x = torch.from_numpy(noise)
    out = AudealizeReverb(sample_rate=8_000)(x, HAND_SETTINGS, [0.0])
    assert torch.equal(out[:, 0], (0.45 * x).expand(3, -1))


def test_levels_are_cos_law_mixes_of_dry_and_wet(noise):
    amounts = [0.0, 0.3, 0.6, 1.0]
    out = AudealizeReverb(sample_rate=8_000)(noise, HAND_SETTINGS[:2], amounts)
    for level, a in enumerate(amounts):
        mix = math.cos(a * math.pi / 2) * out[:, 0] + math.cos((1 - a) * math.pi / 2) * out[:, 3]
        torch.testing.assert_close(out[:, level], mix, rtol=0, atol=1e-12)


def test_float32_input_gives_float32_and_tail_extends_causally(noise):
    reverb = AudealizeReverb(sample_rate=8_000)
    x = noise.astype(np.float32)
    plain = reverb(x, HAND_SETTINGS[:1], [0.6])
    long = reverb(x, HAND_SETTINGS[:1], [0.6], tail_s=0.25)
    assert plain.dtype == long.dtype == torch.float32
    assert long.shape[-1] == x.size + 2_000
    torch.testing.assert_close(long[..., : x.size], plain, rtol=0, atol=1e-6)
    assert long[..., x.size :].abs().max() > 0  # the tail is kept


# -- decay and stability ----------------------------------------------------------------------
def _decays(reverb: AudealizeReverb, s: ReverbSettings) -> bool:
    rt = s.d * math.log(0.001) / math.log(s.g)  # seconds to −60 dB
    n = max(int(rt * reverb.sample_rate), 4_000)
    h = reverb.mono_impulse_response(s, n)
    tenth = n // 10
    return bool((h[-tenth:] ** 2).sum() < 1e-3 * (h[:tenth] ** 2).sum())


@pytest.mark.parametrize("settings", HAND_SETTINGS)
def test_impulse_response_decays(settings):
    assert _decays(AudealizeReverb(sample_rate=8_000), settings)


@pytest.mark.parametrize(
    "settings",
    [
        ReverbSettings(
            d=0.1, g=0.9998, m=0.012, f=22_049.0, E=1.0
        ),  # the pool's max g: rt ≈ 3450 s
        ReverbSettings(d=0.001, g=0.9998, m=-0.012, f=4.4, E=0.0004),  # tiny d and f
        ReverbSettings(d=1e-5, g=0.5, m=0.0, f=100.0, E=0.5),  # delays below 2 samples -> 2
    ],
)
def test_extreme_settings_are_finite_and_stable(settings):
    reverb = AudealizeReverb(sample_rate=8_000)
    design = reverb.design(settings)
    assert min(design.comb_delays) >= 2 and all(0 < g < 1 for g in design.comb_gains)
    h = reverb.impulse_response(settings, 8_000)
    assert torch.isfinite(h).all() and h.abs().max() < 10
    out = reverb(np.random.default_rng(2).normal(size=2_000), [settings], [0.3, 1.0])
    assert torch.isfinite(out).all()


def test_tensor_settings_rows_equal_dataclass_settings(noise):
    reverb = AudealizeReverb(sample_rate=8_000)
    rows = torch.tensor([s.as_tuple() for s in HAND_SETTINGS[:2]], dtype=torch.float64)
    assert torch.equal(reverb(noise, rows, [0.6]), reverb(noise, HAND_SETTINGS[:2], [0.6]))


# -- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value",
    [
        ("d", 0.0),
        ("g", 1.0),
        ("g", 0.0),
        ("f", -1.0),
        ("E", -0.1),
        ("wetdry", 1.5),
        ("m", float("nan")),
    ],
)
def test_settings_validation_names_the_field(field, value):
    values = dict(d=0.05, g=0.5, m=0.0, f=1_000.0, E=0.5, wetdry=1.0) | {field: value}
    with pytest.raises(ValueError, match=rf"ReverbSettings\.{field} must"):
        ReverbSettings(**values)


@pytest.mark.parametrize(
    "settings, amounts, match",
    [
        (np.zeros((1, 5)), [0.3], r"\(D, 6\)"),
        (
            [[0.05, 0.5, 0.0, 1_000.0, 0.5, 1.0], [0.05, 2.0, 0.0, 1_000.0, 0.5, 1.0]],
            [0.3],
            r"row 1: ReverbSettings\.g",
        ),
        (HAND_SETTINGS[0], [0.3], "wrap one in a list"),
        ([HAND_SETTINGS[0]], [1.2], "amounts must be <= 1"),
        ([HAND_SETTINGS[0]], [-0.1], "amounts must be >= 0"),
        ([HAND_SETTINGS[0]], [], "amounts is empty"),
    ],
)
def test_call_validation(settings, amounts, match):
    with pytest.raises(ValueError, match=match):
        AudealizeReverb(sample_rate=8_000)(np.zeros(100), settings, amounts)


def test_bad_wave_and_tail():
    reverb = AudealizeReverb(sample_rate=8_000)
    with pytest.raises(ValueError, match="wave is empty"):
        reverb(np.zeros(0), HAND_SETTINGS[:1], [0.3])
    with pytest.raises(ValueError, match="tail_s"):
        reverb(np.zeros(10), HAND_SETTINGS[:1], [0.3], tail_s=-1.0)


# -- optional: the real Audealize descriptors -------------------------------------------------
def test_real_reverb_descriptors():
    path = AUDEALIZE_DIR / "reverbdescriptors.json"
    if not path.exists():
        pytest.skip(f"{path} not present (GPLv2 Audealize data, never copied into the repo)")
    entries = sorted(json.loads(path.read_text()), key=lambda e: -e["num"])
    settings = [ReverbSettings.from_sequence(e["settings"]) for e in entries]  # all 369 validate
    reverb48 = AudealizeReverb(sample_rate=48_000)
    # Web Audio raises in-loop delays below 128 samples; the descriptors never get there
    assert min(min(reverb48.design(s).comb_delays) for s in settings) >= 128
    distinct = list(dict.fromkeys(settings))[
        :5
    ]  # the most used distinct settings (echo, distant, ...)
    reverb8 = AudealizeReverb(sample_rate=8_000)
    assert all(_decays(reverb8, s) for s in distinct)
