"""How many threads torch uses inside one operation on the CPU (intra-op threads), chosen per run.

``threads=<n>``, ``threads=null``, ``OMP_NUM_THREADS`` or ``threads=auto`` (the default: the usable
CPUs per process, limited by the load and the model size), first match wins.
See docs/training.md#cpu-threads.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from humanclap.errors import HumanClapError

log = logging.getLogger(__name__)

AUTO = "auto"
# Tells the tiny built-in models (~58 k parameters; one thread: 27.9 it/s on 2 idle cores, two: 21.8, issue 13)
# from real backbones (laion/clap-htsat-*: ~150 M), whose larger operations can gain from threads.
SMALL_MODEL_PARAMETERS = 5_000_000
# Written next to OMP_NUM_THREADS when this module set it, so a later choice (a child process, the
# next job of a local multirun) tells it from a user's setting.
MARKER = "HUMANCLAP_AUTO_THREADS"


class ThreadsSettingError(HumanClapError, ValueError):
    """A ``threads=`` value that is neither ``auto``, a positive integer nor null."""


@dataclass(frozen=True)
class ThreadChoice:
    threads: int | None  # None: torch's current setting is kept
    reason: str  # what it was chosen from, for the log line


def choose_threads(
    setting: int | str | None,
    *,
    accelerator: str,
    cpus: int,
    processes: int = 1,
    load: float | None = None,
    parameters: int | None = None,
    environment: Mapping[str, str] | None = None,
) -> ThreadChoice:
    """Intra-op threads for ``threads=setting`` (rules: docs/training.md#cpu-threads).

    ``cpus``: CPUs this process may use (:func:`usable_cpus`); ``processes``: training processes
    sharing them (:func:`processes_sharing_cpus`); ``load``: the 1-minute load average;
    ``parameters``: the model's size (None: unknown); ``environment``: where OMP_NUM_THREADS is
    looked up (default ``os.environ``).
    """
    environment = os.environ if environment is None else environment
    setting = _parse(setting)
    facts = f"{cpus} CPU{'s' if cpus != 1 else ''} available"
    if processes > 1:
        facts += f" to {processes} processes"
    if load is not None:
        facts += f", load {load:.1f}"
    omp = environment.get("OMP_NUM_THREADS")
    if omp is not None and omp == environment.get(MARKER):
        omp = None  # written by an earlier automatic choice, not by the user
    if isinstance(setting, int):
        return ThreadChoice(
            setting,
            f"{facts}; threads={setting} overrides OMP_NUM_THREADS={omp}"
            if omp
            else f"{facts}; threads={setting}",
        )
    if setting is None:
        return ThreadChoice(None, f"threads=null keeps torch's setting; {facts}")
    if omp:
        first = omp.split(",")[0].strip()  # OpenMP also allows a list, one count per nesting level
        return ThreadChoice(
            int(first) if first.isdigit() and int(first) > 0 else None,
            f"OMP_NUM_THREADS={omp} in the environment; {facts}",
        )
    share = max(1, cpus // max(1, processes))
    if accelerator != "cpu":
        return ThreadChoice(
            share, f"{facts}; training on {accelerator}: divided among processes only"
        )
    if parameters is not None and parameters < SMALL_MODEL_PARAMETERS:
        return ThreadChoice(
            1, f"{facts}; a {_count(parameters)}-parameter model runs fastest on one thread"
        )
    idle = math.floor(
        (cpus - (load or 0.0)) / max(1, processes) + 0.5
    )  # this process's part of the idle CPUs
    if idle < share:
        return ThreadChoice(max(1, idle), f"{facts}; CPUs busy with other processes left out")
    return ThreadChoice(share, facts)


def _parse(setting: Any) -> int | str | None:
    if setting is None or setting == AUTO:
        return setting
    if isinstance(setting, str) and setting.strip().isdigit():
        setting = int(setting)
    if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        return setting
    raise ThreadsSettingError(
        f"threads={setting!r} is not a thread count: use threads=auto, threads=<n> with "
        f"n >= 1, or threads=null to keep torch's setting"
    )


def usable_cpus(
    environment: Mapping[str, str] | None = None, cgroup_root: Path = Path("/sys/fs/cgroup")
) -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup CPU quota (containers,
    CI runners; rounded down) and by ``SLURM_CPUS_PER_TASK`` in a Slurm job."""
    environment = os.environ if environment is None else environment
    cpus = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, math.floor(quota))
    slurm = environment.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cpus = min(cpus, int(slurm))
    return max(1, cpus)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time per period the cgroup may use (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``); None: no limit."""
    for quota_file, period_file in (
        (root / "cpu.max", None),
        (root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"),
    ):
        try:
            fields = quota_file.read_text().split()
            if period_file is not None:
                fields.append(period_file.read_text().strip())
            quota, period = int(fields[0]), int(fields[1])
        except (OSError, ValueError, IndexError):  # absent, or "max" (v2: no limit)
            continue
        return quota / period if quota > 0 and period > 0 else None  # v1: -1 is no limit
    return None


def processes_sharing_cpus(
    trainer: Any = None, environment: Mapping[str, str] | None = None
) -> int:
    """Training processes of this run on this node that share this process's CPUs.

    Ranks that srun started as Slurm tasks with ``SLURM_CPUS_PER_TASK`` each have their own CPUs: 1.
    Else ``LOCAL_WORLD_SIZE`` (torchrun), else the processes per node Lightning runs (``trainer.num_devices``).
    """
    from lightning.fabric.plugins.environments import SLURMEnvironment

    environment = os.environ if environment is None else environment
    cluster = getattr(getattr(trainer, "strategy", None), "cluster_environment", None)
    if (
        environment.get("SLURM_CPUS_PER_TASK")
        and isinstance(cluster, SLURMEnvironment)
        and cluster.creates_processes_externally
    ):
        return 1
    local = environment.get("LOCAL_WORLD_SIZE", "")
    if local.isdigit() and int(local) > 0:
        return int(local)
    return max(1, int(getattr(trainer, "num_devices", 1) or 1))


def apply_cpu_threads(
    setting: int | str | None,
    *,
    accelerator: str,
    processes: int = 1,
    model: torch.nn.Module | None = None,
) -> ThreadChoice:
    """:func:`choose_threads` with this machine's figures; sets torch, numpy's BLAS (and, with several
    processes, ``OMP_NUM_THREADS``) and logs the choice in one line."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    parameters = sum(p.numel() for p in model.parameters()) if model is not None else None
    choice = choose_threads(
        setting,
        accelerator=accelerator,
        cpus=usable_cpus(),
        processes=processes,
        load=load,
        parameters=parameters,
    )
    if choice.threads is not None:
        torch.set_num_threads(choice.threads)
        limit_blas_threads(choice.threads)
        if processes > 1 and os.environ.get("OMP_NUM_THREADS") in (None, os.environ.get(MARKER)):
            os.environ["OMP_NUM_THREADS"] = os.environ[MARKER] = str(choice.threads)
    log.info("CPU threads: %d (%s)", torch.get_num_threads(), choice.reason)
    return choice


def limit_blas_threads(threads: int) -> None:
    """The BLAS numpy loaded (OpenBLAS, whose idle threads spin too) to ``threads``: the mel spectrograms
    of every batch go through it (measured on a busy machine: 104-138 ms per Quickstart batch at 2 threads,
    66-70 ms at 1). Needs threadpoolctl (installed with scikit-learn); without it, nothing changes."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(threads, user_api="blas")


def apply_to_trainer(
    setting: int | str | None, trainer: Any, model: torch.nn.Module | None = None
) -> ThreadChoice:
    """:func:`apply_cpu_threads` for a Lightning trainer: its accelerator and its processes per node."""
    from lightning.pytorch.accelerators import CPUAccelerator

    accelerator = (
        "cpu"
        if isinstance(trainer.accelerator, CPUAccelerator)
        else type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    )
    return apply_cpu_threads(
        setting, accelerator=accelerator, processes=processes_sharing_cpus(trainer), model=model
    )


def _count(parameters: int) -> str:
    if parameters >= 1_000_000:
        return f"{parameters / 1e6:.1f}M"
    return f"{parameters / 1e3:.0f}k" if parameters >= 1000 else str(parameters)
