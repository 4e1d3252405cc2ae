"""Resume and preemption: resume=auto|<path>, exact continuation after SIGKILL, submitit requeue on Slurm."""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from safetensors.torch import load_file

from humanclap.backbones import tiny_clap
from humanclap.lit.callbacks import ProbeCallback, RandomState
from humanclap.runs.resume import ResumeMismatch, checkpoint_to_resume, cluster_plugins

# One pytest-xdist worker (`--dist loadgroup`) runs this module: the `uninterrupted` run is built once.
pytestmark = pytest.mark.xdist_group("test_resume")
REPO = Path(__file__).resolve().parents[2]
CONFIG = {
    "seed": 0,
    "data": {"batch_size": 4},
    "trainer": {"max_epochs": 3},
    "resume": None,
    "run_name": "a",
}
FAKE_SLURM = {
    "SLURM_JOB_ID": "4242",
    "SLURM_NTASKS": "1",
    "SLURM_JOB_NAME": "train",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_NODELIST": "localhost",
}


def _save(path: Path, config: dict = CONFIG, epoch: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "hyper_parameters": {"config": config}}, path)
    return path


# ---------------------------------------------------------------------------------------------
# resume=...: which checkpoint, and refusals


def test_no_resume_is_a_fresh_run(tmp_path):
    _save(tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint_to_resume(None, tmp_path, CONFIG) is None


def test_auto_without_a_checkpoint_starts_fresh_with_a_log_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="humanclap.runs.resume"):
        assert checkpoint_to_resume("auto", tmp_path, CONFIG) is None
    assert "no checkpoint in" in caplog.text and "starting a fresh run" in caplog.text


def test_auto_continues_from_last_ckpt(tmp_path):
    _save(tmp_path / "checkpoints" / "epoch000.ckpt")
    last = _save(tmp_path / "checkpoints" / "last.ckpt", epoch=1)
    assert checkpoint_to_resume("auto", tmp_path, CONFIG) == str(last)


def test_auto_skips_a_checkpoint_truncated_by_a_kill(tmp_path, caplog):
    best = _save(tmp_path / "checkpoints" / "epoch001.ckpt", epoch=1)
    last = _save(tmp_path / "checkpoints" / "last.ckpt", epoch=1)
    last.write_bytes(last.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="humanclap.runs.resume"):
        assert checkpoint_to_resume("auto", tmp_path, CONFIG) == str(best)
    assert "incomplete" in caplog.text


def test_auto_refuses_the_checkpoint_of_a_different_run(tmp_path):
    _save(tmp_path / "checkpoints" / "last.ckpt")
    changed = {**CONFIG, "data": {"batch_size": 8}}
    with pytest.raises(
        ResumeMismatch,
        match=r"different configuration \(stored -> now\):\n  data.batch_size: 4 -> 8",
    ):
        checkpoint_to_resume("auto", tmp_path, changed)
    # Training longer, another run name or resume value is still the same run.
    longer = {**CONFIG, "trainer": {"max_epochs": 10}, "resume": "auto", "run_name": "b"}
    assert checkpoint_to_resume("auto", tmp_path, longer).endswith("last.ckpt")


def test_a_checkpoint_from_before_schedules_and_the_feature_cache_resumes_with_their_defaults(
    tmp_path,
):
    """Runs stored before ``scheduler``/``early_stopping``/``stages`` existed did what their defaults
    do; the cache and loader settings may change on resume (they change how clips are read, not the
    results)."""
    _save(tmp_path / "checkpoints" / "last.ckpt")
    now = {
        **CONFIG,
        "scheduler": {"_target_": "humanclap.lit.schedulers.Constant"},
        "early_stopping": {"patience": None, "min_delta": 0.0},
        "stages": None,
        "cache": False,
        "cache_dir": "/elsewhere",
        "probe_workers": 3,
        "data": {"batch_size": 4, "num_workers": "auto"},
    }
    assert checkpoint_to_resume("auto", tmp_path, now).endswith("last.ckpt")
    cosine = {**now, "scheduler": {"_target_": "humanclap.lit.schedulers.CosineWithWarmup"}}
    with pytest.raises(ResumeMismatch, match=r"scheduler: None -> .*CosineWithWarmup"):
        checkpoint_to_resume("auto", tmp_path, cosine)
    staged = {**now, "stages": [{"epochs": None, "audio": True}]}
    with pytest.raises(ResumeMismatch, match=r"stages: None -> \[\{'epochs': None"):
        checkpoint_to_resume("auto", tmp_path, staged)


def test_explicit_path_must_exist_and_is_named_in_the_error(tmp_path):
    missing = tmp_path / "nope" / "last.ckpt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        checkpoint_to_resume(str(missing), tmp_path, CONFIG)
    other = _save(tmp_path / "elsewhere.ckpt")
    assert checkpoint_to_resume(str(other), tmp_path / "run", CONFIG) == str(other)


def test_explicit_path_of_another_config_lists_the_differences_like_auto(tmp_path):
    """Lightning restores the stored optimizer (and learning rate): another config must not slip through."""
    run = tmp_path / "outputs" / "old"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- optimizer.lr=0.1\n")
    stored = _save(run / "checkpoints" / "last.ckpt", config={**CONFIG, "optimizer": {"lr": 0.1}})
    now = {
        **CONFIG,
        "optimizer": {"lr": 0.001},
        "trainer": {"max_epochs": 9},
    }  # max_epochs may change
    with pytest.raises(ResumeMismatch) as error:
        checkpoint_to_resume(str(stored), tmp_path / "new", now)
    assert str(error.value) == (
        f"resume={stored}: {stored} was written by a run with a different configuration (stored -> now):\n"
        "  optimizer.lr: 0.1 -> 0.001\n"
        "Resuming continues the same run, with the optimizer state and learning rate stored in the checkpoint. "
        f"Rerun with that run's settings (its command-line overrides are in {run / '.hydra' / 'overrides.yaml'}), "
        "or leave out resume= (or pass another run_name=<name>) to start a new run."
    )


def test_requeued_slurm_job_without_resume_warns(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with caplog.at_level(logging.WARNING, logger="humanclap.runs.resume"):
        assert checkpoint_to_resume(None, tmp_path, CONFIG) is None
    assert "resume=auto" in caplog.text


def test_run_name_is_the_slurm_job_id_in_a_slurm_job(compose_train, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert compose_train("recipe=wsce_mae").run_name.startswith("wsce_mae-20")  # date and time
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    cfg = compose_train("recipe=wsce_mae")
    assert cfg.run_name == "wsce_mae-4242" and cfg.resume is None


# ---------------------------------------------------------------------------------------------
# What checkpoints carry


def test_random_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    L.seed_everything(5)
    torch.rand(3), np.random.rand(), random.random()
    torch.save({"state": RandomState().state_dict()}, tmp_path / "rng.ckpt")
    expected = torch.rand(4), np.random.rand(2), random.random()
    L.seed_everything(6)
    RandomState().load_state_dict(torch.load(tmp_path / "rng.ckpt", weights_only=True)["state"])
    assert torch.equal(torch.rand(4), expected[0])
    assert np.array_equal(np.random.rand(2), expected[1]) and random.random() == expected[2]


def test_probe_history_survives_a_checkpoint_and_the_baseline_is_not_measured_again(tmp_path):
    before = ProbeCallback({"relevance": object()})
    before.history = [
        (-1, {"relevance/srcc": np.float64(0.1)}),
        (0, {"relevance/srcc": float("nan")}),
    ]
    torch.save(before.state_dict(), tmp_path / "probes.ckpt")

    after = ProbeCallback({"relevance": object()})
    after.run = lambda module: pytest.fail(
        "the baseline of a resumed run must come from its checkpoint"
    )
    after.load_state_dict(torch.load(tmp_path / "probes.ckpt", weights_only=True))
    after.on_train_start(trainer=None, pl_module=None)
    assert after.history[0] == (-1, {"relevance/srcc": 0.1})
    assert after.history[1][0] == 0 and np.isnan(after.history[1][1]["relevance/srcc"])


# ---------------------------------------------------------------------------------------------
# Slurm: submitit requeues, Lightning does not


def test_on_slurm_lightning_auto_requeue_is_off(monkeypatch):
    for name in FAKE_SLURM:
        monkeypatch.delenv(name, raising=False)
    assert cluster_plugins() == []
    for name, value in FAKE_SLURM.items():
        monkeypatch.setenv(name, value)
    trainer = L.Trainer(
        plugins=cluster_plugins(),
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    environment = trainer._accelerator_connector.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and not environment.auto_requeue
    previous = signal.getsignal(signal.SIGUSR1)
    trainer._signal_connector.register_signal_handlers()
    try:  # no SIGUSR1 handler: Lightning neither writes hpc_ckpt_*.ckpt nor calls scontrol requeue
        assert signal.getsignal(signal.SIGUSR1) is previous
    finally:
        trainer._signal_connector.teardown()


# ---------------------------------------------------------------------------------------------
# End to end: killed or preempted runs continue to the same result as an uninterrupted run

SEED = 3
TINY = [
    "recipe=wsce_mae",
    f"seed={SEED}",
    "trainer.max_epochs=3",
    "data.pairs.n_sounds=40",
    "data.pairs.texts_per_sound=2",
    "data.batch_size=2",
    "trainer.enable_progress_bar=false",
    "logger=csv",
    "trainer.log_every_n_steps=1",
    "+logger.flush_logs_every_n_steps=1",
]  # a CSV row per step: the test sees where training is


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SUBMITIT_"))}
    # One thread: every run computes alike, and 2 threads on a busy 2-core machine run 5-10x slower.
    return {**env, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", **extra}


def _train(run_dir: Path, export: Path, *overrides: str, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "humanclap.train",
                f"hydra.run.dir={run_dir}",
                f"paths.export_dir={export}",
                *TINY,
                *overrides,
            ],
            cwd=REPO,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _epoch_rows(run_dir: Path, version: int) -> list[dict[str, str]]:
    try:
        with (run_dir / "csv" / f"version_{version}" / "metrics.csv").open(newline="") as file:
            return list(csv.DictReader(file))
    except (FileNotFoundError, csv.Error):
        return []  # not written yet, or being rewritten


def _wait_until_training_in_epoch(
    run_dir: Path, epoch: int, process: subprocess.Popen, log: Path
) -> None:
    deadline = (
        time.monotonic() + 300
    )  # as the waits for a whole run: a busy machine (test workers) is slow
    while time.monotonic() < deadline:
        if any(
            row.get("epoch") == str(epoch) and row.get("train/loss_step")
            for row in _epoch_rows(run_dir, 0)
        ):
            return
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.01)
    raise AssertionError(f"no training step of epoch {epoch} within 300 s")


def _epoch_metrics(run_dir: Path, version: int) -> dict[int, dict[str, float]]:
    """{epoch: val/* and train/loss_epoch} from a CSV logger version."""
    out: dict[int, dict[str, float]] = {}
    for row in _epoch_rows(run_dir, version):
        for key, value in row.items():
            if value and (key.startswith("val/") or key == "train/loss_epoch"):
                out.setdefault(int(row["epoch"]), {})[key] = float(value)
    return out


def _assert_same_result(export: Path, reference: Path) -> None:
    record, expected = (
        json.loads((d / "humanclap_run.json").read_text()) for d in (export, reference)
    )
    assert record["history"] == expected["history"]  # baseline and every epoch's probe metrics
    assert {**record["summary"], "export_dir": None} == {**expected["summary"], "export_dir": None}
    weights, expected_weights = (load_file(d / "model.safetensors") for d in (export, reference))
    assert weights.keys() == expected_weights.keys()
    for name, value in weights.items():
        torch.testing.assert_close(value, expected_weights[name], rtol=0, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same tiny run, never interrupted."""
    # Build the tiny model into the cache first: building it draws from the global RNG
    # (humanclap/backbones/tiny.py), loading it does not, so only cached runs start alike.
    tiny_clap(seed=SEED)
    root = tmp_path_factory.mktemp("uninterrupted")
    process = _train(root / "run", root / "export", log=root / "log.txt")
    assert process.wait(timeout=300) == 0, (root / "log.txt").read_text()[-3000:]
    return root


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_auto_equals_the_uninterrupted_run(tmp_path, uninterrupted):
    """With DataLoader workers (persistent, as data=manifest|relate|captions use them), against a reference
    run without workers: neither the workers nor the interruption may change a single batch or draw."""
    run, export, log = tmp_path / "run", tmp_path / "export", tmp_path / "log.txt"
    process = _train(run, export, "resume=auto", "data.num_workers=2", log=log)
    _wait_until_training_in_epoch(run, 1, process, log)  # last.ckpt of epoch 0 exists
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (
        last["epoch"] == 0 and not (export / "model.safetensors").exists()
    )  # killed during epoch 1

    # The same command again (what a requeued Slurm job does).
    process = _train(run, export, "resume=auto", "data.num_workers=2", log=log)
    assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
    output = log.read_text()
    assert f"resume=auto: continuing from {run / 'checkpoints' / 'last.ckpt'}" in output
    assert not [
        line for line in output.splitlines() if line.startswith("baseline ")
    ]  # not measured again

    _assert_same_result(export, uninterrupted / "export")
    reference = _epoch_metrics(uninterrupted / "run", 0)
    resumed = _epoch_metrics(run, 1)  # the CSV logger starts a new version on resume
    assert sorted(resumed) == [1, 2]
    for epoch, metrics in resumed.items():
        assert metrics == pytest.approx(reference[epoch], rel=0, abs=1e-6), epoch
    assert (
        torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2
    )  # every epoch


# A schedule that depends on the run's length, resumed mid-cosine (past 20 warm-up steps in epoch 0),
# and early stopping that never triggers in 3 epochs but counts.
COSINE = [
    "scheduler=cosine",
    "scheduler.warmup_steps=20",
    "scheduler.min_lr_ratio=0.1",
    "early_stopping.patience=5",
]


@pytest.fixture(scope="module")
def uninterrupted_cosine(tmp_path_factory):
    """The reference for the schedule: the tiny run with COSINE, never interrupted."""
    tiny_clap(seed=SEED)  # built into the cache first, as for `uninterrupted`
    root = tmp_path_factory.mktemp("uninterrupted_cosine")
    process = _train(root / "run", root / "export", *COSINE, log=root / "log.txt")
    assert process.wait(timeout=300) == 0, (root / "log.txt").read_text()[-3000:]
    return root


def _by_step(run_dir: Path, version: int, key: str) -> dict[int, str]:
    """{global step: value as written} of one per-step metric of a CSV logger version."""
    return {int(row["step"]): row[key] for row in _epoch_rows(run_dir, version) if row.get(key)}


@pytest.mark.slow
def test_sigkill_then_resume_continues_the_lr_schedule_and_early_stopping(
    tmp_path, uninterrupted_cosine
):
    """Lightning keeps the scheduler and EarlyStopping state in every checkpoint: after a kill in
    epoch 1 and resume=auto, every later step trains with exactly the uninterrupted run's lr."""
    run, export, log = tmp_path / "run", tmp_path / "export", tmp_path / "log.txt"
    process = _train(run, export, "resume=auto", *COSINE, log=log)
    _wait_until_training_in_epoch(run, 1, process, log)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    killed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (
        killed["epoch"] == 0 and killed["lr_schedulers"][0]["last_epoch"] == killed["global_step"]
    )

    process = _train(run, export, "resume=auto", *COSINE, log=log)
    assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert "resume=auto: continuing from" in log.read_text()

    reference = _by_step(uninterrupted_cosine / "run", 0, "train/lr")
    resumed = _by_step(run, 1, "train/lr")  # the CSV logger starts a new version on resume
    first = killed["global_step"]
    assert (
        20 < first == min(resumed)
    )  # resumed in the cosine part, at the step after the checkpoint
    assert resumed == {step: lr for step, lr in reference.items() if step >= first}  # as written
    assert len(set(resumed.values())) == len(resumed)  # a new lr every step: nothing stood still

    final, expected = (
        torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)
        for d in (run, uninterrupted_cosine / "run")
    )
    assert final["lr_schedulers"] == expected["lr_schedulers"]
    (key,) = [key for key in final["callbacks"] if "EarlyStopping" in key]
    assert final["callbacks"][key] == expected["callbacks"][key]  # wait_count, best_score, ...
    assert final["callbacks"][key]["patience"] == 5
    _assert_same_result(export, uninterrupted_cosine / "export")


def _processes_with(*fragments: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if all(fragment in command for fragment in fragments):
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the submitit task through /proc")
def test_submitit_preemption_signal_requeues_and_the_job_resumes(tmp_path, uninterrupted):
    """hydra/launcher=submitit_local under a fake Slurm environment: USR2 mid-epoch (what Slurm sends
    signal_delay_s before the time limit) -> submitit requeues the same job -> resume=auto -> same result."""
    sweep, export, log = tmp_path / "multirun", tmp_path / "export", tmp_path / "log.txt"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "humanclap.train",
                "-m",
                "hydra/launcher=submitit_local",
                f"hydra.sweep.dir={sweep}",
                "hydra.launcher.timeout_min=20",
                f"paths.export_dir={export}",
                "resume=auto",
                *TINY,
            ],
            cwd=REPO,
            env=_env(**FAKE_SLURM),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    run = sweep / "0"
    _wait_until_training_in_epoch(run, 1, process, log)
    (task,) = _processes_with("submitit.core._submit", str(sweep))
    os.kill(task, signal.SIGUSR2)
    assert process.wait(timeout=300) == 0, log.read_text()[-3000:]

    task_logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "this job is preempted" in task_logs and "Requeued job" in task_logs, task_logs[-3000:]
    assert "resume=auto: continuing from" in task_logs
    assert not list(sweep.rglob("hpc_ckpt_*.ckpt"))  # Lightning's own requeue stayed out of it
    (record,) = export.rglob(
        "humanclap_run.json"
    )  # a multirun exports to <export_dir>/<job number>
    _assert_same_result(record.parent, uninterrupted / "export")
