"""Framework overhead: a Lightning training step vs a bare PyTorch loop on the same work.

Both sides train the same backbone (same initial weights) with the same loss, optimiser and
pre-featurised batches served by the same DataLoader (featurisation is identical in both and
excluded), including the logit-scale clamp. Prints seconds per step for each and their ratio (target: <= 1.05).

    python benchmarks/train_step.py [--steps 60] [--warmup 10] [--repeats 7] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import lightning as L
import torch
from torch.utils.data import DataLoader

from humanclap.backbones import tiny_clap
from humanclap.data.synthetic.sounds import synthetic_pairs
from humanclap.features import ClipFeatures
from humanclap.lit.dataset import RatedPairCollator, RatedPairDataset
from humanclap.lit.module import HumanClapModule
from humanclap.losses import HumanClapLoss


def make_batches(backbone, n: int, batch_size: int) -> list[dict]:
    # 4 texts per sound, 80 % of sounds in train: enough pairs for n full batches.
    pairs = synthetic_pairs(n_sounds=n * batch_size // 3 + 8, texts_per_sound=4).select("train")
    loader = DataLoader(
        RatedPairDataset(pairs, ClipFeatures(backbone.featurizer)),
        batch_size=batch_size,
        collate_fn=RatedPairCollator(backbone.featurizer),
        drop_last=True,
    )
    batches = [batch for _, batch in zip(range(n), loader)]
    if len(batches) < n:
        raise SystemExit(f"only {len(batches)} batches available, asked for {n}")
    return batches


def _loader(batches: list[dict]) -> DataLoader:
    """The same DataLoader on both sides; batch_size=None yields the pre-built batches unchanged."""
    return DataLoader(batches, batch_size=None, shuffle=False)


def bare_loop(backbone, batches, lr: float) -> float:
    loss_fn = HumanClapLoss({"wsce": 0.1, "mae": 1.0})
    optimizer = torch.optim.AdamW(backbone.trainable_parameters(), lr=lr)
    backbone.train()
    start = time.perf_counter()
    for batch in _loader(batches):
        audio = backbone.audio_embeddings(batch["audio"])
        text = backbone.text_embeddings(batch["text"])
        loss = loss_fn(audio, text, batch["score"], backbone.logit_scale)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        backbone.clamp_logit_scale()
    return time.perf_counter() - start


class _Timer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.end = time.perf_counter()


def lightning_loop(backbone, batches, warmup: int, lr: float) -> float:
    module = HumanClapModule(
        backbone,
        HumanClapLoss({"wsce": 0.1, "mae": 1.0}),
        lambda params: torch.optim.AdamW(params, lr=lr),
    )
    timer = _Timer(warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
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
    return timer.end - timer.start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    initial = tiny_clap()
    batches = make_batches(initial, args.warmup + args.steps, args.batch_size)
    bare, light = [], []
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both sides alike
        backbone = copy.deepcopy(initial)
        bare_loop(backbone, batches[: args.warmup], 1e-3)
        bare.append(bare_loop(backbone, batches[args.warmup :], 1e-3) / args.steps)
        light.append(
            lightning_loop(copy.deepcopy(initial), batches, args.warmup, 1e-3) / args.steps
        )
    # Best of the interleaved repeats: the least-disturbed run of each side (other processes only
    # ever add time); medians are printed too, to show the spread.
    bare_best, light_best = min(bare), min(light)
    print(
        f"bare PyTorch step : {bare_best * 1e3:8.2f} ms  (best of {args.repeats} runs of {args.steps} steps; "
        f"median {statistics.median(bare) * 1e3:.2f} ms)"
    )
    print(
        f"Lightning step    : {light_best * 1e3:8.2f} ms  (median {statistics.median(light) * 1e3:.2f} ms)"
    )
    print(
        f"ratio Lightning / bare = {light_best / bare_best:.3f}  (target <= 1.05; ratio of medians "
        f"{statistics.median(light) / statistics.median(bare):.3f})"
    )


if __name__ == "__main__":
    main()
