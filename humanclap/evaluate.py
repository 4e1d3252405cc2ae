"""Measure checkpoints with every probe: ``python -m humanclap.evaluate model=<checkpoint>``.

``model`` is a config name from ``recipes/model/``, a transformers ClapModel directory, a LAION-CLAP
``.pt``, a Lightning ``.ckpt`` from ``humanclap.train`` or a hub id (see
:mod:`humanclap.backbones.resolve`); ``models=[a,b,...]`` evaluates several side by side. The
probes (``probes=[relevance,retrieval]``) measure the ``split`` of ``data`` (labelled audio such as
``data=esc50``: every clip, ``split=null``); every unique clip and
text is embedded once per model and shared by all probes. Under ``torchrun`` the embedding is
sharded over the processes and every process computes the same metrics; rank 0 writes
``metrics.json``, ``report.md`` and ``figures/`` to the run directory.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
import time
from typing import Any

import hydra
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from humanclap.backbones.pretrained import HubUnreachable, default_processor
from humanclap.backbones.resolve import key_holding, model_config, model_config_names, resolve_model
from humanclap.cli import report_user_errors
from humanclap.console import prepare_console
from humanclap.data.pairs import DataError, RatedPairs
from humanclap.data.readers.labelled_audio import LabelledAudio
from humanclap.distributed import rank_and_world
from humanclap.features.disk import configured_root
from humanclap.features.workers import resolve_num_workers
from humanclap.probes.base import run_probes
from humanclap.probes.build import build_probes
from humanclap.recipe_files import RECIPES
from humanclap.reports.provenance import probe_data_fingerprint, versions, weights_fingerprint
from humanclap.reports.report import ModelReport, write_evaluation

log = logging.getLogger(__name__)


def evaluation_data(data_cfg: DictConfig, split: str | None) -> RatedPairs | LabelledAudio:
    """What ``data`` names (a datamodule config or a bare reader config), for the probes: rated
    pairs in ``split`` (None: all), or labelled audio (``data=esc50``, ``data=urbansound8k``), which
    has folds rather than splits, so ``split`` must be None."""
    pairs_cfg = data_cfg.pairs if "pairs" in data_cfg else data_cfg
    try:
        data = instantiate(pairs_cfg)
    except InstantiationException as error:
        if isinstance(error.__cause__, (DataError, ValueError, OSError)):
            raise error.__cause__ from None  # the reader's own message names the file and line
        raise
    if isinstance(data, LabelledAudio):
        if split is not None:
            raise DataError(
                f"{data.name} is labelled audio with folds, not splits: pass split=null (every "
                f"clip) and select folds with data.folds=[1,2] (got split={split})"
            )
        return data
    if split is None:
        return data
    if split not in data.splits():
        raise DataError(
            f"{data.name} has no split '{split}'; splits present: {data.splits()} "
            f"(choose one with split=<name>, or split=null for all pairs)"
        )
    return data.select(split)


def evaluation_pairs(data_cfg: DictConfig, split: str | None) -> RatedPairs:
    """The pairs of ``data`` (a datamodule config or a bare pairs config) in ``split`` (None: all)."""
    data = evaluation_data(data_cfg, split)
    if isinstance(data, LabelledAudio):
        raise DataError(f"{data.name} is labelled audio, not rated pairs (audio, text, score)")
    return data


def model_specs(cfg: DictConfig) -> list[Any]:
    """What to evaluate, each a string (see resolve_model) or a ``_target_`` mapping: ``model`` if given
    (``model=<config name>`` composed by Hydra, with its ``model.<key>=`` overrides; otherwise the string
    given, recipes/evaluate.yaml), else the entries of ``models``."""
    if cfg.get("model") is not None:
        return [cfg.model]
    specs = cfg.get("models")
    if isinstance(specs, (str, DictConfig)):
        specs = [specs]
    if not isinstance(specs, (list, ListConfig)) or not specs:
        raise ValueError("no model to evaluate: pass model=<name|path|hub id> or models=[a,b]")
    return list(specs)


def unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def pick_device(choice: str) -> torch.device:
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(choice)


def init_distributed(device: torch.device) -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1); True if this call created it."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or dist.is_initialized():
        return False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def pick_dtype(choice: str) -> torch.dtype:
    """The floating-point type the models run in (``dtype=float64``: results that do not depend on
    how inputs are batched, e.g. to compare runs with different numbers of processes)."""
    if choice not in DTYPES:
        raise ValueError(f"dtype={choice!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[choice]


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run every probe on every model; returns {model name: {probe: metrics}} on every rank."""
    return in_process_group(cfg, _evaluate)


def in_process_group(cfg: DictConfig, body):
    """``body(cfg, device)`` on the device ``cfg.device`` picks, in the process group torchrun
    describes (joined here and left together once rank 0 has written)."""
    pick_dtype(cfg.get("dtype", "float32"))  # a typo fails before any process group or model exists
    device = pick_device(cfg.device)
    created_group = init_distributed(device)
    try:
        results = body(cfg, device)
        if created_group:
            dist.barrier()  # rank 0 may still be writing; leave together
        return results
    finally:
        if created_group:
            dist.destroy_process_group()


def _evaluate(cfg: DictConfig, device: torch.device) -> dict[str, Any]:
    rank, world = rank_and_world()
    feature_cache = configured_root(cfg.get("cache", True), cfg.get("cache_dir"))
    num_workers = resolve_num_workers(cfg.get("num_workers", "auto"), option="num_workers")
    specs = model_specs(cfg)
    probes = build_probes(cfg.probes, evaluation_data(cfg.data, cfg.split))
    if not probes:
        raise ValueError(
            "no probes configured: pass probes=[relevance,retrieval] (see recipes/probes/)"
        )
    labels = list(cfg.get("names") or [None] * len(specs))
    if len(labels) != len(specs):
        raise ValueError(f"names has {len(labels)} entries for {len(specs)} models")
    composed = (
        model_choice() if OmegaConf.is_dict(cfg.get("model")) else None
    )  # model=<config name>
    reports: list[ModelReport] = []
    for spec, name in zip(specs, labels):
        resolved, backbone = load_model(spec, name, cfg, composed, device, "evaluate")
        start = time.perf_counter()
        results, cache = run_probes(
            probes,
            backbone,
            batch_size=cfg.batch_size,
            progress=cfg.progress and rank == 0,
            feature_cache=feature_cache,
            num_workers=num_workers,
        )
        if rank == 0 and cache.clips is not None:
            log.info("[%s] %s", resolved.name, cache.clips.usage())
        seconds = time.perf_counter() - start
        embedded = embedded_counts(cache, device)
        reports.append(
            ModelReport(
                resolved.name,
                resolved.kind,
                resolved.source,
                weights_fingerprint(backbone) if rank == 0 else "",
                results,
                embedded=embedded,
                seconds=seconds,
            )
        )
        del backbone, resolved, cache
    for report, unique in zip(reports, unique_names([r.name for r in reports])):
        report.name = unique
    if rank == 0:
        data = {
            name: fingerprint
            for name, probe in probes.items()
            if (fingerprint := probe_data_fingerprint(probe)) is not None
        }
        provenance = {
            "versions": versions(),
            "world_size": world,
            "config": OmegaConf.to_container(cfg, resolve=True),
        }
        paths = write_evaluation(
            cfg.paths.output_dir, reports, data, provenance, figures=cfg.figures
        )
        for probe, result in reports[0].results.items():
            for title, table in result.tables.items():
                log.info(
                    "%s\n%s",
                    title,
                    table.render({r.name: r.results[probe].metrics for r in reports}),
                )
        log.info("wrote %s and %s", paths["metrics"], paths["report"])
    return {r.name: {probe: result.metrics for probe, result in r.results.items()} for r in reports}


MODEL_KEY_OVERRIDE = re.compile(r"^(\+\+|\+|~)?model\.")


def check_model_arguments(argv: list[str]) -> None:
    """Refuse ``model=[a,b]`` (one model; several: ``models=[a,b]``) and ``model.<key>=`` overrides without
    a ``model=<config name>`` they could apply to, before Hydra reports either in its own terms."""
    for arg in argv:
        if arg.startswith("model=["):
            raise SystemExit(
                f"'{arg}': model= takes one model; several side by side: models={arg.removeprefix('model=')}"
            )
    keys = [arg for arg in argv if MODEL_KEY_OVERRIDE.match(arg)]
    if keys and not any(
        arg.removeprefix("model=") in model_config_names()
        for arg in argv
        if arg.startswith("model=")
    ):
        raise SystemExit(
            f"'{keys[0]}' sets a key of a model config, so name the config too: model=<name> {keys[0]}, "
            f"with <name> one of {', '.join(model_config_names())} (recipes/model/)"
        )


def model_choice() -> str | None:
    """What ``model=`` names in this Hydra run (None outside one, or without model=)."""
    return HydraConfig.get().runtime.choices.get("model") if HydraConfig.initialized() else None


def load_model(
    spec: Any, name: str | None, cfg: DictConfig, composed: str | None, device, verb: str
) -> tuple[Any, Any]:
    """(the resolved model, its backbone on ``device`` in ``cfg.dtype``) for one entry of
    :func:`model_specs`. A hub id that cannot be fetched ends with the command that uses a
    downloaded copy instead (``verb``: ``evaluate`` or ``score``, the module run)."""
    try:
        resolved = resolve_model(
            spec,
            name=name,
            seed=cfg.seed,
            laion_tokenizer=cfg.laion_tokenizer,
            processor=cfg.processor,
            config_name=composed,
        )
    except HubUnreachable as error:
        command = command_using_download(error, spec, cfg)
        if command is None:
            raise
        command = command.replace("humanclap.evaluate", f"humanclap.{verb}", 1)
        raise error.instead(f"then {verb} with it:\n    {command}") from None
    backbone = resolved.backbone.to(device, pick_dtype(cfg.get("dtype", "float32")))
    log.info(
        "[%s] %s (%s) on %s, %d process(es)",
        resolved.name,
        resolved.source,
        resolved.kind,
        device,
        rank_and_world()[1],
    )
    return resolved, backbone


def embedded_counts(cache, device) -> dict[str, int]:
    """How many clips and texts a model embedded in all: each DDP rank counted its own share."""
    embedded = dict(cache.embedded)
    if rank_and_world()[1] > 1:
        counts = torch.tensor([embedded["audio"], embedded["text"]], device=device)
        dist.all_reduce(counts)
        embedded = {"audio": int(counts[0]), "text": int(counts[1])}
    return embedded


def command_using_download(error: HubUnreachable, spec: Any, cfg: DictConfig) -> str | None:
    """The evaluate command that uses ``error.local_dir`` where ``error.source`` was given (None for
    a ``_target_`` mapping of the user's own, which has no name to give on the command line)."""
    directory = error.local_dir
    if isinstance(spec, str) and spec not in model_config_names():  # a hub id, directory or file
        key = {"processor": "processor", "tokenizer": "laion_tokenizer"}.get(error.argument)
        args = [f"model={spec}", f"{key}={directory}"] if key else [f"model={directory}"]
        if key is None and (cfg.processor or default_processor(spec) != spec):
            args.append(f"processor={cfg.processor or default_processor(spec)}")
    else:  # a model config: set the key that holds the hub id, keeping the user's other model.* overrides
        name = spec if isinstance(spec, str) else model_choice()
        if name is None:
            return None
        config = model_config(spec) if isinstance(spec, str) else spec
        key = f"model.{key_holding(config, error.source) or error.argument}"
        composed = HydraConfig.initialized() and not isinstance(
            spec, str
        )  # model=<name> model.<key>=...
        given = list(HydraConfig.get().overrides.task) if composed else []
        kept = [
            arg
            for arg in given
            if MODEL_KEY_OVERRIDE.match(arg) and arg.split("=", 1)[0].lstrip("+~") != key
        ]
        args = [f"model={name}", *kept, f"{key}={directory}"]
    return "python -m humanclap.evaluate " + " ".join(shlex.quote(arg) for arg in args)


def check_probe_names(argv: list[str]) -> None:
    """Refuse ``probes=[...]`` entries with no ``recipes/probes/<name>.yaml``, listing the ones there are.

    (Hydra reports an unknown entry of a config-group *list* without the available options.)
    """
    available = sorted(path.stem for path in (RECIPES / "probes").glob("*.yaml"))
    for arg in argv:
        if arg.startswith("probes="):
            names = [
                n.strip() for n in arg.removeprefix("probes=").strip("[]").split(",") if n.strip()
            ]
            unknown = [n for n in names if n not in available]
            if unknown:
                raise SystemExit(
                    f"unknown probe(s) {unknown} in '{arg}'; available probes: {available} "
                    f"(recipes/probes/<name>.yaml)"
                )


@hydra.main(version_base="1.3", config_path=str(RECIPES), config_name="evaluate")
@report_user_errors
def main(cfg: DictConfig) -> None:
    prepare_console()
    evaluate(cfg)


if __name__ == "__main__":
    check_model_arguments(sys.argv)
    check_probe_names(sys.argv)
    main()
