"""``num_workers: auto``: DataLoader worker processes from the CPUs this process may use."""

from __future__ import annotations

from typing import Any

from humanclap.cpus import processes_sharing_cpus, usable_cpus
from humanclap.errors import HumanClapError

AUTO = "auto"


class WorkersSettingError(HumanClapError, ValueError):
    """A ``num_workers`` value that is neither ``auto`` nor an integer >= 0."""


def resolve_num_workers(setting: Any, option: str = "num_workers", trainer: Any = None) -> int:
    """``auto``: the CPUs available to this process / the processes of the run sharing them, minus one
    for the process itself, at least 0 (:mod:`humanclap.cpus`: affinity, cgroup quota,
    ``SLURM_CPUS_PER_TASK``; ``LOCAL_WORLD_SIZE`` or the trainer's devices). An integer >= 0 as given."""
    if isinstance(setting, str) and setting.strip().lower() == AUTO:
        return max(0, usable_cpus() // processes_sharing_cpus(trainer) - 1)
    if isinstance(setting, str) and setting.strip().isdigit():
        setting = int(setting)
    if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 0:
        return setting
    raise WorkersSettingError(
        f"{option}={setting!r}: use {option}=auto (CPUs per process - 1) or a whole number >= 0 "
        f"(0 loads in the main process)"
    )
