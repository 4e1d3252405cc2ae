"""Run the configured probes once before training (baseline) and after every validation epoch."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from humanclap.console import TABLES, key_metrics, probe_line
from humanclap.probes.base import Probe, ProbeResult, Table
from humanclap.probes.cache import run_probes

log = logging.getLogger(__name__)
tables_log = logging.getLogger(TABLES)


class ProbeCallback(L.Callback):
    """Logs ``<probe>/<metric>`` each validation epoch and ``baseline/<probe>/<metric>`` once.

    All probes share one embedding cache per run (each clip and text is embedded once, sharded
    over the DDP ranks and gathered), so logged values are the same on all ranks and equal to a
    single-process run. ``history`` keeps (epoch, metrics) with
    epoch -1 for the baseline, for the end-of-run summary; it is part of every checkpoint, so a
    resumed run (``resume=auto``) keeps it and does not measure the baseline again.

    What it prints: one line per probe with its key metrics (:func:`humanclap.console.probe_line`);
    the full tables go to the ``humanclap.tables`` logger (the run's log file) and, one row per
    epoch, to the Markdown file ``report`` (rewritten after every measurement).
    """

    def __init__(self, probes: Mapping[str, Probe], baseline: bool = True, every_n_epochs: int = 1,
                 batch_size: int = 32, report: str | Path | None = None) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.probes = dict(probes)
        self.baseline = baseline
        self.every_n_epochs = every_n_epochs
        self.batch_size = batch_size
        self.report = Path(report) if report is not None else None
        self.history: list[tuple[int, dict[str, float]]] = []
        self._tables: dict[str, dict[str, Table]] = {}  # the latest layout of each probe's tables

    def run(self, pl_module: L.LightningModule) -> tuple[dict[str, float], dict[str, ProbeResult]]:
        # A fresh cache each time: the weights changed since the last run. Tensors the model creates
        # on the fly take the default dtype, which Lightning sets to the training precision's in the
        # main process only (float64 runs: not in ddp_spawn's ranks), so probes set it themselves.
        with _default_dtype(pl_module.backbone.dtype):
            results, _ = run_probes(self.probes, pl_module.backbone, batch_size=self.batch_size)
        metrics = {f"{name}/{key}": value for name, result in results.items() for key, value in result.metrics.items()}
        return metrics, results

    def state_dict(self) -> dict[str, Any]:
        return {"history": [[epoch, {k: float(v) for k, v in metrics.items()}] for epoch, metrics in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [(int(epoch), dict(metrics)) for epoch, metrics in state_dict["history"]]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.baseline or not self.probes or any(epoch == -1 for epoch, _ in self.history):
            return  # the baseline of a resumed run came with its checkpoint
        metrics, results = self.run(pl_module)
        self.history.append((-1, metrics))
        for logger in trainer.loggers:
            logger.log_metrics({f"baseline/{k}": v for k, v in metrics.items()}, step=trainer.global_step)
        self._report(-1, results)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.probes:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        metrics, results = self.run(pl_module)
        self.history.append((trainer.current_epoch, metrics))
        with _default_dtype(pl_module.backbone.dtype):  # Lightning makes the logged tensors in the default dtype
            pl_module.log_dict(metrics, sync_dist=True)
        self._report(trainer.current_epoch, results)

    @rank_zero_only
    def _report(self, epoch: int, results: Mapping[str, ProbeResult]) -> None:
        when = _epoch_label(epoch)
        width = max(map(len, results), default=0)
        for name, result in results.items():
            kind = getattr(self.probes.get(name), "name", name)
            log.info(probe_line(when, name, key_metrics(kind, result.metrics, result.tables), width))
        for name, result in results.items():
            self._tables[name] = result.tables
            for title, table in result.tables.items():
                detail = "baseline (before training)" if epoch == -1 else when
                tables_log.info("%s — %s\n%s", title, detail, table.render({"model": result.metrics}))
        if self.report is not None:
            self.report.parent.mkdir(parents=True, exist_ok=True)
            self.report.write_text(self.markdown())

    def markdown(self) -> str:
        """Every probe table with one row per measured epoch (``baseline``: before training)."""
        sections = ["# Probe results by epoch\n\n`baseline` is the model before training; the epoch the run "
                    "exported is in `humanclap_run.json` next to the exported model.\n"]
        for name, tables in self._tables.items():
            rows = {_epoch_label(epoch): {key.removeprefix(f"{name}/"): value for key, value in metrics.items()
                                          if key.startswith(f"{name}/")}
                    for epoch, metrics in self.history}
            sections.append(f"## {name}\n")
            sections += [f"### {title}\n\n{table.render(rows)}\n" for title, table in tables.items()]
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
