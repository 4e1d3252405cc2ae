"""The run's Lightning callbacks: probes each epoch (:class:`ProbeCallback`), RNG state in checkpoints
(:class:`RandomState`, for exact resume) and the same hyperparameters on every rank
(:class:`SameHyperparameters`)."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_only

from humanclap.console import TABLES, key_metrics, probe_line
from humanclap.features.workers import resolve_num_workers
from humanclap.probes.base import Probe, ProbeResult, Table, run_probes

log = logging.getLogger(__name__)
tables_log = logging.getLogger(TABLES)


# Config keys that name the run and say where it writes. They are not hyperparameters, and ranks
# that Lightning re-executes resolve run_name's timestamp a few seconds after rank 0.
RUN_IDENTITY_KEYS = ("run_name", "sweep_name", "paths", "logger", "resume", "overwrite_export")


class HyperparameterMismatch(RuntimeError):
    """The ranks of one run were about to train with different hyperparameters."""


class ProbeCallback(L.Callback):
    """Logs ``<probe>/<metric>`` each validation epoch and ``baseline/<probe>/<metric>`` once.

    Clips go through the on-disk feature cache (``feature_cache``): the first pass loads and
    featurises them in ``num_workers`` DataLoader processes, later passes only read features and
    run the model. All probes share one embedding cache per run (each clip and text is embedded once, sharded
    over the DDP ranks and gathered), so logged values are the same on all ranks and equal to a
    single-process run. ``history`` keeps (epoch, metrics) with
    epoch -1 for the baseline, for the end-of-run summary; it is part of every checkpoint, so a
    resumed run (``resume=auto``) keeps it and does not measure the baseline again.

    What it prints: one line per probe with its key metrics (:func:`humanclap.console.probe_line`);
    the full tables go to the ``humanclap.tables`` logger (the run's log file) and, one row per
    epoch, to the Markdown file ``report`` (rewritten after every measurement).
    """

    def __init__(
        self,
        probes: Mapping[str, Probe],
        baseline: bool = True,
        every_n_epochs: int = 1,
        batch_size: int = 32,
        report: str | Path | None = None,
        feature_cache: str | Path | None = None,
        num_workers: int | str = 0,
    ) -> None:
        super().__init__()
        resolve_num_workers(num_workers, option="probe_workers")  # a bad value fails here
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.probes = dict(probes)
        self.baseline = baseline
        self.every_n_epochs = every_n_epochs
        self.batch_size = batch_size
        self.report = Path(report) if report is not None else None
        self.feature_cache = feature_cache
        self.num_workers = num_workers
        self.history: list[tuple[int, dict[str, float]]] = []
        self._tables: dict[str, dict[str, Table]] = {}  # the latest layout of each probe's tables

    def run(
        self, pl_module: L.LightningModule, trainer: L.Trainer | None = None
    ) -> tuple[dict[str, float], dict[str, ProbeResult]]:
        # A fresh cache each time: the weights changed since the last run. Tensors the model creates
        # on the fly take the default dtype, which Lightning sets to the training precision's in the
        # main process only (float64 runs: not in ddp_spawn's ranks), so probes set it themselves.
        with _default_dtype(pl_module.backbone.dtype):
            results, _ = run_probes(
                self.probes,
                pl_module.backbone,
                batch_size=self.batch_size,
                feature_cache=self.feature_cache,
                num_workers=resolve_num_workers(
                    self.num_workers, option="probe_workers", trainer=trainer
                ),
            )
        metrics = {
            f"{name}/{key}": value
            for name, result in results.items()
            for key, value in result.metrics.items()
        }
        return metrics, results

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": [
                [epoch, {k: float(v) for k, v in metrics.items()}]
                for epoch, metrics in self.history
            ]
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [(int(epoch), dict(metrics)) for epoch, metrics in state_dict["history"]]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.baseline or not self.probes or any(epoch == -1 for epoch, _ in self.history):
            return  # the baseline of a resumed run came with its checkpoint
        metrics, results = self.run(pl_module, trainer)
        self.history.append((-1, metrics))
        for logger in trainer.loggers:
            logger.log_metrics(
                {f"baseline/{k}": v for k, v in metrics.items()}, step=trainer.global_step
            )
        self._report(-1, results)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.probes:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        metrics, results = self.run(pl_module, trainer)
        self.history.append((trainer.current_epoch, metrics))
        with _default_dtype(
            pl_module.backbone.dtype
        ):  # Lightning makes the logged tensors in the default dtype
            pl_module.log_dict(metrics, sync_dist=True)
        self._report(trainer.current_epoch, results)

    @rank_zero_only
    def _report(self, epoch: int, results: Mapping[str, ProbeResult]) -> None:
        when = _epoch_label(epoch)
        width = max(map(len, results), default=0)
        for name, result in results.items():
            kind = getattr(self.probes.get(name), "name", name)
            log.info(
                probe_line(when, name, key_metrics(kind, result.metrics, result.tables), width)
            )
        for name, result in results.items():
            self._tables[name] = result.tables
            for title, table in result.tables.items():
                detail = "baseline (before training)" if epoch == -1 else when
                tables_log.info(
                    "%s — %s\n%s", title, detail, table.render({"model": result.metrics})
                )
        if self.report is not None:
            self.report.parent.mkdir(parents=True, exist_ok=True)
            self.report.write_text(self.markdown())

    def markdown(self) -> str:
        """Every probe table with one row per measured epoch (``baseline``: before training)."""
        sections = [
            "# Probe results by epoch\n\n`baseline` is the model before training; the epoch the run "
            "exported is in `humanclap_run.json` next to the exported model.\n"
        ]
        for name, tables in self._tables.items():
            rows = {
                _epoch_label(epoch): {
                    key.removeprefix(f"{name}/"): value
                    for key, value in metrics.items()
                    if key.startswith(f"{name}/")
                }
                for epoch, metrics in self.history
            }
            sections.append(f"## {name}\n")
            sections += [
                f"### {title}\n\n{table.render(rows)}\n" for title, table in tables.items()
            ]
        return "\n".join(sections)


def _epoch_label(epoch: int) -> str:
    return "baseline" if epoch == -1 else f"epoch {epoch}"


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """``torch.set_default_dtype(dtype)`` for float32/float64 models, restored afterwards."""
    previous = torch.get_default_dtype()
    if dtype in (torch.float32, torch.float64):
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


class RandomState(L.Callback):
    """Stores the global RNG states (torch, CUDA, numpy, random) in every checkpoint and restores them
    on resume, so the first resumed epoch draws the same shuffle order and dropout masks as the
    uninterrupted run did at that point. Stored as plain lists and tensors (``weights_only`` loads).

    Nothing between an epoch-end save and the next epoch's ``iter(dataloader)`` draws random numbers,
    and on resume nothing between restoring callbacks and the first ``iter(dataloader)`` does.
    Under DDP every rank gets rank 0's states (all ranks start from the same seed anyway).
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        version, internal, gauss = random.getstate()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss],
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        kind, keys, position, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state(state_dict["cuda"])


class SameHyperparameters(L.Callback):
    """Stops a run whose ranks would train with different hyperparameters.

    Why: docs/training.md#multiruns-and-ddp.

    At the start of ``fit`` every rank contributes :func:`rank_record` (fingerprint of
    ``pl_module.hparams`` and the optimizers' learning rates); ``ranks`` keeps the gathered records
    (in rank order) and is stored in checkpoints. One process: a single record, no communication.
    """

    def __init__(self) -> None:
        self.ranks: list[dict[str, Any]] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        hparams = dict(pl_module.hparams)
        rates = [
            group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups
        ]
        mine = (rank_record(trainer.global_rank, hparams, rates), hparams)
        gathered = [mine]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, mine)
        problems = mismatches(gathered)
        if problems:  # every rank sees the same gathered list, so all of them stop here together
            raise HyperparameterMismatch(
                "the ranks of this run have different hyperparameters:\n  "
                + "\n  ".join(problems[:20])
                + "\nEach rank composed its own config. Under a Hydra multirun use trainer=ddp_spawn locally or "
                "hydra/launcher=slurm (see humanclap/runs/launch.py)."
            )
        self.ranks = [record for record, _ in gathered]
        if len(self.ranks) > 1:
            log.info(
                "all %d ranks train with the same hyperparameters (sha256 %s…, lr %s)",
                len(self.ranks),
                self.ranks[0]["sha256"][:12],
                self.ranks[0]["lr"],
            )

    def state_dict(self) -> dict[str, Any]:
        return {"ranks": self.ranks}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.ranks = list(state_dict["ranks"])


def fingerprint(hparams: Mapping[str, Any]) -> str:
    """sha256 of the hyperparameters, without :data:`RUN_IDENTITY_KEYS` of a stored ``config``."""
    return hashlib.sha256(
        json.dumps(_comparable(hparams), sort_keys=True, default=str).encode()
    ).hexdigest()


def _comparable(hparams: Mapping[str, Any]) -> dict[str, Any]:
    comparable = dict(hparams)
    if isinstance(comparable.get("config"), Mapping):
        comparable["config"] = {
            k: v for k, v in comparable["config"].items() if k not in RUN_IDENTITY_KEYS
        }
    return comparable


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {
            key: leaf for k, v in value.items() for key, leaf in _flat(v, f"{prefix}{k}.").items()
        }
    return {prefix.rstrip("."): value}


def rank_record(
    rank: int, hparams: Mapping[str, Any], learning_rates: list[float]
) -> dict[str, Any]:
    """What one rank trains with: its hyperparameters' fingerprint and its optimizers' learning rates."""
    return {
        "rank": rank,
        "sha256": fingerprint(hparams),
        "lr": [float(lr) for lr in learning_rates],
    }


def mismatches(gathered: list[tuple[dict[str, Any], Mapping[str, Any]]]) -> list[str]:
    """Human-readable differences between rank 0 and every other rank; ``[]`` when all agree.

    ``gathered``: per rank, ``(rank_record(...), hparams)``.
    """
    (first, first_hparams), problems = gathered[0], []
    reference = _flat(_comparable(first_hparams))
    for record, hparams in gathered[1:]:
        if record["lr"] != first["lr"]:
            problems.append(
                f"rank {record['rank']}: learning rates {record['lr']} (rank 0: {first['lr']})"
            )
        if record["sha256"] != first["sha256"]:
            theirs = _flat(_comparable(hparams))
            keys = sorted(
                k for k in set(reference) | set(theirs) if reference.get(k) != theirs.get(k)
            )
            problems += [
                f"rank {record['rank']}: {k} = {theirs.get(k)!r} (rank 0: {reference.get(k)!r})"
                for k in keys
            ]
    return problems
