"""Run the configured probes once before training (baseline) and after every validation epoch."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from humanclap.probes.base import Probe, ProbeResult
from humanclap.probes.cache import run_probes

log = logging.getLogger(__name__)


class ProbeCallback(L.Callback):
    """Logs ``<probe>/<metric>`` each validation epoch and ``baseline/<probe>/<metric>`` once.

    All probes share one embedding cache per run (each clip and text is embedded once, sharded
    over the DDP ranks and gathered), so logged values are the same on all ranks and equal to a
    single-process run. ``history`` keeps (epoch, metrics) with
    epoch -1 for the baseline, for the end-of-run summary; it is part of every checkpoint, so a
    resumed run (``resume=auto``) keeps it and does not measure the baseline again.
    """

    def __init__(self, probes: Mapping[str, Probe], baseline: bool = True, every_n_epochs: int = 1,
                 batch_size: int = 32) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.probes = dict(probes)
        self.baseline = baseline
        self.every_n_epochs = every_n_epochs
        self.batch_size = batch_size
        self.history: list[tuple[int, dict[str, float]]] = []

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
        self._report("baseline (before training)", results)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.probes:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        metrics, results = self.run(pl_module)
        self.history.append((trainer.current_epoch, metrics))
        with _default_dtype(pl_module.backbone.dtype):  # Lightning makes the logged tensors in the default dtype
            pl_module.log_dict(metrics, sync_dist=True)
        self._report(f"epoch {trainer.current_epoch}", results)

    @rank_zero_only
    def _report(self, when: str, results: Mapping[str, ProbeResult]) -> None:
        for name, result in results.items():
            for title, table in result.tables.items():
                log.info("%s — %s\n%s", title, when, table.render({"model": result.metrics}))


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
