"""Where the Hydra configs (``recipes/``) are, and the one-line description of each option.

``recipes/`` sits at the top of the repository and ships inside the wheel as ``humanclap/recipes``
(pyproject.toml maps the package ``humanclap.recipes`` to it): an installed humanclap has it next to
its modules, a source checkout (``pip install -e .``, or the repository on ``PYTHONPATH``) one level
up. Everything that reads the configs goes through :data:`RECIPES`: the entry points'
``@hydra.main``, ``model=<config name>`` (:mod:`humanclap.backbones.resolve`), evaluate's probe
names and ``--help``.

A file path rather than ``pkg://humanclap.recipes`` / importlib.resources: an editable install maps
that package to ``recipes/`` but cannot import it (setuptools' editable finder looks for an
``__init__.py``), and the checkout on ``PYTHONPATH`` (as tests/cli.py runs it) has no such package.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Collection
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
INSTALLED, CHECKOUT = PACKAGE / "recipes", PACKAGE.parent / "recipes"
RECIPES = INSTALLED if INSTALLED.is_dir() else CHECKOUT


def option_names(group: str) -> list[str]:
    """The options of a config group: the names of ``recipes/<group>/*.yaml``."""
    return sorted(path.stem for path in (RECIPES / group).glob("*.yaml"))


def description(path: Path) -> str:
    """The first comment line of a config (after Hydra's ``# @package`` line): its one-line summary."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            return ""
        text = line.lstrip("#").strip()
        if text and not text.startswith("@package"):
            return text
    return ""


def chosen_options(cfg: Any, group: str, key: str | None = None) -> set[str]:
    """The options of ``group`` a composed config uses.

    Hydra's choice for the group; without one, the entries of ``key`` if given (evaluate's ``models``)
    or, for a list group (``probes=[relevance,retrieval]``, not among Hydra's choices), the options
    whose node is in the group's node.
    """
    from omegaconf import OmegaConf

    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    if key is not None and (choices is None or choices.get(group) is None):
        names = OmegaConf.select(cfg, key, default=None)
        return {str(name) for name in names} if OmegaConf.is_list(names) else set()
    if choices is not None and group in choices:
        return {str(choices[group])} if choices[group] is not None else set()  # sweep: null
    node = OmegaConf.select(cfg, group.replace("/", "."), default=None)
    return {str(name) for name in node} if OmegaConf.is_dict(node) else set()


def options_help(group: str, chosen: Collection[str] = (), columns: int | None = None) -> str:
    """``--help`` lines for a group: each option and its description, ``*`` before the chosen ones."""
    columns = columns or min(max(shutil.get_terminal_size((100, 24)).columns, 60), 120)
    names = option_names(group)
    width = max(map(len, names), default=0)
    lines = []
    for name in names:
        first = f"  {'*' if name in chosen else ' '} {name:<{width}}  "
        text = description(RECIPES / group / f"{name}.yaml") or "(no description)"
        lines += textwrap.wrap(
            text,
            columns,
            initial_indent=first,
            subsequent_indent=" " * len(first),
            break_long_words=False,
            break_on_hyphens=False,
        )
    return "\n".join(lines)
