"""Fine-tune CLAP with the Human-CLAP losses: ``python -m humanclap.train recipe=wsce_mae``.

Composes ``recipes/train.yaml``, builds backbone -> data -> loss -> module -> probes -> trainer,
fits, exports the checkpoint with the lowest validation loss as a transformers directory
(``ClapModel.from_pretrained(checkpoints/<run>)``) with a model card (``README.md``) and
``humanclap_run.json``, prints the summary line last (:func:`summary_line`) and returns
``optimized_metric`` of the exported model for sweeps.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from humanclap import launch, resume
from humanclap.backbones.aggregation import TransformerHeadBackbone
from humanclap.backbones.checkpoint_safety import LIGHTNING_CHECKPOINT, read_torch_checkpoint
from humanclap.backbones.clap import ClapBackbone
from humanclap.backbones.pretrained import HubUnreachable
from humanclap.backbones.resolve import key_holding
from humanclap.cli import report_user_errors, user_error
from humanclap.callbacks import ProbeCallback
from humanclap.console import prepare_console
from humanclap.errors import NonFiniteError
from humanclap.lit.cpu_threads import apply_to_trainer
from humanclap.lit.module import HumanClapModule
from humanclap.model_card import write_model_card
from humanclap.probes.build import build_probes
from humanclap.recipe_files import RECIPES
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


def build_backbone(cfg: DictConfig) -> ClapBackbone:
    """``cfg.model`` instantiated; a hub id it names that cannot be fetched ends with the command that
    trains on a downloaded copy instead (the model key that held the hub id, set to the copy)."""
    try:
        return instantiate(cfg.model)
    except Exception as error:
        hub = user_error(error)
        if not isinstance(hub, HubUnreachable):
            raise
        key = f"model.{key_holding(cfg.model, hub.source) or hub.argument}"
        given = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        args = [arg for arg in given if arg.split("=", 1)[0].lstrip("+~") != key] + [f"{key}={hub.local_dir}"]
        command = "python -m humanclap.train " + " ".join(shlex.quote(arg) for arg in args)
        raise hub.instead(f"then train with it:\n    {command}") from None


def summarize(history: list[tuple[int, dict[str, float]]], best_epoch: int | None, metric: str) -> dict[str, Any]:
    """``metric`` of the baseline (epoch -1), of the exported epoch and of the last measured epoch.

    ``best_epoch`` is the epoch of the exported checkpoint (lowest ``monitor``); None: none was
    selected and the last epoch is exported. ``gain`` = exported - baseline and ``objective`` (what
    the entry point returns to a sweep) = exported: both describe the model the run delivers;
    ``last`` and ``last_gain`` describe the last measured epoch.
    """
    by_epoch = dict(history)
    epochs = [epoch for epoch, _ in history if epoch >= 0]
    last_epoch = epochs[-1] if epochs else None
    exported_epoch = best_epoch if best_epoch is not None else last_epoch
    baseline = by_epoch.get(-1, {}).get(metric)
    exported = by_epoch.get(exported_epoch, {}).get(metric) if exported_epoch is not None else None
    last = by_epoch[last_epoch].get(metric) if last_epoch is not None else None

    def gain(value: float | None) -> float | None:
        return value - baseline if value is not None and baseline is not None else None  # NaN if either is

    return {"metric": metric, "baseline": baseline,
            "exported_epoch": exported_epoch, "exported": exported, "gain": gain(exported),
            "last_epoch": last_epoch, "last": last, "last_gain": gain(last),
            "objective": exported}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, export the lowest-``monitor`` epoch and return the run summary (see the module docstring).

    Before the first step, rank 0 locks the output and export directories (one live run per name)
    and checks that the export can be written and replaces no other run's model
    (:mod:`humanclap.run_lock`); the data module has checked every clip by then.
    """
    config = OmegaConf.to_container(cfg, resolve=True)
    ckpt_path = resume.checkpoint_to_resume(cfg.get("resume"), cfg.paths.output_dir, config)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    backbone = build_backbone(cfg)
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
    probes = ProbeCallback(build_probes(cfg.get("probes"), datamodule.val_pairs),
                           report=Path(cfg.paths.output_dir) / "report.md")
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
    apply_to_trainer(cfg.get("threads", "auto"), trainer, backbone)  # intra-op CPU threads, logged once
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
        selected_by = f"lowest {cfg.monitor}" if best_epoch is not None else "last epoch"
        write_model_card(export_dir, cfg, summary, heads=isinstance(module.backbone, TransformerHeadBackbone),
                         selected_by=selected_by)
        finish_loggers(trainer)
        log.info(summary_line(summary, selected_by))
    return summary


def summary_line(summary: dict[str, Any], selected_by: str) -> str:
    """The run's last line: ``relevance/srcc 0.050 -> 0.350 (+0.300), exported epoch 5 (lowest val/loss)
    to checkpoints/<run>; last epoch 9: 0.317`` (the last epoch only when it is not the exported one)."""
    metric, baseline, exported = summary["metric"], summary["baseline"], summary["exported"]
    if baseline is not None and exported is not None:
        gain = "undefined" if math.isnan(summary["gain"]) else f"{summary['gain']:+.3f}"
        line = f"{metric} {_fmt(baseline)} -> {_fmt(exported)} ({gain})"
    else:
        line = f"{metric} {_fmt(exported)}"
    if summary["exported_epoch"] is not None:
        line += f", exported epoch {summary['exported_epoch']} ({selected_by})"
    else:
        line += ", exported"
    line += f" to {summary['export_dir']}"
    if summary["last"] is not None and summary["last_epoch"] != summary["exported_epoch"]:
        line += f"; last epoch {summary['last_epoch']}: {_fmt(summary['last'])}"
    return line


def finish_loggers(trainer: L.Trainer) -> None:
    """End the loggers' runs now rather than at interpreter exit (wandb's atexit hook): their last
    words come before the summary line, and the next job of a multirun starts a run of its own."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:  # never start a run to end it
            logger.experiment.finish()


def _fmt(value: float | None) -> str:
    if value is None:
        return "not measured"
    # Not non-finite embeddings (EmbeddingCache refuses those): a statistic the probe cannot define.
    return "undefined (NaN: e.g. a correlation of constant CLAPScores)" if math.isnan(value) else f"{value:.3f}"


@hydra.main(version_base="1.3", config_path=str(RECIPES), config_name="train")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    """Returns ``optimized_metric`` of the exported model (the lowest-``monitor`` epoch, else the last
    one): a sweep (``sweep=optuna``) optimises the model the run delivers, not its best epoch."""
    prepare_console()
    return train(cfg)["objective"]


if __name__ == "__main__":
    main()
