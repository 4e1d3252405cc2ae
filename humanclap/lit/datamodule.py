"""LightningDataModule over a ``RatedPairs`` set with train / validation splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from humanclap.backbones.featurizer import ClapFeaturizer
from humanclap.data.audio_check import check_audio
from humanclap.data.pairs import RatedPairs
from humanclap.data.sampling import loader_generator, run_seed, training_sampler
from humanclap.features.clips import ClipFeatures
from humanclap.features.loader import from_transfer
from humanclap.features.workers import resolve_num_workers
from humanclap.lit.dataset import RatedPairCollator, RatedPairDataset, warn_long_texts


class RatedPairDataModule(L.LightningDataModule):
    """Serves featurised batches of rated pairs.

    ``featurizer`` comes from the backbone (``humanclap.train`` passes ``backbone.featurizer``), so
    audio is loaded at the backbone's rate and tokenised by its tokenizer. Pairs without a split
    label are split by clip into train/validation (``val_fraction``, ``split_seed``).
    """

    def __init__(
        self,
        pairs: RatedPairs,
        featurizer: ClapFeaturizer,
        train_split: str = "train",
        val_split: str = "validation",
        batch_size: int = 8,
        num_workers: int | str = 0,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        skip_bad_audio: bool = False,
        decode_audio: bool = False,
        feature_cache: str | Path | None = None,
        group_by_audio: bool = False,
    ) -> None:
        """Every clip of the training and validation pairs is checked here, before any model work
        (``humanclap.data.audio_check``): a bad one is an error naming its data line and file, or with
        ``skip_bad_audio`` its pairs are dropped and counted (``self.audio_skipped``). ``decode_audio``
        makes the check decode every sample. Texts the text tower will cut get one warning.

        ``feature_cache``: root of the on-disk feature cache (``humanclap.train`` passes it unless
        ``cache=false``): each clip is featurised once, later epochs read it. ``num_workers``: loader
        processes, or ``auto`` (:func:`humanclap.features.resolve_num_workers`). ``group_by_audio``: the
        training pairs of one clip are kept in one batch (:class:`humanclap.data.sampling.GroupedShuffle`),
        e.g. an order clip's true caption and its clause-swapped negative."""
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.featurizer = featurizer
        self.features = ClipFeatures(featurizer, feature_cache)
        self.batch_size = batch_size
        self.group_by_audio = bool(group_by_audio)
        self.num_workers_setting = num_workers
        resolve_num_workers(num_workers, option="data.num_workers")  # a bad value fails here
        if any(p.split is None for p in pairs):
            # Data without a split column (a manifest, a timbre table): hold out whole clips.
            pairs = pairs.split_by_audio(val_fraction, seed=split_seed)
        self.pairs = pairs
        # Selecting eagerly makes a wrong split name fail before any model work starts.
        self.train_pairs = pairs.select(train_split)
        self.val_pairs = pairs.select(val_split)
        (self.train_pairs, self.val_pairs), self.audio_skipped = check_audio(
            [self.train_pairs, self.val_pairs], skip_bad=skip_bad_audio, decode=decode_audio
        )
        warn_long_texts(
            [p.text for p in (*self.train_pairs, *self.val_pairs)],
            featurizer,
            what="training and validation texts",
        )

    def _loader(self, pairs: RatedPairs, shuffle: bool) -> DataLoader:
        # Order and worker seeds never touch the global RNG, and the order is that of the epoch being
        # served, so resume=auto is exact with workers too (humanclap/data/sampling.py).
        dataset = RatedPairDataset(pairs, self.features)
        workers = self.num_workers
        sampler = None
        if shuffle:
            trainer = self.trainer
            epoch = trainer.fit_loop.epoch_progress.current.processed if trainer is not None else 0
            distributed = (
                getattr(trainer.strategy, "distributed_sampler_kwargs", None)
                if trainer is not None and trainer.world_size > 1
                else None
            )
            groups = [pair.audio for pair in pairs] if self.group_by_audio else None
            sampler = training_sampler(dataset, run_seed(), epoch, distributed, groups)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=RatedPairCollator(self.featurizer),
            persistent_workers=workers > 0,
            generator=loader_generator(run_seed()),
        )

    @property
    def num_workers(self) -> int:
        """Loader processes: ``num_workers`` as configured, ``auto`` resolved for this process."""
        return resolve_num_workers(
            self.num_workers_setting, option="data.num_workers", trainer=self.trainer
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return from_transfer(batch)  # small arrays from the workers back to tensors

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_pairs, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_pairs, shuffle=False)
