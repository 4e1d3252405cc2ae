"""Shared test fixtures: everything offline, tiny models built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test may reach the network: hub lookups fail fast instead of retrying for minutes.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tiny checkpoints are built into a per-session cache, never into the user's home."""
    os.environ["HUMANCLAP_CACHE"] = str(tmp_path_factory.mktemp("humanclap-cache"))


@pytest.fixture(scope="session")
def tiny_backbone():
    from humanclap.backbones import tiny_clap

    return tiny_clap()


@pytest.fixture(scope="session")
def tiny_fused_backbone():
    from humanclap.backbones import tiny_clap

    return tiny_clap(enable_fusion=True)


RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _composer(config_name: str, tmp_path: Path, paths: dict[str, str]):
    """Compose recipes/<config_name>.yaml as `python -m humanclap.<config_name> <overrides>` would."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(RECIPES)):
            cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # as in a real run: the job config does not carry the hydra node
            for key, relative in paths.items():
                cfg.paths[key] = str(tmp_path / relative)
        return cfg

    return _compose


@pytest.fixture
def compose_train(tmp_path):
    """Compose recipes/train.yaml, writing under tmp_path."""
    from hydra.core.global_hydra import GlobalHydra

    yield _composer("train", tmp_path, {"output_dir": "run", "export_dir": "export"})
    GlobalHydra.instance().clear()


@pytest.fixture
def compose_evaluate(tmp_path):
    """Compose recipes/evaluate.yaml, writing under tmp_path/evaluation."""
    from hydra.core.global_hydra import GlobalHydra

    yield _composer("evaluate", tmp_path, {"output_dir": "evaluation"})
    GlobalHydra.instance().clear()
