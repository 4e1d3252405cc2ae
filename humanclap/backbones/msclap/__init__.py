"""MS-CLAP (microsoft/msclap 2022 and 2023) as a humanclap backbone: a port of msclap 1.3.4's model
code (the package pins transformers<5), loaded from local files. See docs/models.md#ms-clap."""

from humanclap.backbones.msclap.backbone import (
    MsClapBackbone,
    MsClapError,
    build_random_msclap,
    fetch_commands,
    from_msclap,
    is_msclap_directory,
    is_msclap_file,
    msclap_random,
)
from humanclap.backbones.msclap.featurizer import MsClapFeaturizer
from humanclap.backbones.msclap.model import VERSIONS, MsClapConfig, MsClapModel

__all__ = [
    "VERSIONS",
    "MsClapBackbone",
    "MsClapConfig",
    "MsClapError",
    "MsClapFeaturizer",
    "MsClapModel",
    "build_random_msclap",
    "fetch_commands",
    "from_msclap",
    "is_msclap_directory",
    "is_msclap_file",
    "msclap_random",
]
