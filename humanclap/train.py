"""Fine-tune CLAP with the Human-CLAP losses: ``python -m humanclap.train recipe=wsce_mae``.

Composes ``recipes/train.yaml``, builds backbone -> data -> module -> probes -> trainer, fits, and
exports the checkpoint with the lowest validation loss (:mod:`humanclap.runs.export`). Returns
``optimized_metric`` of the exported model for sweeps.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Any, get_type_hints

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from humanclap.backbones.base import Backbone
from humanclap.backbones.pretrained import HubUnreachable
from humanclap.backbones.resolve import key_holding
from humanclap.cli import report_user_errors, user_error
from humanclap.console import prepare_console
from humanclap.data.pairs import RatedPairs
from humanclap.data.readers.labelled_audio import LabelledAudio
from humanclap.errors import HumanClapError
from humanclap.features.disk import configured_root
from humanclap.lit.callbacks import ProbeCallback, RandomState, SameHyperparameters
from humanclap.lit.cpu_threads import apply_to_trainer
from humanclap.lit.module import HumanClapModule
from humanclap.lit.schedulers import early_stopping
from humanclap.lit.stages import parse_stages
from humanclap.probes.build import build_probes
from humanclap.recipe_files import RECIPES
from humanclap.runs import launch, resume
from humanclap.runs.export import export_run
from humanclap.runs.run_lock import claimed_run

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, export the lowest-``monitor`` epoch and return the run summary (:func:`humanclap.runs.export.summarize`).

    Before the first step, rank 0 locks the output and export directories (one live run per name)
    and checks that the export can be written and replaces no other run's model
    (:mod:`humanclap.runs.run_lock`); the data module has checked every clip by then.
    """
    config = OmegaConf.to_container(cfg, resolve=True)
    ckpt_path = resume.checkpoint_to_resume(cfg.get("resume"), cfg.paths.output_dir, config)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # Before the model loads: a bad scheduler.* value or a data config that is no datamodule fails at once.
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    stages = parse_stages(config.get("stages"), cfg.trainer.get("max_epochs"))
    require_datamodule(cfg.data)
    backbone = build_backbone(cfg)
    feature_cache = configured_root(cfg.get("cache", True), cfg.get("cache_dir"))
    datamodule = instantiate(cfg.data, _partial_=True)(
        featurizer=backbone.featurizer, feature_cache=feature_cache
    )
    module = HumanClapModule(
        backbone=backbone,
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        freeze_audio=cfg.freeze_audio,
        freeze_text=cfg.freeze_text,
        train_temperature_only=cfg.get("train_temperature_only", False),
        config=config,
        stages=stages,
    )
    probes = ProbeCallback(
        build_probes(cfg.get("probes"), datamodule.val_pairs),
        report=Path(cfg.paths.output_dir) / "report.md",
        feature_cache=feature_cache,
        num_workers=cfg.get("probe_workers", "auto"),
    )
    trainer = build_trainer(cfg, probes, backbone)
    with claimed_run(
        cfg.paths.output_dir,
        launch.export_dir(cfg),
        rank_zero=trainer.is_global_zero,
        resuming=ckpt_path is not None,
        overwrite_export=cfg.get("overwrite_export", False),
    ):
        # weights_only: Lightning 2.6 otherwise leaves it to torch.load, whose default an environment variable flips.
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        if trainer.is_global_zero:
            log.info(datamodule.features.usage())
        return export_run(cfg, trainer, module, probes)


class DataConfigError(HumanClapError, ValueError):
    """A ``data`` config that names no datamodule to train on."""


def require_datamodule(data_cfg: DictConfig) -> None:
    """Refuse a ``data`` config whose ``_target_`` is not a LightningDataModule, such as the
    evaluation sets ``data=esc50`` / ``data=urbansound8k`` (bare readers of labelled audio), with
    what to run instead."""
    target = data_cfg.get("_target_")
    if not target:
        return  # instantiate reports it as for any other config
    try:
        made = get_object(target)
    except Exception:  # an unknown or moved _target_: the same
        return
    if isinstance(made, type) and issubclass(made, L.LightningDataModule):
        return
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    given = f"data={choices['data']}" if choices.get("data") else "this data config"
    try:
        returns = get_type_hints(made).get("return") if callable(made) else None
    except Exception:  # annotations that do not resolve
        returns = None
    where = next((key for key in ("root", "path") if key in data_cfg), "root")
    if returns is LabelledAudio:
        raise DataConfigError(
            f"{given} is an evaluation set of labelled audio, not rated pairs to train on: "
            f"evaluate it with python -m humanclap.evaluate {given} data.{where}=<folder> split=null "
            f"'probes=[zero_shot_classification]', or train on rated pairs and measure it after "
            f"every epoch with 'probes=[relevance,zero_shot_classification]' "
            f"probes.zero_shot_classification.data=<folder>"
        )
    if returns is RatedPairs:
        raise DataConfigError(
            f"{given} is an evaluation set, not training data: evaluate it with python -m "
            f"humanclap.evaluate {given} data.{where}=<folder> (e.g. probes=retrieval). To train on "
            "your own pairs use data=manifest, data=captions or data=hf (a datamodule of them)"
        )
    raise DataConfigError(
        f"{given} ({target}) is not a datamodule: humanclap.train needs a data config with "
        f"_target_: humanclap.lit.datamodule.RatedPairDataModule and its pairs, as "
        f"recipes/data/relate.yaml or manifest.yaml"
    )


def build_backbone(cfg: DictConfig) -> Backbone:
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
        args = [arg for arg in given if arg.split("=", 1)[0].lstrip("+~") != key] + [
            f"{key}={hub.local_dir}"
        ]
        command = "python -m humanclap.train " + " ".join(shlex.quote(arg) for arg in args)
        raise hub.instead(f"then train with it:\n    {command}") from None


def build_trainer(cfg: DictConfig, probes: ProbeCallback, backbone: Backbone) -> L.Trainer:
    """``cfg.trainer`` with the run's callbacks, checked for a safe launch, with its CPU threads chosen.

    The monitored checkpoint comes first, so ``trainer.checkpoint_callback`` is the one export uses.
    ``early_stopping.patience`` adds Lightning's EarlyStopping on the same ``monitor``.
    """
    best = ModelCheckpoint(
        dirpath=resume.checkpoint_dir(cfg.paths.output_dir),
        filename="epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=cfg.monitor,
        mode=cfg.monitor_mode,
    )
    callbacks = [
        best,
        resume.last_epoch_checkpoint(cfg.paths.output_dir),
        probes,
        RandomState(),
        SameHyperparameters(),
    ]
    stop = early_stopping(cfg.get("early_stopping"), cfg.monitor, cfg.monitor_mode)
    callbacks += [stop] if stop is not None else []
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    # `precision=bf16-mixed` is a shortcut for trainer.precision (the trainer config's default when null).
    precision = {"precision": cfg.precision} if cfg.get("precision") is not None else {}
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=logger,
        plugins=resume.cluster_plugins(),
        **precision,
    )
    launch.check_launch(trainer)  # refuses a multirun whose DDP ranks would re-run the command line
    apply_to_trainer(
        cfg.get("threads", "auto"), trainer, backbone
    )  # intra-op CPU threads, logged once
    return trainer


def check_stage_arguments(argv: list[str]) -> None:
    """Refuse a stages list on the command line (``stages=[{...}]``), which Hydra would take for a
    preset name of the ``stages`` group and fail on with a TypeError, with how to give one."""
    for arg in argv:
        name, _, value = arg.lstrip("+").partition("=")
        if name == "stages" and value.lstrip()[:1] in ("[", "{"):
            raise SystemExit(
                f"'{arg}': stages= names a preset of recipes/stages/ (stages=clamp3; one value of "
                f"it: stages.0.epochs=3). For a list of your own, write it into a preset file, e.g. "
                f"my_configs/stages/mine.yaml holding '# @package _global_' and 'stages: [...]', and "
                f"run: python -m humanclap.train 'hydra.searchpath=[file://my_configs]' stages=mine "
                f"(docs/training.md#training-stages)"
            )


@hydra.main(version_base="1.3", config_path=str(RECIPES), config_name="train")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    """Returns ``optimized_metric`` of the exported model (the lowest-``monitor`` epoch, else the last
    one): a sweep (``sweep=optuna``) optimises the model the run delivers, not its best epoch."""
    prepare_console()
    return train(cfg)["objective"]


if __name__ == "__main__":
    check_stage_arguments(sys.argv)
    main()
