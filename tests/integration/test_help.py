"""``--help`` of the entry points: each option of each group with its one-line description
(the first comment line of recipes/<group>/<option>.yaml); evaluate's and score's own groups only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli import REPO

from humanclap.recipe_files import description, option_names

TRAIN_GROUPS = (
    "recipe",
    "loss",
    "model",
    "data",
    "probes",
    "trainer",
    "optimizer",
    "scheduler",
    "logger",
    "stages",
    "sweep",
    "hydra/launcher",
)


def _cli(tmp_path: Path, module: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _help(tmp_path: Path, module: str, *args: str) -> str:
    return _cli(tmp_path, module, *args, "--help")


def _section(text: str, group: str) -> str:
    """The lines of one group in --help: from its header to the blank line after its options."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{group}: "))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end])


def _option_line(text: str, name: str, group: str | None = None) -> str:
    """The line of option ``name`` (of ``group``: the same name may be in two groups, e.g. recipe and loss)."""
    (line,) = [
        line
        for line in (_section(text, group) if group else text).splitlines()
        if re.match(rf"  [ *] {name} ", line)
    ]
    return line.rstrip()


@pytest.fixture(scope="module")
def train_help(tmp_path_factory) -> str:
    return _help(tmp_path_factory.mktemp("train_help"), "humanclap.train")


@pytest.fixture(scope="module")
def evaluate_help(tmp_path_factory) -> str:
    return _help(tmp_path_factory.mktemp("evaluate_help"), "humanclap.evaluate")


def test_every_option_has_a_one_line_summary():
    """What --help prints next to an option: a complete sentence, not the first line of a paragraph."""
    for group in TRAIN_GROUPS:
        for name in option_names(group):
            summary = description(REPO / "recipes" / group / f"{name}.yaml")
            assert summary.endswith((".", "?")) and len(summary) <= 100, (
                f"recipes/{group}/{name}.yaml: {summary!r}"
            )


def test_train_help_describes_each_option_and_marks_the_defaults(train_help):
    assert train_help.startswith(
        "python -m humanclap.train: fine-tune a CLAP model toward human ratings"
    )
    for group in ("recipe", "loss"):
        assert _option_line(train_help, "wsce_mae", group) == (
            "  * wsce_mae      wSCE + MAE (λ = [0.1, 0, 1]): contrastive and score regression."
        )
    assert _option_line(train_help, "human_clap", "loss").startswith(
        "    human_clap    The Human-CLAP loss with the paper's λ = [0.1, 1, 1]"
    )
    assert _option_line(train_help, "relate") == (
        "    relate                RELATE (human-clap §II-B): scores/REL.csv and the audio it names (paths"
    )
    assert _option_line(train_help, "tiny") == (
        "  * tiny                                A ~60k-parameter random ClapModel built offline: fast, for"
    )
    assert _option_line(train_help, "relevance").startswith(
        "  * relevance                 Relevance (human-clap §IV)"
    )
    assert _option_line(train_help, "cosine", "scheduler") == (
        "    cosine    Linear warm-up over warmup_steps (CLaMP 3 §4.1: 1,000), then cosine decay; per step."
    )
    assert "early_stopping.patience=N" in train_help
    assert _option_line(train_help, "optuna").startswith(
        "    optuna  Hyperparameter search with Optuna"
    )
    for group in TRAIN_GROUPS:
        assert re.search(rf"^{group}: \S", train_help, re.MULTILINE), group
        for name in option_names(group):
            assert _option_line(train_help, name, group)
    assert "(no description)" not in train_help
    assert "python -m humanclap.train --cfg job" in train_help and "--hydra-help" in train_help


def test_train_help_marks_the_choices_of_the_command(tmp_path):
    text = _help(tmp_path, "humanclap.train", "recipe=timbre", "trainer=gpu")
    marked = {
        (group, line.split()[1])
        for group in TRAIN_GROUPS
        for line in _section(text, group).splitlines()
        if line.startswith("  * ")
    }
    assert marked == {
        ("recipe", "timbre"),
        ("loss", "wsce_mae"),
        ("data", "synthetic_timbre"),
        ("model", "tiny"),
        ("probes", "relevance"),
        ("probes", "timbre_correlation"),
        ("probes", "timbre_trend"),
        ("trainer", "gpu"),
        ("optimizer", "adamw"),
        ("scheduler", "constant"),
        ("logger", "wandb"),
    }


def test_evaluate_help_lists_evaluate_groups_only(evaluate_help):
    assert evaluate_help.startswith(
        "python -m humanclap.evaluate: measure one or several models with the probes"
    )
    headers = re.findall(r"^([a-z/]+): ", evaluate_help, re.MULTILINE)
    assert headers == ["data", "probes"]
    for training_only in (
        "wsce_mae",
        "mse",
        "timbre",
        "ordering",
        "cpu",
        "ddp",
        "ddp_spawn",
        "adamw",
        "csv",
        "cosine",
        "optuna",
    ):
        assert not re.search(rf"^  [ *] {training_only} ", evaluate_help, re.MULTILINE), (
            training_only
        )
    # models=: the model config names, with the same descriptions as in training, default marked.
    assert _option_line(evaluate_help, "tiny") == (
        "  * tiny                                A ~60k-parameter random ClapModel built offline: fast, for"
    )
    assert _option_line(evaluate_help, "laion_htsat_fused").startswith(
        "    laion_htsat_fused                   laion/clap-htsat-fused from the hub: the paper's backbone."
    )
    assert _option_line(evaluate_help, "relate").startswith(
        "    relate                RELATE (human-clap §II-B)"
    )
    assert _option_line(evaluate_help, "bat").startswith(
        "    bat                       Before-After Test"
    )


def test_evaluate_help_marks_the_model_of_the_command(tmp_path):
    text = _help(tmp_path, "humanclap.evaluate", "model=laion_htsat_fused")
    assert {line.split()[1] for line in text.splitlines() if line.startswith("  * ")} == {
        "laion_htsat_fused",
        "synthetic",
        "relevance",
        "retrieval",
    }


def test_score_help_lists_the_data_and_models_it_scores(tmp_path):
    text = _help(tmp_path, "humanclap.score")
    assert text.startswith(
        "python -m humanclap.score: CLAPScore = max(cos(audio, text), 0) (human-clap eq. 1)"
    )
    assert re.findall(r"^([a-z/]+): ", text, re.MULTILINE) == ["data"]
    assert _option_line(text, "prompts", "data").startswith(
        "  * prompts               Unrated (clip, prompt) pairs to score with humanclap.score"
    )
    assert _option_line(text, "manifest", "data").startswith("    manifest ")
    assert _option_line(text, "tiny").startswith("  * tiny ")
    assert "python -m humanclap.score data.path=clips data.prompts=prompts.csv" in text
    assert "python -m humanclap.score data.path=prompts.csv --cfg job" in text
    assert "(no description)" not in text


def test_hydras_own_help_stays_available(evaluate_help, tmp_path):
    assert "Hydra's own flags (--cfg, --resolve, --info, -m, ...): --hydra-help" in evaluate_help
    assert "--multirun,-m : Run multiple jobs" in _cli(tmp_path, "humanclap.train", "--hydra-help")
