"""CLaMP 3 inputs: whole-track-normalised 24 kHz waveforms cut into 5 s chunks (MERT's input), and
XLM-R token ids cut into 128-token segments, as CLaMP 3 prepares them.

Audio (``preprocessing/audio/extract_mert.py:35-60``, ``hf_pretrains.py:27-33``): the clip is
normalised to zero mean and unit variance over the whole track, (x - mean) / sqrt(var + 1e-7)
(``Wav2Vec2FeatureExtractor(do_normalize=True)``), then cut into non-overlapping 5 s chunks; a
shorter last chunk is kept if it lasts at least 1 s, else dropped. Deliberate difference: a clip
shorter than 1 s (upstream fails on it: no chunk at all) is repeated to 1 s first and becomes one 1 s
chunk, so every clip gets an embedding.

Text (``code/extract_clamp3.py:105-112, 127-149``): lines are deduplicated, empty ones dropped, the
rest joined with ``</s>`` and tokenised without truncation; the ids are cut into 128-token segments
(the last one the final 128 ids) padded with ``<pad>``. Deliberate difference: upstream deduplicates
with ``set()``, whose order changes between processes; here the first occurrence of each line is
kept in order. See docs/models.md#clamp-3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from humanclap.backbones.clamp3.model import segments
from humanclap.backbones.embedder import Waveform
from humanclap.backbones.featurizer import (
    WaveformFeaturizer,
    as_mono_array,
    batch_tensor,
    check_texts,
)

NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm


class Clamp3Featurizer(WaveformFeaturizer):
    """A clip's normalised 5 s chunks at ``sample_rate`` and XLM-R token segments."""

    def __init__(
        self,
        tokenizer: Any,
        max_text_tokens: int,
        sample_rate: int,
        chunk_samples: int,
        min_chunk_samples: int,
    ) -> None:
        super().__init__(tokenizer, sample_rate, max_text_tokens)
        self.chunk_samples = int(chunk_samples)
        self.min_chunk_samples = int(min_chunk_samples)

    def describe(self) -> dict[str, Any]:
        """What a clip's features depend on besides the clip (the feature cache's key)."""
        return {
            "featurizer": type(self).__name__,
            "sample_rate": self._sample_rate,
            "chunk_samples": self.chunk_samples,
            "min_chunk_samples": self.min_chunk_samples,
            "normalise": f"whole track, eps {NORM_EPS}",
        }

    def chunks(self, wave: np.ndarray) -> list[np.ndarray]:
        """The normalised clip's MERT chunks (see the module docstring)."""
        if wave.shape[0] < self.min_chunk_samples:
            wave = np.tile(wave, -(-self.min_chunk_samples // wave.shape[0]))
            wave = wave[: self.min_chunk_samples]
        wave = (wave - wave.mean()) / np.sqrt(wave.var() + NORM_EPS)
        pieces = [
            wave[start : start + self.chunk_samples]
            for start in range(0, wave.shape[0], self.chunk_samples)
        ]
        if pieces[-1].shape[0] < self.min_chunk_samples:
            pieces = pieces[:-1]
        return pieces

    def clip(self, wave: Waveform, what: str = "waveform") -> dict[str, np.ndarray]:
        """``input_features`` (chunks, chunk_samples) zero-padded, ``chunk_lengths`` (chunks,)."""
        pieces = self.chunks(as_mono_array(wave, what=what))
        features = np.zeros((len(pieces), self.chunk_samples), dtype=np.float32)
        for row, piece in enumerate(pieces):
            features[row, : piece.shape[0]] = piece
        lengths = np.array([piece.shape[0] for piece in pieces], dtype=np.int64)
        return {"input_features": features, "chunk_lengths": lengths}

    def collate(self, clips: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        """(B, most chunks, chunk_samples) waveforms and (B, most chunks) lengths (0: no chunk)."""
        if len(clips) == 0:
            raise ValueError("featurize: no waveforms given")
        most = max(clip["chunk_lengths"].shape[0] for clip in clips)
        waves = batch_tensor((len(clips), most, self.chunk_samples))
        lengths = batch_tensor((len(clips), most), dtype=torch.long)
        rows, counts = waves.numpy(), lengths.numpy()
        rows.fill(0.0)
        counts.fill(0)
        for row, clip in enumerate(clips):
            n = clip["chunk_lengths"].shape[0]
            np.copyto(rows[row, :n], clip["input_features"])
            np.copyto(counts[row, :n], clip["chunk_lengths"])
        return {"input_features": waves, "chunk_lengths": lengths}

    def token_ids(self, text: str) -> list[int]:
        """A text's ids as ``extract_clamp3.py:105-112`` makes them (lines deduplicated in order)."""
        lines = [line for line in dict.fromkeys(text.split("\n")) if len(line) > 0]
        joined = self.tokenizer.sep_token.join(lines)
        return list(self.tokenizer(joined, truncation=False, verbose=False)["input_ids"])

    def text(self, texts: Sequence[str], first_index: int = 0) -> dict[str, torch.Tensor]:
        """``input_ids``/``attention_mask`` (B, segments, max_text_tokens), always padded to the
        segment length as upstream pads them, and ``segment_weights`` (B, segments)."""
        check_texts(texts, first_index)
        size = self.max_text_tokens
        ids = [self.token_ids(text) for text in texts]
        plans = [segments(len(row), size) for row in ids]
        most = max(len(plan) for plan in plans)
        shape = (len(texts), most, size)
        input_ids = np.full(shape, self.tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros(shape, dtype=np.int64)
        weights = np.zeros(shape[:2], dtype=np.int64)
        for row, (plan, row_ids) in enumerate(zip(plans, ids)):
            for index, (start, stop, weight) in enumerate(plan):
                input_ids[row, index, : stop - start] = row_ids[start:stop]
                mask[row, index, : stop - start] = 1
                weights[row, index] = weight
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(mask),
            "segment_weights": torch.from_numpy(weights),
        }
