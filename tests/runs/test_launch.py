"""The Hydra multirun + DDP hazard: refused where ranks would compose their own config, checked at run time."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from cli import last_checkpoint, only_sweep, run_record, run_train
from hydra.core.hydra_config import HydraConfig

from humanclap.lit import callbacks
from humanclap.lit.callbacks import HyperparameterMismatch, SameHyperparameters
from humanclap.runs import launch, resume
from humanclap.runs.launch import MultirunDDPError, check_launch


def _trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        **kwargs,
    )


@pytest.mark.parametrize("strategy", ["ddp", "auto", "ddp_find_unused_parameters_true"])
def test_multirun_with_a_re_executing_ddp_is_refused(strategy):
    with pytest.raises(MultirunDDPError) as refused:
        check_launch(_trainer(strategy=strategy, devices=2), multirun=True)
    message = str(refused.value)
    assert "trainer=ddp_spawn trainer.devices=2" in message and "hydra/launcher=slurm" in message
    assert "tasks_per_node = trainer.devices" in message


@pytest.mark.parametrize(
    ("strategy", "devices", "multirun"),
    [
        (
            "ddp",
            2,
            False,
        ),  # a single run: Lightning re-runs the command line with the same overrides
        ("ddp_spawn", 2, True),  # the ranks are spawned with the job's config
        ("auto", 1, True),  # one process
    ],
)
def test_safe_combinations_are_allowed(strategy, devices, multirun):
    check_launch(_trainer(strategy=strategy, devices=devices), multirun=multirun)


SLURM_TASK = {
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_NNODES": "1",
    "SLURM_JOB_NAME": "train",
    "SLURM_JOB_ID": "1234",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_NODELIST": "node1",
}


def test_multirun_ddp_is_allowed_when_slurm_started_the_ranks(monkeypatch):
    for name, value in SLURM_TASK.items():
        monkeypatch.setenv(name, value)
    # as humanclap.train builds it (Lightning's Slurm auto-requeue off, see humanclap/runs/resume.py)
    check_launch(
        _trainer(strategy="ddp", devices=2, plugins=resume.cluster_plugins()), multirun=True
    )
    check_launch(_trainer(strategy="ddp", devices=2), multirun=True)
    # tasks_per_node != devices: Lightning itself refuses when fit starts the ranks (hydra/launcher=slurm
    # interpolates both from trainer.devices)
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "1")
    with pytest.raises(ValueError, match="ntasks-per-node=1"):
        _trainer(strategy="ddp", devices=2).strategy.cluster_environment.validate_settings(
            num_devices=2, num_nodes=1
        )


def test_train_refuses_before_fitting(compose_train):
    from humanclap.train import train

    cfg = compose_train(
        "hydra.mode=MULTIRUN",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "logger=csv",
        "data.pairs.n_sounds=8",
        "data.pairs.texts_per_sound=1",
        "probes=relevance",
    )
    try:
        assert launch.is_multirun()
        with pytest.raises(MultirunDDPError, match="trainer=ddp_spawn"):
            train(cfg)
        assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()
    finally:
        HydraConfig.instance().cfg = None  # no multirun mode left behind for later tests


# -- run-time check: every rank trains with the same hyperparameters -----------------------------------

CONFIG = {
    "seed": 0,
    "run_name": "wsce_mae-20260101-000000",
    "paths": {"output_dir": "outputs/a"},
    "loss": {"lambdas": {"wsce": 0.1, "mse": 0, "mae": 1}},
    "optimizer": {"lr": 1e-3},
}


def _rank(rank: int, lr: float = 1e-3, **config) -> tuple[dict, dict]:
    hparams = {"freeze_audio": False, "config": {**CONFIG, **config}}
    return callbacks.rank_record(rank, hparams, [lr]), hparams


def test_ranks_that_agree_pass_even_with_their_own_run_name():
    assert (
        callbacks.mismatches(
            [
                _rank(0),
                _rank(1, run_name="wsce_mae-20260101-000004", paths={"output_dir": "outputs/b"}),
            ]
        )
        == []
    )


def test_a_rank_with_other_hyperparameters_is_named():
    problems = callbacks.mismatches(
        [_rank(0), _rank(1), _rank(2, lr=2e-3, loss={"lambdas": {"wsce": 0.2, "mse": 0, "mae": 1}})]
    )
    assert problems[0] == "rank 2: learning rates [0.002] (rank 0: [0.001])"
    assert "rank 2: config.loss.lambdas.wsce = 0.2 (rank 0: 0.1)" in problems
    assert not [p for p in problems if p.startswith("rank 1")]


SCENARIOS = {"same": [1e-3, 1e-3], "different": [1e-3, 5e-3]}  # each rank's learning rate


def _gloo_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for scenario, lrs in SCENARIOS.items():
            record, hparams = _rank(rank, lr=lrs[rank])
            optimizer = SimpleNamespace(param_groups=[{"lr": record["lr"][0]}])
            callback = SameHyperparameters()
            try:
                callback.on_fit_start(
                    SimpleNamespace(global_rank=rank, optimizers=[optimizer]),
                    SimpleNamespace(hparams=hparams),
                )
                result = repr(callback.ranks)
            except HyperparameterMismatch as error:
                result = f"refused: {error}"
            Path(out, f"{scenario}-rank{rank}.txt").write_text(result)
    finally:
        dist.barrier()
        dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_compare_their_hyperparameters_over_the_process_group(tmp_path):
    from lightning.fabric.plugins.environments.lightning import find_free_network_port

    mp.spawn(_gloo_worker, args=(2, find_free_network_port(), str(tmp_path)), nprocs=2)
    for scenario in SCENARIOS:
        seen = [(tmp_path / f"{scenario}-rank{rank}.txt").read_text() for rank in range(2)]
        assert seen[0] == seen[1]  # both ranks reach the same verdict (none is left waiting)
        if scenario == "same":
            assert "'rank': 1" in seen[0] and "refused" not in seen[0]
        else:
            assert (
                seen[0].startswith("refused")
                and "rank 1: learning rates [0.005] (rank 0: [0.001])" in seen[0]
            )


@pytest.mark.slow
def test_ddp_spawn_multirun_ranks_see_the_same_swept_hyperparameters(tmp_path):
    """2 CPU ranks (gloo) of a one-job multirun: each rank records what it trains with; all agree."""
    run_train(
        tmp_path,
        "-m",
        "trainer=ddp_spawn",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "loss.lambdas.wsce=0.07",
        "optimizer.lr=0.002",
        timeout=400,
    )

    sweep = only_sweep(tmp_path)
    checkpoint = last_checkpoint(tmp_path / "multirun" / sweep / "0")
    config = checkpoint["hyper_parameters"]["config"]
    assert config["loss"]["lambdas"]["wsce"] == 0.07 and config["optimizer"]["lr"] == 0.002
    ranks = checkpoint["callbacks"]["SameHyperparameters"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert {r["sha256"] for r in ranks} == {callbacks.fingerprint(checkpoint["hyper_parameters"])}
    assert [r["lr"] for r in ranks] == [[0.002], [0.002]]
    # the run summary (and the sweep's return value) came back from the spawned ranks
    record = run_record(tmp_path / "checkpoints" / sweep / "0")
    assert [epoch for epoch, _ in record["history"]] == [-1, 0]
    assert record["summary"]["exported_epoch"] == 0 and record["summary"]["objective"] is not None
