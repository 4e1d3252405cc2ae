"""load_audio / FileAudioStore: mono mixdown, resampling to 48 kHz, errors that name the file."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf

from humanclap.data.audio import FileAudioStore, load_audio
from humanclap.data.pairs import DataError, RatedPair, RatedPairs


def _sine(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(
        np.float32
    )


def _peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(wave.size, 1 / rate)[spectrum.argmax()])


def test_16k_sine_resampled_to_48k_keeps_frequency_and_triples_length(tmp_path):
    path = tmp_path / "sine16k.wav"
    sf.write(path, _sine(440, 16_000), 16_000, subtype="FLOAT")
    wave = load_audio(path, 48_000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert wave.size == 3 * 16_000
    assert _peak_hz(wave, 48_000) == pytest.approx(440, abs=1.0)
    assert np.abs(wave).max() == pytest.approx(0.5, abs=0.02)


def test_stereo_with_opposite_channels_mixes_to_silence_and_44k1_resamples(tmp_path):
    left = _sine(1000, 44_100)
    path = tmp_path / "opposite.wav"
    sf.write(path, np.stack([left, -left], axis=1), 44_100, subtype="FLOAT")
    wave = load_audio(path, 48_000)
    assert wave.shape == (48_000,)
    assert np.abs(wave).max() < 1e-6


def test_stereo_mixdown_is_the_channel_mean_and_same_rate_is_untouched(tmp_path):
    path = tmp_path / "stereo.wav"
    frames = np.stack([np.full(480, 0.5), np.full(480, 0.1)], axis=1).astype(
        np.float32
    )  # 10 ms, the minimum
    sf.write(path, frames, 48_000, subtype="FLOAT")
    wave = load_audio(path, 48_000)
    np.testing.assert_allclose(wave, np.full(480, 0.3, dtype=np.float32), rtol=0, atol=1e-7)
    mono_path = tmp_path / "mono.wav"
    sine = _sine(300, 48_000, 0.1)
    sf.write(mono_path, sine, 48_000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(mono_path, 48_000), sine)


@pytest.mark.parametrize("suffix", ["flac", "ogg"])
def test_flac_and_ogg(tmp_path, suffix):
    path = tmp_path / f"sine.{suffix}"
    sf.write(path, _sine(440, 16_000), 16_000)
    wave = load_audio(path, 48_000)
    assert wave.size == 48_000
    assert _peak_hz(wave, 48_000) == pytest.approx(440, abs=1.0)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav", 48_000)


def test_corrupt_file_names_it(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF but not really a wave file")
    with pytest.raises(DataError, match="corrupt.wav.*cannot read audio"):
        load_audio(path, 48_000)


def test_zero_length_audio_names_the_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16_000)
    with pytest.raises(DataError, match="empty.wav: zero-length audio"):
        load_audio(path, 48_000)


def test_non_finite_samples_name_the_file(tmp_path):
    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16_000, subtype="FLOAT")
    with pytest.raises(DataError, match="nan.wav: audio contains non-finite samples"):
        load_audio(path, 48_000)


def test_bad_sample_rate_is_refused(tmp_path):
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(tmp_path / "x.wav", 0)


def test_file_audio_store_implements_the_protocol_and_pickles(tmp_path):
    path = tmp_path / "sine.wav"
    sf.write(path, _sine(440, 16_000, 0.5), 16_000, subtype="FLOAT")
    store = pickle.loads(pickle.dumps(FileAudioStore()))
    pairs = RatedPairs([RatedPair(audio=str(path), text="a tone", score=0.5)], store)
    np.testing.assert_array_equal(pairs.load_audio(str(path), 48_000), load_audio(path, 48_000))
    assert pairs.load_audio(str(path), 48_000).shape == (24_000,)
