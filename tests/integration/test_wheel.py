"""A built wheel carries recipes/ and runs both entry points without the source tree (issue 13, item 3).

The wheel is built from a copy of the source tree (a build writes build/ and *.egg-info next to
pyproject.toml) and installed into a fresh venv whose only other entry is a .pth file naming this
environment's site-packages, for the dependencies: a .pth entry is a plain path, so the editable
install's finder in there is not activated and cannot hand out modules from the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import yaml
from cli import REPO

pytestmark = pytest.mark.slow

# One epoch over 16 generated sounds: the default run (Quickstart size) takes minutes on a busy machine.
SMALL_DATA = ["data.pairs.n_sounds=16", "data.pairs.texts_per_sound=2", "data.batch_size=4"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("humanclap", "recipes"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (built,) = out.glob("humanclap-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, Path]:
    """(python of a venv holding the installed wheel, its site-packages)."""
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, with_pip=False)
    python = root / "bin" / "python"
    packages = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True
        ).strip()
    )
    (packages / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--target",
            str(packages),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    return python, packages


def _run(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(
        HF_HUB_OFFLINE="1", WANDB_MODE="offline", HUMANCLAP_CACHE=os.environ["HUMANCLAP_CACHE"]
    )
    result = subprocess.run(
        [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def test_wheel_holds_the_recipes_and_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "humanclap/recipes/model/tiny.yaml",
        "humanclap/recipes/train.yaml",
        "humanclap/recipes/evaluate.yaml",
        "humanclap/recipes/hydra/help/train.yaml",
        "humanclap/resources/instrument_ontology.json",
    } <= names
    # pyproject.toml lists the packages (humanclap.recipes lives outside humanclap/): none may be missing.
    modules = {path.relative_to(REPO).as_posix() for path in (REPO / "humanclap").rglob("*.py")}
    configs = {
        "humanclap/" + path.relative_to(REPO).as_posix()
        for path in (REPO / "recipes").rglob("*.yaml")
    }
    assert not (modules | configs) - names


def test_installed_wheel_trains_and_evaluates_outside_the_source_tree(installed, tmp_path):
    python, packages = installed
    project = tmp_path / "project"
    project.mkdir()
    where = _run(
        python,
        project,
        "-c",
        "import humanclap.backbones.resolve as r, humanclap.recipe_files as f; "
        "print(r.__file__, f.RECIPES, r.MODEL_CONFIGS, sep='\\n')",
    ).stdout.split()
    assert where == [
        str(packages / "humanclap" / "backbones" / "resolve.py"),
        str(packages / "humanclap" / "recipes"),
        str(packages / "humanclap" / "recipes" / "model"),
    ]

    _run(python, project, "-m", "humanclap.train", "trainer.max_epochs=1", *SMALL_DATA)
    (record,) = project.glob("checkpoints/*/humanclap_run.json")
    assert (record.parent / "model.safetensors").is_file() and (
        record.parent / "config.json"
    ).is_file()
    (train_hydra,) = project.glob("outputs/*/.hydra/hydra.yaml")
    assert _primary_config_dir(train_hydra) == str(packages / "humanclap" / "recipes")

    _run(python, project, "-m", "humanclap.evaluate")
    (metrics,) = project.glob("outputs/evaluate-*/metrics.json")
    tiny = json.loads(metrics.read_text())["models"]["tiny"]
    assert tiny["source"] == "recipes/model/tiny.yaml" and tiny["metrics"]["relevance"]["n"] > 0
    assert _primary_config_dir(metrics.parent / ".hydra" / "hydra.yaml") == str(
        packages / "humanclap" / "recipes"
    )


def _primary_config_dir(hydra_yaml: Path) -> str:
    """Where Hydra composed the run's configs from (``hydra.runtime.config_sources``, provider main)."""
    sources = yaml.safe_load(hydra_yaml.read_text())["hydra"]["runtime"]["config_sources"]
    (main,) = [source["path"] for source in sources if source["provider"] == "main"]
    return main
