"""Run ``python -m humanclap.train`` as a user would (a subprocess), on tiny data, for the sweep tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
# One epoch over 16 generated sounds (about 20 training pairs), the relevance probe only, CSV logs.
TINY = [
    "trainer.max_epochs=1",
    "data.pairs.n_sounds=16",
    "data.pairs.texts_per_sound=2",
    "data.batch_size=4",
    "probes=relevance",
    "logger=csv",
    "++trainer.enable_progress_bar=false",
]


def run_train(tmp_path: Path, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m humanclap.train <overrides> <TINY>`` run in ``tmp_path``, as a user would in a project folder:
    it writes ``tmp_path/multirun/<sweep>`` (or ``outputs/<run>``) and exports to ``tmp_path/checkpoints``."""
    result = subprocess.run(
        [sys.executable, "-m", "humanclap.train", *overrides, *TINY],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def _env() -> dict[str, str]:
    path = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
    )  # humanclap from any cwd
    return {
        **os.environ,
        "PYTHONPATH": path,
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "HUMANCLAP_CACHE": os.environ["HUMANCLAP_CACHE"],
    }


def only_sweep(tmp_path: Path) -> str:
    """The name of the one multirun under ``tmp_path/multirun``."""
    (sweep,) = [p.name for p in (tmp_path / "multirun").iterdir()]
    return sweep


# The line a training run ends with (humanclap/train.py summary_line), e.g. "relevance/srcc 0.050 -> 0.350
# (+0.300), exported epoch 5 (lowest val/loss) to checkpoints/<run>; last epoch 9: 0.317".
SUMMARY_LINE = re.compile(
    r"^\S+ \S+ -> \S+ \([^)]*\), exported epoch \d+ \([^)]*\) to \S+", re.MULTILINE
)


def run_record(export_dir: Path) -> dict[str, Any]:
    """``humanclap_run.json`` of an exported run: summary (with the returned ``objective``), history, config."""
    return json.loads((export_dir / "humanclap_run.json").read_text())


def last_checkpoint(output_dir: Path) -> dict[str, Any]:
    return torch.load(
        output_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
