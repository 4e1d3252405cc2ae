"""Run ``python -m humanclap.train`` as a user would (a subprocess), on tiny data, for the sweep tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
# One epoch over 16 generated sounds (about 20 training pairs), the relevance probe only, CSV logs.
TINY = ["trainer.max_epochs=1", "data.pairs.n_sounds=16", "data.pairs.texts_per_sound=2", "data.batch_size=4",
        "probes=relevance", "logger=csv", "++trainer.enable_progress_bar=false"]


def run_train(tmp_path: Path, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Multirun/run ``humanclap.train`` writing under ``tmp_path`` (sweep dir ``multirun``, exports ``export``)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "HUMANCLAP_CACHE": os.environ["HUMANCLAP_CACHE"]}
    result = subprocess.run(
        [sys.executable, "-m", "humanclap.train", *overrides, *TINY, f"hydra.sweep.dir={tmp_path / 'multirun'}",
         f"hydra.run.dir={tmp_path / 'run'}", f"paths.export_dir={tmp_path / 'export'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def run_record(export_dir: Path) -> dict[str, Any]:
    """``humanclap_run.json`` of an exported run: summary (with the returned ``objective``), history, config."""
    return json.loads((export_dir / "humanclap_run.json").read_text())


def last_checkpoint(output_dir: Path) -> dict[str, Any]:
    return torch.load(output_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
