"""End to end: the training entry point fits, logs probes, exports a loadable ClapModel directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from transformers import ClapModel

from humanclap.backbones import from_pretrained, tiny_clap
from humanclap.data.synthetic.sounds import synthetic_pairs
from humanclap.lit.datamodule import RatedPairDataModule
from humanclap.lit.module import HumanClapModule
from humanclap.losses import HumanClapLoss
from humanclap.train import train

REPO = Path(__file__).resolve().parents[2]
SMALL_DATA = ["data.pairs.n_sounds=16", "data.pairs.texts_per_sound=2", "data.batch_size=4"]


def test_train_exports_the_best_checkpoint(compose_train):
    cfg = compose_train("logger=csv", "trainer.max_epochs=2", *SMALL_DATA)
    summary = train(cfg)

    export = Path(cfg.paths.export_dir)
    record = json.loads((export / "humanclap_run.json").read_text())
    assert record["summary"] == summary
    epochs = [epoch for epoch, _ in record["history"]]
    assert epochs == [-1, 0, 1]  # baseline, then every validation epoch
    srcc = {epoch: metrics["relevance/srcc"] for epoch, metrics in record["history"]}
    assert summary["baseline"] == srcc[-1]
    # gain and objective: the exported epoch's; the last epoch keeps its own keys
    assert summary["exported"] == summary["objective"] == srcc[summary["exported_epoch"]]
    assert math.isclose(summary["gain"], summary["exported"] - summary["baseline"])
    assert summary["last_epoch"] == 1 and summary["last"] == srcc[1]
    assert math.isclose(summary["last_gain"], summary["last"] - summary["baseline"])

    # The export is a plain transformers directory holding the lowest-val/loss weights.
    best = Path(cfg.paths.output_dir) / "checkpoints"
    checkpoints = {
        int(torch.load(p, weights_only=True)["epoch"]): p for p in best.glob("epoch*.ckpt")
    }
    assert list(checkpoints) == [
        summary["exported_epoch"]
    ]  # the one lowest-val/loss checkpoint kept
    state = torch.load(
        checkpoints[summary["exported_epoch"]], map_location="cpu", weights_only=True
    )
    assert isinstance(state["hyper_parameters"]["config"], dict)  # plain containers only
    exported = ClapModel.from_pretrained(export)
    for name, value in exported.state_dict().items():
        torch.testing.assert_close(value, state["state_dict"][f"backbone.model.{name}"], msg=name)
    reloaded = from_pretrained(str(export))
    assert reloaded.embed_text(["a bright sound"]).shape == (1, 32)
    card = (export / "README.md").read_text()  # the model card: what the export is, how to load it
    assert f"| exported epoch | {summary['exported_epoch']} (lowest val/loss) |" in card
    assert (
        f"| `relevance/srcc` | {summary['exported']:.3f} (untrained baseline {summary['baseline']:.3f}, "
        in card
    )
    assert f'model = ClapModel.from_pretrained("{export}")' in card


def _module(**kwargs) -> tuple[HumanClapModule, RatedPairDataModule]:
    backbone = tiny_clap()
    data = RatedPairDataModule(
        synthetic_pairs(n_sounds=10, texts_per_sound=2), backbone.featurizer, batch_size=4
    )
    loss = HumanClapLoss({"wsce": 0.1, "mae": 1.0})
    module = HumanClapModule(backbone, loss, lambda p: torch.optim.AdamW(p, lr=1e-3), **kwargs)
    return module, data


def _fit(module, data, steps=2):
    trainer = L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accelerator="cpu",
    )
    trainer.fit(module, datamodule=data)


def test_logit_scale_is_clamped_after_each_step():
    module, data = _module()
    with torch.no_grad():
        module.backbone.model.logit_scale_a.fill_(10.0)
        module.backbone.model.logit_scale_t.fill_(-3.0)
    _fit(module, data)
    assert module.backbone.model.logit_scale_a.item() <= math.log(100) + 1e-6
    assert module.backbone.model.logit_scale_t.item() >= 0.0


def test_frozen_audio_tower_does_not_move():
    module, data = _module(freeze_audio=True)
    before = {k: v.clone() for k, v in module.backbone.model.audio_model.state_dict().items()}
    text_before = module.backbone.model.text_projection.linear1.weight.clone()
    _fit(module, data)
    for name, value in module.backbone.model.audio_model.state_dict().items():
        assert torch.equal(value, before[name]), (
            name
        )  # BatchNorm statistics included: the tower stays in eval
    assert not torch.equal(module.backbone.model.text_projection.linear1.weight, text_before)


@pytest.mark.slow
def test_precision_shortcut_sets_the_trainer_precision(compose_train):
    """`precision=...` (null by default) overrides the trainer config's precision: `trainer=gpu
    precision=bf16-mixed` composes, and a 64-true CPU run trains and checkpoints in float64."""
    assert compose_train("trainer=gpu", "precision=bf16-mixed").precision == "bf16-mixed"
    assert compose_train().precision is None  # the trainer config decides (cpu: 32-true)
    cfg = compose_train(
        "precision=64-true",
        "trainer.max_epochs=1",
        "data.pairs.n_sounds=20",
        "probes=relevance",
        "logger=csv",
    )
    train(cfg)
    last = torch.load(
        Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt",
        map_location="cpu",
        weights_only=True,
    )
    assert (
        last["state_dict"]["backbone.model.audio_projection.linear1.weight"].dtype == torch.float64
    )
