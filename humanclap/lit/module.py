"""LightningModule that fine-tunes a CLAP backbone with the Human-CLAP loss (human-clap eq. 6)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from omegaconf import DictConfig, OmegaConf

from humanclap.backbones.base import Backbone
from humanclap.errors import HumanClapError
from humanclap.lit.batchnorm import use_global_batchnorm
from humanclap.lit.finite_guard import FiniteGuard
from humanclap.lit.schedulers import Schedule
from humanclap.lit.stages import (
    Stage,
    StageConfigError,
    TrainingStages,
    parse_stages,
    trained_parameters,
)
from humanclap.losses import TERMS, HumanClapLoss

log = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, L.Trainer], Schedule | None]


class FreezeConfigError(HumanClapError, ValueError):
    """``freeze_audio`` / ``freeze_text`` / ``train_temperature_only`` that contradict each other."""


class HumanClapModule(L.LightningModule):
    """One step = embed the batch's audio and texts, L = λ1·wSCE + λ2·MSE + λ3·MAE, step.

    After every optimiser step both logit scales are clamped to [0, ln 100]
    (``Backbone.clamp_logit_scale``); transformers' ClapModel never clamps them. Under DDP the
    backbone's BatchNorm layers become :class:`~humanclap.lit.batchnorm.GlobalBatchNorm` (in
    ``setup``), which normalise with the statistics of the global batch. Every fit gets a
    :class:`~humanclap.lit.finite_guard.FiniteGuard` (``configure_callbacks``): a non-finite loss,
    gradient or parameter stops training with an error naming the step, the terms and the likely cause.

    Args:
        backbone: the CLAP model being fine-tuned.
        loss: the recipe (which terms, which λ).
        optimizer: ``params -> Optimizer`` (Hydra ``_partial_: true``), e.g. AdamW(lr=1e-5).
        scheduler: ``(optimizer, trainer) -> Schedule | None`` (``recipes/scheduler/``,
            :mod:`humanclap.lit.schedulers`); ``None``: the learning rate stays ``optimizer.lr``.
        freeze_audio / freeze_text: keep a tower (encoder + projection) fixed: no gradients, and eval
            mode throughout (BatchNorm statistics and dropout fixed; ``Backbone.freeze``).
        train_temperature_only: freezing both towers leaves only the temperature (logit scale) to
            train, which is refused as a likely mistake unless this flag says it is meant; the flag
            in turn requires that nothing but the temperature is trainable.
        config: the run's full configuration, stored in checkpoints as plain containers (a DictConfig
            is converted: in ``save_hyperparameters`` it would break ``weights_only`` loading).
        stages: training stages (clamp3 §2.1; :mod:`humanclap.lit.stages`): which parts train in
            which epochs, applied by a :class:`~humanclap.lit.stages.TrainingStages` callback
            (``configure_callbacks``); the first stage's parts are set here. None or empty: every
            part the freeze flags leave trainable trains throughout (no stages). Not with
            ``freeze_audio`` / ``freeze_text`` / ``train_temperature_only``, nor under DDP.
    """

    def __init__(
        self,
        backbone: Backbone,
        loss: HumanClapLoss,
        optimizer: OptimizerFactory,
        freeze_audio: bool = False,
        freeze_text: bool = False,
        config: dict[str, Any] | DictConfig | None = None,
        train_temperature_only: bool = False,
        scheduler: SchedulerFactory | None = None,
        stages: Sequence[Stage | Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)
        self.stages = parse_stages(stages or None)
        hyperparameters = {
            "freeze_audio": freeze_audio,
            "freeze_text": freeze_text,
            "train_temperature_only": train_temperature_only,
            "config": config or {},
        }
        if self.stages:  # runs without stages store exactly what they stored before stages existed
            hyperparameters["stages"] = [stage.config() for stage in self.stages]
        self.save_hyperparameters(hyperparameters)
        self.backbone = backbone
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        backbone.freeze(audio=freeze_audio, text=freeze_text)
        # A trainable parameter that no loss reaches (ClapModel's logit_scale_t: the loss uses
        # logit_scale_a for both directions, eq. 5) makes DDP stop with "parameters that were not
        # used in producing the loss".
        for parameter in backbone.unused_parameters():
            parameter.requires_grad_(False)
        self.train_temperature_only = train_temperature_only
        if self.stages:
            flags = [
                f"{name}=true"
                for name, value in (
                    ("freeze_audio", freeze_audio),
                    ("freeze_text", freeze_text),
                    ("train_temperature_only", train_temperature_only),
                )
                if value
            ]
            if flags:
                raise StageConfigError(
                    f"stages decide which parts train in each epoch, so {' and '.join(flags)} cannot "
                    "be combined with them: drop it and freeze the part in the stages instead (e.g. "
                    "audio: false in every stage keeps the audio encoder frozen)"
                )
            backbone.train_parts(**self.stages[0].parts)
        else:
            _check_freezing(backbone, freeze_audio, freeze_text, train_temperature_only)
        # from_pretrained returns eval-mode modules and Lightning keeps whatever mode it is given:
        # without this, dropout and BatchNorm batch statistics would be off during training.
        self.train()

    def setup(self, stage: str) -> None:
        # After the process group exists, before DDP wraps the model and the optimizer is built.
        if self.stages and self.trainer.world_size > 1:
            raise StageConfigError(
                f"stages are not supported with several processes yet (world size "
                f"{self.trainer.world_size}): DDP registers the trainable parameters once, when it "
                "wraps the model, so a part unfrozen in a later stage would not be synchronised. "
                "Train with stages on one device (trainer=cpu or trainer=gpu trainer.devices=1)"
            )
        if self.trainer.world_size > 1:
            use_global_batchnorm(self.backbone)

    def configure_callbacks(self) -> list[L.Callback]:
        return [FiniteGuard()] + ([TrainingStages(self.stages)] if self.stages else [])

    def on_fit_start(self) -> None:
        frozen = {
            id(module) for part in self.backbone.frozen_modules() for module in part.modules()
        }
        in_eval = [module for module in self.modules() if not module.training]
        if in_eval and all(id(module) in frozen for module in in_eval):
            # Lightning warns that modules in eval mode "may lead to unexpected behavior"; these are frozen.
            warnings.filterwarnings(
                "ignore",
                message=rf"Found {len(in_eval)} module\(s\) in eval mode at the start",
                category=PossibleUserWarning,
            )
        if self.train_temperature_only and self.trainer.is_global_zero:
            log.info(
                "train_temperature_only=true: both towers are frozen, only the temperature (logit scale) "
                "is trained"
            )

    def _terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        audio = self.backbone.audio_embeddings(batch["audio"])
        text = self.backbone.text_embeddings(batch["text"])
        return self.loss(audio, text, batch["score"].to(audio.device), self.backbone.logit_scale)

    def training_step(self, batch: dict[str, Any], batch_index: int) -> dict[str, Any]:
        terms = self._terms(batch)
        # Under DDP a rank's loss is its share of the global batch's loss (HumanClapLoss): the mean over
        # ranks (sync_dist, one scalar all-reduce; nothing in one process) is the loss of the global batch.
        self.log(
            "train/loss",
            terms["loss"].detach(),
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch["score"].shape[0],
            sync_dist=True,
        )
        if self.global_step % self.trainer.log_every_n_steps == 0:
            # Straight to the loggers: every self.log() call costs ~0.5 ms of Lightning bookkeeping
            # per step (benchmarks/train_step.py). Every rank gets here at the same steps, so the
            # ranks' shares of the terms are averaged the same way.
            names = ("wsce", "mse", "mae")
            shares = self.trainer.strategy.reduce(
                torch.stack([terms[name] for name in names]), reduce_op="mean"
            )
            details = {f"train/{name}": float(value) for name, value in zip(names, shares)}
            details["train/temperature"] = float(torch.exp(-self.backbone.logit_scale.detach()))
            # The learning rate this step's update uses (the scheduler steps after the update).
            details["train/lr"] = float(self.trainer.optimizers[0].param_groups[0]["lr"])
            for logger in self.loggers:
                logger.log_metrics(details, step=self.global_step)
        # The detached terms let FiniteGuard say which of them was non-finite.
        return {"loss": terms["loss"], "terms": {name: terms[name] for name in TERMS}}

    def validation_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        terms = self._terms(batch)
        self.log_dict(
            {f"val/{name}": value.detach() for name, value in terms.items()},
            on_epoch=True,
            prog_bar=True,
            batch_size=batch["score"].shape[0],
            sync_dist=True,
        )
        return terms["loss"]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_index: int) -> None:
        self.backbone.clamp_logit_scale()

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        """The optimizer, with its learning-rate schedule if there is one (Lightning steps it and
        keeps its state in checkpoints)."""
        # With stages: every parameter some stage trains, frozen or not now (requires_grad set per
        # epoch by TrainingStages); AdamW skips those without a gradient.
        parameters = (
            trained_parameters(self.backbone, self.stages)
            if self.stages
            else list(self.backbone.trainable_parameters())
        )
        if not parameters:
            raise ValueError(
                "nothing to train: both towers are frozen and no parameter requires grad"
            )
        optimizer = self.optimizer_factory(parameters)
        schedule = (
            self.scheduler_factory(optimizer, self.trainer)
            if self.scheduler_factory is not None
            else None
        )
        if schedule is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": schedule.lightning_config()}


def _check_freezing(
    backbone: Backbone, freeze_audio: bool, freeze_text: bool, train_temperature_only: bool
) -> None:
    """Refuse a run that trains only the temperature by accident, or claims to and trains more."""
    others = [
        name
        for name, parameter in backbone.named_parameters()
        if parameter.requires_grad and parameter is not backbone.logit_scale
    ]
    heads = (
        " with their heads (model.freeze_heads_with_towers=true)"
        if getattr(backbone, "freeze_heads_with_towers", False)
        else ""
    )
    if freeze_audio and freeze_text and not others and not train_temperature_only:
        raise FreezeConfigError(
            f"freeze_audio=true and freeze_text=true freeze both towers{heads}: nothing to train but the "
            f"temperature (logit scale). If that is meant, add train_temperature_only=true; otherwise set "
            f"freeze_audio=false or freeze_text=false."
        )
    if train_temperature_only and others:
        raise FreezeConfigError(
            f"train_temperature_only=true, but {len(others)} parameter tensors besides the temperature are "
            f"trainable (e.g. {others[0]}, with freeze_audio={str(freeze_audio).lower()} "
            f"freeze_text={str(freeze_text).lower()}): set freeze_audio=true and freeze_text=true (and "
            f"model.freeze_heads_with_towers=true with Transformer heads), or drop train_temperature_only."
        )
