"""A 2-process DDP training run equals a 1-process run on the same global batches (issue 7).

Both runs go through ``humanclap.train.train`` as a user's run does. The 2-process one is
``trainer=ddp trainer.accelerator=cpu trainer.devices=2`` (gloo) with its ranks started from
outside, as torchrun or Slurm start them, each with the job's composed config. The data are uneven
on purpose: 27 training pairs and 9 validation pairs, so Lightning's distributed sampler pads both
(to 28 and 10: one pair twice) and the last training batch of each epoch is short. The 1-process
run replays the global batches the ranks trained and validated on (``tests/ddp_harness.py``: rank
0's k-th batch then rank 1's; per-rank batch 4, global batch 8; padding duplicates included, so
``val/*`` here are those of the padded 10 rows) and must give, to 1e-5: the loss of every step, the
gradients the optimizer applies at every step, the final weights and BatchNorm statistics, the
logged ``train/*`` and ``val/*`` values, and every metric of every probe configured (relevance,
retrieval, bat, clause_swap, as_then_swap, text_sensitivity, timbre_correlation, timbre_trend,
zero_shot_instruments) at the baseline and after each epoch. Probes read their own inputs, so they
measure the 9 validation pairs exactly once, not the padded 10.

Dropout is switched off in both runs: its masks are drawn per process, so no two process layouts
can draw the same ones. The optimizer is plain SGD (weight decay as the recipe's): AdamW steps by
lr * g / (sqrt(v) + 1e-8), so for a weight whose gradient is ~1e-9 the step is ~lr/4 and rounding
that changes the tiny gradient by a few % (seen here: 3.8e-9 vs 3.6e-9 after summing in another
order) moves the weight by 1e-5. Weights after AdamW steps are that sensitive to *any* change of
summation order; the gradients, which are what DDP must get right, are compared at every step, and
SGD keeps the weights a linear image of them.

Both runs train in float64 (``precision=64-true``): in float32 the two layouts' sums differ by ~1e-7,
and thresholded metrics amplify that into jumps (``text_sensitivity/*/unchanged`` counts cosines
>= 1 - 1e-6, which the random tiny text tower sits right at: 0.75 vs 1.0 seen here). Sharding,
gathering and padding are what this test checks, and float64 leaves nothing else to differ.
"""

from __future__ import annotations

import csv
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ddp_harness import global_batches, load_records
from omegaconf import OmegaConf

from humanclap.lit.batchnorm import GlobalBatchNorm, use_global_batchnorm
from humanclap.train import train

PROBES = [
    "relevance",
    "retrieval",
    "bat",
    "clause_swap",
    "as_then_swap",
    "text_sensitivity",
    "timbre_correlation",
    "timbre_trend",
    "zero_shot_instruments",
]
COMMON = [
    f"probes=[{','.join(PROBES)}]",
    "recipe=wsce_mae",
    "logger=csv",
    "precision=64-true",
    "model._target_=ddp_harness.tiny_clap_without_dropout",
    "optimizer._target_=torch.optim.SGD",
    "optimizer.lr=0.05",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "++trainer.enable_progress_bar=false",
    # 1 base sound + 8 order pairs in validation (odd), 27 training pairs (odd).
    "data=synthetic_with_order",
    "data.pairs.base.n_sounds=5",
    "data.pairs.base.texts_per_sound=1",
    "data.pairs.n_pairs=20",
    "data.pairs.n_events=20",
    # Probes that bring their own data, at tiny sizes (timbre_correlation: 5 instruments, 6 descriptors).
    "+probes.timbre_correlation.pairs._target_=humanclap.data.synthetic.timbre.synthetic_timbre_ratings",
    "+probes.timbre_correlation.pairs.n_instruments=5",
    "+probes.timbre_correlation.pairs.duration_s=0.5",
    "probes.timbre_trend.top_n=2",
    "probes.timbre_trend.reference_seconds=1.0",
    "probes.timbre_trend.amounts=[0.5,1.0]",
    "probes.zero_shot_instruments.synthetic.clips_per_class=1",
    "probes.zero_shot_instruments.synthetic.duration_s=0.5",
]
PER_RANK_BATCH, WORLD = 4, 2
TOL = 1e-5


def _compose(compose_train, out: Path, *overrides: str):
    cfg = compose_train(
        *COMMON,
        *overrides,
        "trainer._target_=ddp_harness.recording_trainer",
        f"+trainer.record_dir={out / 'records'}",
    )
    cfg.paths.output_dir, cfg.paths.export_dir = str(out / "run"), str(out / "export")
    return cfg


def _rank(rank: int, world: int, port: int, config: dict) -> None:
    """One externally started rank (what torchrun sets), training with the job's config."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        NODE_RANK="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    train(OmegaConf.create(config))
    # Both ranks arrive before the group goes away (see tests/lit/test_losses_ddp.py).
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _logged(out: Path) -> dict[str, list[float]]:
    """Column -> its non-empty values, in order, from the run's CSV log (what a user sees)."""
    (path,) = (out / "run" / "csv").rglob("metrics.csv")
    columns: dict[str, list[float]] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if value != "":
                    columns.setdefault(key, []).append(float(value))
    return columns


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOL


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_process_training_equals_one_process_on_the_same_global_batches(
    compose_train, tmp_path
):
    ddp, one = tmp_path / "ddp", tmp_path / "one"
    config = OmegaConf.to_container(
        _compose(
            compose_train,
            ddp,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            f"trainer.devices={WORLD}",
            f"data.batch_size={PER_RANK_BATCH}",
        ),
        resolve=True,
    )
    mp.spawn(_rank, args=(WORLD, _free_port(), config), nprocs=WORLD, join=True)
    ranks = load_records(ddp / "records")
    assert len(ranks) == WORLD
    train(
        _compose(
            compose_train,
            one,
            "trainer=cpu",
            f"data.batch_size={WORLD * PER_RANK_BATCH}",
            "data._target_=ddp_harness.ReplayDataModule",
            f"+data.replay={ddp / 'records'}",
        )
    )
    (single,) = load_records(one / "records")

    # The data really are uneven, and the replay trained on the ranks' global batches.
    train_batches, val_batches = global_batches(ranks, "train"), global_batches(ranks, "val")
    assert [len(b) for b in train_batches[0]] == [8, 8, 8, 4]  # 27 pairs padded to 28
    for epoch in train_batches:
        assert sorted({i for batch in epoch for i in batch}) == list(range(27))
    assert val_batches[0] == val_batches[1] and sorted(i for b in val_batches[0] for i in b) == [
        0,
        *range(9),
    ]
    assert [step["index"] for step in single["train"]] == [
        b for epoch in train_batches for b in epoch
    ]
    assert [step["index"] for step in single["val"]] == [b for epoch in val_batches for b in epoch]

    # Losses: the ranks' shares average to the loss of the global batch.
    for step, (reference, *shares) in enumerate(zip(single["train"], *(r["train"] for r in ranks))):
        mean = sum(share["loss"] for share in shares) / WORLD
        assert mean == pytest.approx(reference["loss"], abs=TOL), step

    # Gradients as the optimizer sees them (after DDP's averaging), at every step.
    for step, (reference, *grads) in enumerate(zip(single["train"], *(r["train"] for r in ranks))):
        for rank, got in enumerate(grads):
            assert got["grad"].keys() == reference["grad"].keys()
            for name, value in reference["grad"].items():
                torch.testing.assert_close(
                    got["grad"][name],
                    value,
                    atol=TOL,
                    rtol=TOL,
                    msg=lambda m, step=step, rank=rank, name=name: (
                        f"step {step} rank {rank} {name}: {m}"
                    ),
                )

    for rank in ranks:
        assert rank["weights"].keys() == single["weights"].keys()
        for name, value in single["weights"].items():
            torch.testing.assert_close(
                rank["weights"][name],
                value,
                atol=TOL,
                rtol=TOL,
                msg=lambda m, name=name: f"weight {name}: {m}",
            )

    # Every probe metric, before training and after each epoch, on every rank.
    assert [epoch for epoch, _ in single["history"]] == [-1, 0, 1]
    (_, before), (_, after) = single["history"][0], single["history"][-1]
    assert sum(not _close(before[k], after[k]) for k in before) > 100  # training moved the model
    assert {key.split("/")[0] for key in single["history"][0][1]} == set(PROBES)
    for rank in ranks:
        assert [epoch for epoch, _ in rank["history"]] == [-1, 0, 1]
        for (epoch, got), (_, expected) in zip(rank["history"], single["history"]):
            assert got.keys() == expected.keys()
            wrong = {k: (got[k], v) for k, v in expected.items() if not _close(got[k], v)}
            assert not wrong, (epoch, wrong)

    # What the loggers received (rank 0 writes the 2-process log).
    logged, reference = _logged(ddp), _logged(one)
    for key in (
        "train/loss_step",
        "train/loss_epoch",
        "train/wsce",
        "train/mae",
        "val/loss",
        "val/wsce",
        "val/mae",
        "relevance/srcc",
        "zero_shot_instruments/top1",
    ):
        assert len(logged[key]) == len(reference[key]) > 0, key
        wrong = [(a, b) for a, b in zip(logged[key], reference[key]) if not _close(a, b)]
        assert not wrong, (key, wrong)


def _batchnorm_rank(rank: int, split: list[int], store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=len(split))
    try:
        norm, x, weights = _batchnorm_case(sum(split))
        rows = slice(sum(split[:rank]), sum(split[: rank + 1]))
        x = x[rows].clone().requires_grad_()
        output = norm(x)
        (output * weights[rows]).sum().backward()  # this rank's rows of a global sum
        torch.save(
            {
                "output": output.detach(),
                "x_grad": x.grad,
                "weight_grad": norm.weight.grad,
                "bias_grad": norm.bias.grad,
                "buffers": dict(norm.named_buffers()),
            },
            f"{out}/rank{rank}.pt",
        )
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _batchnorm_case(n: int):
    generator = torch.Generator().manual_seed(0)
    norm = use_global_batchnorm(
        torch.nn.Sequential(torch.nn.BatchNorm2d(3, momentum=0.3)).double()
    )[0]
    with torch.no_grad():
        norm.weight.copy_(torch.rand(3, generator=generator, dtype=torch.float64) + 0.5)
        norm.bias.copy_(torch.randn(3, generator=generator, dtype=torch.float64))
    x = 5 + 3 * torch.randn(n, 3, 4, 2, generator=generator, dtype=torch.float64)
    return norm.train(), x, torch.randn(n, 3, 4, 2, generator=generator, dtype=torch.float64)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_global_batchnorm_equals_batchnorm_on_the_global_batch(tmp_path):
    """CLAP's audio tower normalises with a BatchNorm: in training it must use the global batch's
    statistics (outputs, gradients of inputs and summed parameter gradients, running statistics),
    also with uneven per-rank batches (3 + 2) and on CPU, where torch's SyncBatchNorm refuses to run."""
    split = [3, 2]
    mp.spawn(
        _batchnorm_rank,
        args=(split, str(tmp_path / "store"), str(tmp_path)),
        nprocs=len(split),
        join=True,
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(len(split))]

    norm, x, weights = _batchnorm_case(sum(split))
    assert isinstance(norm, GlobalBatchNorm)
    reference = torch.nn.BatchNorm2d(3, momentum=0.3).double().train()
    reference.load_state_dict(norm.state_dict())
    x.requires_grad_()
    output = reference(x)
    (output * weights).sum().backward()
    torch.testing.assert_close(torch.cat([r["output"] for r in ranks]), output.detach())
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]), x.grad)
    torch.testing.assert_close(sum(r["weight_grad"] for r in ranks), reference.weight.grad)
    torch.testing.assert_close(sum(r["bias_grad"] for r in ranks), reference.bias.grad)
    for r in ranks:
        for name, value in reference.named_buffers():
            torch.testing.assert_close(r["buffers"][name], value, msg=name)
    # One process: an ordinary BatchNorm.
    norm, x, _ = _batchnorm_case(sum(split))
    torch.testing.assert_close(norm(x), reference.train()(x))
