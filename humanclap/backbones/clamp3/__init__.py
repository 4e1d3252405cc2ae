"""CLaMP 3 (sanderwood/clamp3, SAAS release) as a humanclap backbone: MERT-v1-95M features + an audio
BERT, and XLM-R for text; a port of CLaMP 3's audio/text code paths (upstream pins transformers 4.40),
loaded from local files. See docs/models.md#clamp-3."""

from humanclap.backbones.clamp3.backbone import (
    Clamp3Backbone,
    Clamp3Error,
    build_random_clamp3,
    clamp3_random,
    fetch_commands,
    from_clamp3,
    is_clamp3_directory,
    is_clamp3_file,
)
from humanclap.backbones.clamp3.featurizer import Clamp3Featurizer
from humanclap.backbones.clamp3.model import RELEASE, Clamp3Config, Clamp3Model

__all__ = [
    "RELEASE",
    "Clamp3Backbone",
    "Clamp3Config",
    "Clamp3Error",
    "Clamp3Featurizer",
    "Clamp3Model",
    "build_random_clamp3",
    "clamp3_random",
    "fetch_commands",
    "from_clamp3",
    "is_clamp3_directory",
    "is_clamp3_file",
]
