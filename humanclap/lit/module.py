"""LightningModule that fine-tunes a CLAP backbone with the Human-CLAP loss (human-clap eq. 6)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from humanclap.backbones.clap import ClapBackbone
from humanclap.lit.batchnorm import use_global_batchnorm
from humanclap.losses import HumanClapLoss

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class HumanClapModule(L.LightningModule):
    """One step = embed the batch's audio and texts, L = λ1·wSCE + λ2·MSE + λ3·MAE, step.

    After every optimiser step both logit scales are clamped to [0, ln 100]
    (``ClapBackbone.clamp_logit_scale``); transformers' ClapModel never clamps them. Under DDP the
    backbone's BatchNorm layers become :class:`~humanclap.lit.batchnorm.GlobalBatchNorm` (in
    ``setup``), which normalise with the statistics of the global batch.

    Args:
        backbone: the CLAP model being fine-tuned.
        loss: the recipe (which terms, which λ).
        optimizer: ``params -> Optimizer`` (Hydra ``_partial_: true``), e.g. AdamW(lr=1e-5).
        freeze_audio / freeze_text: keep one tower (encoder + projection) fixed.
        config: the run's full configuration, stored in checkpoints as plain containers (a DictConfig
            is converted: in ``save_hyperparameters`` it would break ``weights_only`` loading).
    """

    def __init__(
        self,
        backbone: ClapBackbone,
        loss: HumanClapLoss,
        optimizer: OptimizerFactory,
        freeze_audio: bool = False,
        freeze_text: bool = False,
        config: dict[str, Any] | DictConfig | None = None,
    ) -> None:
        super().__init__()
        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)
        self.save_hyperparameters({"freeze_audio": freeze_audio, "freeze_text": freeze_text,
                                   "config": config or {}})
        self.backbone = backbone
        self.loss = loss
        self.optimizer_factory = optimizer
        backbone.freeze(audio=freeze_audio, text=freeze_text)
        # The loss uses logit_scale_a for both directions (eq. 5); a trainable parameter that no loss
        # reaches makes DDP stop with "parameters that were not used in producing the loss".
        backbone.model.logit_scale_t.requires_grad_(False)
        # from_pretrained returns eval-mode modules and Lightning keeps whatever mode it is given:
        # without this, dropout and BatchNorm batch statistics would be off during training.
        self.train()

    def setup(self, stage: str) -> None:
        # After the process group exists, before DDP wraps the model and the optimizer is built.
        if self.trainer.world_size > 1:
            use_global_batchnorm(self.backbone)

    def _terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        audio = self.backbone.audio_embeddings(batch["audio"])
        text = self.backbone.text_embeddings(batch["text"])
        return self.loss(audio, text, batch["score"].to(audio.device), self.backbone.logit_scale)

    def training_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        terms = self._terms(batch)
        # Under DDP a rank's loss is its share of the global batch's loss (HumanClapLoss): the mean over
        # ranks (sync_dist, one scalar all-reduce; nothing in one process) is the loss of the global batch.
        self.log("train/loss", terms["loss"].detach(), on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=batch["score"].shape[0], sync_dist=True)
        if self.global_step % self.trainer.log_every_n_steps == 0:
            # Straight to the loggers: every self.log() call costs ~0.5 ms of Lightning bookkeeping
            # per step (benchmarks/train_step.py). Every rank gets here at the same steps, so the
            # ranks' shares of the terms are averaged the same way.
            names = ("wsce", "mse", "mae")
            shares = self.trainer.strategy.reduce(torch.stack([terms[name] for name in names]), reduce_op="mean")
            details = {f"train/{name}": float(value) for name, value in zip(names, shares)}
            details["train/temperature"] = float(torch.exp(-self.backbone.logit_scale.detach()))
            for logger in self.loggers:
                logger.log_metrics(details, step=self.global_step)
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        terms = self._terms(batch)
        self.log_dict({f"val/{name}": value.detach() for name, value in terms.items()}, on_epoch=True,
                      prog_bar=True, batch_size=batch["score"].shape[0], sync_dist=True)
        return terms["loss"]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_index: int) -> None:
        self.backbone.clamp_logit_scale()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        parameters = list(self.backbone.trainable_parameters())
        if not parameters:
            raise ValueError("nothing to train: both towers are frozen and no parameter requires grad")
        return self.optimizer_factory(parameters)
