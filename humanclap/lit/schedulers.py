"""Learning-rate schedules (``scheduler=``) and early stopping (``early_stopping.patience``).

A ``recipes/scheduler/<name>.yaml`` instantiates one of the factories below with its options; the
factory is called with the optimizer and the trainer in ``HumanClapModule.configure_optimizers`` and
returns a :class:`Schedule` (a torch scheduler and whether it steps per optimiser ``"step"`` or per
``"epoch"``) or ``None`` (no schedule). Lightning steps it, and stores its state in every checkpoint,
so ``resume=`` continues the schedule where it stopped. See docs/training.md#learning-rate-schedules-and-early-stopping.

- :class:`Constant` (``scheduler=constant``, the default): the learning rate stays ``optimizer.lr``
  (human-clap §IV-A states none).
- :class:`CosineWithWarmup` (``scheduler=cosine``): linear warm-up, then cosine decay.
- :class:`StepDecay` (``scheduler=step``): torch's StepLR, per epoch (event-ordering §2.1).

:func:`early_stopping` builds Lightning's ``EarlyStopping`` on the run's ``monitor`` when
``early_stopping.patience`` is set.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, StepLR

from humanclap.errors import HumanClapError

log = logging.getLogger(__name__)

Interval = Literal["step", "epoch"]


class ScheduleConfigError(HumanClapError, ValueError):
    """A ``scheduler.*`` or ``early_stopping.*`` value that cannot work, named as the user types it."""


@dataclass(frozen=True)
class Schedule:
    """A torch learning-rate scheduler and when Lightning steps it: after every optimiser ``"step"``
    (gradient accumulation counts one step per update) or at the end of every ``"epoch"``."""

    scheduler: LRScheduler
    interval: Interval

    def __post_init__(self) -> None:
        if self.interval not in ("step", "epoch"):
            raise ValueError(f"interval must be 'step' or 'epoch', not {self.interval!r}")

    def lightning_config(self) -> dict[str, Any]:
        """The ``lr_scheduler`` entry of ``configure_optimizers``' return value."""
        return {"scheduler": self.scheduler, "interval": self.interval, "frequency": 1}


class Constant:
    """No schedule: every step trains with ``optimizer.lr``. human-clap §IV-A fine-tunes with AdamW at
    1e-5 for 50 epochs and states no schedule; this is the default."""

    def __call__(self, optimizer: torch.optim.Optimizer, trainer: L.Trainer) -> None:
        return None


class CosineWithWarmup:
    """Linear warm-up over ``warmup_steps`` optimiser steps, then cosine decay to ``min_lr_ratio``·lr
    at the run's last optimiser step; stepped per optimiser step.

    The 1,000-step warm-up is CLaMP 3's (§4.1, after Goyal et al. 2017); CLaMP 3 states no decay
    after it, the cosine is the common choice. With ``lr = optimizer.lr``, W = ``warmup_steps``,
    T = the run's optimiser steps (``trainer.estimated_stepping_batches``: epochs, batches per
    epoch, ``trainer.accumulate_grad_batches``, devices and ``trainer.max_steps`` included) and
    m = ``min_lr_ratio``, optimiser step ``s`` (0, 1, ..., T−1) trains with ``lr · factor(s)``
    (:func:`cosine_factor`):

    - ``s < W``: ``(s + 1) / W`` (step W−1 is the first at the full lr);
    - ``s ≥ W``: ``m + (1 − m)·½(1 + cos(π·p))`` with ``p = min(1, (s + 1 − W) / (T − W))``,
      so the last step, ``s = T − 1``, trains with exactly ``m·lr``.

    A warm-up as long as the run or longer (W ≥ T) is allowed with a warning: the learning rate only
    rises, to ``T/W``·lr at the last step, and never decays. T is the run's own: a run resumed with a
    larger ``trainer.max_epochs`` follows the longer schedule from the step it reached.
    """

    interval: Interval = "step"

    def __init__(self, warmup_steps: int = 1000, min_lr_ratio: float = 0.0) -> None:
        self.warmup_steps = _whole(
            warmup_steps, "scheduler.warmup_steps", 0, "optimiser steps", "0: no warm-up"
        )
        self.min_lr_ratio = _number(
            min_lr_ratio,
            "scheduler.min_lr_ratio",
            0.0,
            1.0,
            meaning="the last step's learning rate as a fraction of optimizer.lr",
        )

    def __call__(self, optimizer: torch.optim.Optimizer, trainer: L.Trainer) -> Schedule:
        total = trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ScheduleConfigError(
                "scheduler=cosine decays over the whole run, whose length is unknown: set "
                "trainer.max_epochs or trainer.max_steps to a positive number"
            )
        total, warmup, floor = int(total), self.warmup_steps, self.min_lr_ratio
        if warmup >= total:
            log.warning(
                "scheduler.warmup_steps=%d is not shorter than the run's %d optimiser steps: the "
                "learning rate rises to %.3g of optimizer.lr at the last step and never decays",
                warmup,
                total,
                total / warmup,
            )

        def factor(step: int) -> float:  # a function, not an object: T is not stored in checkpoints
            return cosine_factor(step, warmup, total, floor)

        return Schedule(LambdaLR(optimizer, factor), self.interval)


def cosine_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """The multiple of ``optimizer.lr`` that optimiser step ``step`` (0-based) trains with under
    :class:`CosineWithWarmup` (its docstring states the formula)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step + 1 - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class StepDecay:
    """torch's ``StepLR``: the learning rate is multiplied by ``gamma`` every ``step_size`` epochs, so
    epoch ``e`` (0-based) trains with ``lr · gamma^⌊e / step_size⌋``; stepped per epoch.

    event-ordering §2.1 pre-trains its baseline with "standard StepLR scheduler (step size = 20,
    gamma = 0.1)" (the defaults here), stepped per epoch as StepLR conventionally is.
    """

    interval: Interval = "epoch"

    def __init__(self, step_size: int = 20, gamma: float = 0.1) -> None:
        self.step_size = _whole(step_size, "scheduler.step_size", 1, "epochs")
        self.gamma = _number(
            gamma,
            "scheduler.gamma",
            0.0,
            math.inf,
            open_below=True,
            meaning="the factor the learning rate is multiplied by every step_size epochs",
        )

    def __call__(self, optimizer: torch.optim.Optimizer, trainer: L.Trainer) -> Schedule:
        return Schedule(StepLR(optimizer, self.step_size, self.gamma), self.interval)


class _EarlyStopping(EarlyStopping):
    """Lightning's ``EarlyStopping``, logging one line when it stops the run."""

    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        running = not trainer.should_stop
        super()._run_early_stopping_check(trainer)
        if not (running and trainer.should_stop and trainer.is_global_zero):
            return
        if self.wait_count >= self.patience:
            why = (
                f"{self.monitor} has not improved on {float(self.best_score):.4g} by more than "
                f"early_stopping.min_delta={abs(self.min_delta):g} for {self.wait_count} validation "
                f"epochs (early_stopping.patience={self.patience})"
            )
        else:  # check_finite
            why = f"{self.monitor} is not finite"
        log.info("early stopping after epoch %d: %s", trainer.current_epoch, why)


def early_stopping(
    settings: Mapping[str, Any] | None, monitor: str, mode: str
) -> EarlyStopping | None:
    """Lightning's ``EarlyStopping`` on ``monitor`` / ``mode`` (the run's model-selection metric), or
    ``None`` when ``settings`` (the ``early_stopping`` config) is missing or its ``patience`` is null.

    ``patience``: validation epochs in a row without an improvement larger than ``min_delta`` after
    which training stops (event-ordering §2.1 trains "with early stopping criteria", values not
    stated). Its counters are callback state, stored in every checkpoint and restored on resume.
    """
    settings = settings or {}
    patience = settings.get("patience")
    min_delta = _number(
        settings.get("min_delta", 0.0),
        "early_stopping.min_delta",
        0.0,
        math.inf,
        meaning="the smallest change of the monitored metric that counts as an improvement",
    )
    if patience is None:
        return None
    patience = _whole(
        patience, "early_stopping.patience", 1, "validation epochs", "null: no early stopping"
    )
    # strict (Lightning's default): a monitor that validation does not log fails at the first check.
    return _EarlyStopping(monitor=monitor, mode=mode, patience=patience, min_delta=min_delta)


def _whole(value: Any, option: str, minimum: int, unit: str, hint: str | None = None) -> int:
    """``value`` as an int ≥ ``minimum`` (1000 and 1e3 alike), else an error naming ``option``."""
    if isinstance(value, Real) and not isinstance(value, bool):
        if math.isfinite(value) and value == int(value) and value >= minimum:
            return int(value)
    hint = f" ({hint})" if hint else ""
    raise ScheduleConfigError(
        f"{option}={_shown(value)}: must be a whole number of {unit} ≥ {minimum}{hint}"
    )


def _number(
    value: Any, option: str, low: float, high: float, open_below: bool = False, meaning: str = ""
) -> float:
    """``value`` as a float in [low, high] ((low, high] with ``open_below``), else an error naming ``option``."""
    if isinstance(value, Real) and not isinstance(value, bool) and not math.isnan(value):
        if (value > low if open_below else value >= low) and value <= high and math.isfinite(value):
            return float(value)
    if high == math.inf:
        allowed = f"> {low:g}" if open_below else f"≥ {low:g}"
    else:
        allowed = f"between {low:g} and {high:g}"
    raise ScheduleConfigError(f"{option}={_shown(value)}: must be a number {allowed} ({meaning})")


def _shown(value: Any) -> str:
    """A value as written on the command line (null, true, 5)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
