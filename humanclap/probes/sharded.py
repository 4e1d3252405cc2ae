"""Embed a list of unique inputs once, split across DDP ranks, and reassemble it on every rank.

Probes do not use Lightning's validation sampler: it pads ranks with duplicate samples, which
would count some pairs twice in a correlation. Here rank r embeds items r, r+W, r+2W, ...; the
gathered rows are put back in input order, so every item is embedded exactly once and every rank
ends up with the same matrix as a single process would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from humanclap.distributed import gather_rows, rank_and_world

Item = TypeVar("Item")


def embed_sharded(
    items: Sequence[Item],
    embed_batch: Callable[[list[Item]], torch.Tensor],
    batch_size: int,
) -> torch.Tensor:
    """``embed_batch`` over ``items`` in chunks of ``batch_size``, sharded over ranks."""

    def embed_local(local: list[Item]) -> torch.Tensor:
        return torch.cat(
            [
                embed_batch(local[start : start + batch_size])
                for start in range(0, len(local), batch_size)
            ]
        )

    return embed_sharded_local(items, embed_local)


def embed_sharded_local(
    items: Sequence[Item], embed_local: Callable[[list[Item]], torch.Tensor]
) -> torch.Tensor:
    """``embed_local`` of this rank's share of ``items`` (r, r+W, ...), gathered in input order."""
    if not items:
        raise ValueError("nothing to embed")
    rank, world = rank_and_world()
    local = list(items[rank::world])
    if local:
        mine = embed_local(local)
    else:  # more ranks than items: this rank contributes nothing but must still take part
        probe = embed_local(list(items[:1]))
        mine = probe.new_zeros((0, *probe.shape[1:]))
    parts = gather_rows(mine)
    out = parts[0].new_empty((len(items), *parts[0].shape[1:]))
    for r, part in enumerate(parts):
        out[r::world] = part
    return out
