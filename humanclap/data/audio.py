"""Audio files to mono float32 waveforms at the backbone's sample rate.

CLAP towers take 48 kHz mono input, while RELATE ships 16 kHz mono clips (human-clap §II-A) and
other sets come at 44.1 kHz or in stereo. ``load_audio`` reads anything libsndfile reads (wav,
flac, ogg, ...), averages the channels and resamples with ``torchaudio.functional.resample`` only
when the file's rate differs from the one asked for. Every failure names the file.

**Minimum duration.** A clip must last at least ``MIN_AUDIO_SECONDS`` = 10 ms, one hop of the CLAP
featurizer (480 samples at 48 kHz; 160 at 16 kHz), i.e. one mel frame. Anything shorter is a broken
or truncated file, not a sound a listener rated.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from humanclap.data.pairs import DataError

MIN_AUDIO_SECONDS = 0.01
"""Shortest clip accepted: one featurizer hop (480 samples at 48 kHz)."""


def min_frames(sample_rate: int) -> int:
    """Fewest frames a file at ``sample_rate`` may have (``MIN_AUDIO_SECONDS``, rounded up)."""
    return math.ceil(round(MIN_AUDIO_SECONDS * sample_rate, 6))


def too_short(frames: int, sample_rate: int) -> str | None:
    """Why audio of ``frames`` frames at ``sample_rate`` is refused as too short, or None."""
    if frames >= min_frames(sample_rate):
        return None
    return (
        f"audio is {frames} sample(s) at {sample_rate} Hz ({1000 * frames / sample_rate:.3g} ms); clips "
        f"must last at least {1000 * MIN_AUDIO_SECONDS:g} ms ({min_frames(sample_rate)} samples at this rate)"
    )


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 1-D waveform of ``path`` at ``sample_rate``.

    Raises ``FileNotFoundError`` for a missing file and ``DataError`` for an unreadable or corrupt
    file, zero-length or too short audio (``MIN_AUDIO_SECONDS``) or non-finite samples (NaN/inf,
    possible in float wavs).
    """
    path = Path(path)
    _check_rate(sample_rate)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    return _decode(str(path), str(path), sample_rate)


def decode_audio_bytes(data: bytes, where: str, sample_rate: int) -> np.ndarray:
    """:func:`load_audio` for an encoded file held in memory (a Hugging Face ``Audio`` column's
    ``bytes``); errors start with ``where``."""
    _check_rate(sample_rate)
    return _decode(io.BytesIO(data), where, sample_rate)


def read_error(error: Exception) -> str:
    """libsndfile's reason, without the ``Error opening <_io.BytesIO object at 0x...>:`` of in-memory files."""
    text = str(error)
    if text.startswith("Error opening <_io.BytesIO") and ">: " in text:
        return text.split(">: ", 1)[1]
    return text


def _check_rate(sample_rate: int) -> None:
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")


def _decode(source, where: str, sample_rate: int) -> np.ndarray:
    try:
        data, file_rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        raise DataError(f"{where}: cannot read audio ({read_error(err)})") from err
    if data.shape[0] == 0:
        raise DataError(f"{where}: zero-length audio")
    if not np.isfinite(data).all():
        raise DataError(f"{where}: audio contains non-finite samples (NaN or inf)")
    short = too_short(data.shape[0], int(file_rate))
    if short:
        raise DataError(f"{where}: {short}")
    mono = data.mean(axis=1, dtype=np.float32)
    if file_rate != sample_rate:
        import torch
        from torchaudio.functional import resample

        mono = resample(torch.from_numpy(mono), int(file_rate), int(sample_rate)).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


@dataclass(frozen=True)
class FileAudioStore:
    """``AudioStore`` whose keys are file paths (as written by the manifest and RELATE readers).

    Holds no state, so it pickles into DataLoader workers for free.
    """

    def load(self, key: str, sample_rate: int) -> np.ndarray:
        return load_audio(key, sample_rate)


def missing_files(store, keys: list[str]) -> list[str]:
    """The keys of a file-backed store whose files do not exist, in order (other stores: none)."""
    if not isinstance(store, FileAudioStore):
        return []
    return [key for key in keys if not os.path.isfile(key)]


def audio_fingerprint(store, keys: list[str]) -> str | None:
    """sha256 of the audio of ``keys``: files by content, other stores by their ``fingerprint``;
    ``None`` if the store has no fingerprint or a file is missing."""
    if isinstance(store, FileAudioStore):
        if missing_files(store, keys):
            return None
        digest = hashlib.sha256()
        for key in keys:
            digest.update(key.encode() + b"\0")
            with open(key, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()
    if hasattr(store, "fingerprint"):
        return store.fingerprint(keys)
    return None
