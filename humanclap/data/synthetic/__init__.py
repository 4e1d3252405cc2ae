"""Generated, license-free data for offline runs and tests: rated sounds, timbre ratings, events and
order pairs, instruments, and the reference clip of the timbre trend probe."""

from humanclap.data.synthetic.sounds import synthetic_pairs

__all__ = ["synthetic_pairs"]
