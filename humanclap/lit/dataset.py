"""Torch dataset over rated pairs, the collate step that featurises a batch, and the warning about
texts the text tower cuts."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils.data import Dataset

from humanclap.backbones.featurizer import TEXT_MAX_TOKENS, ClapFeaturizer
from humanclap.data.pairs import RatedPairs, unique_in_order
from humanclap.features.clips import ClipFeatures
from humanclap.features.loader import for_transfer

log = logging.getLogger(__name__)


class RatedPairDataset(Dataset):
    """Item i = pair i's clip features (``features(store, key)``: loaded and featurised, or read from
    the feature cache), text and score a_i."""

    def __init__(self, pairs: RatedPairs, features: ClipFeatures) -> None:
        self.pairs = pairs
        self.features = features

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        return {
            "index": index,
            "audio": self.features(self.pairs.audio_store, pair.audio),
            "text": pair.text,
            "score": pair.score,
        }


class RatedPairCollator:
    """Stacks clip features and tokenises texts in the DataLoader (workers included), so the training
    step only runs the model."""

    def __init__(self, featurizer: ClapFeaturizer) -> None:
        self.featurizer = featurizer

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """The batch; in a worker its small tensors are NumPy arrays, which the data module turns
        back into tensors in the main process (:func:`humanclap.features.loader.for_transfer`)."""
        return for_transfer(
            {
                "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
                "audio": self.featurizer.collate([item["audio"] for item in items]),
                "text": self.featurizer.text([item["text"] for item in items]),
                "score": torch.tensor([item["score"] for item in items], dtype=torch.float32),
            }
        )


def warn_long_texts(
    texts: Iterable[str], featurizer: ClapFeaturizer, what: str = "texts"
) -> str | None:
    """Log one warning if some of the unique ``texts`` exceed the text tower's ``TEXT_MAX_TOKENS``
    (the collator cuts them there): how many, the longest one's token count and first words.
    Returns the warning, or None if every text fits."""
    unique = unique_in_order(texts)
    tokenizer = featurizer.tokenizer
    limit = getattr(featurizer, "max_text_tokens", TEXT_MAX_TOKENS)
    # A token covers at least one byte of text (SentencePiece may add one leading token), so only
    # texts longer than the budget in bytes need tokenising: most captions are far shorter.
    budget = limit - tokenizer.num_special_tokens_to_add() - 1
    candidates = [text for text in unique if len(text.encode("utf-8")) > budget]
    if not candidates:
        return None
    counts = [
        len(ids) for ids in tokenizer(candidates, truncation=False, verbose=False)["input_ids"]
    ]
    long = [(count, text) for count, text in zip(counts, candidates) if count > limit]
    if not long:
        return None
    count, text = max(long, key=lambda item: item[0])
    words = text.split()
    first_words = " ".join(words[:12]) + (" ..." if len(words) > 12 else "")
    message = (
        f"{len(long)} of {len(unique)} {what} are longer than the text tower's {limit} tokens and "
        f"are cut to {limit}; the longest has {count} tokens: {first_words!r}"
    )
    log.warning(message)
    return message
