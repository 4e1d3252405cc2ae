"""Hooks that let ``humanclap.train.train`` record a run and replay its global batches (DDP tests).

Everything here is reached through the ordinary Hydra config (``_target_`` overrides), so the
runs under test go through the real entry point; spawned DDP ranks import this module by name
(``tests/`` is on their ``sys.path``, copied from the pytest process).

- :func:`recording_trainer` (``trainer._target_``): a ``lightning.Trainer`` with a
  :class:`Recorder` added to the callbacks ``train`` passes.
- :class:`Recorder`: per rank, the sample indices of every batch, the loss this rank returned,
  the gradients the optimizer is about to apply (after DDP's averaging), and at the end the
  weights and the probe history; written to ``<record_dir>/rank<r>.pt``.
- :class:`ReplayDataModule` (``data._target_``): the run's data served as the *global* batches a
  recorded DDP run trained and validated on (rank 0's k-th batch followed by rank 1's k-th batch,
  including the duplicates Lightning's sampler padded the ranks with).
- :func:`tiny_clap_without_dropout` (``model._target_``): dropout draws random masks per process,
  so no two process layouts can agree on them; the equivalence runs switch it off.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from humanclap.backbones import tiny_clap
from humanclap.backbones.clap import ClapBackbone
from humanclap.lit.callbacks import ProbeCallback
from humanclap.lit.datamodule import RatedPairDataModule
from humanclap.lit.dataset import RatedPairCollator, RatedPairDataset


def tiny_clap_without_dropout(**kwargs: Any) -> ClapBackbone:
    backbone = tiny_clap(**kwargs)
    for module in backbone.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for name in ("dropout", "attention_dropout"):  # functional dropout reads a float attribute
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)
    return backbone


class Recorder(L.Callback):
    def __init__(self, record_dir: str) -> None:
        self.record_dir = record_dir
        self.train: list[dict[str, Any]] = []
        self.val: list[dict[str, Any]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.append({"epoch": trainer.current_epoch, "index": batch["index"].tolist()})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train[-1]["loss"] = float(outputs["loss"])

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.train[-1]["grad"] = {
            name: p.grad.detach().clone()
            for name, p in pl_module.named_parameters()
            if p.grad is not None
        }

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self.val.append({"epoch": trainer.current_epoch, "index": batch["index"].tolist()})

    def on_train_end(self, trainer, pl_module):
        probes = next(c for c in trainer.callbacks if isinstance(c, ProbeCallback))
        record = {
            "world_size": trainer.world_size,
            "train": self.train,
            "val": self.val,
            "weights": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
            "history": probes.history,
        }
        Path(self.record_dir).mkdir(parents=True, exist_ok=True)
        torch.save(record, Path(self.record_dir) / f"rank{trainer.global_rank}.pt")


def recording_trainer(
    record_dir: str, callbacks: list[L.Callback] = (), **kwargs: Any
) -> L.Trainer:
    return L.Trainer(callbacks=[*callbacks, Recorder(record_dir)], **kwargs)


def load_records(record_dir: str | Path) -> list[dict[str, Any]]:
    """Every rank's record, in rank order."""
    paths = sorted(Path(record_dir).glob("rank*.pt"), key=lambda p: int(p.stem[4:]))
    records = [torch.load(path, weights_only=False) for path in paths]
    assert [r["world_size"] for r in records] == [len(records)] * len(records), record_dir
    return records


def global_batches(records: list[dict[str, Any]], stage: str) -> list[list[list[int]]]:
    """Per epoch, the sample indices of each global step of ``stage`` ("train" or "val"): the
    ranks' k-th batches concatenated in rank order."""
    steps = [rank[stage] for rank in records]
    assert len({len(s) for s in steps}) == 1, f"ranks ran different numbers of {stage} steps"
    epochs: dict[int, list[list[int]]] = {}
    for per_rank in zip(*steps):
        assert len({step["epoch"] for step in per_rank}) == 1
        epochs.setdefault(per_rank[0]["epoch"], []).append(
            [i for step in per_rank for i in step["index"]]
        )
    assert sorted(epochs) == list(range(len(epochs)))
    return [epochs[e] for e in sorted(epochs)]


class ReplayBatches:
    """A batch sampler that yields ``per_epoch[epoch]`` (the last entry for any later epoch).

    It is its own ``sampler``, so Lightning's ``set_epoch`` (called on ``batch_sampler.sampler``)
    reaches it.
    """

    def __init__(self, per_epoch: list[list[list[int]]]) -> None:
        self.per_epoch = per_epoch
        self.epoch = 0
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _current(self) -> list[list[int]]:
        return self.per_epoch[min(self.epoch, len(self.per_epoch) - 1)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


class ReplayDataModule(RatedPairDataModule):
    """``RatedPairDataModule`` whose loaders replay the global batches recorded in ``replay``."""

    def __init__(self, *args: Any, replay: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.records = load_records(replay)

    def _replay(self, pairs, per_epoch: list[list[list[int]]]) -> DataLoader:
        return DataLoader(
            RatedPairDataset(pairs, self.features),
            num_workers=0,
            batch_sampler=ReplayBatches(per_epoch),
            collate_fn=RatedPairCollator(self.featurizer),
        )

    def train_dataloader(self) -> DataLoader:
        return self._replay(self.train_pairs, global_batches(self.records, "train"))

    def val_dataloader(self) -> DataLoader:
        # Unshuffled: every epoch validates on the same batches (the test checks it).
        return self._replay(self.val_pairs, global_batches(self.records, "val")[:1])
