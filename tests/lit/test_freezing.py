"""Frozen towers stay fixed through training (issue 12, item 4): no gradients, eval mode (BatchNorm
statistics and dropout fixed), every parameter and buffer bit-identical; both towers frozen needs
``train_temperature_only``."""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
from fakes import tiny_training

from humanclap.backbones import tiny_clap
from humanclap.backbones.aggregation import with_transformer_heads
from humanclap.lit.datamodule import RatedPairDataModule
from humanclap.lit.module import FreezeConfigError, HumanClapModule

EPOCHS = 2


def _module(backbone=None, **kwargs) -> tuple[HumanClapModule, RatedPairDataModule]:
    return tiny_training(backbone, **kwargs)


class ModeRecorder(L.Callback):
    """Records, at every training batch, the modes (``training``) seen in each named group of modules."""

    def __init__(self, groups: dict[str, list[torch.nn.Module]]) -> None:
        self.groups = groups
        self.modes: dict[str, set[bool]] = {name: set() for name in groups}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for name, parts in self.groups.items():
            self.modes[name].update(module.training for part in parts for module in part.modules())


def _fit(module, data, *callbacks) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=list(callbacks),
    )
    trainer.fit(module, datamodule=data)
    return trainer


def _tensors(*parts: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (persistent or not) of ``parts``, cloned, by qualified name."""
    return {
        f"{index}.{name}": tensor.detach().clone()
        for index, part in enumerate(parts)
        for name, tensor in [*part.named_parameters(), *part.named_buffers()]
    }


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
    )


def _changed(before: dict[str, torch.Tensor], parts) -> list[str]:
    after = _tensors(*parts)
    assert after.keys() == before.keys()
    return [name for name in before if not _same_bits(before[name], after[name])]


@pytest.mark.parametrize("frozen, trained", [("audio", "text"), ("text", "audio")])
def test_a_frozen_tower_is_bit_identical_and_in_eval_mode_after_training(frozen, trained):
    module, data = _module(**{f"freeze_{frozen}": True})
    backbone = module.backbone
    frozen_parts, trained_parts = backbone.tower_modules(frozen), backbone.tower_modules(trained)
    before, trained_before = _tensors(*frozen_parts), _tensors(*trained_parts)
    modes = ModeRecorder({"frozen": frozen_parts, "trained": trained_parts})

    trainer = _fit(module, data, modes)

    assert (
        trainer.current_epoch == EPOCHS and trainer.global_step == EPOCHS * 4
    )  # 16 training pairs, batches of 4
    assert _changed(before, frozen_parts) == []
    assert len(_changed(trained_before, trained_parts)) > 0  # the other tower did train
    assert modes.modes == {"frozen": {False}, "trained": {True}}  # at every step, every submodule
    if frozen == "audio":  # the buffers that moved before the fix: the mel BatchNorm's statistics
        assert {
            "0.audio_encoder.batch_norm.running_mean",
            "0.audio_encoder.batch_norm.running_var",
            "0.audio_encoder.batch_norm.num_batches_tracked",
        } <= before.keys()


def test_train_keeps_frozen_towers_in_eval_and_unfreezing_releases_them():
    backbone = tiny_clap()
    backbone.freeze(audio=True)
    backbone.train()
    audio = [m.training for part in backbone.tower_modules("audio") for m in part.modules()]
    text = [m.training for part in backbone.tower_modules("text") for m in part.modules()]
    assert not any(audio) and all(text) and backbone.training
    assert backbone.frozen_towers == {"audio": True, "text": False}
    backbone.freeze()
    assert all(m.training for m in backbone.modules())
    backbone.eval()
    assert not any(m.training for m in backbone.modules())


@pytest.mark.parametrize("heads_frozen", [True, False])
def test_transformer_head_backbone_freezes_its_head_only_with_freeze_heads_with_towers(
    heads_frozen,
):
    backbone = with_transformer_heads(tiny_clap(), freeze_heads_with_towers=heads_frozen)
    module, data = _module(backbone, freeze_audio=True)
    encoder, head = backbone.model.audio_model, backbone.audio_head
    replaced = [
        backbone.model.audio_projection,
        backbone.model.text_projection,
        backbone.model.text_model.pooler,
    ]
    encoder_before, head_before, replaced_before = (
        _tensors(encoder),
        _tensors(head),
        _tensors(*replaced),
    )
    modes = ModeRecorder(
        {
            "encoder": [encoder],
            "head": [head],
            "replaced": replaced,
            "text": [backbone.model.text_model.encoder],
        }
    )

    _fit(module, data, modes)

    assert _changed(encoder_before, [encoder]) == [] and modes.modes["encoder"] == {False}
    assert _changed(replaced_before, replaced) == [] and modes.modes["replaced"] == {
        False
    }  # frozen: eval too
    assert modes.modes["text"] == {True}
    if heads_frozen:
        assert _changed(head_before, [head]) == [] and modes.modes["head"] == {False}
    else:  # the new head of a frozen encoder still learns, with dropout on
        assert len(_changed(head_before, [head])) > 0 and modes.modes["head"] == {True}


def test_freezing_both_towers_is_refused_naming_both_options():
    with pytest.raises(FreezeConfigError) as error:
        _module(freeze_audio=True, freeze_text=True)
    assert str(error.value) == (
        "freeze_audio=true and freeze_text=true freeze both towers: nothing to train but the temperature "
        "(logit scale). If that is meant, add train_temperature_only=true; otherwise set freeze_audio=false "
        "or freeze_text=false."
    )
    assert isinstance(
        error.value, ValueError
    )  # and a HumanClapError: the CLI prints it without a traceback


def test_both_towers_frozen_with_heads_needs_the_flag_too():
    backbone = with_transformer_heads(tiny_clap(), freeze_heads_with_towers=True)
    with pytest.raises(
        FreezeConfigError,
        match=r"freeze both towers with their heads \(model.freeze_heads_with_towers=true\)",
    ):
        _module(backbone, freeze_audio=True, freeze_text=True)
    # With trainable heads, frozen encoders are an ordinary setup: the heads train.
    module, _ = _module(with_transformer_heads(tiny_clap()), freeze_audio=True, freeze_text=True)
    assert {name.split(".")[1] for name, p in module.named_parameters() if p.requires_grad} == {
        "audio_head",
        "text_head",
        "model",
    }  # model = the temperature


def test_train_temperature_only_trains_the_logit_scale_alone_and_says_so(caplog):
    module, data = _module(freeze_audio=True, freeze_text=True, train_temperature_only=True)
    scale = "backbone.model.logit_scale_a"
    before = _tensors(module)
    with caplog.at_level(logging.INFO, logger="humanclap.lit.module"):
        trainer = _fit(module, data)
    assert _changed(before, [module]) == [f"0.{scale}"]
    assert [len(group["params"]) for group in trainer.optimizers[0].param_groups] == [1]
    messages = [r.getMessage() for r in caplog.records if r.name == "humanclap.lit.module"]
    assert messages == [
        "train_temperature_only=true: both towers are frozen, only the temperature (logit scale) "
        "is trained"
    ]


def test_train_temperature_only_with_a_trainable_tower_is_refused():
    with pytest.raises(
        FreezeConfigError,
        match=r"train_temperature_only=true, but \d+ parameter tensors besides "
        r"the temperature are trainable \(e.g. model.text_model",
    ):
        _module(freeze_audio=True, train_temperature_only=True)


def test_the_config_flag_reaches_the_module(compose_train):
    from humanclap.train import train

    assert compose_train().train_temperature_only is False
    with pytest.raises(FreezeConfigError, match="freeze_audio=true and freeze_text=true"):
        train(
            compose_train(
                "freeze_audio=true", "freeze_text=true", "logger=csv", "data.pairs.n_sounds=10"
            )
        )
