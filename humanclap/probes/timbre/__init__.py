"""Timbre-semantics probes: descriptor/instrument correlations (Exp. 1, ``correlation.py``) and the
EQ/reverb trend (Exp. 2, ``trend*.py``: the probe, the trend rule, the effects, the reference clips, figures)."""
