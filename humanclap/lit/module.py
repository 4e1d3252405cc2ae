"""LightningModule that fine-tunes a CLAP backbone with the Human-CLAP loss (human-clap eq. 6)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import lightning as L
import torch

from humanclap.backbones.clap import ClapBackbone
from humanclap.losses import HumanClapLoss

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class HumanClapModule(L.LightningModule):
    """One step = embed the batch's audio and texts, L = λ1·wSCE + λ2·MSE + λ3·MAE, step.

    After every optimiser step both logit scales are clamped to [0, ln 100]
    (``ClapBackbone.clamp_logit_scale``); transformers' ClapModel never clamps them.

    Args:
        backbone: the CLAP model being fine-tuned.
        loss: the recipe (which terms, which λ).
        optimizer: ``params -> Optimizer`` (Hydra ``_partial_: true``), e.g. AdamW(lr=1e-5).
        freeze_audio / freeze_text: keep one tower (encoder + projection) fixed.
        config: the run's full configuration as plain containers, stored in checkpoints
            (``save_hyperparameters`` with a DictConfig would break ``weights_only`` loading).
    """

    def __init__(
        self,
        backbone: ClapBackbone,
        loss: HumanClapLoss,
        optimizer: OptimizerFactory,
        freeze_audio: bool = False,
        freeze_text: bool = False,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters({"freeze_audio": freeze_audio, "freeze_text": freeze_text,
                                   "config": config or {}})
        self.backbone = backbone
        self.loss = loss
        self.optimizer_factory = optimizer
        backbone.freeze(audio=freeze_audio, text=freeze_text)
        # from_pretrained returns eval-mode modules and Lightning keeps whatever mode it is given:
        # without this, dropout and BatchNorm batch statistics would be off during training.
        self.train()

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        audio = self.backbone.audio_embeddings(batch["audio"])
        text = self.backbone.text_embeddings(batch["text"])
        terms = self.loss(audio, text, batch["score"].to(audio.device), self.backbone.logit_scale)
        self.log_dict(
            {f"{stage}/{name}": value.detach() for name, value in terms.items()},
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=stage == "val",
            batch_size=batch["score"].shape[0],
            sync_dist=stage != "train",
        )
        return terms["loss"]

    def training_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        return self._step(batch, "val")

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_index: int) -> None:
        self.backbone.clamp_logit_scale()
        self.log("train/temperature", torch.exp(-self.backbone.logit_scale.detach()), on_step=True, on_epoch=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        parameters = list(self.backbone.trainable_parameters())
        if not parameters:
            raise ValueError("nothing to train: both towers are frozen and no parameter requires grad")
        return self.optimizer_factory(parameters)
