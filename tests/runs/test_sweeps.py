"""Sweeps: Hydra multirun with the basic, submitit and Slurm launchers, and the Optuna sweeper."""

from __future__ import annotations

import csv
import math
import os
import pickle

import pytest
import yaml
from cli import REPO, SUMMARY_LINE, last_checkpoint, only_sweep, run_record, run_train
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from humanclap.runs.export import summarize

RECIPES = str(REPO / "recipes")


@pytest.fixture
def compose_with_hydra():
    """The composed config including its ``hydra`` node (launcher, sweeper), as the sweep process sees it."""

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=RECIPES):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None


# -- the entry point's return value -------------------------------------------------------------------


def test_the_objective_is_the_metric_of_the_exported_epoch():
    history = [
        (-1, {"relevance/srcc": 0.1}),
        (0, {"relevance/srcc": 0.5}),
        (1, {"relevance/srcc": 0.3}),
    ]
    assert summarize(history, best_epoch=0, metric="relevance/srcc")["objective"] == 0.5
    # no best checkpoint (nothing monitored): the last epoch is exported, and returned
    assert summarize(history, best_epoch=None, metric="relevance/srcc")["objective"] == 0.3
    assert summarize([], best_epoch=None, metric="relevance/srcc")["objective"] is None


# -- basic launcher -----------------------------------------------------------------------------------

README_SWEEP = "python -m humanclap.train -m recipe=wsce_mae loss.lambdas.wsce=0.05,0.1,0.2"


@pytest.mark.slow
def test_the_readme_sweep_runs_in_a_project_folder_and_tabulates_its_jobs(tmp_path):
    """The README's sweep in a fresh working directory, with nothing about paths on the command line.

    Two values instead of three and TINY data (tests/cli.py): each job on the default data takes minutes."""
    assert README_SWEEP in (REPO / "README.md").read_text()
    *_, recipe, values = README_SWEEP.split()
    assert recipe == "recipe=wsce_mae" and values.startswith("loss.lambdas.wsce=")
    result = run_train(tmp_path, "-m", recipe, "loss.lambdas.wsce=0.05,0.2")

    sweep = only_sweep(tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        sweep
    ]  # every export under the sweep
    with open(tmp_path / "multirun" / sweep / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    table = (tmp_path / "multirun" / sweep / "results.md").read_text()
    assert table in result.stdout  # printed at the end
    assert [row["job"] for row in rows] == ["0", "1"]
    for job, (wsce, row) in enumerate(zip([0.05, 0.2], rows)):
        output = tmp_path / "multirun" / sweep / str(job)
        assert f"loss.lambdas.wsce={wsce}" in yaml.safe_load(
            (output / ".hydra" / "overrides.yaml").read_text()
        )
        assert last_checkpoint(output)["hyper_parameters"]["config"]["loss"]["lambdas"] == {
            "wsce": wsce,
            "mse": 0,
            "mae": 1,
        }
        # The jobs share run_name (the sweep's name), so each exports into checkpoints/<sweep>/<job number>.
        export = tmp_path / "checkpoints" / sweep / str(job)
        record = run_record(export)
        assert record["config"]["loss"]["lambdas"]["wsce"] == wsce
        assert record["summary"]["export_dir"] == f"checkpoints/{sweep}/{job}"
        assert [epoch for epoch, _ in record["history"]] == [-1, 0]
        assert (
            row["status"] == "COMPLETED" and f"loss.lambdas.wsce={wsce}" in row["overrides"].split()
        )
        assert float(row["objective"]) == pytest.approx(record["summary"]["objective"], nan_ok=True)
        assert row["exported_epoch"] == str(record["summary"]["exported_epoch"])
        assert row["export_dir"] == f"checkpoints/{sweep}/{job}"
        assert f"| {job} | COMPLETED | " in table and f"checkpoints/{sweep}/{job} |" in table


# -- submitit -----------------------------------------------------------------------------------------


class _Submitted(Exception):
    """Raised in place of submitting: carries the sbatch script the launcher would submit."""


@pytest.mark.parametrize("devices", [1, 4])
def test_slurm_launcher_asks_for_one_task_per_gpu(
    devices, compose_with_hydra, tmp_path, monkeypatch
):
    """hydra/launcher=slurm through the plugin's own code, up to the sbatch script it would submit."""
    import submitit

    fake_bin = tmp_path / "bin"  # submitit refuses to build a Slurm executor without srun on PATH
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    executors = []

    def auto_executor(**kwargs):
        executor = real_auto_executor(**kwargs)
        executors.append(executor)

        def map_array(*_):
            raise _Submitted(
                executor._executor._make_submission_file_text("python -m humanclap.train", "uid")
            )

        executor.map_array = map_array
        return executor

    real_auto_executor = submitit.AutoExecutor
    monkeypatch.setattr(submitit, "AutoExecutor", auto_executor)
    cfg = compose_with_hydra(
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "trainer=gpu",
        f"trainer.devices={devices}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    )
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    with pytest.raises(_Submitted) as submitted:
        launcher.launch([["loss.lambdas.wsce=0.1"]], initial_job_idx=0)

    sbatch = str(submitted.value).splitlines()
    for line in [
        "--partition=gpu",
        f"--ntasks-per-node={devices}",
        f"--gpus-per-node={devices}",
        "--nodes=1",
        "--time=1440",
        "--signal=USR2@120",
        "--mem=64GB",
        "--cpus-per-task=8",
    ]:
        assert f"#SBATCH {line}" in sbatch
    assert executors[0]._executor.max_num_timeout == 3
    assert any(line.startswith("srun ") for line in sbatch)


# -- Optuna -------------------------------------------------------------------------------------------


def test_optuna_sweep_config(compose_with_hydra):
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    cfg = compose_with_hydra("sweep=optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.mode.name == "MULTIRUN"
    assert sweeper.direction == "maximize" and cfg.optimized_metric == "relevance/srcc"
    sampler = instantiate(sweeper.sampler)
    assert type(sampler).__name__ == "TPESampler" and sweeper.sampler.seed == 0
    distributions, fixed = create_params_from_overrides(
        [f"{k}={v}" for k, v in sweeper.params.items()]
    )
    assert (
        set(distributions) == {"loss.lambdas.wsce", "loss.lambdas.mse", "optimizer.lr"}
        and not fixed
    )
    assert {type(distributions[key]).__name__ for key in ("optimizer.lr", "loss.lambdas.wsce")} == {
        "LogUniformDistribution"
    }


@pytest.mark.slow
def test_optuna_trials_run_as_submitit_jobs_and_the_best_returned_value_wins(tmp_path):
    """sweep=optuna with hydra/launcher=submitit_local, the Slurm code path without Slurm: every trial
    runs in its own process, and Optuna gets what each entry point returned."""
    result = run_train(
        tmp_path,
        "-m",
        "sweep=optuna",
        "hydra/launcher=submitit_local",
        "hydra.sweeper.n_trials=2",
        "optimizer.lr=tag(log, interval(1e-3, 1e-2))",
    )  # the tiny model's lr range

    assert "Submitit 'local' sweep output dir" in result.stdout + result.stderr
    assert not SUMMARY_LINE.search(
        result.stdout + result.stderr
    )  # no training in the sweeping process
    sweep = only_sweep(tmp_path)
    returned, trials = [], []
    for job_folder in sorted(
        p for p in (tmp_path / "multirun" / sweep / ".submitit").iterdir() if p.name != "%j"
    ):
        assert SUMMARY_LINE.search("".join(log.read_text() for log in job_folder.glob("*_log.*")))
        (result_file,) = job_folder.glob("*_result.pkl")
        outcome, job_return = pickle.loads(result_file.read_bytes())
        assert outcome == "success"
        returned.append(job_return.return_value)
    assert len(returned) == 2
    for job in range(2):
        record = run_record(tmp_path / "checkpoints" / sweep / str(job))
        config = record["config"]
        params = {
            "loss.lambdas.wsce": config["loss"]["lambdas"]["wsce"],
            "loss.lambdas.mse": config["loss"]["lambdas"]["mse"],
            "optimizer.lr": config["optimizer"]["lr"],
        }
        assert 0.01 <= params["loss.lambdas.wsce"] <= 1 and 1e-3 <= params["optimizer.lr"] <= 1e-2
        trials.append((record["summary"]["objective"], params))
    assert trials[0][1] != trials[1][1]  # the sampler proposed two different points
    assert sorted(returned) == pytest.approx(
        sorted(value for value, _ in trials)
    )  # main returned the objective

    # the results table, written by the sweeping process from files the trial processes wrote
    with open(tmp_path / "multirun" / sweep / "results.csv", newline="") as file:
        table = [float(row["objective"]) for row in csv.DictReader(file)]
    assert table == pytest.approx([value for value, _ in trials], nan_ok=True)

    results = yaml.safe_load(
        (tmp_path / "multirun" / sweep / "optimization_results.yaml").read_text()
    )
    best_value, best_params = max(
        ((v, p) for v, p in trials if not math.isnan(v)), key=lambda t: t[0]
    )
    assert results["best_value"] == pytest.approx(best_value)
    assert results["best_params"] == pytest.approx(best_params)
