"""The pinned dependency set imports, works together and is consistent (see pyproject comments)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

# laion_clap is checked in tests/backbones/test_laion_checkpoint.py: importing it fetches tokenizers from the
# hub at import time, which only works offline inside the prepared directory that test builds.
MODULES = [
    "torch",
    "torchaudio",
    "torchvision",
    "lightning",
    "transformers",
    "torchmetrics",
    "wandb",
    "scipy",
    "datasets",
    "pyarrow",
    "hydra",
    "omegaconf",
    "soundfile",
    "numpy",
    "safetensors",
    # sweeps: the Hydra plugins and what optuna 2.10 needs (pinned in pyproject.toml)
    "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
    "submitit",
    "optuna",
    "sqlalchemy",
    "alembic",
    "cliff",
    "cmaes",
]


@pytest.mark.parametrize("name", MODULES)
def test_dependency_imports(name):
    assert importlib.import_module(name).__name__ == name


def test_pip_check_is_clean():
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_numpy_1_with_pyarrow_and_datasets():
    """laion-clap needs numpy<2; pyarrow<26 still imports with it and datasets round-trips."""
    import datasets
    import numpy as np
    import pyarrow as pa

    assert np.__version__.startswith("1.")
    assert pa.array(np.arange(3)).to_pylist() == [0, 1, 2]
    table = datasets.Dataset.from_dict({"score": [0.1, 0.9]}).with_format("numpy")
    np.testing.assert_allclose(table["score"], [0.1, 0.9])


def test_torchaudio_compiled_op_runs_on_pinned_torch():
    """torchaudio 2.11's stable-ABI extension loads on torch 2.14 (not just its Python parts)."""
    import torch
    import torchaudio.functional as F

    emission = torch.log_softmax(
        torch.randn(1, 12, 5, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    labels, scores = F.forced_align(emission, torch.tensor([[1, 2, 3]], dtype=torch.int32), blank=0)
    assert labels.shape == (1, 12)
    assert set(labels[0].tolist()) <= {0, 1, 2, 3}
    assert torch.isfinite(scores).all()
    tone = torch.sin(2 * torch.pi * 440 * torch.arange(16_000) / 16_000)
    assert F.resample(tone, 16_000, 48_000).shape == (48_000,)


def test_torchvision_ops_match_torch():
    """laion-clap imports torchvision; a mismatched build fails on its compiled operators."""
    import torch
    from torchvision.ops import nms

    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0]])
    assert nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2]


def test_optuna_2_study_persists_in_sqlite(tmp_path):
    """optuna 2.10 (hydra-optuna-sweeper needs <3) with its RDB storage: broken on SQLAlchemy 2."""
    import optuna
    import sqlalchemy

    assert optuna.__version__.startswith("2.") and sqlalchemy.__version__.startswith("1.4")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    def study():
        return optuna.create_study(
            study_name="s",
            storage=storage,
            direction="maximize",
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=0),
        )

    study().optimize(lambda trial: -(trial.suggest_float("x", -1, 1) ** 2), n_trials=3)
    reloaded = study()
    assert len(reloaded.trials) == 3 and reloaded.best_value <= 0
