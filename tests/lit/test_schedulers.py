"""Learning-rate schedules (scheduler=constant|cosine|step) and early stopping (issue 15, item 4):
the learning rate at chosen steps against the formulas worked out by hand, through Lightning and
through the real Hydra composition and training entry point; train/lr in the logs; bad values
refused with the option named as typed. Resuming a schedule: tests/runs/test_resume.py."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import CSVLogger

from humanclap.backbones import tiny_clap
from humanclap.cli import user_error
from humanclap.data.synthetic.sounds import synthetic_pairs
from humanclap.lit.datamodule import RatedPairDataModule
from humanclap.lit.module import HumanClapModule
from humanclap.lit.schedulers import (
    Constant,
    CosineWithWarmup,
    ScheduleConfigError,
    StepDecay,
    cosine_factor,
    early_stopping,
)
from humanclap.losses import HumanClapLoss
from humanclap.train import train

LR = 0.5


def _optimizer(lr: float = LR) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _run(total_steps: int) -> SimpleNamespace:
    """What a factory reads of the trainer: the run's optimiser steps."""
    return SimpleNamespace(estimated_stepping_batches=total_steps)


def _step_lrs(factory, steps: int, total_steps: int) -> list[float]:
    """The learning rate each of ``steps`` optimiser steps trains with, stepped as Lightning steps an
    ``interval="step"`` scheduler: optimizer.step(), then scheduler.step()."""
    optimizer = _optimizer()
    schedule = factory(optimizer, _run(total_steps))
    assert schedule.interval == "step"
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.scheduler.step()
    return lrs


# ---------------------------------------------------------------------------------------------
# The formulas


def test_cosine_warms_up_linearly_then_decays_to_the_floor_at_the_last_step():
    """W = 4, T = 12, m = 0.1, lr = 0.5: lr·(s+1)/4 for s < 4, then
    lr·(0.1 + 0.9·½(1 + cos(π·(s+1−4)/8)))."""
    lrs = _step_lrs(CosineWithWarmup(warmup_steps=4, min_lr_ratio=0.1), 12, total_steps=12)
    expected = {
        0: 0.125,  # 0.5 · 1/4
        1: 0.25,  # 0.5 · 2/4
        2: 0.375,
        3: 0.5,  # the peak: the last warm-up step trains with the full lr
        4: 0.5 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 8))),  # p = 1/8
        7: 0.5 * (0.1 + 0.9 * 0.5),  # p = 1/2, mid-cosine: cos = 0
        11: 0.05,  # the last step, p = 1: m·lr
    }
    for step, lr in expected.items():
        assert lrs[step] == pytest.approx(lr, rel=1e-12, abs=1e-15), step
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:]))  # decays every step after the peak
    assert lrs == [LR * cosine_factor(s, 4, 12, 0.1) for s in range(12)]


def test_cosine_without_warm_up_starts_decaying_at_once():
    lrs = _step_lrs(CosineWithWarmup(warmup_steps=0), 4, total_steps=4)
    assert lrs == pytest.approx(
        [0.5 * 0.5 * (1 + math.cos(math.pi * p)) for p in (0.25, 0.5, 0.75, 1)]
    )
    assert lrs[-1] == pytest.approx(0.0, abs=1e-15)  # min_lr_ratio 0 by default


def test_a_warm_up_longer_than_the_run_only_rises_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="humanclap.lit.schedulers"):
        lrs = _step_lrs(CosineWithWarmup(warmup_steps=10), 4, total_steps=4)
    assert lrs == pytest.approx([0.05, 0.1, 0.15, 0.2])  # lr·(s+1)/10, never the peak
    assert (
        "scheduler.warmup_steps=10 is not shorter than the run's 4 optimiser steps: the learning "
        "rate rises to 0.4 of optimizer.lr at the last step and never decays"
    ) in caplog.text
    # Exactly as long as the run: the last step reaches the peak, nothing crashes.
    assert _step_lrs(CosineWithWarmup(warmup_steps=4), 4, total_steps=4)[-1] == LR


def test_step_decay_multiplies_by_gamma_every_20_epochs():
    """Stepped once per epoch: epoch e trains with lr·0.1^⌊e/20⌋."""
    optimizer = _optimizer()
    schedule = StepDecay()(optimizer, _run(1))
    assert schedule.interval == "epoch"
    assert schedule.lightning_config() == {
        "scheduler": schedule.scheduler,
        "interval": "epoch",
        "frequency": 1,
    }
    by_epoch = []
    for _ in range(41):
        by_epoch.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.scheduler.step()
    assert by_epoch[0] == by_epoch[19] == LR
    assert by_epoch[20] == pytest.approx(0.05) and by_epoch[39] == by_epoch[20]
    assert by_epoch[40] == pytest.approx(0.005)


def test_constant_is_no_schedule():
    assert Constant()(_optimizer(), _run(10)) is None


# ---------------------------------------------------------------------------------------------
# Bad values: refused when the config is instantiated, named as typed


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: CosineWithWarmup(warmup_steps=-5),
            "scheduler.warmup_steps=-5: must be a whole number of optimiser steps ≥ 0 "
            "(0: no warm-up)",
        ),
        (lambda: CosineWithWarmup(warmup_steps=2.5), "scheduler.warmup_steps=2.5: must be"),
        (lambda: CosineWithWarmup(warmup_steps="100"), "scheduler.warmup_steps=100: must be"),
        (
            lambda: CosineWithWarmup(min_lr_ratio=1.5),
            "scheduler.min_lr_ratio=1.5: must be a number between 0 and 1 (the last step's "
            "learning rate as a fraction of optimizer.lr)",
        ),
        (
            lambda: StepDecay(gamma=0),
            "scheduler.gamma=0: must be a number > 0 (the factor the learning rate is multiplied "
            "by every step_size epochs)",
        ),
        (lambda: StepDecay(gamma=-0.1), "scheduler.gamma=-0.1: must be a number > 0"),
        (
            lambda: StepDecay(step_size=0),
            "scheduler.step_size=0: must be a whole number of epochs ≥ 1",
        ),
        (
            lambda: early_stopping({"patience": 0}, "val/loss", "min"),
            "early_stopping.patience=0: must be a whole number of validation epochs ≥ 1 "
            "(null: no early stopping)",
        ),
        (
            lambda: early_stopping({"patience": True}, "val/loss", "min"),
            "early_stopping.patience=true: must be",
        ),
        (
            lambda: early_stopping({"patience": 3, "min_delta": -0.1}, "val/loss", "min"),
            "early_stopping.min_delta=-0.1: must be a number ≥ 0",
        ),
    ],
)
def test_bad_values_name_the_option(build, message):
    with pytest.raises(ScheduleConfigError) as error:
        build()
    assert str(error.value).startswith(message)


def test_whole_numbers_may_be_written_as_floats():
    assert CosineWithWarmup(warmup_steps=1e3).warmup_steps == 1000
    assert early_stopping({"patience": 2.0}, "val/loss", "min").patience == 2


def test_cosine_needs_a_run_of_known_length():
    with pytest.raises(ScheduleConfigError, match="set trainer.max_epochs or trainer.max_steps"):
        CosineWithWarmup()(_optimizer(), _run(math.inf))


# ---------------------------------------------------------------------------------------------
# Through Lightning: stepped per optimiser step or per epoch, logged as train/lr


def _module(scheduler, lr: float = 1e-3) -> tuple[HumanClapModule, RatedPairDataModule]:
    backbone = tiny_clap()
    data = RatedPairDataModule(
        synthetic_pairs(n_sounds=10, texts_per_sound=2), backbone.featurizer, batch_size=4
    )
    module = HumanClapModule(
        backbone,
        HumanClapLoss({"wsce": 0.1, "mae": 1.0}),
        lambda p: torch.optim.AdamW(p, lr=lr),
        scheduler=scheduler,
    )
    return module, data


class LearningRates(L.Callback):
    """The learning rate of every training batch, as (epoch, global step, lr)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.seen.append((trainer.current_epoch, trainer.global_step, lr))


def _fit(module, data, tmp_path: Path, **trainer_args) -> tuple[L.Trainer, LearningRates]:
    rates = LearningRates()
    trainer = L.Trainer(
        logger=CSVLogger(tmp_path, name="csv"),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accelerator="cpu",
        callbacks=[rates],
        **trainer_args,
    )
    trainer.fit(module, datamodule=data)
    return trainer, rates


def _logged(csv_dir: Path, key: str) -> dict[int, str]:
    """{step: value as written} of one metric of a CSV logger's metrics.csv."""
    (path,) = csv_dir.rglob("metrics.csv")
    with path.open(newline="") as file:
        return {int(row["step"]): row[key] for row in csv.DictReader(file) if row.get(key)}


def test_cosine_steps_per_optimiser_step_through_lightning_and_logs_train_lr(tmp_path):
    """3 epochs of 2 batches, accumulating 2 batches per step: T = 3 optimiser steps."""
    lr = 1e-3
    module, data = _module(CosineWithWarmup(warmup_steps=1, min_lr_ratio=0.2), lr=lr)
    trainer, rates = _fit(
        module, data, tmp_path, max_epochs=3, limit_train_batches=2, accumulate_grad_batches=2
    )
    assert trainer.global_step == 3
    by_step = {step: rate for _, step, rate in rates.seen}  # two batches per step, one lr
    assert len({(step, rate) for _, step, rate in rates.seen}) == 3 == len(by_step)
    assert by_step == pytest.approx(
        {0: lr, 1: lr * (0.2 + 0.8 * 0.5), 2: lr * 0.2}, rel=1e-12
    )  # warm-up step 0 (W = 1), then p = 1/2 and p = 1
    # train/lr (first param group) is what the step trained with, logged at every step here
    # (trainer.log_every_n_steps=1; at each of its multiples otherwise, as train/loss_step).
    logged = _logged(tmp_path / "csv", "train/lr")
    assert {step: float(value) for step, value in logged.items()} == by_step


def test_step_decay_steps_per_epoch_through_lightning(tmp_path):
    """step_size 2 (20 would take 41 epochs; the epochs 19/20/40 of the default are checked above):
    epoch e trains with lr·0.1^⌊e/2⌋ in every one of its 2 steps."""
    module, data = _module(StepDecay(step_size=2, gamma=0.1), lr=1e-3)
    _, rates = _fit(module, data, tmp_path, max_epochs=5, limit_train_batches=2)
    assert [epoch for epoch, *_ in rates.seen] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    expected = [1e-3] * 4 + [1e-4] * 4 + [1e-5] * 2
    assert [rate for *_, rate in rates.seen] == pytest.approx(expected, rel=1e-12)


def test_no_scheduler_returns_the_bare_optimizer_and_still_logs_train_lr(tmp_path):
    module, data = _module(None, lr=1e-3)
    trainer, rates = _fit(module, data, tmp_path, max_epochs=1, limit_train_batches=2)
    assert trainer.lr_scheduler_configs == []
    assert {rate for *_, rate in rates.seen} == {1e-3}
    assert set(_logged(tmp_path / "csv", "train/lr").values()) == {"0.001"}


# ---------------------------------------------------------------------------------------------
# Through the Hydra composition and the training entry point

SMALL_RUN = [
    "logger=csv",
    "probes=relevance",
    "data.pairs.n_sounds=16",
    "data.pairs.texts_per_sound=2",
    "data.batch_size=4",
    "trainer.log_every_n_steps=1",
]


def test_scheduler_group_composes_each_option(compose_train):
    default = compose_train()
    assert isinstance(instantiate(default.scheduler), Constant)
    assert default.early_stopping == {"patience": None, "min_delta": 0.0}
    cosine = instantiate(
        compose_train("recipe=wsce_mae", "scheduler=cosine", "scheduler.warmup_steps=100").scheduler
    )
    assert isinstance(cosine, CosineWithWarmup)
    assert (cosine.warmup_steps, cosine.min_lr_ratio) == (100, 0.0)
    assert CosineWithWarmup().warmup_steps == 1000  # the yaml and the code agree on the defaults
    assert instantiate(compose_train("scheduler=cosine").scheduler).warmup_steps == 1000
    step = instantiate(compose_train("scheduler=step").scheduler)
    assert isinstance(step, StepDecay) and (step.step_size, step.gamma) == (20, 0.1)
    assert (cosine.interval, step.interval) == ("step", "epoch")


def test_a_bad_value_fails_through_instantiate_as_a_user_error(compose_train):
    with pytest.raises(Exception) as error:
        train(compose_train("scheduler=step", "scheduler.gamma=0", *SMALL_RUN))
    assert isinstance(user_error(error.value), ScheduleConfigError)
    assert "scheduler.gamma=0: must be a number > 0" in str(user_error(error.value))


def test_train_with_cosine_logs_the_schedule_and_stores_it_in_checkpoints(compose_train):
    cfg = compose_train(
        "scheduler=cosine",
        "scheduler.warmup_steps=2",
        "scheduler.min_lr_ratio=0.1",
        "optimizer.lr=0.001",
        "trainer.max_epochs=2",
        *SMALL_RUN,
    )
    train(cfg)
    logged = _logged(Path(cfg.paths.output_dir) / "csv", "train/lr")
    total = len(logged)  # one row per optimiser step: T = trainer.estimated_stepping_batches
    assert sorted(logged) == list(range(total)) and total > 4
    lrs = [float(logged[step]) for step in range(total)]
    assert lrs[:2] == pytest.approx([0.0005, 0.001], rel=1e-12)  # warm-up, then the peak
    assert lrs[-1] == pytest.approx(0.0001, rel=1e-12)  # min_lr_ratio·lr at the last step
    assert lrs == pytest.approx([1e-3 * cosine_factor(s, 2, total, 0.1) for s in range(total)])
    last = torch.load(
        Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt",
        map_location="cpu",
        weights_only=True,
    )
    (state,) = last["lr_schedulers"]
    assert state["last_epoch"] == total and state["lr_lambdas"] == [None]  # T is not stored


# ---------------------------------------------------------------------------------------------
# Early stopping


def test_early_stopping_is_off_by_default_and_on_the_run_monitor_when_set():
    assert early_stopping(None, "val/loss", "min") is None
    assert early_stopping({"patience": None, "min_delta": 0.0}, "val/loss", "min") is None
    stop = early_stopping({"patience": 5, "min_delta": 0.01}, "relevance/srcc", "max")
    assert isinstance(stop, EarlyStopping)
    assert (stop.monitor, stop.mode, stop.patience, stop.min_delta) == (
        "relevance/srcc",
        "max",
        5,
        0.01,
    )


# min_delta=1e9: no epoch after the first improves on it by more, so patience 1 stops after epoch 1.
NEVER_IMPROVES = ["trainer.max_epochs=4", "early_stopping.min_delta=1e9", *SMALL_RUN]


def test_early_stopping_stops_a_run_that_does_not_improve(compose_train, caplog):
    cfg = compose_train("early_stopping.patience=1", *NEVER_IMPROVES)
    with caplog.at_level(logging.INFO, logger="humanclap.lit.schedulers"):
        summary = train(cfg)
    assert summary["last_epoch"] == 1 and summary["exported_epoch"] in (0, 1)
    assert "early stopping after epoch 1: val/loss has not improved on" in caplog.text
    assert "early_stopping.patience=1" in caplog.text
    last = torch.load(
        Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt",
        map_location="cpu",
        weights_only=True,
    )
    (state,) = [value for key, value in last["callbacks"].items() if "EarlyStopping" in key]
    assert (state["wait_count"], state["patience"], state["stopped_epoch"]) == (1, 1, 1)


def test_without_patience_the_same_run_trains_every_epoch(compose_train):
    cfg = compose_train("early_stopping.patience=null", *NEVER_IMPROVES)
    assert train(cfg)["last_epoch"] == 3
