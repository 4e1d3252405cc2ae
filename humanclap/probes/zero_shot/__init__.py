"""Zero-shot instrument recognition and ontology triplets (two-tower): probe, metrics, figures."""

from humanclap.probes.zero_shot.probe import ZeroShotInstrumentProbe

__all__ = ["ZeroShotInstrumentProbe"]
