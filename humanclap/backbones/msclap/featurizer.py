"""MS-CLAP inputs: fixed-length 44.1 kHz waveforms (the model computes its own log-mels) and token
ids as msclap's ``CLAPWrapper`` makes them, without its two sources of batch dependence or failure.

Audio (``CLAPWrapper.load_audio_into_tensor``): a clip shorter than ``duration`` is repeated and cut
to it; a longer one is cropped at a random start, here drawn from a fixed seed per clip, so a clip
always gets the same crop. Text (``CLAPWrapper.preprocess_text``): GPT-2 texts get
``" <|endoftext|>"`` appended and pad with ``"!"``; texts longer than ``text_len`` tokens are cut
(upstream fails on them). See docs/models.md#ms-clap.
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

_CROP_SEED = 0
GPT2_END = " <|endoftext|>"


class MsClapFeaturizer(WaveformFeaturizer):
    """Fixed-length waveforms at ``sample_rate`` and msclap's token ids."""

    def __init__(
        self, tokenizer: Any, text_kind: str, text_len: int, sample_rate: int, duration: float
    ) -> None:
        super().__init__(tokenizer, sample_rate, text_len)
        self.text_kind = text_kind
        self.duration = float(duration)
        if text_kind == "gpt2" and tokenizer.pad_token is None:
            tokenizer.add_special_tokens({"pad_token": "!"})  # as CLAPWrapper.load_clap

    @property
    def clip_samples(self) -> int:
        return int(round(self.duration * self._sample_rate))

    def describe(self) -> dict[str, Any]:
        """What a clip's features depend on besides the clip (the feature cache's key)."""
        return {
            "featurizer": type(self).__name__,
            "sample_rate": self._sample_rate,
            "samples": self.clip_samples,
            "crop_seed": _CROP_SEED,
        }

    def crop(self, wave: np.ndarray) -> np.ndarray:
        target = self.clip_samples
        if target >= wave.shape[0]:
            return np.tile(wave, int(np.ceil(target / wave.shape[0])))[:target]
        start = np.random.RandomState(_CROP_SEED).randint(wave.shape[0] - target)
        return wave[start : start + target]

    def clip(self, wave: Waveform, what: str = "waveform") -> dict[str, np.ndarray]:
        return {"input_features": np.ascontiguousarray(self.crop(as_mono_array(wave, what=what)))}

    def collate(self, clips: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        if len(clips) == 0:
            raise ValueError("featurize: no waveforms given")
        waves = batch_tensor((len(clips), self.clip_samples))
        rows = waves.numpy()
        for row, clip in enumerate(clips):
            np.copyto(rows[row], clip["input_features"])
        return {"input_features": waves}

    def text(self, texts: Sequence[str], first_index: int = 0) -> dict[str, torch.Tensor]:
        check_texts(texts, first_index)
        if self.text_kind == "gpt2":
            texts = [text + GPT2_END for text in texts]
        tokens = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_text_tokens,
            return_tensors="pt",
        )
        keys = ("input_ids", "attention_mask") + (
            ("token_type_ids",) if self.text_kind == "bert" else ()
        )
        return {key: tokens[key] for key in keys}
