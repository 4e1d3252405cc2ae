"""Audio files to mono float32 waveforms at the backbone's sample rate.

CLAP towers take 48 kHz mono input, while RELATE ships 16 kHz mono clips (human-clap §II-A) and
other sets come at 44.1 kHz or in stereo. ``load_audio`` reads anything libsndfile reads (wav,
flac, ogg, ...), averages the channels and resamples with ``torchaudio.functional.resample`` only
when the file's rate differs from the one asked for. Every failure names the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from humanclap.data.pairs import DataError


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 1-D waveform of ``path`` at ``sample_rate``.

    Raises ``FileNotFoundError`` for a missing file and ``DataError`` for an unreadable or corrupt
    file, zero-length audio or non-finite samples (NaN/inf, possible in float wavs).
    """
    path = Path(path)
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        raise DataError(f"{path}: cannot read audio ({err})") from err
    if data.shape[0] == 0:
        raise DataError(f"{path}: zero-length audio")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: audio contains non-finite samples (NaN or inf)")
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
