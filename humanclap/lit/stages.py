"""Multi-stage fine-tuning: which parts of the model train in which epochs (``stages=``).

CLaMP 3 trains in stages (clamp3 §2.1): a tower is aligned while another is frozen "to prevent
representation drift", then unfrozen "to refine its alignment". Here a run's ``stages`` is a list
of stages, each ``{epochs, audio, text, projections, temperature}``: it lasts ``epochs`` epochs
(the last may say ``null``: to the end of the run) and trains the parts set to true, the others
frozen (no gradients, eval mode, as ``freeze_audio``). :class:`TrainingStages`, a Lightning
callback, applies the stage of each epoch when it starts, deriving it from the epoch number, so a
resumed run is in the right stage. Rules, optimizer state and logging:
docs/training.md#training-stages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from difflib import get_close_matches
from typing import Any

import lightning as L
import torch

from humanclap.errors import HumanClapError

log = logging.getLogger(__name__)

PARTS = ("audio", "text", "projections", "temperature")
"""What a stage trains or freezes: the audio tower's encoder, the text tower's encoder, both
projections (Transformer heads, for a backbone with them) and the temperature (logit scale)."""


class StageConfigError(HumanClapError, ValueError):
    """A ``stages`` config that cannot be run as written."""


@dataclass(frozen=True)
class Stage:
    """One stage: from epoch ``first_epoch`` (0-based) for ``epochs`` epochs (None: to the end),
    training the parts set to True."""

    epochs: int | None
    audio: bool
    text: bool
    projections: bool
    temperature: bool
    first_epoch: int = 0

    @property
    def trained(self) -> tuple[str, ...]:
        return tuple(part for part in PARTS if getattr(self, part))

    @property
    def frozen(self) -> tuple[str, ...]:
        return tuple(part for part in PARTS if not getattr(self, part))

    @property
    def parts(self) -> dict[str, bool]:
        return {part: getattr(self, part) for part in PARTS}

    def config(self) -> dict[str, Any]:
        """As written in a config (no ``first_epoch``)."""
        return {key: value for key, value in asdict(self).items() if key != "first_epoch"}

    def describe(self, index: int, count: int) -> str:
        last = "the end" if self.epochs is None else str(self.first_epoch + self.epochs - 1)
        return (
            f"stage {index + 1}/{count} (epochs {self.first_epoch}-{last}): trains "
            f"{', '.join(self.trained)}; frozen: {', '.join(self.frozen) or 'nothing'}"
        )


def parse_stages(
    stages: Sequence[Mapping[str, Any]] | None, max_epochs: int | None = None
) -> tuple[Stage, ...]:
    """The stages of a config (``None`` or ``()``: none), checked; with ``max_epochs``
    (``trainer.max_epochs``) also against the run's length (:func:`check_length`).

    Each stage must give ``epochs`` (an integer >= 1; ``null`` for the last stage only: it runs to
    the end) and every part of :data:`PARTS` as true or false, and train at least one part.
    """
    if stages is None:
        return ()
    if isinstance(stages, Stage):
        stages = [stages]
    if isinstance(stages, (str, bytes, Mapping)) or not isinstance(stages, Sequence):
        raise StageConfigError(
            f"stages must be a list of stages such as [{{epochs: 2, audio: true, text: false, "
            f"projections: true, temperature: true}}, ...] or null, got {stages!r}"
        )
    parsed: list[Stage] = []
    first = 0
    for index, stage in enumerate(stages):
        where = f"stages[{index}]"
        if isinstance(stage, Stage):
            stage = stage.config()
        if not isinstance(stage, Mapping):
            raise StageConfigError(
                f"{where} must be a mapping {{epochs: N, audio: ..., text: ..., projections: ..., "
                f"temperature: ...}}, got {stage!r}"
            )
        for key in stage:
            if key not in ("epochs", *PARTS):
                near = get_close_matches(str(key), ("epochs", *PARTS), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise StageConfigError(
                    f"{where}: unknown key {key!r}{hint}; a stage has epochs and the parts "
                    f"{', '.join(PARTS)}, each true or false"
                )
        if "epochs" not in stage:
            raise StageConfigError(f"{where}: no epochs (how many epochs the stage lasts)")
        epochs = stage["epochs"]
        last = index == len(stages) - 1
        if epochs is None and not last:
            raise StageConfigError(
                f"{where}: epochs: null (to the end of the run) is for the last stage only"
            )
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)):
            raise StageConfigError(f"{where}: epochs must be an integer >= 1, got {epochs!r}")
        if epochs is not None and epochs < 1:
            raise StageConfigError(f"{where}: epochs must be >= 1, got {epochs}")
        parts = {}
        for part in PARTS:
            if part not in stage:
                raise StageConfigError(
                    f"{where}: say whether {part!r} trains (true or false); a stage gives every "
                    f"part: {', '.join(PARTS)}"
                )
            if not isinstance(stage[part], bool):
                raise StageConfigError(
                    f"{where}: {part} must be true or false, got {stage[part]!r}"
                )
            parts[part] = stage[part]
        if not any(parts.values()):
            raise StageConfigError(
                f"{where} trains nothing: every part ({', '.join(PARTS)}) is false"
            )
        parsed.append(Stage(epochs=epochs, first_epoch=first, **parts))
        first += epochs or 0
    if not parsed:
        raise StageConfigError("stages is an empty list: give at least one stage, or null")
    if max_epochs is not None:
        check_length(parsed, max_epochs)
    return tuple(parsed)


def check_length(stages: Sequence[Stage], max_epochs: int | None) -> None:
    """The stages must fill the run: their epochs add up to ``trainer.max_epochs``, or the last
    stage is open (``epochs: null``) and the others leave it at least one epoch. An unbounded run
    (``max_epochs`` None or -1) needs an open last stage."""
    if not stages:
        return
    fixed = sum(stage.epochs or 0 for stage in stages)
    open_last = stages[-1].epochs is None
    if max_epochs is None or max_epochs < 0:
        if not open_last:
            raise StageConfigError(
                f"the stages last {fixed} epochs, but trainer.max_epochs is unbounded "
                f"({max_epochs}): set trainer.max_epochs={fixed}, or give the last stage "
                "epochs: null to run it to the end"
            )
        return
    if open_last and fixed >= max_epochs:
        raise StageConfigError(
            f"the stages before the last take {fixed} epochs, so trainer.max_epochs={max_epochs} "
            f"leaves none for the last one (epochs: null): raise trainer.max_epochs above {fixed} "
            "or shorten the stages"
        )
    if not open_last and fixed != max_epochs:
        raise StageConfigError(
            f"the stages last {fixed} epochs in all but trainer.max_epochs={max_epochs}: make them "
            f"add up (e.g. trainer.max_epochs={fixed}), or give the last stage epochs: null to "
            "run it to the end"
        )


def stage_index(stages: Sequence[Stage], epoch: int) -> int:
    """The index of the stage that trains epoch ``epoch`` (0-based)."""
    for index, stage in enumerate(stages):
        if stage.epochs is None or epoch < stage.first_epoch + stage.epochs:
            return index
    raise StageConfigError(
        f"epoch {epoch} is after the last stage (epochs {stages[-1].first_epoch}-"
        f"{stages[-1].first_epoch + (stages[-1].epochs or 1) - 1}); trainer.max_epochs and the "
        "stages do not agree"
    )


def trained_parameters(backbone: Any, stages: Sequence[Stage]) -> list[torch.nn.Parameter]:
    """Every parameter some stage trains, in the backbone's order: the optimizer's, from the start,
    so a part unfrozen in a later stage is in it (its state only starts when it first trains)."""
    wanted = {
        id(parameter)
        for part in PARTS
        if any(getattr(stage, part) for stage in stages)
        for parameter in backbone.part_parameters(part)
    }
    return [parameter for parameter in backbone.parameters() if id(parameter) in wanted]


class TrainingStages(L.Callback):
    """Applies each epoch's stage when the epoch starts (``HumanClapModule.configure_callbacks``
    adds it when the run has stages).

    The stage is derived from ``trainer.current_epoch``, so a run resumed mid-stage is in the stage
    it was in. Applying a stage sets ``requires_grad`` and eval mode per part
    (``backbone.train_parts``) and drops the optimizer state and gradients of every part the stage
    freezes: a frozen part gets no gradient, so AdamW skips it (no update, no weight decay), and a
    part unfrozen later starts with fresh state (its moments and step count from zero), while a
    part that keeps training across a switch keeps its state. Each switch is logged (a log line and
    ``train/stage``, the 1-based stage number, to the run's loggers).
    """

    def __init__(self, stages: Sequence[Stage]) -> None:
        super().__init__()
        self.stages = tuple(stages)
        self.applied: int | None = None
        """The index of the stage in force (None until the first epoch of this fit starts)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            check_length(self.stages, trainer.max_epochs)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        index = stage_index(self.stages, epoch)
        if index == self.applied:
            return
        stage = self.stages[index]
        backbone = pl_module.backbone
        backbone.train_parts(**stage.parts)
        for part in stage.frozen:
            for parameter in backbone.part_parameters(part):
                parameter.grad = None
                for optimizer in trainer.optimizers:
                    optimizer.state.pop(parameter, None)
        how = "resuming in" if self.applied is None and epoch != stage.first_epoch else "starting"
        if self.applied is None and epoch == 0:
            how = "starting with"
        if trainer.is_global_zero:
            log.info("epoch %d: %s %s", epoch, how, stage.describe(index, len(self.stages)))
            for logger in trainer.loggers:
                logger.log_metrics({"train/stage": float(index + 1)}, step=trainer.global_step)
        self.applied = index
