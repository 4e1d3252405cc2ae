"""Training stages (CLaMP 3 §2.1, issue 17 item 4b): which parts train in which epochs. Parts'
requires_grad and modes at every epoch, frozen parts bit-identical during their frozen stage and
moving after, optimizer state (frozen: dropped; unfrozen later: fresh; kept across a switch),
resume from a checkpoint saved mid-stage equal to the uninterrupted run, the switches logged, no
stages = today's training, and clear errors for bad stage configs."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pytest
import torch
from fakes import tiny_training
from lightning.pytorch.callbacks import ModelCheckpoint

from humanclap.backbones import tiny_clap
from humanclap.backbones.aggregation import with_transformer_heads
from humanclap.lit.callbacks import RandomState
from humanclap.lit.stages import (
    PARTS,
    StageConfigError,
    TrainingStages,
    parse_stages,
    stage_index,
)

STEPS = 4  # per epoch: 16 training pairs (10 sounds x 2 texts, 20% held out), batches of 4


def stage(epochs, audio=True, text=True, projections=True, temperature=True) -> dict:
    return {
        "epochs": epochs,
        "audio": audio,
        "text": text,
        "projections": projections,
        "temperature": temperature,
    }


# Epoch 0: text and projections; epochs 1-2: audio, projections, temperature; epoch 3: everything.
STAGES = [
    stage(1, audio=False, temperature=False),
    stage(2, text=False),
    stage(None),
]
TRAINS = {  # epoch -> the parts that train in it
    0: {"text", "projections"},
    1: {"audio", "projections", "temperature"},
    2: {"audio", "projections", "temperature"},
    3: set(PARTS),
}


def _module(stages=STAGES, backbone=None, **kwargs):
    torch.manual_seed(0)
    return tiny_training(backbone, stages=stages, **kwargs)


def _trainer(max_epochs: int, *callbacks, checkpoints: Path | None = None) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=checkpoints is not None,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        deterministic=True,
        callbacks=[
            *callbacks,
            *(
                [
                    ModelCheckpoint(
                        dirpath=checkpoints,
                        filename="e{epoch}",
                        save_top_k=-1,
                        auto_insert_metric_name=False,
                    )
                ]
                if checkpoints
                else []
            ),
        ],
    )


def _tensors(backbone, part: str) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of a part, cloned."""
    if part == "temperature":
        return {"logit_scale": backbone.logit_scale.detach().clone()}
    return {
        f"{i}.{name}": t.detach().clone()
        for i, module in enumerate(backbone.part_modules(part))
        for name, t in [*module.named_parameters(), *module.named_buffers()]
    }


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Recorder(L.Callback):
    """Per epoch, at its first batch (after the stage callback ran): requires_grad and module modes
    of each part, the optimizer state held for each part; and every part's tensors at the first
    batch and at the end of the epoch."""

    def __init__(self) -> None:
        self.grad: dict[int, dict[str, set[bool]]] = {}
        self.modes: dict[int, dict[str, set[bool]]] = {}
        self.steps: dict[int, dict[str, set[int]]] = {}
        self.start: dict[int, dict[str, dict]] = {}
        self.end: dict[int, dict[str, dict]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx:
            return
        epoch, backbone = trainer.current_epoch, pl_module.backbone
        state = trainer.optimizers[0].state
        self.grad[epoch] = {
            p: {q.requires_grad for q in backbone.part_parameters(p)} for p in PARTS
        }
        self.modes[epoch] = {
            p: {m.training for module in backbone.part_modules(p) for m in module.modules()}
            for p in PARTS
        }
        self.steps[epoch] = {
            p: {int(state[q]["step"]) if q in state else 0 for q in backbone.part_parameters(p)}
            for p in PARTS
        }
        self.start[epoch] = {p: _tensors(backbone, p) for p in PARTS}

    def on_train_epoch_end(self, trainer, pl_module):
        self.end[trainer.current_epoch] = {p: _tensors(pl_module.backbone, p) for p in PARTS}


@pytest.fixture(scope="module")
def staged_run():
    module, data = _module()
    recorder = Recorder()
    trainer = _trainer(4, recorder)
    trainer.fit(module, datamodule=data)
    return module, trainer, recorder


def test_parts_train_and_freeze_at_the_stated_epochs(staged_run):
    _, trainer, recorder = staged_run
    assert trainer.current_epoch == 4 and trainer.global_step == 4 * STEPS
    for epoch, trains in TRAINS.items():
        for part in PARTS:
            assert recorder.grad[epoch][part] == {part in trains}, (epoch, part)
            if part != "temperature":  # a frozen part is in eval mode (BatchNorm, dropout fixed)
                assert recorder.modes[epoch][part] == {part in trains}, (epoch, part)


def test_frozen_parts_do_not_move_during_their_stage_and_move_after(staged_run):
    _, _, recorder = staged_run
    for epoch, trains in TRAINS.items():
        for part in PARTS:
            unchanged = _same(recorder.start[epoch][part], recorder.end[epoch][part])
            assert unchanged == (part not in trains), (epoch, part)
    # Across the switches: a part frozen in a stage starts the next epoch where it stopped.
    assert _same(recorder.end[0]["audio"], recorder.start[1]["audio"])
    assert _same(recorder.end[2]["text"], recorder.start[3]["text"])


def test_optimizer_state_fresh_when_unfrozen_kept_across_a_switch(staged_run):
    module, trainer, recorder = staged_run
    # The optimizer holds every part some stage trains, from the start (not logit_scale_t).
    (group,) = trainer.optimizers[0].param_groups
    assert len(group["params"]) == sum(1 for p in module.backbone.parameters()) - 1
    steps = recorder.steps  # AdamW's step count per part at the first batch of each epoch
    assert steps[0] == {part: {0} for part in PARTS}  # nothing has trained yet
    # Epoch 1: audio and temperature unfrozen -> no state yet; text frozen -> its state dropped;
    # projections kept training -> 4 steps.
    assert steps[1] == {"audio": {0}, "text": {0}, "projections": {4}, "temperature": {0}}
    assert steps[2] == {"audio": {4}, "text": {0}, "projections": {8}, "temperature": {4}}
    # Epoch 3: text unfrozen -> fresh (its 4 steps of epoch 0 are gone); the others continue.
    assert steps[3] == {"audio": {8}, "text": {0}, "projections": {12}, "temperature": {8}}


def test_the_switches_are_logged(caplog):
    module, data = _module(stages=[stage(1, audio=False), stage(1)])
    with caplog.at_level(logging.INFO, logger="humanclap.lit.stages"):
        _trainer(2).fit(module, datamodule=data)
    assert [r.getMessage() for r in caplog.records if r.name == "humanclap.lit.stages"] == [
        "epoch 0: starting with stage 1/2 (epochs 0-0): trains text, projections, temperature; "
        "frozen: audio",
        "epoch 1: starting stage 2/2 (epochs 1-1): trains audio, text, projections, temperature; "
        "frozen: nothing",
    ]


def test_resume_from_a_checkpoint_saved_mid_stage_equals_the_uninterrupted_run(
    staged_run, tmp_path
):
    """Stopped after epoch 1, the first epoch of stage 2 (epochs 1-2), and resumed: epoch 2 is
    still stage 2 (text frozen, audio's optimizer state restored, not reset), and the weights
    after epoch 3 equal the uninterrupted run's."""
    uninterrupted, _, _ = staged_run

    class StopAfterEpoch1(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                trainer.should_stop = True

    module, data = _module()
    _trainer(4, RandomState(), StopAfterEpoch1(), checkpoints=tmp_path).fit(module, datamodule=data)
    checkpoint = tmp_path / "e1.ckpt"
    assert checkpoint.is_file() and not (tmp_path / "e2.ckpt").exists()

    resumed, data = _module()
    recorder = Recorder()
    trainer = _trainer(4, RandomState(), recorder)
    trainer.fit(resumed, datamodule=data, ckpt_path=checkpoint, weights_only=True)
    assert sorted(recorder.grad) == [2, 3]
    assert recorder.grad[2] == {p: {p in TRAINS[2]} for p in PARTS}
    assert recorder.steps[2] == {"audio": {4}, "text": {0}, "projections": {8}, "temperature": {4}}
    assert recorder.steps[3]["text"] == {0}  # unfrozen at epoch 3: fresh, as uninterrupted
    assert _same(recorder.start[2]["text"], recorder.end[2]["text"])
    expected = uninterrupted.backbone.state_dict()
    got = resumed.backbone.state_dict()
    assert got.keys() == expected.keys()
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []


def test_no_stages_is_the_training_of_before():
    """stages=None: no stage callback, the optimizer gets the trainable parameters as before, the
    hyperparameters are unchanged; one all-parts stage trains bit-identically to no stages."""
    plain, data = _module(stages=None)
    assert [type(c).__name__ for c in plain.configure_callbacks()] == ["FiniteGuard"]
    assert "stages" not in plain.hparams and plain.stages == ()
    staged, staged_data = _module(stages=[stage(None)])
    assert [type(c) for c in staged.configure_callbacks()][1] is TrainingStages
    for module, datamodule in ((plain, data), (staged, staged_data)):
        torch.manual_seed(1)  # the same shuffle and dropout for both
        _trainer(1).fit(module, datamodule=datamodule)
    a, b = plain.backbone.state_dict(), staged.backbone.state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_transformer_heads_are_the_projections_and_replaced_layers_stay_frozen():
    backbone = with_transformer_heads(tiny_clap())
    backbone.train_parts(audio=True, text=True, projections=False, temperature=True)
    backbone.train()
    assert not any(p.requires_grad for p in backbone.audio_head.parameters())
    assert not backbone.text_head.training and backbone.model.audio_model.training
    replaced = [backbone.model.audio_projection, backbone.model.text_projection]
    replaced.append(backbone.model.text_model.pooler)
    assert not any(p.requires_grad for layer in replaced for p in layer.parameters())
    backbone.train_parts(audio=False, text=True, projections=True, temperature=False)
    assert all(p.requires_grad for p in backbone.text_head.parameters())
    assert not any(p.requires_grad for layer in replaced for p in layer.parameters())
    assert not backbone.model.audio_model.training and not backbone.logit_scale.requires_grad


def test_the_stage_follows_the_epoch():
    stages = parse_stages(STAGES, max_epochs=6)
    assert [stage_index(stages, epoch) for epoch in range(6)] == [0, 1, 1, 2, 2, 2]
    assert [s.first_epoch for s in stages] == [0, 1, 3]
    fixed = parse_stages([stage(2), stage(1, text=False)], max_epochs=3)
    with pytest.raises(StageConfigError, match="epoch 3 is after the last stage"):
        stage_index(fixed, 3)


@pytest.mark.parametrize(
    "stages, max_epochs, message",
    [
        (
            [stage(2) | {"projection": True}],
            2,
            r"stages\[0\]: unknown key 'projection' \(did you "
            r"mean 'projections'\?\); a stage has epochs and the parts audio, text, projections, "
            r"temperature, each true or false",
        ),
        ([stage(0)], 2, r"stages\[0\]: epochs must be >= 1, got 0"),
        ([stage(1.5)], 2, r"stages\[0\]: epochs must be an integer >= 1, got 1.5"),
        (
            [stage(None), stage(1)],
            2,
            r"stages\[0\]: epochs: null \(to the end of the run\) is "
            r"for the last stage only",
        ),
        ([{"epochs": 2, "audio": True}], 2, r"stages\[0\]: say whether 'text' trains"),
        ([stage(2) | {"text": "no"}], 2, r"stages\[0\]: text must be true or false, got 'no'"),
        ([stage(2, False, False, False, False)], 2, r"stages\[0\] trains nothing"),
        (
            [stage(2), stage(2)],
            5,
            r"the stages last 4 epochs in all but trainer.max_epochs=5: "
            r"make them add up \(e.g. trainer.max_epochs=4\), or give the last stage epochs: null",
        ),
        (
            [stage(3), stage(None)],
            3,
            r"the stages before the last take 3 epochs, so "
            r"trainer.max_epochs=3 leaves none for the last one",
        ),
        ([stage(3)], -1, r"trainer.max_epochs is unbounded"),
        ([], 2, r"stages is an empty list"),
        ({"epochs": 2}, 2, r"stages must be a list of stages"),
    ],
)
def test_bad_stage_configs_are_refused_clearly(stages, max_epochs, message):
    with pytest.raises(StageConfigError, match=message):
        parse_stages(stages, max_epochs)


def test_stages_are_refused_under_ddp():
    from types import SimpleNamespace

    module, _ = _module()
    module._trainer = SimpleNamespace(world_size=2)  # what setup() reads of a DDP trainer
    with pytest.raises(StageConfigError, match=r"not supported with several processes yet"):
        module.setup("fit")
    plain, _ = _module(stages=None)
    plain._trainer = SimpleNamespace(world_size=1)
    plain.setup("fit")  # one process: nothing to refuse


def test_stages_exclude_the_freeze_flags_and_a_mismatch_stops_the_fit():
    with pytest.raises(
        StageConfigError, match=r"so freeze_audio=true cannot be combined with them"
    ):
        _module(freeze_audio=True)
    module, data = _module(stages=[stage(1), stage(1, text=False)])
    with pytest.raises(StageConfigError, match=r"last 2 epochs in all but trainer.max_epochs=3"):
        _trainer(3).fit(module, datamodule=data)


def test_the_config_reaches_the_run(compose_train, caplog):
    """stages=clamp3 composes with the tiny model's 8 epochs; a bad value stops train() before
    the model is built; a 2-epoch staged run logs its switch and train/stage."""
    from humanclap.train import train

    cfg = compose_train("stages=clamp3")
    stages = parse_stages(list(cfg.stages), cfg.trainer.max_epochs)
    assert [(s.epochs, s.trained) for s in stages] == [
        (4, ("audio", "temperature")),
        (None, PARTS),
    ]
    assert compose_train().stages is None
    with pytest.raises(StageConfigError, match=r"stages\[0\]: unknown key 'towers'"):
        train(compose_train("stages=clamp3", "+stages.0.towers=true"))
    cfg = compose_train(
        "stages=clamp3",
        "stages.0.epochs=1",
        "trainer.max_epochs=2",
        "probes=[relevance]",
        "data.pairs.n_sounds=10",
        "data.pairs.texts_per_sound=2",
        "data.batch_size=4",
        "logger=csv",
    )
    with caplog.at_level(logging.INFO, logger="humanclap.lit.stages"):
        train(cfg)
    assert [r.getMessage() for r in caplog.records if r.name == "humanclap.lit.stages"] == [
        "epoch 0: starting with stage 1/2 (epochs 0-0): trains audio, temperature; frozen: text, "
        "projections",
        "epoch 1: starting stage 2/2 (epochs 1-the end): trains audio, text, projections, "
        "temperature; frozen: nothing",
    ]
    rows = next((Path(cfg.paths.output_dir) / "csv").rglob("metrics.csv")).read_text()
    assert "train/stage" in rows.splitlines()[0]


def test_a_stages_list_on_the_command_line_says_how_to_give_one(tmp_path):
    """``stages=[...]`` would end in Hydra's TypeError (``stages`` is a preset group): one sentence
    instead, whose command works as printed with the preset file it describes."""
    import subprocess
    import sys

    from cli import _env

    def train(*args):
        return subprocess.run([sys.executable, "-m", "humanclap.train", *args], cwd=tmp_path,
                              env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip

    refused = train("stages=[{epochs: null, audio: false}]")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    command = "'hydra.searchpath=[file://my_configs]' stages=mine"
    assert f"run: python -m humanclap.train {command}" in refused.stderr
    preset = tmp_path / "my_configs" / "stages" / "mine.yaml"
    preset.parent.mkdir(parents=True)
    preset.write_text(
        "# @package _global_\n"
        "stages:\n"
        "  - {epochs: null, audio: false, text: true, projections: true, temperature: true}\n"
    )
    composed = train("hydra.searchpath=[file://my_configs]", "stages=mine", "--cfg", "job")
    assert composed.returncode == 0, composed.stderr[-2000:]
    assert "stages:\n- epochs: null\n  audio: false\n" in composed.stdout
