"""DDP scaling: training samples/s of 1 vs 2 CPU processes (gloo) on the same global batch.

Both sides train the tiny backbone through Lightning with the same loss, optimiser and
pre-featurised global batches (featurisation excluded). With W processes rank r gets rows
r*G/W .. (r+1)*G/W - 1 of every global batch of G pairs; the loss gathers the global batch and DDP
averages the gradients, so both sides take the same steps (tests/lit/test_ddp_equivalence.py). Every
side runs in fresh processes with torch threads = cores / processes (Lightning's own choice for
ddp_spawn), so each uses the whole machine; the first --warmup steps are not timed. Prints samples/s
of each side (best of interleaved repeats, and the median) and the ratio 2-process / 1-process.

    python benchmarks/ddp_scaling.py [--steps 40] [--warmup 5] [--repeats 3] [--global-batch 16] [--threads N]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import tempfile
import warnings
from functools import partial
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import transformers
from lightning.fabric.utilities.apply_func import apply_to_collection
from train_step import _loader, _Timer, make_batches

from humanclap.backbones import tiny_clap
from humanclap.lit.module import HumanClapModule
from humanclap.losses import HumanClapLoss


def _rank(
    rank: int, world: int, port: int, batches_path: str, warmup: int, threads: int, out: str
) -> None:
    if world > 1:  # ranks started from outside, as torchrun does
        os.environ.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world),
            NODE_RANK="0",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
    torch.set_num_threads(threads)
    warnings.filterwarnings(
        "ignore"
    )  # Lightning's advice about dataloaders and logging, once per rank
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    transformers.utils.logging.disable_progress_bar()
    rows = lambda t: t[rank * t.shape[0] // world : (rank + 1) * t.shape[0] // world]  # noqa: E731
    batches = [
        apply_to_collection(b, torch.Tensor, rows)
        for b in torch.load(batches_path, weights_only=False)
    ]
    module = HumanClapModule(
        tiny_clap(), HumanClapLoss({"wsce": 0.1, "mae": 1.0}), partial(torch.optim.AdamW, lr=1e-3)
    )
    timer = _Timer(warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=world,
        strategy="ddp" if world > 1 else "auto",
        use_distributed_sampler=False,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=_loader(batches))
    if rank == 0:
        Path(out).write_text(repr(timer.end - timer.start))
    if world > 1:
        dist.barrier()  # both ranks arrive before the group goes away
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed_run(world: int, batches_path: str, warmup: int, threads: int) -> float:
    """Seconds of the timed steps of one training run on ``world`` fresh processes."""
    with tempfile.TemporaryDirectory() as scratch:
        out = str(Path(scratch) / "seconds")
        mp.spawn(
            _rank,
            args=(world, _free_port(), batches_path, warmup, threads, out),
            nprocs=world,
            join=True,
        )
        return float(Path(out).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--global-batch", type=int, default=16, help="pairs per step, all processes together"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the 1-process run (default: all cores); 2 processes get half each "
        "(at least 1: --threads 1 compares one core with two)",
    )
    args = parser.parse_args()
    if args.global_batch % 2:
        parser.error("--global-batch must be even (it is split over 2 processes)")
    threads = args.threads or os.cpu_count() or 1
    torch.manual_seed(0)
    batches = make_batches(tiny_clap(), args.warmup + args.steps, args.global_batch)
    rates: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as scratch:
        path = str(Path(scratch) / "batches.pt")
        torch.save(batches, path)
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both sides alike
            for world in rates:
                seconds = timed_run(world, path, args.warmup, max(1, threads // world))
                rates[world].append(args.steps * args.global_batch / seconds)
    # Best of the repeats: the least-disturbed run of each side (other processes only ever slow it).
    one, two = max(rates[1]), max(rates[2])
    print(
        f"global batch {args.global_batch}, {args.steps} timed steps after {args.warmup} warmup, "
        f"best of {args.repeats}; torch threads per process: 1 process {threads}, 2 processes {max(1, threads // 2)}"
    )
    print(f"1 process   : {one:8.1f} samples/s  (median {statistics.median(rates[1]):.1f})")
    print(f"2 processes : {two:8.1f} samples/s  (median {statistics.median(rates[2]):.1f})")
    print(
        f"ratio 2-process / 1-process = {two / one:.3f}  (ratio of medians "
        f"{statistics.median(rates[2]) / statistics.median(rates[1]):.3f})"
    )


if __name__ == "__main__":
    main()
