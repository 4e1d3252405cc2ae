"""The end of a run: the lowest-``monitor`` checkpoint exported as a transformers directory with a model
card and ``humanclap_run.json``, the run summary, and the summary line printed last (human-clap §IV-A:
"the best model that had the lowest validation loss")."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

from humanclap.backbones.aggregation import TransformerHeadBackbone
from humanclap.backbones.checkpoint_safety import LIGHTNING_CHECKPOINT, read_torch_checkpoint
from humanclap.errors import NonFiniteError
from humanclap.lit.callbacks import ProbeCallback
from humanclap.lit.module import HumanClapModule
from humanclap.runs import launch
from humanclap.runs.model_card import write_model_card

log = logging.getLogger(__name__)


def export_run(
    cfg: DictConfig, trainer: L.Trainer, module: HumanClapModule, probes: ProbeCallback
) -> dict[str, Any]:
    """After ``fit``: export the model (rank 0) and return the run summary (:func:`summarize`)."""
    checkpoint = (
        trainer.checkpoint_callback
    )  # the monitored one: first in the callbacks (humanclap.train)
    launch.recover_spawned_state(
        trainer, checkpoint
    )  # ddp_spawn: the probe history lives in last.ckpt
    best_epoch = None
    if checkpoint.best_model_path:
        best_epoch = int(
            read_torch_checkpoint(checkpoint.best_model_path, LIGHTNING_CHECKPOINT)["epoch"]
        )
    summary = summarize(probes.history, best_epoch, cfg.optimized_metric)
    if trainer.is_global_zero:
        export_dir = export_best(checkpoint, module, launch.export_dir(cfg))
        summary["export_dir"] = str(export_dir)
        (export_dir / "humanclap_run.json").write_text(
            json.dumps(
                {"summary": summary, "history": probes.history, "config": module.hparams["config"]},
                indent=2,
            )
        )
        extreme = "highest" if cfg.get("monitor_mode", "min") == "max" else "lowest"
        selected_by = f"{extreme} {cfg.monitor}" if best_epoch is not None else "last epoch"
        write_model_card(
            export_dir,
            cfg,
            summary,
            heads=isinstance(module.backbone, TransformerHeadBackbone),
            selected_by=selected_by,
        )
        finish_loggers(trainer)
        log.info(summary_line(summary, selected_by))
    return summary


def export_best(checkpoint: ModelCheckpoint, module: HumanClapModule, export_dir: Path) -> Path:
    """Load the best Lightning checkpoint (weights_only) into ``module`` and save a ClapModel dir.

    Refuses (:class:`~humanclap.errors.NonFiniteError`, nothing written) a checkpoint holding NaN or
    inf: the second line of defence behind :class:`~humanclap.lit.finite_guard.FiniteGuard`.
    """
    best = checkpoint.best_model_path or checkpoint.last_model_path
    if not best:
        raise RuntimeError("no checkpoint was written; did validation run?")
    state = read_torch_checkpoint(best, LIGHTNING_CHECKPOINT)["state_dict"]
    nonfinite = [
        name
        for name, value in state.items()
        if torch.is_tensor(value)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]
    if nonfinite:
        floating = sum(
            torch.is_tensor(value) and value.is_floating_point() for value in state.values()
        )
        raise NonFiniteError(
            f"refusing to export {best}: {len(nonfinite)} of {floating} tensors hold NaN or inf (e.g. "
            f"{', '.join(nonfinite[:3])}), so the run diverged; lower optimizer.lr or check the data and the "
            f"precision, then train again. Nothing was written to {export_dir}."
        )
    module.load_state_dict(state)
    return module.backbone.save_pretrained(export_dir)


def summarize(
    history: list[tuple[int, dict[str, float]]], best_epoch: int | None, metric: str
) -> dict[str, Any]:
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
        return (
            value - baseline if value is not None and baseline is not None else None
        )  # NaN if either is

    return {
        "metric": metric,
        "baseline": baseline,
        "exported_epoch": exported_epoch,
        "exported": exported,
        "gain": gain(exported),
        "last_epoch": last_epoch,
        "last": last,
        "last_gain": gain(last),
        "objective": exported,
    }


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
        if (
            isinstance(logger, WandbLogger) and logger._experiment is not None
        ):  # never start a run to end it
            logger.experiment.finish()


def _fmt(value: float | None) -> str:
    if value is None:
        return "not measured"
    # Not non-finite embeddings (EmbeddingCache refuses those): a statistic the probe cannot define.
    return (
        "undefined (NaN: e.g. a correlation of constant CLAPScores)"
        if math.isnan(value)
        else f"{value:.3f}"
    )
