"""humanclap: fine-tune CLAP toward human perception, and measure whether it worked."""

__version__ = "0.1.0"


def _if_multirun(in_multirun, otherwise):
    """``${humanclap.if_multirun:a,b}``: ``a`` inside a job of a Hydra multirun, else ``b``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return in_multirun if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN else otherwise


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("humanclap.if_multirun", _if_multirun, replace=True)


# Here rather than in humanclap.train: every process that composes recipes/ imports the package first
# (the entry points, submitit jobs unpickling their task, tests).
_register_resolvers()
