"""Torch dataset over rated pairs, and the collate step that featurises a batch."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from humanclap.backbones.featurizer import ClapFeaturizer
from humanclap.data.pairs import RatedPairs


class RatedPairDataset(Dataset):
    """Item i = pair i's waveform (mono float32 at ``sample_rate``), text and score a_i."""

    def __init__(self, pairs: RatedPairs, sample_rate: int) -> None:
        self.pairs = pairs
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        return {
            "index": index,
            "audio": self.pairs.load_audio(pair.audio, self.sample_rate),
            "text": pair.text,
            "score": pair.score,
        }


class RatedPairCollator:
    """Featurises in the DataLoader (workers included), so the training step only runs the model."""

    def __init__(self, featurizer: ClapFeaturizer) -> None:
        self.featurizer = featurizer

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
            "audio": self.featurizer.audio([item["audio"] for item in items]),
            "text": self.featurizer.text([item["text"] for item in items]),
            "score": torch.tensor([item["score"] for item in items], dtype=torch.float32),
        }
