"""What a person sees on the console (issue 13, item 8): per epoch one line per probe, no tables and no
third-party noise, the summary line last; the full tables are in the run's log file and report."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli import _env
from tqdm import tqdm

from humanclap.console import ConsoleFormatter, ProgressAwareHandler
from humanclap.runs.export import summarize, summary_line

# The Quickstart command on a smaller data set, with its default logger (wandb, offline) and progress bar.
OVERRIDES = [
    "trainer.max_epochs=2",
    "data.pairs.n_sounds=16",
    "data.pairs.texts_per_sound=2",
    "data.batch_size=4",
]
NOISE = {
    "Lightning's cloud-logger tip": "litlogger",
    "wandb's anonymous-setting warning": "anonymous setting",
    "torch's pytree deprecation raised in Lightning": "LeafSpec",
    "Lightning's model summary": "Trainable params",
    "Lightning's device inventory": "GPU available:",
    "Lightning's seed message": "Seed set to",
    "transformers' weight-loading bar": "Loading weights",
    "transformers' weight-writing bar": "Writing model shards",
    "wandb's table of every metric": "Run history",
}


@dataclass
class Run:
    folder: Path
    output_dir: Path
    console: str  # stdout and stderr in the order a terminal shows them

    @property
    def lines(self) -> list[str]:
        """The console's lines as a terminal leaves them: a carriage return starts the line over."""
        return [line.rsplit("\r", 1)[-1].rstrip() for line in self.console.split("\n")]

    @property
    def record(self) -> dict:
        (export,) = (self.folder / "checkpoints").iterdir()
        return json.loads((export / "humanclap_run.json").read_text())


def run(module: str, folder: Path, *overrides: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=folder,
        env={**_env(), "PYTHONUNBUFFERED": "1"},  # as unbuffered as a terminal: true order
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-5000:]
    return result.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Run:
    folder = tmp_path_factory.mktemp("console")
    console = run("humanclap.train", folder, *OVERRIDES)
    (output_dir,) = (folder / "outputs").iterdir()
    return Run(folder, output_dir, console)


@pytest.mark.slow
def test_each_epoch_prints_one_line_per_probe_with_its_key_metrics(trained):
    history = trained.record["history"]
    expected = []
    for epoch, m in history:
        when = "baseline" if epoch == -1 else f"epoch {epoch}"
        expected.append(
            f"{when:<9} relevance  srcc {m['relevance/srcc']:.3f}  lcc {m['relevance/lcc']:.3f}  "
            f"mse {m['relevance/mse']:.3f}"
        )
        expected.append(
            f"{when:<9} retrieval  t2a R@1 {m['retrieval/t2a/R@1']:.3f}  t2a MRR "
            f"{m['retrieval/t2a/MRR']:.3f}  a2t R@1 {m['retrieval/a2t/R@1']:.3f}  a2t MRR "
            f"{m['retrieval/a2t/MRR']:.3f}"
        )
    assert [epoch for epoch, _ in history] == [-1, 0, 1]
    assert [line for line in trained.lines if re.match(r"(baseline|epoch \d+) ", line)] == expected


@pytest.mark.slow
def test_no_tables_and_no_third_party_noise_on_the_console(trained):
    assert "|---" not in trained.console and "Table I" not in trained.console
    shown = {what: text for what, text in NOISE.items() if text in trained.console}
    assert not shown, shown
    # Warnings are not filtered wholesale: Lightning's (5 batches < log_every_n_steps) is still shown, on its own line.
    assert [line for line in trained.lines if "is smaller than the logging interval" in line][
        0
    ].startswith("/")


@pytest.mark.slow
def test_the_tables_are_in_the_log_file_and_the_report(trained):
    log = (trained.output_dir / "train.log").read_text()
    assert (
        "[humanclap.tables][INFO] - Table I — agreement with human scores — epoch 1\n| model | n | SRCC |"
        in log
    )
    assert "retrieval — baseline (before training)\n| model | t2a R@1 |" in log
    report = (trained.output_dir / "report.md").read_text()
    history = dict(trained.record["history"])
    for epoch, label in (
        (-1, "baseline"),
        (0, "epoch 0"),
        (1, "epoch 1"),
    ):  # Table I: one row per epoch
        m = history[epoch]
        assert (
            f"| {label} | {m['relevance/n']:.0f} | {m['relevance/srcc']:.3f} | {m['relevance/lcc']:.3f} |"
            in report
        )


@pytest.mark.slow
def test_the_run_ends_with_the_summary_of_the_exported_model(trained):
    summary = trained.record["summary"]
    last = [line for line in trained.lines if line.strip()][-1]
    expected = (
        f"relevance/srcc {summary['baseline']:.3f} -> {summary['exported']:.3f} ({summary['gain']:+.3f}), "
        f"exported epoch {summary['exported_epoch']} (lowest val/loss) to {summary['export_dir']}"
    )
    if summary["exported_epoch"] != summary["last_epoch"]:
        expected += f"; last epoch {summary['last_epoch']}: {summary['last']:.3f}"
    assert last == expected
    assert summary["export_dir"] == f"checkpoints/{trained.output_dir.name}"
    wandb = [index for index, line in enumerate(trained.lines) if line.startswith("wandb:")]
    assert wandb and wandb[-1] < trained.lines.index(last)  # the logger's lines come first


@pytest.mark.slow
def test_evaluate_prints_its_tables_once_and_no_noise(tmp_path):
    console = run("humanclap.evaluate", tmp_path, "probes=relevance", "figures=false")
    assert console.count("Table I — agreement with human scores\n| model | n | SRCC |") == 1
    shown = {what: text for what, text in NOISE.items() if text in console}
    assert not shown, shown


def test_summary_line_reports_the_exported_epoch_and_names_the_last_one_apart():
    history = [
        (-1, {"relevance/srcc": 0.05}),
        (0, {"relevance/srcc": 0.376}),
        (1, {"relevance/srcc": 0.389}),
    ]
    summary = summarize(history, best_epoch=0, metric="relevance/srcc")
    assert summary["gain"] == pytest.approx(0.326) and summary["last_gain"] == pytest.approx(0.339)
    summary["export_dir"] = "checkpoints/wsce_mae-1"
    assert summary_line(summary, "lowest val/loss") == (
        "relevance/srcc 0.050 -> 0.376 (+0.326), exported epoch 0 (lowest val/loss) to checkpoints/wsce_mae-1; "
        "last epoch 1: 0.389"
    )
    exported_last = summarize(history, best_epoch=1, metric="relevance/srcc") | {
        "export_dir": "checkpoints/x"
    }
    assert summary_line(exported_last, "lowest val/loss").endswith(
        "(+0.339), exported epoch 1 (lowest val/loss) to checkpoints/x"
    )


def test_log_lines_are_printed_above_a_tqdm_bar_not_into_it(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(
        sys, "stdout", screen
    )  # the handler writes to whatever sys.stdout is at the time
    handler = ProgressAwareHandler("stdout")
    handler.setFormatter(ConsoleFormatter())
    logger = logging.getLogger("tests.console")
    logger.addHandler(handler)
    try:
        with tqdm(total=10, desc="Epoch 0", file=screen, ascii=True) as bar:
            bar.update(3)
            logger.warning("epoch 0 relevance")
            bar.update(3)
    finally:
        logger.removeHandler(handler)
    output = screen.getvalue()
    assert (
        "\rwarning: epoch 0 relevance\n" in output
    )  # from the start of a cleared line, to its end
    assert output.index("warning: epoch 0") < output.index(
        "6/10"
    )  # the bar is drawn again below it
