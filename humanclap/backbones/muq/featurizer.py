"""MuQ-MuLan inputs: every 10 s clip of a 24 kHz file, as ``MuQMuLan._get_all_clips`` cuts it
(muq_mulan.py:258-270), and XLM-R token ids.

Audio: consecutive ``sr * clip_secs`` clips; a trailing remainder is completed with the file's start
(``cat(audio[acc:], audio[:delta - rem])``). Deliberate difference: a file shorter than half a clip
(5 s) gives upstream one clip of twice its length, shorter than 10 s; here it is repeated to fill the
clip (what the same wrap-around gives every file between 5 and 10 s). ``collate`` pads files to the
batch's largest clip count and says which clips are real (``clip_mask``).

Text: XLM-R's ``<s> ... </s>``, padded to the batch's longest text; texts longer than the tower's
512 tokens are cut (upstream passes them on and XLM-R fails). See docs/models.md#muq-mulan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from humanclap.backbones.embedder import Waveform
from humanclap.backbones.featurizer import (
    WaveformFeaturizer,
    as_mono_array,
    batch_tensor,
    check_texts,
)


def all_clips(wave: np.ndarray, delta: int) -> np.ndarray:
    """(clips, delta): ``_get_all_clips`` of ``wave``, short files repeated (see the module)."""
    length = wave.shape[0]
    if length < delta:
        return np.tile(wave, -(-delta // length))[None, :delta]
    full = length // delta
    clips = [wave[i * delta : (i + 1) * delta] for i in range(full)]
    if full * delta < length:  # length >= delta here, so the wrapped part always fits
        clips.append(
            np.concatenate([wave[full * delta :], wave[: delta - (length - full * delta)]])
        )
    return np.stack(clips)


class MuqMulanFeaturizer(WaveformFeaturizer):
    """A file's 10 s clips at ``sample_rate`` and XLM-R token ids."""

    def __init__(
        self, tokenizer: Any, sample_rate: int, clip_samples: int, max_text_tokens: int
    ) -> None:
        super().__init__(tokenizer, sample_rate, max_text_tokens)
        self.clip_samples = int(clip_samples)

    def describe(self) -> dict[str, Any]:
        """What a clip's features depend on besides the clip (the feature cache's key)."""
        return {
            "featurizer": type(self).__name__,
            "sample_rate": self._sample_rate,
            "samples": self.clip_samples,
            "clips": "all, remainder wrapped to the start",
        }

    def clip(self, wave: Waveform, what: str = "waveform") -> dict[str, np.ndarray]:
        clips = all_clips(as_mono_array(wave, what=what), self.clip_samples)
        return {"input_values": np.ascontiguousarray(clips, dtype=np.float32)}

    def collate(self, clips: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        """``input_values`` (B, most clips, samples) zero-padded, ``clip_mask`` (B, most clips)."""
        if len(clips) == 0:
            raise ValueError("featurize: no waveforms given")
        most = max(clip["input_values"].shape[0] for clip in clips)
        waves = batch_tensor((len(clips), most, self.clip_samples))
        rows = waves.numpy()
        rows[...] = 0.0
        mask = torch.zeros(len(clips), most, dtype=torch.bool)
        for row, clip in enumerate(clips):
            count = clip["input_values"].shape[0]
            np.copyto(rows[row, :count], clip["input_values"])
            mask[row, :count] = True
        return {"input_values": waves, "clip_mask": mask}

    def text(self, texts: Sequence[str], first_index: int = 0) -> dict[str, torch.Tensor]:
        check_texts(texts, first_index)
        tokens = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_text_tokens,
            return_tensors="pt",
        )
        return {key: tokens[key] for key in ("input_ids", "attention_mask")}
