"""Non-finite training stops at once and nothing non-finite is exported or scored (issue 12, item 2):
``FiniteGuard`` (loss, gradients, parameters), ``export_best``'s refusal and ``EmbeddingCache``'s."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fakes import MemoryStore, PoisonedLoss, VectorEmbedder, unit
from omegaconf import OmegaConf

from humanclap.backbones import tiny_clap
from humanclap.data.pairs import RatedPair, RatedPairs
from humanclap.data.synthetic.sounds import synthetic_pairs
from humanclap.errors import HumanClapError, NonFiniteError
from humanclap.lit.datamodule import RatedPairDataModule
from humanclap.lit.finite_guard import FiniteGuard, TrainingDivergedError, group_norms
from humanclap.lit.module import HumanClapModule
from humanclap.losses import HumanClapLoss
from humanclap.probes.cache import EmbeddingCache
from humanclap.probes.relevance.probe import RelevanceProbe
from humanclap.runs.export import export_best

REPO = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 4  # 16 training pairs, batches of 4
TEXT_WEIGHT = "backbone.model.text_projection.linear1.weight"


def _module(loss=None, optimizer=None, **kwargs) -> tuple[HumanClapModule, RatedPairDataModule]:
    backbone = tiny_clap()
    data = RatedPairDataModule(
        synthetic_pairs(n_sounds=10, texts_per_sound=2), backbone.featurizer, batch_size=4
    )
    module = HumanClapModule(
        backbone,
        loss or HumanClapLoss({"wsce": 0.1, "mae": 1.0}),
        optimizer or (lambda p: torch.optim.AdamW(p, lr=1e-3)),
        **kwargs,
    )
    return module, data


def _trainer(*callbacks, **kwargs) -> L.Trainer:
    options = dict(
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accelerator="cpu",
    )
    return L.Trainer(callbacks=list(callbacks), **{**options, **kwargs})


def _diverge(module, data, *callbacks, **kwargs) -> tuple[TrainingDivergedError, L.Trainer]:
    trainer = _trainer(*callbacks, **kwargs)
    with pytest.raises(TrainingDivergedError) as error:
        trainer.fit(module, datamodule=data)
    return error.value, trainer


def test_group_norms_is_one_2_norm_per_device_and_dtype():
    norms = group_norms(
        [
            torch.ones(3),
            torch.full((2, 2), 2.0, dtype=torch.float64),
            torch.full((4,), 2.0),
            torch.full((1000,), 60_000.0, dtype=torch.float16),
        ]
    )
    assert [n.dtype for n in norms] == [
        torch.float32,
        torch.float64,
        torch.float32,
    ]  # float16 sums in float32
    assert [float(n) for n in norms] == pytest.approx(
        [math.sqrt(3 + 16), 4.0, 60_000 * math.sqrt(1000)]
    )
    assert math.isnan(float(group_norms([torch.ones(2), torch.tensor([1.0, math.nan])])[0]))
    assert float(group_norms([torch.tensor([-math.inf], dtype=torch.bfloat16)])[0]) == math.inf
    assert group_norms([]) == []


def _fake_trainer(step: int) -> SimpleNamespace:
    return SimpleNamespace(
        global_step=step,
        current_epoch=0,
        precision="32-true",
        precision_plugin=None,
        optimizers=[],
        world_size=1,
        global_rank=0,
        strategy=SimpleNamespace(all_gather=lambda t: t, root_device=torch.device("cpu")),
    )


def test_a_norm_that_overflows_on_finite_values_does_not_stop_training():
    model = torch.nn.Module()
    model.huge = torch.nn.Parameter(torch.full((4,), 3e38))
    model.huge.grad = torch.full((4,), 3e38)
    optimizer = torch.optim.SGD([model.huge], lr=0.0)
    assert group_norms([model.huge])[0] == math.inf  # the per-step check alone would stop here
    guard, trainer = FiniteGuard(), _fake_trainer(step=7)
    guard.on_train_batch_start(trainer, model, None, 0)
    guard.on_before_optimizer_step(trainer, model, optimizer)
    guard.on_train_batch_end(
        trainer, model, {"loss": torch.tensor(0.5)}, {}, 0
    )  # confirmed finite: no error

    model.huge.data[2] = math.nan
    with pytest.raises(
        TrainingDivergedError,
        match=r"^training diverged at global step 7 \(epoch 0, batch 0\): "
        r"after the optimizer step 1 of 1 trained parameter tensors are "
        r"non-finite \(e.g. huge\)",
    ):
        guard.on_train_batch_end(trainer, model, {"loss": torch.tensor(0.5)}, {}, 0)


def test_overflowing_gradients_are_left_to_a_grad_scaler():
    """16-mixed on a GPU: the GradScaler skips steps with inf gradients and lowers its scale."""
    model = torch.nn.Module()
    model.weight = torch.nn.Parameter(torch.ones(3))
    model.weight.grad = torch.tensor([1.0, math.inf, 1.0])
    optimizer = torch.optim.SGD([model.weight], lr=0.0)
    guard, trainer = FiniteGuard(), _fake_trainer(step=3)
    for plugin in (SimpleNamespace(scaler=object()), None):
        trainer.precision_plugin = plugin
        guard.on_train_batch_start(trainer, model, None, 0)
        guard.on_before_optimizer_step(trainer, model, optimizer)
        if plugin is not None:
            guard.on_train_batch_end(trainer, model, {"loss": torch.tensor(0.5)}, {}, 0)  # no error
    with pytest.raises(
        TrainingDivergedError,
        match=r"at global step 3 \(epoch 0, batch 0\): the gradient norm is "
        r"inf \(1 of 1 gradient tensors non-finite, e.g. weight\)\.",
    ):
        guard.on_train_batch_end(trainer, model, {"loss": torch.tensor(0.5)}, {}, 0)


def test_a_nan_loss_stops_training_at_its_step_naming_the_term():
    module, data = _module(
        loss=PoisonedLoss(HumanClapLoss({"wsce": 0.1, "mae": 1.0}), at_call=6, terms=("mse",))
    )
    error, trainer = _diverge(module, data)
    assert (error.step, error.epoch) == (6, 1)
    assert trainer.global_step == 7  # the poisoned step itself, then nothing more
    assert str(error) == (
        "training diverged at global step 6 (epoch 1, batch 2): the loss is nan (non-finite terms: MSE=nan). "
        "Likely cause: the learning rate is too high (optimizer.lr=0.001); lower it (the paper fine-tunes CLAP "
        "at 1e-5, the tiny model trains at 1e-3). If it is not that, check the data (scores, audio) and the "
        "precision (precision=32-true). Training stopped and nothing was exported."
    )
    assert isinstance(
        error, HumanClapError
    )  # the command line prints it as "error: ..." and exits 1


def test_a_nonfinite_gradient_is_caught_before_clipping_and_named():
    module, data = _module()
    backward_calls = []

    def inf_at_the_third_backward(grad):
        backward_calls.append(1)
        return grad + math.inf if len(backward_calls) == 3 else grad

    module.backbone.model.text_projection.linear1.weight.register_hook(inf_at_the_third_backward)
    # Clipping would turn an inf gradient into zeros and NaNs: the check runs before it.
    error, trainer = _diverge(module, data, gradient_clip_val=1.0)
    assert error.step == 2 and trainer.global_step == 3
    message = str(error)
    assert message.startswith(
        f"training diverged at global step 2 (epoch 0, batch 2): the gradient norm is inf "
        f"(1 of 93 gradient tensors non-finite, e.g. {TEXT_WEIGHT}); after the optimizer "
        f"step "
    )
    assert "the loss is" not in message  # the loss of that step was finite


class BreaksAParameter(torch.optim.AdamW):
    """AdamW that writes inf into one parameter at its ``at_step``-th step (0-based)."""

    def __init__(self, params, at_step: int, lr: float = 1e-3) -> None:
        super().__init__(params, lr=lr)
        self.at_step, self.steps = at_step, 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        if self.steps == self.at_step:
            self.param_groups[0]["params"][-1].fill_(math.inf)
        self.steps += 1
        return loss


def test_a_parameter_made_nonfinite_by_the_step_is_caught_after_it():
    module, data = _module(optimizer=lambda p: BreaksAParameter(p, at_step=5, lr=3e-4))
    last = [name for name, p in module.named_parameters() if p.requires_grad][-1]
    error, trainer = _diverge(module, data)
    assert error.step == 5 and trainer.global_step == 6
    assert str(error).startswith(
        f"training diverged at global step 5 (epoch 1, batch 1): after the optimizer step 1 of 93 trained "
        f"parameter tensors are non-finite (e.g. {last}). Likely cause: the learning rate is too high "
        f"(optimizer.lr=0.0003)"
    )


class PoisonAudio(L.Callback):
    """Puts a NaN into the audio features of batch ``at_batch`` (the batch training_step receives)."""

    def __init__(self, at_batch: int) -> None:
        self.at_batch = at_batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_batch:
            batch["audio"]["input_features"][0, 0, 0, 0] = math.nan


def test_nonfinite_inputs_are_named_as_the_likely_cause():
    module, data = _module()
    error, _ = _diverge(module, data, PoisonAudio(at_batch=2))
    assert error.step == 2
    assert "the loss is nan (non-finite terms: wSCE=nan, MSE=nan, MAE=nan)" in str(error)
    assert (
        "Likely cause: the data: the batch has non-finite values in audio.input_features; check the scores "
        "and audio of this batch."
    ) in str(error)


def test_a_model_broken_before_any_update_is_not_blamed_on_the_learning_rate():
    module, data = _module()
    with torch.no_grad():
        module.backbone.model.audio_projection.linear1.weight[0, 0] = math.nan
    error, _ = _diverge(module, data)
    assert error.step == 0
    assert (
        "Likely cause: the model or the data, not the learning rate: the first step is non-finite before any "
        "update; check the checkpoint (model=...), the scores and the precision (precision=32-true)."
    ) in str(error)


def test_float16_precision_is_named_as_the_likely_cause():
    trainer = SimpleNamespace(
        precision="16-mixed",
        optimizers=[SimpleNamespace(param_groups=[{"lr": 1e-4}])],
        strategy=SimpleNamespace(all_gather=lambda t: t, root_device=torch.device("cpu")),
        world_size=1,
        global_rank=0,
    )
    cause = FiniteGuard._likely_cause(
        trainer, {"score": torch.ones(2)}, first_step=False, before_update=True
    )
    assert cause == (
        "numerical precision: precision=16-mixed overflows float16; use precision=bf16-mixed or "
        "precision=32-true (or lower optimizer.lr=0.0001)"
    )


@pytest.mark.parametrize("precision", ["64-true", "bf16-mixed", "bf16-true"])
def test_finite_runs_pass_the_guard_in_every_precision(precision):
    module, data = _module()
    trainer = _trainer(max_epochs=1, precision=precision)
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == STEPS_PER_EPOCH
    assert (
        sum(isinstance(c, FiniteGuard) for c in trainer.callbacks) == 1
    )  # added by the module, once
    dtype = {"64-true": torch.float64, "bf16-mixed": torch.float32, "bf16-true": torch.bfloat16}[
        precision
    ]
    assert module.backbone.model.audio_projection.linear1.weight.dtype == dtype


def test_export_refuses_a_checkpoint_with_nonfinite_tensors(tmp_path):
    module, _ = _module()
    state = {name: value.clone() for name, value in module.state_dict().items()}
    state["backbone.model.text_projection.linear2.bias"][3] = math.inf
    state["backbone.model.logit_scale_a"].fill_(math.nan)
    path = tmp_path / "epoch000.ckpt"
    torch.save({"state_dict": state}, path)
    floating = sum(value.is_floating_point() for value in state.values())
    export = tmp_path / "export"
    with pytest.raises(NonFiniteError) as error:
        export_best(SimpleNamespace(best_model_path=str(path), last_model_path=""), module, export)
    assert str(error.value) == (
        f"refusing to export {path}: 2 of {floating} tensors hold NaN or inf (e.g. backbone.model.logit_scale_a, "
        f"backbone.model.text_projection.linear2.bias), so the run diverged; lower optimizer.lr or check the "
        f"data and the precision, then train again. Nothing was written to {export}."
    )
    assert not export.exists()


def test_probes_report_nonfinite_embeddings_not_constant_scores():
    store = MemoryStore(["a", "b", "c"])
    embedder = VectorEmbedder(
        store,
        {"a": unit(0), "b": [math.nan, math.nan], "c": unit(90)},
        {"x": unit(10), "y": unit(80)},
    )
    pairs = RatedPairs(
        [
            RatedPair(audio=a, text=t, score=s, group="g")
            for a, t, s in [("a", "x", 0.9), ("b", "y", 0.2), ("c", "y", 0.7)]
        ],
        store,
        name="toy",
    )
    with pytest.raises(NonFiniteError) as error:
        RelevanceProbe(pairs).run(EmbeddingCache(embedder))
    assert str(error.value) == (
        "model 'VectorEmbedder' gives non-finite embeddings (NaN or inf) for 1 of 3 audio inputs (e.g. clip 'b'), "
        "so no probe can score it. Its weights are probably broken (a diverged training run?), or the precision "
        "overflows, or those inputs hold NaN."
    )
    embedder.text_vectors["y"] = [math.inf, 0.0]
    with pytest.raises(NonFiniteError, match=r"for 1 of 2 text inputs \(e.g. 'y'\)"):
        EmbeddingCache(embedder).text(["x", "y"])


# -- the command line and DDP ----------------------------------------------------------------------


def _exported_files(export: Path) -> list[str]:
    """What an export wrote (config.json, model.safetensors, ...); hidden files such as a run lock aside."""
    return sorted(p.name for p in export.glob("*") if not p.name.startswith("."))


def _run_failing_train(
    tmp_path: Path, *overrides: str, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``python -m humanclap.train`` on tiny data (as tests/cli.py ``run_train``), expected to fail."""
    from cli import TINY

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "HUMANCLAP_CACHE": os.environ["HUMANCLAP_CACHE"],
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "humanclap.train",
            *TINY,
            *overrides,
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.export_dir={tmp_path / 'export'}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.mark.slow
def test_cli_a_diverging_run_exits_1_with_the_step_and_exports_nothing(tmp_path):
    result = _run_failing_train(tmp_path, "optimizer.lr=1e6")
    assert (
        "\nerror: training diverged at global step 1 (epoch 0, batch 1): the loss is nan (non-finite terms: "
        "wSCE=nan, MSE=nan, MAE=nan); the gradient norm is nan"
    ) in result.stderr
    assert "Likely cause: the learning rate is too high (optimizer.lr=1e+06)" in result.stderr
    assert "Traceback" not in result.stderr
    assert _exported_files(tmp_path / "export") == []


class PoisonRankOne(L.Callback):
    """NaN audio features in rank 1's batch at global step 1 only."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.global_step == 1:
            batch["audio"]["input_features"][0, 0, 0, 0] = math.nan


def poisoning_trainer(**kwargs) -> L.Trainer:
    """``trainer._target_`` for the DDP test (spawned ranks import this module by name)."""
    return L.Trainer(callbacks=[*kwargs.pop("callbacks", []), PoisonRankOne()], **kwargs)


def _rank(rank: int, world: int, port: int, config: dict, out: str) -> None:
    from lightning.pytorch.utilities import rank_zero_only

    from humanclap.train import train

    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        NODE_RANK="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    rank_zero_only.rank = (
        rank  # torchrun sets RANK before Lightning is imported; here it came first
    )
    torch.set_num_threads(1)
    try:
        train(OmegaConf.create(config))
        outcome = {"step": None, "message": "finished"}
    except TrainingDivergedError as error:
        outcome = {"step": error.step, "message": str(error)}
    torch.save(outcome, Path(out) / f"rank{rank}.pt")
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_ranks_stop_together_when_one_rank_has_a_bad_batch(compose_train, tmp_path):
    """Rank 1's NaN input reaches rank 0 through the gathered embeddings (and GlobalBatchNorm): both
    ranks stop at the same step, blame rank 1's data, and neither hangs."""
    cfg = compose_train(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "probes=[]",
        "logger=csv",
        "trainer.max_epochs=1",
        "data.pairs.n_sounds=16",
        "data.pairs.texts_per_sound=2",
        "data.batch_size=2",
        "++trainer.enable_progress_bar=false",
        "trainer._target_=test_finite_guard.poisoning_trainer",
    )
    config = OmegaConf.to_container(cfg, resolve=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_rank, args=(2, port, config, str(tmp_path)), nprocs=2, join=True)
    outcomes = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [o["step"] for o in outcomes] == [1, 1]
    assert (
        "Likely cause: the data: the batch of rank 1 has non-finite values"
        in outcomes[0]["message"]
    )
    assert (
        "Likely cause: the data: the batch on rank 1 has non-finite values in audio.input_features"
        in outcomes[1]["message"]
    )
    assert _exported_files(Path(cfg.paths.export_dir)) == []
