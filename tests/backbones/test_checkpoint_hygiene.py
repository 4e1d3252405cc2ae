"""Checkpoints of humanclap.train load under torch's weights_only: hyperparameters are plain containers."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from humanclap.backbones import tiny_clap
from humanclap.lit.module import HumanClapModule
from humanclap.losses import HumanClapLoss
from humanclap.train import train

PLAIN = (dict, list, tuple, str, int, float, bool, type(None))


def _plain_leaves(value, where="hyper_parameters"):
    """Paths of every value below ``value`` that is not a plain container or scalar."""
    if isinstance(value, dict):
        return [bad for k, v in value.items() for bad in _plain_leaves(v, f"{where}.{k}")]
    if isinstance(value, (list, tuple)):
        return [bad for i, v in enumerate(value) for bad in _plain_leaves(v, f"{where}[{i}]")]
    return [] if isinstance(value, PLAIN) else [f"{where}: {type(value).__name__}"]


def test_every_checkpoint_of_a_run_loads_with_weights_only(compose_train):
    cfg = compose_train(
        "logger=csv",
        "trainer.max_epochs=1",
        "probes=relevance",
        "data.pairs.n_sounds=16",
        "data.pairs.texts_per_sound=2",
        "data.batch_size=4",
    )
    train(cfg)

    paths = sorted((Path(cfg.paths.output_dir) / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in paths} == {"epoch000.ckpt", "last.ckpt"}
    for path in paths:
        checkpoint = torch.load(
            path, map_location="cpu", weights_only=True
        )  # torch's default since 2.6
        assert _plain_leaves(checkpoint["hyper_parameters"]) == []
        config = checkpoint["hyper_parameters"]["config"]
        assert config["loss"]["lambdas"] == {"wsce": 0.1, "mse": 0, "mae": 1}

        # Lightning's own load path, under weights_only: the objects that are not hyperparameters
        # (backbone, loss, optimizer factory) are rebuilt from the stored config.
        module = HumanClapModule.load_from_checkpoint(
            path,
            map_location="cpu",
            weights_only=True,
            backbone=instantiate(OmegaConf.create(config["model"])),
            loss=instantiate(OmegaConf.create(config["loss"])),
            optimizer=instantiate(OmegaConf.create(config["optimizer"])),
        )
        assert dict(module.hparams) == checkpoint["hyper_parameters"]
        for name, value in module.state_dict().items():
            torch.testing.assert_close(value, checkpoint["state_dict"][name], msg=name)


def test_a_dictconfig_is_stored_as_plain_containers(tmp_path):
    """A DictConfig in the checkpoint would need omegaconf's classes to unpickle: weights_only refuses it."""
    config = OmegaConf.create({"seed": 0, "loss": {"lambdas": {"wsce": 0.1}}, "lr": "${seed}"})
    broken = tmp_path / "dictconfig.ckpt"
    torch.save({"hyper_parameters": {"config": config}}, broken)
    with pytest.raises(pickle.UnpicklingError, match="DictConfig"):
        torch.load(broken, weights_only=True)

    module = HumanClapModule(
        tiny_clap(),
        HumanClapLoss({"wsce": 0.1, "mae": 1.0}),
        lambda p: torch.optim.AdamW(p, lr=1e-3),
        config=config,
    )
    assert module.hparams["config"] == {
        "seed": 0,
        "loss": {"lambdas": {"wsce": 0.1}},
        "lr": 0,
    }  # resolved
    assert _plain_leaves(dict(module.hparams)) == []
    plain = tmp_path / "plain.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams)}, plain)
    assert torch.load(plain, weights_only=True)["hyper_parameters"] == dict(module.hparams)
