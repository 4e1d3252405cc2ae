"""Zero-shot probes: instrument recognition and ontology triplets (two-tower), and classification of
labelled audio such as ESC-50 and UrbanSound8K (LAION-CLAP's protocol): probes, metrics, figures."""

from humanclap.probes.zero_shot.classification import ZeroShotClassificationProbe
from humanclap.probes.zero_shot.probe import ZeroShotInstrumentProbe

__all__ = ["ZeroShotClassificationProbe", "ZeroShotInstrumentProbe"]
