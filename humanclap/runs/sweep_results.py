"""The results table of a multirun: ``multirun/<sweep>/results.csv`` and ``results.md``, also printed.

A Hydra callback, registered under ``hydra.callbacks`` in recipes/train.yaml. Every job, wherever the
launcher runs it (this process, a submitit process, a Slurm node), writes ``sweep_job.json`` (its
number, status and export directory) into its output directory when it ends. At the end of the
multirun the sweeping process reads those files, each job's ``.hydra/overrides.yaml`` and the
``humanclap_run.json`` it exported, whose ``summary.objective`` is what the job returned to the
sweeper: nothing depends on the launcher handing values back to this process.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

JOB_RECORD = "sweep_job.json"
COLUMNS = ("job", "status", "overrides", "metric", "objective", "exported_epoch", "export_dir")


class SweepResults(Callback):
    """Writes and prints one row per job of a multirun: overrides, objective, exported epoch, export dir."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Resolve `${now:...}` here, before any job config is made: Hydra copies this process's resolver
        # cache into every job, so all jobs get the same sweep_name (thus run_name and export folder)
        # even when hydra.sweep.dir is given on the command line and never resolves it.
        if "sweep_name" in config:
            str(config.sweep_name)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        record = {
            "job": config.hydra.job.num,
            "status": job_return.status.name,
            "export_dir": _export_dir(config),
        }
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value  # the exception; .return_value would raise it
            record["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
        (Path(config.hydra.runtime.output_dir) / JOB_RECORD).write_text(
            json.dumps(record, indent=2)
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect(sweep_dir)
        table = markdown(rows)
        write_csv(rows, sweep_dir / "results.csv")
        (sweep_dir / "results.md").write_text(table)
        print(
            f"\nSweep results ({sweep_dir / 'results.csv'}, {sweep_dir / 'results.md'}):\n{table}",
            flush=True,
        )


def _export_dir(config: DictConfig) -> str | None:
    from humanclap.runs import (
        launch,  # lightning: only imported in the job, which has it loaded already
    )

    try:
        return str(launch.export_dir(config).resolve())
    except OmegaConfBaseException:  # the job failed on its config; its row says so
        return None


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job of ``sweep_dir`` that wrote ``sweep_job.json``, by job number."""
    rows = []
    for record_file in sweep_dir.rglob(JOB_RECORD):
        record = json.loads(record_file.read_text())
        overrides = (
            yaml.safe_load((record_file.parent / ".hydra" / "overrides.yaml").read_text()) or []
        )
        row = {
            "job": record["job"],
            "status": record["status"],
            "overrides": " ".join(overrides),
            "metric": None,
            "objective": None,
            "exported_epoch": None,
            "export_dir": record.get("export_dir"),
        }
        run_file = Path(record["export_dir"] or "", "humanclap_run.json")
        if record["export_dir"] and run_file.is_file():
            summary = json.loads(run_file.read_text())["summary"]
            row.update(
                {
                    key: summary.get(key)
                    for key in ("metric", "objective", "exported_epoch", "export_dir")
                }
            )
        if "error" in record:
            row["status"] = f"{record['status']}: {record['error']}"
        rows.append(row)
    return sorted(rows, key=lambda row: row["job"])


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(
            {key: "" if row[key] is None else row[key] for key in COLUMNS} for row in rows
        )


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [_cell(row[key]) for key in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", r"\|")
