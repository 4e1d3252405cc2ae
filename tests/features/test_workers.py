"""``num_workers: auto`` = the CPUs this process may use / the run's processes on the node - 1."""

from __future__ import annotations

import pytest

from humanclap.features import workers
from humanclap.features.workers import WorkersSettingError, resolve_num_workers


@pytest.mark.parametrize(
    ("cpus", "local_world", "expected"),
    [(2, None, 1), (1, None, 0), (16, None, 15), (16, "4", 3), (8, "8", 0), (3, "2", 0)],
)
def test_auto_divides_the_cpus_among_the_local_processes(monkeypatch, cpus, local_world, expected):
    monkeypatch.setattr(workers, "usable_cpus", lambda: cpus)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    if local_world is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world)
    assert resolve_num_workers("auto") == expected


def test_auto_counts_the_trainers_devices(monkeypatch):
    monkeypatch.setattr(workers, "usable_cpus", lambda: 12)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)

    class Trainer:  # a trainer that runs 3 processes on this node
        num_devices = 3

    assert resolve_num_workers("auto", trainer=Trainer()) == 3


def test_auto_follows_the_real_affinity_mask(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(6)))
    monkeypatch.setattr("humanclap.cpus.cgroup_cpu_quota", lambda root=None: None)
    assert resolve_num_workers("auto") == 5


@pytest.mark.parametrize(("given", "expected"), [(0, 0), (3, 3), ("2", 2), ("AUTO", None)])
def test_numbers_are_taken_as_given(monkeypatch, given, expected):
    monkeypatch.setattr(workers, "usable_cpus", lambda: 4)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert resolve_num_workers(given) == (3 if expected is None else expected)


@pytest.mark.parametrize("bad", [-1, "many", 1.5, True, None])
def test_bad_values_name_the_option(bad):
    with pytest.raises(WorkersSettingError, match=r"data\.num_workers=.*data\.num_workers=auto"):
        resolve_num_workers(bad, option="data.num_workers")


def test_the_datamodule_resolves_auto_when_it_builds_a_loader(monkeypatch, tiny_backbone):
    from humanclap.data.synthetic.sounds import synthetic_pairs
    from humanclap.lit.datamodule import RatedPairDataModule

    monkeypatch.setattr(workers, "usable_cpus", lambda: 3)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    pairs = synthetic_pairs(n_sounds=6, texts_per_sound=1, val_fraction=0.5, seed=1)
    data = RatedPairDataModule(pairs, tiny_backbone.featurizer, num_workers="auto")
    assert data.num_workers == 2 and data.val_dataloader().num_workers == 2
    with pytest.raises(WorkersSettingError, match="data.num_workers='lots'"):
        RatedPairDataModule(pairs, tiny_backbone.featurizer, num_workers="lots")
