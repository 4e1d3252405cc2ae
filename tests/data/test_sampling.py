"""Training order is a function of (seed, epoch) only: workers and resuming cannot change a batch."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, DistributedSampler

from humanclap.data.sampling import EpochShuffle, loader_generator, training_sampler


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
