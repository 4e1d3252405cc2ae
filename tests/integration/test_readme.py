"""The README is an executable spec (issue 13, item 1): every command it prints is run or composed here.

How README.md is read (tests/readme_commands.py):

- Every fenced block in a shell language (bash, sh, shell, console or none) has a marker comment on the line
  right before its opening fence; a block without one fails ``test_every_readme_command_is_classified``.

  ``<!-- readme:run -->``      needs no user data or weights: its commands run verbatim, in order, in one fresh
                               directory (cwd = a new tmp dir, as a user in a project folder). Asserted: exit
                               status 0 and, where the README makes a concrete claim about what a command writes,
                               that claim (``CLAIMS``); never console formatting.
  ``<!-- readme:compose -->``  needs user data or hub weights: composed, not run. ``<command> --cfg job --resolve``
                               with the placeholder paths as printed must exit 0, so a renamed key, a missing config
                               or a broken interpolation fails.
  ``<!-- readme:shell -->``    another program (``hf download ...``): not run (it downloads). The program must be
                               installed next to this interpreter or on PATH, and ``<program> <subcommand> --help``
                               must exit 0.
  ``<!-- readme:run,compose -->``  a block of several kinds: one mode per command, in order.
  ``<!-- ci:test-command ... -->``  the suite's own command, which .ci/run runs; checked: .ci/run finds it.

- A command is one line; a ``\\`` at the end of a line joins the next; ``# ...`` is a comment (shell rules).
- ``setup && setup && command``: what comes before the last ``&&`` must be setup (``python3 -m venv``,
  ``pip install``), which the test environment's install has already done (CI installs into a fresh virtualenv);
  only the last part is run or composed.
- ``python``, ``python3`` and ``.venv/bin/python`` mean this interpreter (``sys.executable``).
- ``...`` as a word elides arguments: allowed in compose commands only, where it is dropped. As a value
  (``key=...``) it is a placeholder, kept as printed. ``-m`` is dropped when composing (Hydra refuses ``--cfg``
  with ``--multirun``; each job of a sweep composes like this), so a command that sweeps values (``key=a,b``)
  must be a run command. ``<name>`` (``checkpoints/<run>``) is a placeholder the user fills in: composed as
  ``name``; a run command may hold neither ``...`` nor a placeholder.
- Inline code spans are commands when they start with ``python``, ``python3``, ``.venv/bin/python`` or
  ``torchrun``, or are ``humanclap.train`` / ``humanclap.evaluate``, followed by arguments. Those of
  humanclap.train and humanclap.evaluate are composed (``torchrun``'s own options dropped), except the ones in
  ``INLINE_RUN`` (they need no data), which run like a run block. Other humanclap modules and benchmark scripts:
  ``--help`` must exit 0. ``python -m pytest ...`` is the suite itself. Any other command fails
  ``test_every_readme_command_is_classified``.
- A humanclap.train / humanclap.evaluate command that only prints (``--help``, ``--hydra-help``, ``--cfg``,
  ``--info``), in a block or inline, runs as printed and must exit 0 with some output.

Composition and ``--help`` run in this process, as ``python -m`` / ``python script.py`` would (runpy, cwd = a
tmp dir): a subprocess each would cost an interpreter start and a torch import. Run commands are subprocesses with
tests/cli.py's environment (offline wandb and hub, the session's HUMANCLAP_CACHE).
"""

from __future__ import annotations

import csv
import json
import math
import re
import resource
import runpy
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from cli import _env
from readme_commands import HYDRA_APPS, README, REPO, Command, read

BLOCKS, COMMANDS, PROBLEMS = read(README)

# Inline commands that need no user data: run verbatim (all other inline humanclap commands are composed).
INLINE_RUN = {
    "python -m humanclap.evaluate",
    "python -m humanclap.train recipe=timbre",
    "python -m humanclap.train recipe=ordering",
    "python -m humanclap.train 'probes=[relevance,zero_shot_instruments]' trainer.max_epochs=2",
    "python -m humanclap.train -m sweep=optuna hydra.sweeper.n_trials=2",
}


def _mode(command: Command) -> str:
    return (
        "run"
        if command.inline and command.mode == "compose" and command.key in INLINE_RUN
        else command.mode
    )


def _run_units() -> list[tuple[Command, ...]]:
    """The run commands: those of one block together (in order, one directory), inline ones alone, each inline
    command once (the README names ``python -m humanclap.evaluate`` in several places)."""
    units: dict[object, list[Command]] = {}
    for command in COMMANDS:
        if _mode(command) == "run":
            units.setdefault(command.key if command.inline else command.block, []).append(command)
    return [tuple(unit[:1] if unit[0].inline else unit) for unit in units.values()]


def _once(commands: list[Command]) -> list[Command]:
    """The first of each command printed several times."""
    return list({command.key: command for command in reversed(commands)}.values())[::-1]


def _id(command: Command) -> str:
    return f"L{command.line}:{command.key[:90]}"


COMPOSED = _once([c for c in COMMANDS if _mode(c) == "compose"])
HELPED = _once([c for c in COMMANDS if c.mode == "help"])
SHELL = _once([c for c in COMMANDS if c.mode == "shell"])
RUNS = _run_units()


# -- the README is fully classified ---------------------------------------------------------------------


def test_every_readme_command_is_classified():
    assert PROBLEMS == [], (
        "README.md breaks the harness's rules (tests/integration/test_readme.py docstring):\n"
        + "\n".join(PROBLEMS)
    )
    assert RUNS and COMPOSED and SHELL  # the parser found the README's commands at all


def test_the_rules_leave_no_way_around_the_harness(tmp_path):
    """Each way a command could slip past is a problem; the reading rules give the commands a user types."""
    readme = tmp_path / "README.md"
    readme.write_text(
        "\n".join(
            [
                "```bash",
                "python -m humanclap.train recipe=mse",
                "```",  # no marker
                "<!-- readme:run -->",
                "```bash",
                "python -m humanclap.train data=relate ...",
                "```",  # elision in a run
                "<!-- readme:run,compose -->",
                "```bash",
                "python -m humanclap.evaluate",
                "```",  # 2 modes, 1 command
                "<!-- readme:shell -->",
                "```bash",
                "python -m humanclap.evaluate",
                "```",  # Python in a shell block
                "<!-- readme:compose -->",
                "```bash",
                "rm -rf data && python -m humanclap.train",
                "```",  # not setup
                "<!-- readme:compose -->",
                "```bash",
                "python -m humanclap.train | tee log",
                "```",  # a pipe
                "<!-- readme:compose -->",
                "```bash",
                "wget http://x",
                "```",  # another program
                "Inline `python somewhere/else.sh now` and `python -c 'print(1)'`.",
                "<!-- readme:run,compose -->",
                "```bash",
                "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python -m humanclap.train -m \\",
                "    recipe=wsce  # comment",
                "python -m humanclap.evaluate model=checkpoints/<run> ...",
                "```",
                "`humanclap.evaluate model=x`, `python`, `humanclap.train` and `python -m pytest -x`.",
            ]
        )
    )
    _, commands, problems = read(readme)
    assert len(problems) == 9, "\n".join(problems)
    for expected in (
        "without a marker",
        "'...'",
        "gives 2 modes for 1 commands",
        "a Python command in a shell",
        "only setup",
        "pipes",
        "not a humanclap command",
        "somewhere/else.sh",
        "print(1)",
    ):
        assert sum(expected in problem for problem in problems) == 1, expected
    run, compose, inline, suite = commands
    assert (run.mode, run.run_argv("PY")) == (
        "run",
        ["PY", "-m", "humanclap.train", "-m", "recipe=wsce"],
    )
    assert compose.compose_arguments() == ["model=checkpoints/run", "--cfg", "job", "--resolve"]
    assert (inline.key, inline.inline, inline.module) == (
        "humanclap.evaluate model=x",
        True,
        "humanclap.evaluate",
    )
    assert suite.mode == "suite"


def test_ci_runs_the_readme_test_command():
    """.ci/run extracts the line after the ci:test-command marker's fence; markers must not move it."""
    (ci,) = [c for c in COMMANDS if c.mode == "ci"]
    (extract,) = re.findall(r"command=\$\((awk .*README\.md)\)", (REPO / ".ci" / "run").read_text())
    found = subprocess.run(
        ["bash", "-c", extract], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == ci.text
    assert ci.words[-3:] == (".venv/bin/python", "-m", "pytest")


def test_inline_run_and_claims_name_readme_commands():
    """A README edit that renames a command must not leave its run or its checks behind silently."""
    inline = {c.key for c in COMMANDS if c.inline and c.module in HYDRA_APPS}
    assert INLINE_RUN <= inline, (
        f"INLINE_RUN entries no longer in the README: {INLINE_RUN - inline}"
    )
    run = {c.key for unit in RUNS for c in unit}
    assert set(CLAIMS) <= run, f"CLAIMS for commands the README no longer runs: {set(CLAIMS) - run}"


# -- composed: needs user data or hub weights -----------------------------------------------------------


def _as_main(target: str, argv: list[str], script: bool = False) -> int:
    """``python -m target argv`` (or ``python target argv``) in this process; its exit status."""
    saved = sys.argv
    sys.argv = [target, *argv]
    try:
        if script:
            runpy.run_path(target, run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = saved
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig

        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
    return 0


@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")
@pytest.mark.parametrize("command", COMPOSED, ids=_id)
def test_the_command_composes(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = _as_main(command.module, command.compose_arguments())
    printed = capsys.readouterr()
    assert status == 0, (
        f"README line {command.line}: {command.text}\n{printed.out[-2000:]}{printed.err[-3000:]}"
    )
    assert isinstance(yaml.safe_load(printed.out), dict)  # the job's config, printed
    assert not any(tmp_path.iterdir())  # composing wrote nothing


@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")
@pytest.mark.parametrize("command", HELPED, ids=_id)
def test_the_program_answers_help(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if command.module is None:  # a script: Python puts its folder first on sys.path
        script = REPO / command.words[1]
        monkeypatch.syspath_prepend(str(script.parent))
        status = _as_main(str(script), command.help_arguments, script=True)
    else:
        status = _as_main(command.module, command.help_arguments)
    printed = capsys.readouterr()
    assert status == 0 and printed.out.strip(), (
        f"README line {command.line}: {command.text}\n{printed.err[-3000:]}"
    )


@pytest.mark.parametrize("command", SHELL, ids=_id)
def test_the_shell_program_is_installed(command):
    """Shell lines are not run (they download); their program and subcommand must exist as printed."""
    path = f"{Path(sys.executable).parent}:{_env()['PATH']}"
    program = shutil.which(command.words[0], path=path)
    assert program, (
        f"README line {command.line}: '{command.words[0]}' is not installed ({command.text})"
    )
    argv = [program, *command.shell_help_argv()[1:]]
    result = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (
        f"README line {command.line}: {' '.join(argv)}\n{result.stderr[-2000:]}"
    )


# -- run: verbatim, in a fresh directory ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("unit", RUNS, ids=lambda unit: _id(unit[0]))
def test_the_command_runs_verbatim(unit, tmp_path):
    for command in unit:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        result = subprocess.run(
            command.run_argv(sys.executable),
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=1800,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        print(
            f"README line {command.line}: {command.key}: {time.monotonic() - start:.0f} s wall, {cpu:.0f} s CPU"
        )
        assert result.returncode == 0, (
            f"README line {command.line}: {command.text}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
        if command.key in CLAIMS:
            CLAIMS[command.key](tmp_path, command)


# -- what the README says these commands write ----------------------------------------------------------

DATE_TIME = r"\d{8}-\d{6}"


def _only(folder: Path) -> Path:
    (only,) = list(folder.iterdir())
    return only


def _record(export: Path) -> dict:
    return json.loads((export / "humanclap_run.json").read_text())


def _single_run(cwd: Path, recipe: str) -> tuple[Path, Path, dict]:
    """``outputs/<run>/`` (config, log, last.ckpt and the lowest-val-loss epoch) and ``checkpoints/<run>/``
    (the export and humanclap_run.json), ``<run>`` = ``<recipe>-<date>-<time>`` (or the Slurm job id)."""
    output = _only(cwd / "outputs")
    assert re.fullmatch(rf"{recipe}-({DATE_TIME}|\d+)", output.name)
    assert (output / ".hydra" / "config.yaml").is_file()
    checkpoints = {p.name for p in (output / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in checkpoints and len(checkpoints) >= 2, checkpoints
    export = cwd / "checkpoints" / output.name
    record = _record(export)
    epochs = [epoch for epoch, _ in record["history"]]
    assert epochs == list(range(-1, record["config"]["trainer"]["max_epochs"])), (
        epochs
    )  # baseline + every epoch
    return output, export, record


def _probed_every_epoch(record: dict, probes: set[str]) -> None:
    for epoch, metrics in record["history"]:
        assert probes <= {key.split("/")[0] for key in metrics}, (epoch, sorted(metrics))


def _quickstart(cwd: Path, command: Command) -> None:
    from transformers import ClapModel, ClapProcessor

    output, export, record = _single_run(cwd, "wsce_mae")
    assert list((output / "wandb").glob("offline-run-*")), "wandb logs offline by default"
    _probed_every_epoch(record, {"relevance", "retrieval"})
    ClapModel.from_pretrained(export)
    ClapProcessor.from_pretrained(export)


def _evaluation(cwd: Path, probes: set[str]) -> dict:
    output = _only(cwd / "outputs")
    assert re.fullmatch(rf"evaluate-{DATE_TIME}", output.name)
    metrics = json.loads((output / "metrics.json").read_text())
    assert (output / "report.md").read_text()
    for name, model in metrics["models"].items():
        assert set(model["metrics"]) == probes, name
        assert model["kind"] and model["source"] and model["weights_sha256"]
    assert metrics["config"] and metrics["versions"]
    return metrics


def _evaluate_default(cwd: Path, command: Command) -> None:
    metrics = _evaluation(cwd, {"relevance", "retrieval"})
    assert list(metrics["models"]) == ["tiny"]
    assert list((_only(cwd / "outputs") / "figures" / "tiny").glob("*.png"))


def _evaluate_order(cwd: Path, command: Command) -> None:
    _evaluation(cwd, {"bat", "clause_swap", "as_then_swap", "text_sensitivity"})


def _timbre(cwd: Path, command: Command) -> None:
    """Relevance and both timbre probes after every epoch; the demo files' 6 words per effect and the synthetic
    table's 6 descriptors; "descriptor-level mean r goes from −0.01 to 0.29" (baseline -> last epoch)."""
    *_, record = _single_run(cwd, "timbre")
    _probed_every_epoch(record, {"relevance", "timbre_correlation", "timbre_trend"})
    for _, metrics in record["history"]:
        for effect in ("eq", "reverb"):
            assert metrics[f"timbre_trend/{effect}/n_descriptors"] == 6
            assert (
                sum(
                    metrics[f"timbre_trend/{effect}/{trend}"]
                    for trend in ("up", "down", "peak", "flat")
                )
                == 6
            )
        assert metrics["timbre_correlation/descriptor/n"] == 6
    mean_r = "timbre_correlation/descriptor/mean_r"
    assert record["summary"]["metric"] == mean_r
    (_, baseline), *_, (_, last) = record["history"]
    assert (baseline[mean_r], last[mean_r]) == pytest.approx((-0.01, 0.29), abs=0.015)


def _ordering(cwd: Path, command: Command) -> None:
    """bat, clause_swap, text_sensitivity after every epoch, ``bat/accuracy`` the sweep metric and the
    selection; the heads are exported next to the ClapModel files and loaded back by the README's
    ``humanclap.evaluate model=checkpoints/<run> data=order_synthetic split=test ...`` (run with this
    run's name) -- and the run learned order: on the held-out test clips BAT >= 0.75 and >= the untrained
    model's (the README's baseline command) + 0.2, with a larger clause-swap R@1 drop (issue 17)."""
    _, export, record = _single_run(cwd, "ordering")
    _probed_every_epoch(record, {"bat", "clause_swap", "text_sensitivity"})
    for _, metrics in record["history"]:
        assert metrics["bat/n_before"] + metrics["bat/n_after"] == metrics["bat/n"] > 0
    assert record["config"]["optimized_metric"] == record["config"]["monitor"] == "bat/accuracy"
    assert (export / "aggregation_config.json").is_file() and (export / "config.json").is_file()
    trained, baseline = (
        _evaluate_printed(cwd, f"model={model}", "<run>", export.name)
        for model in ("checkpoints/<run>", "tiny_transformer_head")
    )
    assert trained["source"].endswith(f"checkpoints/{export.name}")
    bat, bat_before = trained["metrics"]["bat"]["accuracy"], baseline["metrics"]["bat"]["accuracy"]
    assert bat >= 0.75 and bat >= bat_before + 0.2, (bat, bat_before)
    drop = trained["metrics"]["clause_swap"]["drop"]
    assert drop > baseline["metrics"]["clause_swap"]["drop"], drop


def _evaluate_printed(cwd: Path, model_word: str, placeholder: str, value: str) -> dict:
    """Run the README's ``humanclap.evaluate`` command holding ``model_word`` (``<run>`` filled in) in a
    fresh output folder; its one model's entry of metrics.json."""
    (printed,) = [
        c
        for c in COMMANDS
        if c.module == "humanclap.evaluate" and model_word in c.words and "split=test" in c.words
    ]
    before = set((cwd / "outputs").glob("evaluate-*"))
    argv = [
        sys.executable,
        "-m",
        printed.module,
        *(w.replace(placeholder, value) for w in printed.arguments),
    ]
    result = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"{' '.join(argv)}\n{result.stderr[-5000:]}"
    (evaluation,) = set((cwd / "outputs").glob("evaluate-*")) - before
    (model,) = json.loads((evaluation / "metrics.json").read_text())["models"].values()
    return model


def _zero_shot_each_epoch(cwd: Path, command: Command) -> None:
    *_, record = _single_run(cwd, "wsce_mae")
    _probed_every_epoch(record, {"relevance", "zero_shot_instruments"})
    assert {metrics["zero_shot_instruments/n_classes"] for _, metrics in record["history"]} == {
        14
    }  # TinySOL's


def _sweep_table(cwd: Path, jobs: int) -> tuple[str, list[dict]]:
    """One sweep ``multirun/<date>-<time>/``: a results.csv/.md row per job, job n's logs and checkpoints in
    ``multirun/<sweep>/<n>/`` and its export in ``checkpoints/<sweep>/<n>/``."""
    sweep = _only(cwd / "multirun").name
    assert re.fullmatch(DATE_TIME, sweep)
    assert [p.name for p in (cwd / "checkpoints").iterdir()] == [sweep]
    with open(cwd / "multirun" / sweep / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert (cwd / "multirun" / sweep / "results.md").read_text()
    assert [row["job"] for row in rows] == [str(job) for job in range(jobs)]
    for job, row in enumerate(rows):
        assert row["status"] == "COMPLETED", row
        assert (cwd / "multirun" / sweep / str(job) / "checkpoints" / "last.ckpt").is_file()
        assert row["export_dir"] == f"checkpoints/{sweep}/{job}"
        record = _record(cwd / row["export_dir"])
        assert float(row["objective"]) == pytest.approx(record["summary"]["objective"], nan_ok=True)
    return sweep, rows


def _grid_sweep(cwd: Path, command: Command) -> None:
    (swept,) = [w for w in command.arguments if "=" in w and "," in w and "[" not in w]
    key, values = swept.split("=")
    sweep, rows = _sweep_table(cwd, len(values.split(",")))
    for job, (value, row) in enumerate(zip(values.split(","), rows)):
        assert f"{key}={value}" in row["overrides"].split()
        config = _record(cwd / "checkpoints" / sweep / str(job))["config"]
        assert _select(config, key) == yaml.safe_load(value)


def _optuna(cwd: Path, command: Command) -> None:
    (trials,) = [
        int(w.split("=")[1]) for w in command.arguments if w.startswith("hydra.sweeper.n_trials=")
    ]
    sweep, rows = _sweep_table(cwd, trials)
    results = yaml.safe_load((cwd / "multirun" / sweep / "optimization_results.yaml").read_text())
    objectives = [
        float(row["objective"]) for row in rows if not math.isnan(float(row["objective"]))
    ]
    if objectives:
        assert results["best_value"] == pytest.approx(max(objectives))


def _resumed(cwd: Path, command: Command) -> None:
    """``resume=auto`` continues run ``demo`` (same output dir, the probe history kept); the CSV logger
    starts a new ``version_<n>`` for each part."""
    output, export = cwd / "outputs" / "demo", cwd / "checkpoints" / "demo"
    epochs = _record(export)["config"]["trainer"]["max_epochs"]
    assert [epoch for epoch, _ in _record(export)["history"]] == list(range(-1, epochs))
    parts = 2 if "resume=auto" in command.arguments else 1
    assert sorted(p.name for p in (output / "csv").iterdir()) == [
        f"version_{n}" for n in range(parts)
    ]
    assert all((output / "csv" / f"version_{n}" / "metrics.csv").is_file() for n in range(parts))


def _select(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


CLAIMS: dict[str, Callable[[Path, Command], None]] = {
    "python -m humanclap.train recipe=wsce_mae": _quickstart,
    "python -m humanclap.evaluate": _evaluate_default,
    "python -m humanclap.evaluate data=order_synthetic 'probes=[bat,clause_swap,as_then_swap,text_sensitivity]'": _evaluate_order,  # noqa: E501
    "python -m humanclap.train recipe=timbre": _timbre,
    "python -m humanclap.train recipe=ordering": _ordering,
    "python -m humanclap.train 'probes=[relevance,zero_shot_instruments]' trainer.max_epochs=2": _zero_shot_each_epoch,
    "python -m humanclap.train -m recipe=wsce_mae loss.lambdas.wsce=0.05,0.1,0.2": _grid_sweep,
    "python -m humanclap.train -m sweep=optuna hydra.sweeper.n_trials=2": _optuna,
    "python -m humanclap.train run_name=demo logger=csv trainer.max_epochs=1": _resumed,
    "python -m humanclap.train run_name=demo logger=csv trainer.max_epochs=2 resume=auto": _resumed,
}
