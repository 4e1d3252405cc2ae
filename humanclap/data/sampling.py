"""Data order that depends on (seed, epoch) only, so a resumed run sees the batches it would have.

A ``DataLoader`` with ``shuffle=True`` draws its permutation from the global torch RNG, and every
new iterator also draws a base seed for its workers from it. With ``persistent_workers`` the
iterator is created once per run, so an uninterrupted run draws that base seed once while a run
resumed in epoch k draws it again in epoch k: every later shuffle and dropout mask shifts, and the
resumed model differs (issue 12: max |Δweight| 22 with ``num_workers=2``). Here the permutation of
epoch e is ``randperm(n, seed + e)`` and worker seeds come from a generator of the loader's own,
so the global RNG (restored on resume by :class:`humanclap.lit.callbacks.RandomState`) feeds only the model,
and the training sampler is set to the epoch it serves before Lightning first iterates it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DistributedSampler, RandomSampler, Sampler


def run_seed() -> int:
    """The seed ``lightning.seed_everything`` set for this run (Lightning's DDP sampler uses it too)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class EpochShuffle(RandomSampler):
    """A fresh permutation every epoch, a function of ``(seed, epoch)``; Lightning calls :meth:`set_epoch`.

    It is a ``RandomSampler``, so under DDP Lightning still replaces it with its
    ``DistributedSampler(shuffle=True, seed=PL_GLOBAL_SEED)``, which is epoch-seeded the same way.
    """

    def __init__(self, data_source: Sized, seed: int) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


def training_sampler(
    dataset: Sized, seed: int, epoch: int, distributed: dict | None = None
) -> Sampler:
    """The shuffling sampler of the training loader, already set to ``epoch``.

    Lightning creates the first epoch's iterator before it calls ``set_epoch``, and with workers
    that iterator draws its order at once: a run resumed in epoch k would replay epoch 0's order.
    ``epoch`` is the epoch the loader is made for (Lightning's ``epoch_progress.current.processed``).
    ``distributed`` (``num_replicas``, ``rank``): the ``DistributedSampler`` Lightning would inject,
    with the same arguments, made here so that it can be set to ``epoch`` as well.
    """
    if distributed:
        sampler: Sampler = DistributedSampler(dataset, shuffle=True, seed=seed, **distributed)
    else:
        sampler = EpochShuffle(dataset, seed)
    sampler.set_epoch(epoch)
    return sampler


def loader_generator(seed: int) -> torch.Generator:
    """The generator a DataLoader draws its workers' base seed from, instead of the global RNG."""
    return torch.Generator().manual_seed(seed)
