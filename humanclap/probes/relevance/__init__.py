"""Relevance (human-clap §IV): CLAPScore against human ratings; ``probe.py`` the metrics, ``figures.py`` the scatter."""

from humanclap.probes.relevance.probe import RelevanceProbe

__all__ = ["RelevanceProbe"]
