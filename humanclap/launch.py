"""Launching training runs: Hydra multiruns (sweeps) and DDP without silent surprises.

**The hazard.** ``strategy=ddp`` (likewise ``auto`` with several devices, FSDP and DeepSpeed) starts
ranks 1..N-1 by running the command line again. Under a Hydra multirun (``-m``, ``sweep=optuna``)
every re-executed rank composes and sweeps on its own: with the Optuna sweeper, ranks trained with
different learning rates and nothing failed.

**The rule** (:func:`check_launch`, called once the Trainer is built, before anything trains): in a
multirun, a strategy that re-executes the script is refused unless a cluster environment has
already started the ranks, which is what ``hydra/launcher=slurm`` does with ``tasks_per_node ==
trainer.devices`` (Lightning's SLURMEnvironment then starts nothing; torchrun works the same way).
Locally use ``trainer=ddp_spawn``: the job spawns its ranks and hands them its composed config.
The error names both fixes. We refuse instead of switching to ddp_spawn behind the user's back:
spawn pickles the module and data into every rank and starts slower, so it should be chosen.

**Belt and braces.** :class:`SameHyperparameters` gathers every rank's hyperparameters and learning
rates at the start of ``fit`` and stops the run before the first step if they differ, whatever
started the ranks; the per-rank record is part of every checkpoint.

ddp_spawn trains in child processes, and Lightning hands the weights and the best checkpoint path
back to the job's process but not the callbacks' state (the probe history the run summary and the
sweep objective come from): :func:`recover_spawned_state` reloads it from ``last.ckpt``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher, _SubprocessScriptLauncher
from omegaconf import DictConfig

from humanclap.backbones.checkpoint_safety import LIGHTNING_CHECKPOINT, read_torch_checkpoint

log = logging.getLogger(__name__)

# Config keys that name the run and say where it writes. They are not hyperparameters, and ranks
# that Lightning re-executes resolve run_name's timestamp a few seconds after rank 0.
RUN_IDENTITY_KEYS = ("run_name", "sweep_name", "paths", "logger", "resume", "overwrite_export")


class MultirunDDPError(RuntimeError):
    """A Hydra multirun with a DDP strategy whose ranks would compose their own config."""


class HyperparameterMismatch(RuntimeError):
    """The ranks of one run were about to train with different hyperparameters."""


def is_multirun() -> bool:
    """True inside a job of ``-m`` / ``hydra.mode=MULTIRUN`` (any sweeper, any launcher)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_launch(trainer: L.Trainer, multirun: bool | None = None) -> None:
    """Refuse a multirun whose DDP ranks would be started by re-running the command line."""
    multirun = is_multirun() if multirun is None else multirun
    strategy = trainer.strategy
    if not multirun or not isinstance(getattr(strategy, "launcher", None), _SubprocessScriptLauncher):
        return
    environment = strategy.cluster_environment
    if environment is not None and environment.creates_processes_externally:
        log.info("multirun + %s: the %d ranks were started by %s, all with this job's config",
                 type(strategy).__name__, _processes(strategy), type(environment).__name__)
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
    return len(getattr(strategy, "parallel_devices", None) or [None]) * getattr(strategy, "num_nodes", 1)


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
    last = Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
    if not last.is_file():
        log.warning("ddp_spawn: no %s, so the probe history and run summary stay empty", last)
        return
    states = read_torch_checkpoint(last, LIGHTNING_CHECKPOINT).get("callbacks", {})
    for callback in trainer.callbacks:
        if callback.state_key in states:
            callback.load_state_dict(states[callback.state_key])


def fingerprint(hparams: Mapping[str, Any]) -> str:
    """sha256 of the hyperparameters, without :data:`RUN_IDENTITY_KEYS` of a stored ``config``."""
    return hashlib.sha256(json.dumps(_comparable(hparams), sort_keys=True, default=str).encode()).hexdigest()


def _comparable(hparams: Mapping[str, Any]) -> dict[str, Any]:
    comparable = dict(hparams)
    if isinstance(comparable.get("config"), Mapping):
        comparable["config"] = {k: v for k, v in comparable["config"].items() if k not in RUN_IDENTITY_KEYS}
    return comparable


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {key: leaf for k, v in value.items() for key, leaf in _flat(v, f"{prefix}{k}.").items()}
    return {prefix.rstrip("."): value}


def rank_record(rank: int, hparams: Mapping[str, Any], learning_rates: list[float]) -> dict[str, Any]:
    """What one rank trains with: its hyperparameters' fingerprint and its optimizers' learning rates."""
    return {"rank": rank, "sha256": fingerprint(hparams), "lr": [float(lr) for lr in learning_rates]}


def mismatches(gathered: list[tuple[dict[str, Any], Mapping[str, Any]]]) -> list[str]:
    """Human-readable differences between rank 0 and every other rank; ``[]`` when all agree.

    ``gathered``: per rank, ``(rank_record(...), hparams)``.
    """
    (first, first_hparams), problems = gathered[0], []
    reference = _flat(_comparable(first_hparams))
    for record, hparams in gathered[1:]:
        if record["lr"] != first["lr"]:
            problems.append(f"rank {record['rank']}: learning rates {record['lr']} (rank 0: {first['lr']})")
        if record["sha256"] != first["sha256"]:
            theirs = _flat(_comparable(hparams))
            keys = sorted(k for k in set(reference) | set(theirs) if reference.get(k) != theirs.get(k))
            problems += [f"rank {record['rank']}: {k} = {theirs.get(k)!r} (rank 0: {reference.get(k)!r})"
                         for k in keys]
    return problems


class SameHyperparameters(L.Callback):
    """Stops a run whose ranks would train with different hyperparameters (see module docstring).

    At the start of ``fit`` every rank contributes :func:`rank_record` (fingerprint of
    ``pl_module.hparams`` and the optimizers' learning rates); ``ranks`` keeps the gathered records
    (in rank order) and is stored in checkpoints. One process: a single record, no communication.
    """

    def __init__(self) -> None:
        self.ranks: list[dict[str, Any]] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        hparams = dict(pl_module.hparams)
        rates = [group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups]
        mine = (rank_record(trainer.global_rank, hparams, rates), hparams)
        gathered = [mine]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, mine)
        problems = mismatches(gathered)
        if problems:  # every rank sees the same gathered list, so all of them stop here together
            raise HyperparameterMismatch(
                "the ranks of this run have different hyperparameters:\n  " + "\n  ".join(problems[:20])
                + "\nEach rank composed its own config. Under a Hydra multirun use trainer=ddp_spawn locally or "
                  "hydra/launcher=slurm (see humanclap/launch.py).")
        self.ranks = [record for record, _ in gathered]
        if len(self.ranks) > 1:
            log.info("all %d ranks train with the same hyperparameters (sha256 %s…, lr %s)",
                     len(self.ranks), self.ranks[0]["sha256"][:12], self.ranks[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"ranks": self.ranks}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.ranks = list(state_dict["ranks"])
