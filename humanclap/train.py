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
from humanclap.backbones.checkpoint_safety import LIGHTNING_CHECKPOINT, read_torch_checkpoint
from humanclap.cli import report_user_errors
from humanclap.callbacks import ProbeCallback
from humanclap.errors import NonFiniteError
from humanclap.lit.module import HumanClapModule
from humanclap.probes.build import build_probes
from humanclap.run_lock import claim_run_directories

log = logging.getLogger(__name__)


def export_best(checkpoint: ModelCheckpoint, module: HumanClapModule, export_dir: Path) -> Path:
    """Load the best Lightning checkpoint (weights_only) into ``module`` and save a ClapModel dir.

    Refuses (:class:`~humanclap.errors.NonFiniteError`, nothing written) a checkpoint holding NaN or
    inf: the second line of defence behind :class:`~humanclap.lit.finite_guard.FiniteGuard`.
    """
    best = checkpoint.best_model_path or checkpoint.last_model_path
    if not best:
        raise RuntimeError("no checkpoint was written; did validation run?")
    state = read_torch_checkpoint(best, LIGHTNING_CHECKPOINT)["state_dict"]
    nonfinite = [name for name, value in state.items()
                 if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if nonfinite:
        floating = sum(torch.is_tensor(value) and value.is_floating_point() for value in state.values())
        raise NonFiniteError(
            f"refusing to export {best}: {len(nonfinite)} of {floating} tensors hold NaN or inf (e.g. "
            f"{', '.join(nonfinite[:3])}), so the run diverged; lower optimizer.lr or check the data and the "
            f"precision, then train again. Nothing was written to {export_dir}.")
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
    """Fit, export the lowest-``monitor`` epoch and return the run summary (see the module docstring).

    Before the first step, rank 0 locks the output and export directories (one live run per name)
    and checks that the export can be written and replaces no other run's model
    (:mod:`humanclap.run_lock`); the data module has checked every clip by then.
    """
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
        train_temperature_only=cfg.get("train_temperature_only", False),
        config=config,
    )
    probes = ProbeCallback(build_probes(cfg.get("probes"), datamodule.val_pairs))
    checkpoint = ModelCheckpoint(
        dirpath=resume.checkpoint_dir(cfg.paths.output_dir),
        filename="epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=cfg.monitor,
        mode=cfg.monitor_mode,
    )
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    # `precision=bf16-mixed` is a shortcut for trainer.precision (the trainer config's default when null).
    precision = {"precision": cfg.precision} if cfg.get("precision") is not None else {}
    callbacks = [probes, checkpoint, resume.last_epoch_checkpoint(cfg.paths.output_dir), resume.RandomState(),
                 launch.SameHyperparameters()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger,
                                     plugins=resume.cluster_plugins(), **precision)
    launch.check_launch(trainer)  # refuses a multirun whose DDP ranks would re-run the command line
    lock = None
    if trainer.is_global_zero:
        lock = claim_run_directories(cfg.paths.output_dir, launch.export_dir(cfg), resuming=ckpt_path is not None,
                                     overwrite_export=cfg.get("overwrite_export", False))
    try:
        return _fit_and_export(cfg, trainer, module, datamodule, probes, checkpoint, ckpt_path)
    finally:
        if lock is not None:
            lock.release()


def _fit_and_export(cfg: DictConfig, trainer: L.Trainer, module: HumanClapModule, datamodule: L.LightningDataModule,
                    probes: ProbeCallback, checkpoint: ModelCheckpoint, ckpt_path: str | None) -> dict[str, Any]:
    # weights_only: Lightning 2.6 otherwise leaves it to torch.load, whose default an environment variable flips.
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    launch.recover_spawned_state(trainer, checkpoint)  # ddp_spawn: the probe history lives in last.ckpt

    best_epoch = None
    if checkpoint.best_model_path:
        best_epoch = int(read_torch_checkpoint(checkpoint.best_model_path, LIGHTNING_CHECKPOINT)["epoch"])
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
    # Not non-finite embeddings (EmbeddingCache refuses those): a statistic the probe cannot define.
    return "undefined (NaN: e.g. a correlation of constant CLAPScores)" if math.isnan(value) else f"{value:.3f}"


@hydra.main(version_base="1.3", config_path="../recipes", config_name="train")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    """Returns ``optimized_metric`` of the exported model (the lowest-``monitor`` epoch, else the last
    one): a sweep (``sweep=optuna``) optimises the model the run delivers, not its best epoch."""
    return train(cfg)["objective"]


if __name__ == "__main__":
    main()
