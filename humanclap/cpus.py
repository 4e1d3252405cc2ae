"""The CPUs a process may use and how many processes of the run share them (threads and workers)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


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


__all__ = ["cgroup_cpu_quota", "processes_sharing_cpus", "usable_cpus"]
