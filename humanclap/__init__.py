"""humanclap: fine-tune CLAP toward human perception, and measure whether it worked."""

from __future__ import annotations

__version__ = "0.1.0"


def _if_multirun(in_multirun, otherwise):
    """``${humanclap.if_multirun:a,b}``: ``a`` inside a job of a Hydra multirun, else ``b``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return (
        in_multirun
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        else otherwise
    )


def _config_options(group: str, key: str | None = None, *, _root_) -> str:
    """``${humanclap.config_options:<group>[,<key>]}`` in a ``--help`` template (recipes/hydra/help/):
    the options of ``recipes/<group>/`` with their descriptions, ``*`` before those the command uses."""
    from humanclap.recipe_files import chosen_options, options_help

    return options_help(group, chosen_options(_root_, group, key)).replace(
        "$", "$$"
    )  # string.Template


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("humanclap.if_multirun", _if_multirun, replace=True)
    OmegaConf.register_new_resolver("humanclap.config_options", _config_options, replace=True)


# Here rather than in humanclap.train: every process that composes recipes/ imports the package first
# (the entry points, submitit jobs unpickling their task, tests).
_register_resolvers()
