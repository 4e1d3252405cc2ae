"""Audealize graphic EQ (humanclap.dsp.eq / biquad) against independently computed truth.

The reference responses are built here from the Audio EQ Cookbook formulas (as the Web Audio spec
gives them) with numpy and scipy.signal.freqz / sosfilt, not from humanclap's coefficients.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import freqz, sosfilt

from humanclap.dsp import biquad
from humanclap.dsp.eq import AUDEALIZE_EQ_CENTRES_HZ, GraphicEQ, normalize_curve

AUDEALIZE_DIR = Path("/work/shared/data/audealize")
# The spec, restated here so that the reference does not depend on humanclap's constants.
AUDEALIZE_Q = 4.31
CENTRES = np.array(
    [
        20,
        50,
        83,
        120,
        161,
        208,
        259,
        318,
        383,
        455,
        537,
        628,
        729,
        843,
        971,
        1114,
        1273,
        1452,
        1652,
        1875,
        2126,
        2406,
        2719,
        3070,
        3462,
        3901,
        4392,
        4941,
        5556,
        6244,
        7014,
        7875,
        8839,
        9917,
        11124,
        12474,
        13984,
        15675,
        17566,
        19682,
    ],
    dtype=float,
)


def test_constants_are_audealizes():
    np.testing.assert_array_equal(np.array(AUDEALIZE_EQ_CENTRES_HZ), CENTRES)
    assert GraphicEQ().q == AUDEALIZE_Q and GraphicEQ().max_db == 5.0


def cookbook_peaking(f0: float, gain_db: float, q: float, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """Web Audio peaking biquad written out here, independent of humanclap."""
    big_a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * f0 / fs
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * big_a, -2 * np.cos(w0), 1 - alpha * big_a])
    a = np.array([1 + alpha / big_a, -2 * np.cos(w0), 1 - alpha / big_a])
    return b / a[0], a / a[0]


def reference_gains(settings: np.ndarray, amount: float, max_db: float = 5.0) -> np.ndarray:
    low, high = min(0.0, settings.min()), max(0.0, settings.max())
    return amount * max_db * ((settings - low) / (high - low) * 2 - 1)


def reference_response(gains_db: np.ndarray, freqs: np.ndarray, fs: int) -> np.ndarray:
    """Product of the analytic responses of the bands below Nyquist (the others are identity)."""
    total = np.ones(freqs.shape, dtype=complex)
    for f0, gain in zip(CENTRES, gains_db):
        if f0 < fs / 2:
            b, a = cookbook_peaking(f0, gain, AUDEALIZE_Q, fs)
            total *= freqz(b, a, worN=freqs, fs=fs)[1]
    return total


def impulse(n: int) -> np.ndarray:
    x = np.zeros(n)
    x[0] = 1.0
    return x


@pytest.fixture(scope="module")
def curves() -> np.ndarray:
    """Three random descriptor-like curves (both signs, all positive, all negative)."""
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(3, 40))
    raw[1] = np.abs(raw[1]) + 0.1
    raw[2] = -np.abs(raw[2]) - 0.1
    return raw


# -- the cascade equals the analytic product ---------------------------------------------------
@pytest.mark.parametrize("fs, n", [(48_000, 2**18), (16_000, 2**16)])
def test_impulse_response_spectrum_matches_analytic_product(curves, fs, n):
    eq = GraphicEQ(sample_rate=fs)
    out = eq(impulse(n), curves[:2], [1.0])  # float64 in -> float64 out
    assert out.dtype == torch.float64 and out.shape == (2, 1, n)
    freqs = np.fft.rfftfreq(n, 1 / fs)
    for row in range(2):
        h = out[row, 0].numpy()
        assert np.abs(h[-n // 10 :]).max() < 1e-12  # decayed: the truncation is negligible
        measured = np.fft.rfft(h)
        expected = reference_response(reference_gains(curves[row], 1.0), freqs, fs)
        assert np.max(np.abs(measured - expected) / np.abs(expected)) < 1e-6


def test_backends_agree(curves):
    rng = np.random.default_rng(1)
    x = rng.normal(size=8_000)
    ta = GraphicEQ(sample_rate=16_000, backend="torchaudio")(x, curves, [0.3, 1.0])
    sp = GraphicEQ(sample_rate=16_000, backend="scipy")(x, curves, [0.3, 1.0])
    assert torch.allclose(ta, sp, rtol=0, atol=1e-12 * float(sp.abs().max()))


def test_matches_independent_sosfilt_on_noise(curves):
    fs, amount = 16_000, 0.6
    x = np.random.default_rng(2).normal(size=4_000)
    out = GraphicEQ(sample_rate=fs)(x, curves[:1], [amount])[0, 0].numpy()
    sections = [
        cookbook_peaking(f0, g, AUDEALIZE_Q, fs)
        for f0, g in zip(CENTRES, reference_gains(curves[0], amount))
        if f0 < fs / 2
    ]
    expected = sosfilt(np.array([np.r_[b, a] for b, a in sections]), x)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-10)


# -- identity cases ---------------------------------------------------------------------------
def test_flat_curve_and_zero_amount_are_the_identity(curves):
    x = torch.from_numpy(np.random.default_rng(3).normal(size=3_000))
    eq = GraphicEQ(sample_rate=16_000)
    assert torch.equal(eq(x, np.zeros((2, 40)), [0.3, 1.0]), x.expand(2, 2, -1))
    out = eq(x, curves, [0.0, 1.0])
    assert torch.equal(out[:, 0], x.expand(3, -1))
    assert not torch.allclose(out[:, 1], x.expand(3, -1))


@pytest.mark.parametrize("fs", [16_000, 8_000])
def test_bands_at_or_above_nyquist_are_identity(curves, fs):
    eq = GraphicEQ(sample_rate=fs)
    b, a = eq.coefficients(curves, [1.0])
    above = torch.from_numpy(CENTRES >= fs / 2)
    assert above.sum() == (8 if fs == 16_000 else 14)
    identity = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.equal(b[..., above, :], identity.expand_as(b[..., above, :]))
    assert torch.equal(a[..., above, :], identity.expand_as(a[..., above, :]))
    assert torch.isfinite(b).all() and torch.isfinite(a).all()
    out = eq(
        np.random.default_rng(4).normal(size=2_000).astype(np.float32), curves, [0.3, 0.6, 1.0]
    )
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_centre_exactly_at_nyquist_is_identity():
    b, a = biquad.peaking_coefficients([4_000.0, 5_000.0], 5.0, AUDEALIZE_Q, 8_000)
    assert torch.equal(b, torch.tensor([[1.0, 0, 0]] * 2, dtype=torch.float64))
    assert torch.equal(a, b)


# -- single-band properties -------------------------------------------------------------------
@pytest.mark.parametrize("gain_db", [5.0, -3.0, 12.0])
def test_peak_gain_at_centre_is_gain_db(gain_db):
    fs, f0 = 48_000, 1_000.0
    b, a = biquad.peaking_coefficients(f0, gain_db, AUDEALIZE_Q, fs)
    response = biquad.frequency_response(b, a, [f0], fs)
    assert 20 * math.log10(abs(response.item())) == pytest.approx(gain_db, abs=1e-9)
    np.testing.assert_allclose(
        b.numpy(), cookbook_peaking(f0, gain_db, AUDEALIZE_Q, fs)[0], rtol=1e-14
    )
    np.testing.assert_allclose(
        a.numpy(), cookbook_peaking(f0, gain_db, AUDEALIZE_Q, fs)[1], rtol=1e-14
    )


def test_frequency_response_matches_freqz():
    rng = np.random.default_rng(5)
    fs = 44_100
    b, a = biquad.peaking_coefficients(
        torch.tensor([100.0, 3_000.0]), torch.tensor([4.0, -6.0]), 2.0, fs
    )
    freqs = rng.uniform(0, fs / 2, size=50)
    ours = biquad.frequency_response(b, a, freqs, fs).numpy()
    for row in range(2):
        expected = freqz(b[row].numpy(), a[row].numpy(), worN=freqs, fs=fs)[1]
        np.testing.assert_allclose(ours[row], expected, rtol=1e-12)


def test_lowpass_coefficients_match_web_audio_formula():
    fs, cutoff, q_db = 48_000, 1_000.0, 1.0
    w0 = 2 * np.pi * cutoff / fs
    alpha = np.sin(w0) / (2 * 10 ** (q_db / 20))
    b = np.array([(1 - np.cos(w0)) / 2, 1 - np.cos(w0), (1 - np.cos(w0)) / 2]) / (1 + alpha)
    a = np.array([1 + alpha, -2 * np.cos(w0), 1 - alpha]) / (1 + alpha)
    ours_b, ours_a = biquad.lowpass_coefficients(cutoff, q_db, fs)
    np.testing.assert_allclose(ours_b.numpy(), b, rtol=1e-14)
    np.testing.assert_allclose(ours_a.numpy(), a, rtol=1e-14)
    above_nyquist = biquad.lowpass_coefficients(30_000.0, q_db, fs)
    assert all(
        torch.equal(c, torch.tensor([1.0, 0, 0], dtype=torch.float64)) for c in above_nyquist
    )


def test_cascade_does_not_clamp_and_keeps_dtype():
    b, a = biquad.peaking_coefficients(1_000.0, 12.0, 1.0, 8_000)
    t = torch.arange(800, dtype=torch.float32)
    x = 0.9 * torch.sin(2 * math.pi * 1_000 * t / 8_000)
    y = biquad.apply_cascade(x[None], b[None, None], a[None, None])
    assert y.dtype == torch.float32 and y.abs().max() > 3.0  # +12 dB at 1 kHz, never clipped to ±1


# -- curve normalisation and gains ------------------------------------------------------------
@pytest.mark.parametrize(
    "settings, expected",
    [
        ([-1.0, 0.0, 2.0], [-1.0, -1 / 3, 1.0]),  # both signs: min -> -1, max -> +1
        ([1.0, 2.0, 4.0], [-0.5, 0.0, 1.0]),  # all positive: 0 (not the minimum) maps to -1
        ([-2.0, -1.0], [-1.0, 0.0]),  # all negative: 0 maps to +1
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),  # flat: identity (Audealize leaves it undefined)
        ([0.5, 0.5], [1.0, 1.0]),  # constant positive: range [0, 0.5]
    ],
)
def test_normalize_curve_examples(settings, expected):
    np.testing.assert_allclose(normalize_curve(settings).numpy(), expected, rtol=0, atol=1e-15)


def test_normalize_curve_batches_over_leading_dims(curves):
    batch = np.stack([curves, curves[::-1]])  # (2, 3, 40)
    out = normalize_curve(batch)
    assert out.shape == (2, 3, 40) and out.dtype == torch.float64
    assert torch.equal(out[1, 0], normalize_curve(curves[2]))
    assert out.min() >= -1 and out.max() <= 1


def test_gains_scale_linearly_with_amount(curves):
    eq = GraphicEQ(max_db=4.3)
    gains = eq.gains_db(curves, [0.3, 0.6, 1.0])
    assert gains.shape == (3, 3, 40)
    for level, amount in enumerate([0.3, 0.6, 1.0]):
        np.testing.assert_allclose(
            gains[:, level].numpy(),
            np.stack([reference_gains(c, amount, 4.3) for c in curves]),
            rtol=1e-14,
            atol=1e-14,
        )
    assert gains[0, 2].abs().max() == pytest.approx(4.3)


def test_batch_rows_equal_single_renders(curves):
    eq = GraphicEQ(sample_rate=16_000)
    x = np.random.default_rng(6).normal(size=1_500).astype(np.float32)
    out = eq(torch.from_numpy(x), curves, [0.3, 0.6, 1.0])
    assert out.shape == (3, 3, 1_500) and out.dtype == torch.float32
    assert torch.equal(out[2, 1], eq(x, curves[2:3], [0.6])[0, 0])


# -- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "wave, settings, amounts, match",
    [
        (np.zeros(10), np.zeros((2, 39)), [1.0], "settings must be"),
        (np.zeros(10), np.zeros(40), [1.0], "settings must be"),
        (np.zeros(10), np.full((1, 40), np.nan), [1.0], "non-finite"),
        (np.zeros(10), np.zeros((1, 40)), [-0.3], "amounts must be >= 0"),
        (np.zeros(10), np.zeros((1, 40)), [], "amounts is empty"),
        (np.zeros(10), np.zeros((1, 40)), [float("inf")], "finite"),
        (np.zeros(10), np.zeros((1, 40)), 0.5, "sequence"),
        (np.zeros(0), np.zeros((1, 40)), [1.0], "wave is empty"),
        (np.zeros((2, 10)), np.zeros((1, 40)), [1.0], r"shape \(T,\)"),
        (np.array([0.0, np.inf]), np.zeros((1, 40)), [1.0], "non-finite"),
    ],
)
def test_validation_errors(wave, settings, amounts, match):
    with pytest.raises(ValueError, match=match):
        GraphicEQ(sample_rate=8_000)(wave, settings, amounts)


def test_constructor_validation():
    for kwargs, match in [
        ({"sample_rate": 0}, "sample_rate"),
        ({"q": 0.0}, "q must"),
        ({"max_db": float("nan")}, "max_db"),
        ({"centres_hz": []}, "centres_hz"),
        ({"centres_hz": [100.0, -5.0]}, "centres_hz"),
        ({"backend": "numba"}, "backend"),
    ]:
        with pytest.raises(ValueError, match=match):
            GraphicEQ(**kwargs)
    with pytest.raises(ValueError, match=r"b and a must both be \(B, K, 3\)"):
        biquad.apply_cascade(torch.zeros(2, 5), torch.zeros(1, 1, 3), torch.ones(1, 1, 3))


# -- optional: the real Audealize descriptors -------------------------------------------------
def test_real_eq_descriptors_render_sensibly():
    path = AUDEALIZE_DIR / "eqdescriptors.json"
    if not path.exists():
        pytest.skip(f"{path} not present (GPLv2 Audealize data, never copied into the repo)")
    words = {entry["word"]: entry["settings"] for entry in json.loads(path.read_text())}
    settings = np.array([words["warm"], words["bright"]])
    eq = GraphicEQ()
    gains = eq.gains_db(settings, [1.0])
    assert gains.abs().max() == pytest.approx(5.0) and gains.shape == (2, 1, 40)
    b, a = eq.coefficients(settings, [1.0])
    freqs = [100.0, 3_000.0]
    response = (
        biquad.frequency_response(b, a, freqs, 48_000).abs().log10().mul(20).sum(-2)
    )  # dB, (2, 1, F)
    assert response[0, 0, 0] > response[0, 0, 1]  # warm: lows above presence
    assert response[1, 0, 1] > response[1, 0, 0]  # bright: presence above lows
    out = eq(
        np.random.default_rng(7).normal(size=4_800).astype(np.float32), settings, [0.3, 0.6, 1.0]
    )
    assert torch.isfinite(out).all()
