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
from typing import Any

import torch

from humanclap.cpus import processes_sharing_cpus, usable_cpus
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
