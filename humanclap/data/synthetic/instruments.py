"""The offline default of the zero-shot instrument probe: generated notes of the 14 TinySOL classes.

Shaped like TinySOL (two-tower §"Method Summary": single notes of 14 instruments in 4 families, 5
folds) but synthesised: each class is a harmonic tone plus noise (:class:`SoundRecipe`) whose
register, spectral roll-off and breath noise follow the instrument roughly, so classes have
distinct spectra and clips of a class resemble each other (``INSTRUMENTS``: family, f0 range,
roll-off -- harmonic k has amplitude k ** -rolloff, small = bright -- and noise mix).

Clip ``k`` of a class is in fold ``k % folds``; pitches are drawn log-uniformly from the class's
range. Labels and families are the prompt names of :mod:`humanclap.data.readers.labelled_audio`'s TinySOL
tables, so the shipped instrument ontology covers them. Deterministic given ``seed``; the default
14 x 5 one-second clips take 13 MB and well under a second to render. The clips are held in memory.
"""

from __future__ import annotations

import math

import numpy as np

from humanclap.data.readers.labelled_audio import LabelledAudio, LabelledClip
from humanclap.data.synthetic.sounds import SoundRecipe, SyntheticAudioStore

# label -> (family, lowest f0, highest f0 in Hz, roll-off, noise mix)
INSTRUMENTS: dict[str, tuple[str, float, float, float, float]] = {
    "tuba": ("brass", 40.0, 350.0, 1.6, 0.02),
    "french horn": ("brass", 60.0, 700.0, 2.0, 0.02),
    "trombone": ("brass", 80.0, 600.0, 1.1, 0.03),
    "trumpet": ("brass", 165.0, 1000.0, 0.7, 0.03),
    "accordion": ("keyboards", 80.0, 1800.0, 0.4, 0.04),
    "contrabass": ("strings", 40.0, 250.0, 1.3, 0.10),
    "violoncello": ("strings", 65.0, 700.0, 1.0, 0.10),
    "viola": ("strings", 130.0, 1100.0, 0.9, 0.10),
    "violin": ("strings", 196.0, 2600.0, 0.8, 0.10),
    "saxophone": ("winds", 138.0, 880.0, 1.0, 0.15),
    "bassoon": ("winds", 58.0, 600.0, 1.4, 0.06),
    "clarinet": ("winds", 146.0, 1500.0, 1.8, 0.05),
    "flute": ("winds", 260.0, 2100.0, 2.8, 0.30),
    "oboe": ("winds", 233.0, 1400.0, 0.6, 0.06),
}


def synthetic_instruments(
    clips_per_class: int = 5, duration_s: float = 1.0, folds: int = 5, seed: int = 0
) -> LabelledAudio:
    """``clips_per_class`` generated notes per class (keys ``synthetic_instruments/<label>/<k>``)."""
    if clips_per_class < 1 or folds < 1:
        raise ValueError(
            f"synthetic_instruments needs clips_per_class >= 1 and folds >= 1, got "
            f"{clips_per_class}, {folds}"
        )
    if not duration_s > 0:
        raise ValueError(f"synthetic_instruments needs duration_s > 0, got {duration_s}")
    rng = np.random.default_rng(seed)
    recipes: dict[str, SoundRecipe] = {}
    clips = []
    for label, (family, low, high, rolloff, noise_mix) in INSTRUMENTS.items():
        for k in range(clips_per_class):
            key = f"synthetic_instruments/{label}/{k:02d}"
            recipes[key] = SoundRecipe(
                f0=float(np.exp(rng.uniform(math.log(low), math.log(high)))),
                rolloff=float(rolloff * rng.uniform(0.9, 1.1)),
                noise_mix=float(noise_mix),
                level_db=float(rng.uniform(-24.0, -16.0)),
                seed=int(rng.integers(2**31)),
            )
            clips.append(LabelledClip(audio=key, label=label, family=family, fold=str(k % folds)))
    return LabelledAudio(
        clips, SyntheticAudioStore(recipes, duration_s), name="synthetic_instruments"
    )
