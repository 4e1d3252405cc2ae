"""A config written for the layout before issue 14 names old ``_target_`` paths: the ones the packages
re-export still work, every other one stops with the new path (humanclap/moved.py)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from hydra.utils import instantiate

import humanclap
from humanclap.cli import user_error
from humanclap.moved import MOVED_MODULES, new_target
from humanclap.probes.build import build_probes


def test_every_moved_module_exists_at_its_new_path_and_not_at_its_old_one():
    package = Path(humanclap.__file__).parent
    for old, new in MOVED_MODULES.items():
        importlib.import_module(new)
        assert not package.joinpath(*old.split(".")[1:]).with_suffix(".py").exists(), old


def test_old_targets_of_the_shipped_configs_still_work_where_the_package_re_exports_them():
    assert instantiate({"_target_": "humanclap.data.synthetic.synthetic_pairs", "n_sounds": 5}).name
    for target in (
        "humanclap.probes.relevance.RelevanceProbe",
        "humanclap.probes.retrieval.RetrievalProbe",
        "humanclap.probes.zero_shot.ZeroShotInstrumentProbe",
    ):
        module, name = target.rsplit(".", 1)
        assert getattr(importlib.import_module(module), name).__name__ == name


def test_an_old_probe_target_stops_with_the_new_path():
    from humanclap.data.synthetic import synthetic_pairs

    with pytest.raises(Exception) as raised:
        build_probes(
            {"bat": {"_target_": "humanclap.probes.bat.BeforeAfterProbe"}},
            synthetic_pairs(n_sounds=5),
        )
    message = str(user_error(raised.value))
    assert message == (
        "_target_ 'humanclap.probes.bat.BeforeAfterProbe' has moved: "
        "write _target_: humanclap.probes.ordering.bat.BeforeAfterProbe"
    )


def test_new_target_names_only_paths_that_exist():
    assert new_target("humanclap.resume.RandomState") == "humanclap.lit.callbacks.RandomState"
    assert new_target("humanclap.data.timbre.read_timbre_ratings") == (
        "humanclap.data.readers.timbre_ratings.read_timbre_ratings"
    )
    assert new_target("humanclap.data.timbre.no_such_function") is None  # a typo, not a move
    assert new_target("humanclap.losses.HumanClapLoss") is None  # did not move
