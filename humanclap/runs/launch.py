"""Launching training runs: Hydra multiruns (sweeps) and DDP without silent surprises.

:func:`check_launch` refuses a multirun with a strategy that re-executes the script (every rank
would sweep on its own) unless a cluster environment started the ranks;
:func:`recover_spawned_state` brings back the callbacks' state after ``ddp_spawn``.
See docs/training.md#multiruns-and-ddp.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies.launchers import (
    _MultiProcessingLauncher,
    _SubprocessScriptLauncher,
)
from omegaconf import DictConfig

from humanclap.backbones.checkpoint_safety import LIGHTNING_CHECKPOINT, read_torch_checkpoint

log = logging.getLogger(__name__)


class MultirunDDPError(RuntimeError):
    """A Hydra multirun with a DDP strategy whose ranks would compose their own config."""


def is_multirun() -> bool:
    """True inside a job of ``-m`` / ``hydra.mode=MULTIRUN`` (any sweeper, any launcher)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_launch(trainer: L.Trainer, multirun: bool | None = None) -> None:
    """Refuse a multirun whose DDP ranks would be started by re-running the command line."""
    multirun = is_multirun() if multirun is None else multirun
    strategy = trainer.strategy
    if not multirun or not isinstance(
        getattr(strategy, "launcher", None), _SubprocessScriptLauncher
    ):
        return
    environment = strategy.cluster_environment
    if environment is not None and environment.creates_processes_externally:
        log.info(
            "multirun + %s: the %d ranks were started by %s, all with this job's config",
            type(strategy).__name__,
            _processes(strategy),
            type(environment).__name__,
        )
        return
    n = _processes(strategy)
    raise MultirunDDPError(
        f"Hydra multirun (-m / a sweep) with {type(strategy).__name__} on {n} processes: Lightning would start "
        f"the other {n - 1} rank(s) by running this command line again, and each would compose and sweep its own "
        "job (with sweep=optuna: other hyperparameters than rank 0) without any error.\n"
        f"Locally: trainer=ddp_spawn trainer.devices={n} (the job spawns its ranks with its own config).\n"
        "On Slurm: hydra/launcher=slurm, which starts hydra.launcher.tasks_per_node = trainer.devices "
        "tasks per node (Slurm starts the ranks, Lightning starts none). See README, 'Run on a Slurm cluster'."
    )


def _processes(strategy: Any) -> int:
    return len(getattr(strategy, "parallel_devices", None) or [None]) * getattr(
        strategy, "num_nodes", 1
    )


def export_dir(cfg: DictConfig) -> Path:
    """``paths.export_dir``, and in a multirun ``<paths.export_dir>/<job number>``.

    The jobs of a sweep share ``run_name`` (the sweep's name, so ``paths.export_dir`` is
    ``checkpoints/<sweep>``) and would overwrite each other's exported model; the job number matches
    the job's ``multirun/<sweep>/<n>`` directory.
    """
    path = Path(cfg.paths.export_dir)
    return path / str(HydraConfig.get().job.num) if is_multirun() else path


def recover_spawned_state(trainer: L.Trainer, checkpoint: ModelCheckpoint) -> None:
    """After ``fit`` under ddp_spawn/ddp_fork: load the callbacks' state from the run's ``last.ckpt``.

    The callbacks of this process never saw the run (it happened in the spawned ranks); rank 0's
    callbacks saved their state, including the probe history, with every checkpoint. No-op for
    every other strategy.
    """
    if not isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher):
        return
    last = (
        Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
    )
    if not last.is_file():
        log.warning("ddp_spawn: no %s, so the probe history and run summary stay empty", last)
        return
    states = read_torch_checkpoint(last, LIGHTNING_CHECKPOINT).get("callbacks", {})
    for callback in trainer.callbacks:
        if callback.state_key in states:
            callback.load_state_dict(states[callback.state_key])
