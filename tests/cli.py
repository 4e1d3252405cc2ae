"""Run ``python -m humanclap.train`` as a user would (a subprocess), on tiny data, for the sweep tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Finished:
    """A command that exited 0: what it printed, its wall time and its peak resident memory."""

    output: str  # stdout and stderr, interleaved
    seconds: float
    peak_rss_gib: float  # the command's process, or the largest of the processes it waited for


def run_module(cwd: Path, module: str, *args: str, timeout: float = 900) -> Finished:
    """``python -m <module> <args>`` run in ``cwd`` with the tests' environment and nothing added
    (unlike :func:`run_train`); it must exit 0. Measures the command alone (``os.wait4``)."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as output:
        start = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                process.kill()
                process.wait()
                raise subprocess.TimeoutExpired(process.args, timeout)
            time.sleep(0.2)
        seconds = time.monotonic() - start
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        output.seek(0)
        text = output.read()
    assert process.returncode == 0, text[-8000:]
    return Finished(text, seconds, usage.ru_maxrss / 2**20)  # ru_maxrss: KiB on Linux


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
