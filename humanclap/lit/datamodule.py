"""LightningDataModule over a ``RatedPairs`` set with train / validation splits."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from humanclap.backbones.featurizer import ClapFeaturizer
from humanclap.data.dataset import RatedPairCollator, RatedPairDataset
from humanclap.data.pairs import RatedPairs


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
        num_workers: int = 0,
        val_fraction: float = 0.2,
        split_seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.featurizer = featurizer
        self.batch_size = batch_size
        self.num_workers = num_workers
        if any(p.split is None for p in pairs):
            # Data without a split column (a manifest, a timbre table): hold out whole clips.
            pairs = pairs.split_by_audio(val_fraction, seed=split_seed)
        self.pairs = pairs
        # Selecting eagerly makes a wrong split name fail before any model work starts.
        self.train_pairs = pairs.select(train_split)
        self.val_pairs = pairs.select(val_split)

    def _loader(self, pairs: RatedPairs, shuffle: bool) -> DataLoader:
        return DataLoader(
            RatedPairDataset(pairs, self.featurizer.sample_rate),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=RatedPairCollator(self.featurizer),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_pairs, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_pairs, shuffle=False)
