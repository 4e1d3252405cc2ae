"""MuQ-MuLan (Tencent, ``muq`` 0.1.0, hub OpenMuQ/MuQ-MuLan-large) as a humanclap backbone: a port of
its inference path (the package needs x_clip/torchvision and breaks under transformers 5), loaded
from local files. See docs/models.md#muq-mulan."""

from humanclap.backbones.muq.backbone import (
    MuqMulanBackbone,
    MuqMulanError,
    build_random_muq_mulan,
    fetch_commands,
    from_muq_mulan,
    is_muq_mulan_directory,
    muq_mulan_random,
)
from humanclap.backbones.muq.featurizer import MuqMulanFeaturizer
from humanclap.backbones.muq.model import RELEASE, MuQMuLan, MuqMulanConfig, small_config

__all__ = [
    "RELEASE",
    "MuQMuLan",
    "MuqMulanBackbone",
    "MuqMulanConfig",
    "MuqMulanError",
    "MuqMulanFeaturizer",
    "build_random_muq_mulan",
    "fetch_commands",
    "from_muq_mulan",
    "is_muq_mulan_directory",
    "muq_mulan_random",
    "small_config",
]
