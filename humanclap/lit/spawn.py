"""``trainer=ddp_spawn`` without Lightning's pipe deadlock.

Lightning's spawn launcher sends rank 0's results (``trainer.callback_metrics`` as pickled
tensors, ~270 bytes per metric) to the main process through a pipe, but reads the pipe only after
every rank has exited. A pipe holds 64 KiB, so with more than ~240 logged metrics -- a few probes
together, e.g. ``timbre_correlation`` alone logs ~230 -- rank 0 blocks in ``put`` forever and the
run hangs after "`Trainer.fit` stopped". :class:`SpawnDDPStrategy` is Lightning's ``ddp_spawn``
with a launcher that passes those metrics through a temporary file instead; only its path goes
through the pipe.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher

METRICS_BYTES = "callback_metrics_bytes"  # Lightning's key (get_extra_results)
METRICS_FILE = "humanclap_callback_metrics_file"


class FileResultsLauncher(_MultiProcessingLauncher):
    """Lightning's multiprocessing launcher; the callback metrics travel in a file."""

    def get_extra_results(self, trainer: L.Trainer) -> dict[str, Any]:
        extra = super().get_extra_results(trainer)
        handle, path = tempfile.mkstemp(prefix="humanclap-spawn-metrics-", suffix=".pt")
        with os.fdopen(handle, "wb") as file:
            file.write(extra.pop(METRICS_BYTES))
        extra[METRICS_FILE] = path
        return extra

    def update_main_process_results(self, trainer: L.Trainer, extra: dict[str, Any]) -> None:
        path = extra.pop(METRICS_FILE, None)
        if path is not None:
            extra[METRICS_BYTES] = Path(path).read_bytes()
            os.unlink(path)
        super().update_main_process_results(trainer, extra)


class SpawnDDPStrategy(DDPStrategy):
    """``DDPStrategy(start_method="spawn")`` (Lightning's ``"ddp_spawn"``) with :class:`FileResultsLauncher`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("start_method", "spawn")
        super().__init__(**kwargs)

    def _configure_launcher(self) -> None:
        self._launcher = FileResultsLauncher(self, start_method=self._start_method)
