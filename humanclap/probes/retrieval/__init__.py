"""Text-to-audio and audio-to-text retrieval (R@k, mAP@10, MRR) over the run's pairs."""

from humanclap.probes.retrieval.probe import RetrievalProbe

__all__ = ["RetrievalProbe"]
