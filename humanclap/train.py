"""Fine-tune CLAP with the Human-CLAP losses: ``python -m humanclap.train recipe=wsce_mae``.

Composes ``recipes/train.yaml``, builds backbone -> data -> loss -> module -> probes -> trainer,
fits, exports the checkpoint with the lowest validation loss as a transformers directory
(``ClapModel.from_pretrained(checkpoints/<run>)``) and returns ``optimized_metric`` for sweeps.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from humanclap import launch, resume
from humanclap.callbacks import ProbeCallback
from humanclap.lit.module import HumanClapModule
from humanclap.probes.build import build_probes

log = logging.getLogger(__name__)


def export_best(checkpoint: ModelCheckpoint, module: HumanClapModule, export_dir: Path) -> Path:
    """Load the best Lightning checkpoint (weights_only) into ``module`` and save a ClapModel dir."""
    best = checkpoint.best_model_path or checkpoint.last_model_path
    if not best:
        raise RuntimeError("no checkpoint was written; did validation run?")
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    return module.backbone.save_pretrained(export_dir)


def summarize(history: list[tuple[int, dict[str, float]]], best_epoch: int | None, metric: str) -> dict[str, Any]:
    by_epoch = dict(history)
    baseline, final = by_epoch.get(-1, {}), history[-1][1] if history else {}
    summary = {
        "metric": metric,
        "baseline": baseline.get(metric),
        "final": final.get(metric),
        "best_epoch": best_epoch,
        "best": by_epoch.get(best_epoch, {}).get(metric) if best_epoch is not None else None,
    }
    # What the entry point returns to a sweep: the metric of the model the run exports.
    summary["objective"] = summary["best"] if best_epoch is not None else summary["final"]
    if summary["baseline"] is not None and summary["final"] is not None:
        summary["gain"] = summary["final"] - summary["baseline"]  # NaN if either is undefined
    return summary


def train(cfg: DictConfig) -> dict[str, Any]:
    config = OmegaConf.to_container(cfg, resolve=True)
    ckpt_path = resume.checkpoint_to_resume(cfg.get("resume"), cfg.paths.output_dir, config)
    L.seed_everything(cfg.seed, workers=True)
    backbone = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, _partial_=True)(featurizer=backbone.featurizer)
    module = HumanClapModule(
        backbone=backbone,
        loss=instantiate(cfg.recipe),
        optimizer=instantiate(cfg.optimizer),
        freeze_audio=cfg.freeze_audio,
        freeze_text=cfg.freeze_text,
        config=config,
    )
    probes = ProbeCallback(build_probes(cfg.get("probes"), datamodule.val_pairs))
    checkpoint = ModelCheckpoint(
        dirpath=resume.checkpoint_dir(cfg.paths.output_dir),
        filename="epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=cfg.monitor,
        mode=cfg.monitor_mode,
        save_last=True,
    )
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    # `precision=bf16-mixed` is a shortcut for trainer.precision (the trainer config's default when null).
    precision = {"precision": cfg.precision} if cfg.get("precision") is not None else {}
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=[probes, checkpoint, resume.RandomState(),
                                                             launch.SameHyperparameters()],
                                     logger=logger, plugins=resume.cluster_plugins(), **precision)
    launch.check_launch(trainer)  # refuses a multirun whose DDP ranks would re-run the command line
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    launch.recover_spawned_state(trainer, checkpoint)  # ddp_spawn: the probe history lives in last.ckpt

    best_epoch = None
    if checkpoint.best_model_path:
        best_epoch = int(torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["epoch"])
    summary = summarize(probes.history, best_epoch, cfg.optimized_metric)
    if trainer.is_global_zero:
        export_dir = export_best(checkpoint, module, launch.export_dir(cfg))
        summary["export_dir"] = str(export_dir)
        (export_dir / "humanclap_run.json").write_text(json.dumps(
            {"summary": summary, "history": probes.history, "config": module.hparams["config"]}, indent=2))
        log.info("exported the lowest-%s checkpoint (epoch %s) to %s", cfg.monitor, best_epoch, export_dir)
        log.info("%s: baseline %s -> final %s (exported epoch %s: %s)", summary["metric"],
                 _fmt(summary["baseline"]), _fmt(summary["final"]), best_epoch, _fmt(summary["best"]))
    return summary


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "undefined (constant CLAPScores)" if math.isnan(value) else f"{value:.3f}"


@hydra.main(version_base="1.3", config_path="../recipes", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns ``optimized_metric`` of the exported model (the lowest-``monitor`` epoch, else the last
    one): a sweep (``sweep=optuna``) optimises the model the run delivers, not its best epoch."""
    return train(cfg)["objective"]


if __name__ == "__main__":
    main()
