"""torch.distributed helpers that are no-ops in a single process."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def rank_and_world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) when torch.distributed is unavailable or not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_sizes(n: int, device: torch.device) -> list[int]:
    """Leading sizes of every rank's tensor (ranks may hold uneven batches)."""
    size = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def gather_with_grad(tensor: Tensor, sizes: list[int] | None = None) -> Tensor:
    """Concatenate ``tensor`` (dim 0) from all ranks in rank order, keeping gradients.

    Uneven leading sizes are padded to the longest, gathered and trimmed. The backward pass sums,
    over ranks, the gradients flowing into this rank's slice, which is what makes the local loss
    of :class:`humanclap.losses.HumanClapLoss` exact. ``sizes`` (from :func:`gather_sizes`) saves
    a collective when several tensors of one batch are gathered. Returns ``tensor`` itself when
    not distributed.
    """
    if rank_and_world()[1] == 1:
        return tensor
    if sizes is None:
        sizes = gather_sizes(tensor.shape[0], tensor.device)
    padded = F.pad(tensor, (0, 0) * (tensor.dim() - 1) + (0, max(sizes) - tensor.shape[0]))
    with _autograd_collectives():
        chunks = torch.distributed.nn.functional.all_gather(padded)
    return torch.cat([chunk[:size] for chunk, size in zip(chunks, sizes, strict=True)])


def all_reduce_with_grad(tensor: Tensor) -> Tensor:
    """Sum of ``tensor`` over all ranks, keeping gradients: the backward pass sums the gradients
    of all ranks as well (as :func:`gather_with_grad`). Returns ``tensor`` itself when not distributed."""
    if rank_and_world()[1] == 1:
        return tensor
    with _autograd_collectives():
        return torch.distributed.nn.functional.all_reduce(tensor)


@contextmanager
def _autograd_collectives() -> Iterator[None]:
    # torch.distributed.nn.functional is deprecated in favour of functional collectives, but it is
    # the only autograd all-gather / all-reduce in torch's public API that also works on gloo (CPU) today.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed.nn.functional", FutureWarning)
        yield


def gather_rows(tensor: Tensor) -> list[Tensor]:
    """Every rank's ``tensor`` (uneven first dimensions allowed), in rank order, no gradients.

    Works for CPU tensors under NCCL too: they travel through the rank's current CUDA device.
    """
    if rank_and_world()[1] == 1:
        return [tensor]
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else tensor.device
    )
    with torch.no_grad():
        local = tensor.detach().to(device)
        sizes = gather_sizes(local.shape[0], device)
        rows = gather_with_grad(local, sizes).to(tensor.device)
    return list(torch.split(rows, sizes))
