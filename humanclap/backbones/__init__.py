"""CLAP backbones: one interface (``Embedder``) over every checkpoint format."""

from humanclap.backbones.base import MAX_LOGIT_SCALE, Backbone
from humanclap.backbones.clap import ClapBackbone
from humanclap.backbones.embedder import Embedder
from humanclap.backbones.featurizer import ClapFeaturizer
from humanclap.backbones.laion_checkpoint import from_laion_checkpoint
from humanclap.backbones.pretrained import CheckpointNotAvailable, from_pretrained
from humanclap.backbones.random_full_size import build_clap_htsat_random, clap_htsat_random
from humanclap.backbones.tiny import build_tiny_clap, tiny_clap

__all__ = [
    "MAX_LOGIT_SCALE",
    "Backbone",
    "CheckpointNotAvailable",
    "ClapBackbone",
    "ClapFeaturizer",
    "Embedder",
    "build_clap_htsat_random",
    "build_tiny_clap",
    "clap_htsat_random",
    "from_laion_checkpoint",
    "from_pretrained",
    "tiny_clap",
]
