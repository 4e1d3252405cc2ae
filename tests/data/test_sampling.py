"""Training order is a function of (seed, epoch) only: workers and resuming cannot change a batch."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from humanclap.data.sampling import (
    EpochShuffle,
    GroupedShuffle,
    loader_generator,
    training_sampler,
)


def test_each_epoch_has_its_own_permutation_from_seed_and_epoch_alone():
    data = range(20)
    sampler = EpochShuffle(data, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        torch.rand(5)  # the global RNG is not the source
        orders.append(list(sampler))
    expected = [
        torch.randperm(20, generator=torch.Generator().manual_seed(3 * 100_003 + e)).tolist()
        for e in range(3)
    ]
    assert orders == expected
    assert len({tuple(order) for order in orders}) == 3 and sorted(orders[0]) == list(range(20))


def test_a_loader_made_for_epoch_k_with_workers_serves_epoch_k_from_its_first_batch():
    """Lightning iterates the first loader of a resumed run before calling set_epoch; workers fetch at once."""
    data = list(range(12))
    fresh = training_sampler(data, seed=0, epoch=0)
    fresh.set_epoch(2)
    expected = list(fresh)
    resumed = DataLoader(
        data,
        batch_size=4,
        sampler=training_sampler(data, seed=0, epoch=2),
        num_workers=2,
        persistent_workers=True,
        generator=loader_generator(0),
    )
    assert [int(i) for batch in resumed for i in batch] == expected


def test_under_ddp_it_is_the_sampler_lightning_would_inject():
    data = list(range(9))
    for rank in (0, 1):
        ours = training_sampler(
            data, seed=5, epoch=3, distributed={"num_replicas": 2, "rank": rank}
        )
        lightnings = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=5)
        lightnings.set_epoch(3)
        assert isinstance(ours, DistributedSampler) and list(ours) == list(lightnings)


def test_loaders_leave_the_global_rng_alone():
    data = list(range(8))
    state = torch.get_rng_state()
    loader = DataLoader(
        data,
        batch_size=2,
        sampler=training_sampler(data, seed=1, epoch=0),
        generator=loader_generator(1),
    )
    for _ in range(2):
        list(loader)
    assert torch.equal(torch.get_rng_state(), state)


# -- GroupedShuffle (group_by_audio) ---------------------------------------------------------------
GROUPS = ["a", "b", "a", "c", "b", "c", "d", "d"]  # a clip's pairs need not be adjacent in the data


def test_grouped_shuffle_keeps_each_group_adjacent_and_depends_on_seed_and_epoch_only():
    data = list(range(len(GROUPS)))
    sampler = training_sampler(data, seed=3, epoch=0, groups=GROUPS)
    assert isinstance(sampler, GroupedShuffle)
    orders = {}
    for epoch in range(6):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == data
        runs = [GROUPS[i] for i in order]
        assert all(
            runs[i] == runs[i + 1] for i in range(0, len(runs), 2)
        )  # groups of two, together
        assert [i for i in order if GROUPS[i] == "a"] == [0, 2]  # data order within a group
        orders[epoch] = order
        assert list(training_sampler(data, seed=3, epoch=epoch, groups=GROUPS)) == order
    assert len({tuple(o) for o in orders.values()}) > 1  # a fresh order of groups per epoch
    assert any(
        list(training_sampler(data, seed=4, epoch=e, groups=GROUPS)) != orders[e] for e in orders
    )


@pytest.mark.parametrize("world", [2, 3])
def test_grouped_shuffle_under_ddp_gives_each_global_batch_the_single_process_pairs(world):
    """Rank r takes positions r, r + W, ... so global batch k (W local batches of b) holds positions
    k·W·b … (k+1)·W·b − 1 of the one-process order, as with DistributedSampler."""
    data, local_batch = list(range(len(GROUPS))), 2
    single = list(training_sampler(data, seed=1, epoch=2, groups=GROUPS))
    ranks = [
        list(
            training_sampler(
                data, seed=1, epoch=2, distributed={"num_replicas": world, "rank": r}, groups=GROUPS
            )
        )
        for r in range(world)
    ]
    padded = single + single[: len(ranks[0]) * world - len(single)]
    for step in range(len(ranks[0]) // local_batch):
        global_batch = sorted(
            i for r in ranks for i in r[step * local_batch : (step + 1) * local_batch]
        )
        size = world * local_batch
        assert global_batch == sorted(padded[step * size : (step + 1) * size])


def test_grouped_shuffle_refuses_a_group_list_of_the_wrong_length():
    with pytest.raises(ValueError, match="3 group names for 8 items"):
        GroupedShuffle(list(range(8)), ["a", "b", "c"], seed=0)
