"""Shared test fixtures: everything offline, tiny models built once per session."""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

import pytest

# No test may reach the network: hub lookups fail fast instead of retrying for minutes.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# pytest-xdist: `python -m pytest` runs as `-n auto`, which starts one worker per usable CPU, but
MAX_WORKERS = 4  # at most this many (each worker and the DDP ranks it starts take 1-2 GB) ...
WORKER_MEMORY = 2 * 2**30  # ... and no more than the available memory / this


def _usable_cpus() -> int:
    try:
        return len(
            os.sched_getaffinity(0)
        )  # the CPUs this process may run on (taskset, cgroup cpusets)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            return next(
                int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:")
            )
    except (OSError, StopIteration, ValueError):
        return None


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config):
    """`python -m pytest` without -n runs as `-n auto --dist loadgroup` when pytest-xdist is installed
    and enabled; `-n 0` / `-p no:xdist` run serially. (Not `-n auto` in addopts: `-p no:xdist` would
    reject it, and so would a pytest without pytest-xdist.)"""
    if config.pluginmanager.hasplugin("xdist") and not hasattr(
        config, "workerinput"
    ):  # not in a worker
        if (
            config.option.numprocesses is None
            and not config.option.tx
            and config.option.dist == "no"
        ):
            config.option.numprocesses = "auto"
        if config.option.numprocesses and config.option.dist == "no":
            config.option.dist = (
                "loadgroup"  # as `load`, but an xdist_group's tests share one worker
            )
    return (yield)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: `-p no:xdist` does not know it
def pytest_xdist_auto_num_workers(config):
    """How many workers `-n auto` starts: one per usable CPU, at most MAX_WORKERS, and no more than
    the available memory holds (PYTEST_XDIST_AUTO_NUM_WORKERS=<n> or `-n <n>` decide instead)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    workers = min(_usable_cpus(), MAX_WORKERS)
    memory = _available_memory()
    if memory is not None:
        workers = min(workers, max(1, memory // WORKER_MEMORY))
    return workers


# Under pytest-xdist every worker trains and evaluates at the same time, so each one gets an equal
# share of the CPUs for torch's intra-op threads (1 on a 2-core machine): with the default (one
# thread per core in every worker) the OpenMP threads of the workers spin-wait on each other and a
# run is several times slower. Set before torch is imported, so the subprocesses and DDP ranks the
# tests start inherit it; an explicit OMP_NUM_THREADS is kept (the training entry point respects it too).
if os.environ.get("PYTEST_XDIST_WORKER"):
    _workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _usable_cpus() // _workers)))
    os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    """``slow`` tests first: pytest-xdist hands tests out in collection order, and a minutes-long
    end-to-end run handed out last keeps one worker busy after the others have finished (longest
    first is the classic remedy). The order is the same in every worker, as xdist requires.

    An explicit ``@pytest.mark.timeout(s)`` (a DDP test that must not hang for the default 15
    minutes) is sized for one test at a time on an idle machine; under pytest-xdist each of the n
    workers gets 1/n of the CPUs, so it allows n times as long. HUMANCLAP_TIMEOUT_SCALE=<x>
    multiplies it further on a loaded machine."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable
    scale = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1) * float(
        os.environ.get("HUMANCLAP_TIMEOUT_SCALE", 1)
    )
    if scale == 1:
        return
    for item in items:
        mark = item.get_closest_marker("timeout")
        if mark is not None and mark.args and mark.args[0]:
            item.add_marker(
                pytest.mark.timeout(mark.args[0] * scale, *mark.args[1:], **mark.kwargs),
                append=False,
            )


@pytest.fixture(autouse=True)
def _no_leftover_ranks():
    """A test that fails or times out while torch.multiprocessing.spawn (or Lightning's ddp_spawn)
    waits for its ranks leaves them running: spawn only joins them when they end. End them, so they
    do not load the CPUs of the tests after it (and, under pytest-xdist, of the other workers)."""
    yield
    spawn = sys.modules.get("torch.multiprocessing.spawn")
    if spawn is None:
        return
    for process in multiprocessing.active_children():
        if getattr(process, "_target", None) is spawn._wrap:
            process.terminate()
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tiny checkpoints are built into a per-session cache, never into the user's home."""
    os.environ["HUMANCLAP_CACHE"] = str(tmp_path_factory.mktemp("humanclap-cache"))


@pytest.fixture(scope="session")
def tiny_backbone():
    from humanclap.backbones import tiny_clap

    return tiny_clap()


@pytest.fixture(scope="session")
def tiny_fused_backbone():
    from humanclap.backbones import tiny_clap

    return tiny_clap(enable_fusion=True)


RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _composer(config_name: str, tmp_path: Path, paths: dict[str, str]):
    """Compose recipes/<config_name>.yaml as `python -m humanclap.<config_name> <overrides>` would."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(RECIPES)):
            cfg = compose(
                config_name=config_name, overrides=list(overrides), return_hydra_config=True
            )
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # as in a real run: the job config does not carry the hydra node
            for key, relative in paths.items():
                cfg.paths[key] = str(tmp_path / relative)
        return cfg

    return _compose


@pytest.fixture
def compose_train(tmp_path):
    """Compose recipes/train.yaml, writing under tmp_path."""
    from hydra.core.global_hydra import GlobalHydra

    yield _composer("train", tmp_path, {"output_dir": "run", "export_dir": "export"})
    GlobalHydra.instance().clear()


@pytest.fixture
def compose_evaluate(tmp_path):
    """Compose recipes/evaluate.yaml, writing under tmp_path/evaluation."""
    from hydra.core.global_hydra import GlobalHydra

    yield _composer("evaluate", tmp_path, {"output_dir": "evaluation"})
    GlobalHydra.instance().clear()


@pytest.fixture
def compose_score(tmp_path):
    """Compose recipes/score.yaml, writing under tmp_path/score."""
    from hydra.core.global_hydra import GlobalHydra

    yield _composer("score", tmp_path, {"output_dir": "score"})
    GlobalHydra.instance().clear()
