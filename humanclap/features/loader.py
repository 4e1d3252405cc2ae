"""Batches of clip features from a DataLoader, so a cold pass loads and featurises in worker processes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from humanclap.features.clips import ClipFeatures

# A tensor that a DataLoader worker hands to the main process goes through its own shared-memory
# segment (~0.5-1 ms each, whatever its size); a NumPy array is pickled by value instead. A batch has
# one big tensor (the features, already in shared memory: ``batch_tensor``) and several small ones
# (index, is_longer, token ids, mask, scores), so the small ones travel as arrays.
SMALL = 1 << 16  # elements


def for_transfer(batch: Any) -> Any:
    """In a DataLoader worker: ``batch`` with its small tensors as NumPy arrays (see ``from_transfer``)."""
    from torch.utils.data import get_worker_info

    if get_worker_info() is None:
        return batch
    return _map(
        batch, lambda t: t.numpy() if isinstance(t, torch.Tensor) and t.numel() < SMALL else t
    )


def from_transfer(batch: Any) -> Any:
    """In the main process: every NumPy array of ``batch`` back as a tensor."""
    return _map(batch, lambda a: torch.from_numpy(a) if isinstance(a, np.ndarray) else a)


def _map(value: Any, convert) -> Any:
    if isinstance(value, dict):
        return {key: _map(item, convert) for key, item in value.items()}
    return convert(value)


class _Failure:
    """An error raised while loading one clip in a worker, re-raised as itself in the main process
    (the DataLoader would wrap it in a traceback dump)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class ClipFeatureDataset(Dataset):
    """Item i: the features of ``clips[i]`` (a ``(store, key)`` pair)."""

    def __init__(self, clips: Sequence[tuple[Any, str]], features: ClipFeatures) -> None:
        self.clips = list(clips)
        self.features = features

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Any:
        store, key = self.clips[index]
        try:
            return self.features(store, key)
        except Exception as error:  # noqa: BLE001 - handed to the main process, see _Failure
            return _Failure(error)


class _Collate:
    def __init__(self, features: ClipFeatures) -> None:
        self.features = features

    def __call__(self, items: list[Any]) -> Any:
        for item in items:
            if isinstance(item, _Failure):
                return item
        return for_transfer(self.features.collate(items))


def feature_batches(
    clips: Sequence[tuple[Any, str]],
    features: ClipFeatures,
    batch_size: int,
    num_workers: int = 0,
) -> Iterator[dict[str, Any]]:
    """The featurizer batches of ``clips`` in order, ``batch_size`` clips each (the last may be short);
    ``num_workers`` > 0 loads and featurises in that many worker processes."""
    loader = DataLoader(
        ClipFeatureDataset(clips, features),
        batch_size=batch_size,
        shuffle=False,
        num_workers=min(num_workers, max(1, -(-len(clips) // batch_size))),
        collate_fn=_Collate(features),
        # A loader without a generator draws its workers' base seed from torch's global RNG: a probe
        # pass in the middle of training would shift every later dropout mask of the run.
        generator=torch.Generator().manual_seed(0),
    )
    for batch in loader:
        if isinstance(batch, _Failure):
            raise batch.error
        yield from_transfer(batch)
