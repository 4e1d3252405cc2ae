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
from collections.abc import Hashable, Iterator, Sequence, Sized

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


class GroupedShuffle(DistributedSampler):
    """Whole groups in a fresh order every epoch, a function of ``(seed, epoch)``; a group's members
    stay adjacent, so they share a batch (up to batch boundaries). ``groups[i]`` names index i's group.

    Used with ``group_by_audio`` so that a clip's true-order caption and its clause-swapped negative
    meet in one wSCE softmax (docs/data.md#order-pairs). It is a ``DistributedSampler`` (Lightning
    leaves it in place); under DDP rank r takes positions r, r + W, ... of the padded order, so every
    global batch holds the same pairs as the single-process batch of W times the size.
    """

    def __init__(
        self,
        dataset: Sized,
        groups: Sequence[Hashable],
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if len(groups) != len(dataset):
            raise ValueError(f"GroupedShuffle: {len(groups)} group names for {len(dataset)} items")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        members: dict[Hashable, list[int]] = {}
        for index, group in enumerate(groups):
            members.setdefault(group, []).append(index)
        self.members = list(members.values())

    def order(self) -> list[int]:
        """This epoch's order of all indices (one process's view before the rank split)."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return [
            index
            for group in torch.randperm(len(self.members), generator=generator).tolist()
            for index in self.members[group]
        ]

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        while len(order) < self.total_size:  # DistributedSampler's padding: repeat from the start
            order += order[: self.total_size - len(order)]
        return iter(order[self.rank : self.total_size : self.num_replicas])


def training_sampler(
    dataset: Sized,
    seed: int,
    epoch: int,
    distributed: dict | None = None,
    groups: Sequence[Hashable] | None = None,
) -> Sampler:
    """The shuffling sampler of the training loader, already set to ``epoch``.

    Lightning creates the first epoch's iterator before it calls ``set_epoch``, and with workers
    that iterator draws its order at once: a run resumed in epoch k would replay epoch 0's order.
    ``epoch`` is the epoch the loader is made for (Lightning's ``epoch_progress.current.processed``).
    ``distributed`` (``num_replicas``, ``rank``): the ``DistributedSampler`` Lightning would inject,
    with the same arguments, made here so that it can be set to ``epoch`` as well. ``groups``: shuffle
    whole groups instead (:class:`GroupedShuffle`).
    """
    if groups is not None:
        sampler: Sampler = GroupedShuffle(dataset, groups, seed, **(distributed or {}))
    elif distributed:
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed, **distributed)
    else:
        sampler = EpochShuffle(dataset, seed)
    sampler.set_epoch(epoch)
    return sampler


def loader_generator(seed: int) -> torch.Generator:
    """The generator a DataLoader draws its workers' base seed from, instead of the global RNG."""
    return torch.Generator().manual_seed(seed)
