"""threads=: how many intra-op threads a run gives torch on the CPU (humanclap/lit/cpu_threads.py)."""

from __future__ import annotations

import logging
import os
import re
from types import SimpleNamespace

import pytest
import torch
from cli import run_train
from lightning.fabric.plugins.environments import SLURMEnvironment

from humanclap.cpus import cgroup_cpu_quota, processes_sharing_cpus, usable_cpus
from humanclap.lit.cpu_threads import (
    MARKER,
    SMALL_MODEL_PARAMETERS,
    ThreadsSettingError,
    apply_cpu_threads,
    choose_threads,
)

BIG = 150_000_000  # a real CLAP backbone's size


def choose(setting="auto", *, accelerator="cpu", environment=None, **machine):
    return choose_threads(
        setting, accelerator=accelerator, environment=environment or {}, **machine
    )


@pytest.mark.parametrize(
    "cpus, processes, load, expected",
    [
        (2, 1, 0.0, 2),  # idle: every CPU
        (2, 1, 0.4, 2),  # 1.6 idle CPUs round to 2
        (2, 1, 0.6, 1),  # 1.4 round to 1
        (2, 1, 2.1, 1),  # both busy: still one thread
        (16, 4, 0.0, 4),  # 16 CPUs shared by 4 DDP processes
        (16, 2, 10.2, 3),  # 5.8 idle CPUs for 2 processes: 2.9 each
        (16, 3, 0.0, 5),  # 16 // 3
        (8, 16, 0.0, 1),  # more processes than CPUs
    ],
)
def test_auto_divides_the_idle_cpus_among_the_processes(cpus, processes, load, expected):
    assert choose(cpus=cpus, processes=processes, load=load, parameters=BIG).threads == expected


def test_the_reason_names_what_the_choice_was_made_from():
    assert (
        choose(cpus=2, load=2.1, parameters=BIG).reason
        == "2 CPUs available, load 2.1; CPUs busy with other processes left out"
    )
    assert (
        choose(cpus=16, processes=4, load=0.5, parameters=BIG).reason
        == "16 CPUs available to 4 processes, load 0.5"
    )


def test_a_small_model_gets_one_thread_even_on_idle_cpus():
    choice = choose(cpus=64, load=0.0, parameters=57_736)
    assert (choice.threads, choice.reason) == (
        1,
        "64 CPUs available, load 0.0; a 58k-parameter model runs fastest on one thread",
    )
    assert choose(cpus=64, load=0.0, parameters=SMALL_MODEL_PARAMETERS).threads == 64
    assert (
        choose(cpus=64, load=0.0, parameters=None).threads == 64
    )  # size unknown: no small-model rule


def test_on_a_gpu_only_the_division_among_processes_applies():
    choice = choose(accelerator="cuda", cpus=32, processes=4, load=30.0, parameters=57_736)
    assert (choice.threads, choice.reason) == (
        8,
        "32 CPUs available to 4 processes, load 30.0; "
        "training on cuda: divided among processes only",
    )


def test_an_explicit_count_wins_over_everything():
    assert choose(4, cpus=2, load=3.0, parameters=100).threads == 4
    assert choose("4", cpus=2).threads == 4  # as a string from the command line
    choice = choose(4, cpus=2, load=0.0, environment={"OMP_NUM_THREADS": "2"})
    assert (choice.threads, choice.reason) == (
        4,
        "2 CPUs available, load 0.0; threads=4 overrides OMP_NUM_THREADS=2",
    )


def test_omp_num_threads_from_the_user_is_kept():
    choice = choose(cpus=8, load=0.0, parameters=BIG, environment={"OMP_NUM_THREADS": "3"})
    assert (choice.threads, choice.reason) == (
        3,
        "OMP_NUM_THREADS=3 in the environment; 8 CPUs available, load 0.0",
    )
    assert (
        choose(cpus=8, parameters=100, environment={"OMP_NUM_THREADS": "6,2"}).threads == 6
    )  # nested levels


def test_omp_num_threads_written_by_an_earlier_choice_is_not_the_users():
    environment = {"OMP_NUM_THREADS": "1", MARKER: "1"}  # e.g. the previous job of a local multirun
    assert choose(cpus=8, load=0.0, parameters=BIG, environment=environment).threads == 8
    environment = {"OMP_NUM_THREADS": "2", MARKER: "1"}  # changed since: the user's
    assert choose(cpus=8, load=0.0, parameters=BIG, environment=environment).threads == 2


def test_null_keeps_torchs_setting():
    choice = choose(None, cpus=2, load=0.0)
    assert (choice.threads, choice.reason) == (
        None,
        "threads=null keeps torch's setting; 2 CPUs available, load 0.0",
    )


@pytest.mark.parametrize("setting", [0, -1, "two", 1.5, True])
def test_a_setting_that_is_not_a_count_is_refused_with_the_accepted_values(setting):
    with pytest.raises(
        ThreadsSettingError, match=r"use threads=auto, threads=<n> with n >= 1, or threads=null"
    ):
        choose(setting, cpus=2)


def test_usable_cpus_are_capped_by_the_cgroup_quota_and_slurm(tmp_path, monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # cgroup v2: 2.5 CPUs
    assert cgroup_cpu_quota(tmp_path) == 2.5
    assert usable_cpus({}, tmp_path) == 2
    assert usable_cpus({"SLURM_CPUS_PER_TASK": "1"}, tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus({}, tmp_path) == 8
    assert usable_cpus({"SLURM_CPUS_PER_TASK": "6"}, tmp_path) == 6
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU is still one thread
    assert usable_cpus({}, tmp_path) == 1


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    assert cgroup_cpu_quota(tmp_path) == 4.0
    assert cgroup_cpu_quota(tmp_path / "absent") is None


def test_processes_sharing_the_cpus():
    ddp = SimpleNamespace(num_devices=4, strategy=SimpleNamespace(cluster_environment=None))
    assert processes_sharing_cpus(ddp, {}) == 4  # trainer=ddp trainer.devices=4
    assert (
        processes_sharing_cpus(None, {"LOCAL_WORLD_SIZE": "2"}) == 2
    )  # torchrun --nproc_per_node 2
    assert processes_sharing_cpus(None, {}) == 1
    srun = SimpleNamespace(
        num_devices=4, strategy=SimpleNamespace(cluster_environment=SLURMEnvironment())
    )
    assert srun.strategy.cluster_environment.creates_processes_externally  # srun started the ranks
    assert (
        processes_sharing_cpus(srun, {"SLURM_CPUS_PER_TASK": "8", "LOCAL_WORLD_SIZE": "4"}) == 1
    )  # own CPUs
    assert processes_sharing_cpus(srun, {"LOCAL_WORLD_SIZE": "4"}) == 4  # no per-task CPUs: shared


def test_applying_sets_torch_numpys_blas_and_for_several_processes_the_environment(
    monkeypatch, caplog
):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    for name in ("OMP_NUM_THREADS", MARKER):
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)  # restored to unset afterwards
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="humanclap.lit.cpu_threads"):
            apply_cpu_threads(1, accelerator="cpu", processes=2)
        assert torch.get_num_threads() == 1
        assert {
            pool["num_threads"]
            for pool in threadpoolctl.threadpool_info()
            if pool["user_api"] == "blas"
        } <= {1}
        assert (
            os.environ["OMP_NUM_THREADS"] == os.environ[MARKER] == "1"
        )  # ddp_spawn ranks inherit it
        assert re.fullmatch(
            r"CPU threads: 1 \(\d+ CPUs? available to 2 processes, load [\d.]+; threads=1\)",
            caplog.messages[-1],
        )
    finally:
        torch.set_num_threads(before)
        threadpoolctl.threadpool_limits(before, user_api="blas")


def test_the_cli_chooses_and_logs_the_threads(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(MARKER, raising=False)
    result = run_train(tmp_path)
    line = r"CPU threads: 1 \(\d+ CPUs? available, load [\d.]+; a 58k-parameter model runs fastest on one thread\)"
    assert re.search(line, result.stdout + result.stderr)
    (log,) = (tmp_path / "outputs").glob("*/train.log")
    assert len(re.findall(line, log.read_text())) == 1  # once per run
