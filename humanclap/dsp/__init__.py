"""Audio effects of the timbre-semantics study (timbre-semantics §2.3, Experiment 2).

The paper manipulates clips with SocialFX descriptors through the EQ and reverberator of the
Audealize online demo, at three intensities (0.3 = low, 0.6 = medium, 1.0 = high):

- :class:`~humanclap.dsp.eq.GraphicEQ`: 40 Web-Audio peaking biquads in series (``eq.py``,
  coefficients and the batched cascade in ``biquad.py``);
- :class:`~humanclap.dsp.reverb.AudealizeReverb`: Rafii & Pardo's comb / all-pass / low-pass
  reverberator (``reverb.py``).

Both render every descriptor × intensity of one clip in a single call, shape (D, L, T).
See docs/effects.md.
"""

from humanclap.dsp.eq import AUDEALIZE_EQ_CENTRES_HZ, AUDEALIZE_Q, GraphicEQ, normalize_curve
from humanclap.dsp.reverb import AudealizeReverb, ReverbSettings

__all__ = [
    "AUDEALIZE_EQ_CENTRES_HZ",
    "AUDEALIZE_Q",
    "AudealizeReverb",
    "GraphicEQ",
    "ReverbSettings",
    "normalize_curve",
]
