"""Deterministic CLAP input features: log-mel spectrograms + ``is_longer``, and token ids.

Unlike transformers' ``ClapFeatureExtractor``, a clip's features never depend on the batch it
sits in (a fixed crop seed per clip, ``is_longer`` from the clip length).
See docs/models.md#deterministic-features.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from humanclap.backbones.embedder import Waveform

TEXT_MAX_TOKENS = 77
"""Token budget of every LAION-CLAP text tower (``CLAP_Module.tokenizer``: max_length=77)."""

_CROP_SEED = 0


@contextmanager
def _fixed_numpy_seed(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def as_mono_array(wave: Waveform, what: str = "waveform") -> np.ndarray:
    """A 1-D float32 NumPy copy of ``wave``; refuses multi-channel, empty or non-finite audio."""
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().to("cpu", torch.float32).numpy()
    array = np.asarray(wave, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"{what}: expected a mono 1-D waveform, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{what}: empty waveform")
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: waveform contains NaN or infinite samples")
    return array


CHANNELS = "input_features_channels"
"""Key of a compact batch: ``input_features`` holds one of that many equal channels (``expand_channels``)."""


def in_loader_worker() -> bool:
    from torch.utils.data import get_worker_info

    return get_worker_info() is not None


def _one_channel(clip: dict[str, np.ndarray]) -> bool:
    """A clip whose channels are one broadcast array (the feature cache's repeated crops)."""
    features = clip["input_features"]
    return features.ndim == 3 and features.strides[0] == 0


def expand_channels(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``features`` with a compact ``input_features`` (see ``collate``) expanded to all its channels,
    on whatever device it is; other batches unchanged."""
    if CHANNELS not in features:
        return features
    features = dict(features)
    channels = int(features.pop(CHANNELS))
    compact = features["input_features"]
    features["input_features"] = compact.expand(-1, channels, -1, -1).contiguous()
    return features


def batch_tensor(shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised tensor for a batch; in a DataLoader worker it is allocated in shared memory
    (as torch's ``default_collate`` does), so handing it to the main process copies nothing."""
    if not in_loader_worker():
        return torch.empty(tuple(shape), dtype=dtype)
    count = int(np.prod(shape))
    storage = torch.UntypedStorage._new_shared(count * torch.empty((), dtype=dtype).element_size())
    return torch.empty(0, dtype=dtype).set_(storage).view(tuple(shape))


def _jsonable(value: Any) -> Any:
    """``value`` with NumPy arrays and scalars as lists and numbers (extractor dicts hold mel filters)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_texts(texts: Sequence[str], first_index: int = 0) -> None:
    """Refuse an empty batch and texts that are not non-empty strings, naming the item
    (``first_index``: position of ``texts[0]`` in the caller's list)."""
    if len(texts) == 0:
        raise ValueError("tokenize: no texts given")
    for index, text in enumerate(texts, start=first_index):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text {index}: expected a non-empty string, got {text!r}")


class WaveformFeaturizer:
    """Base of the featurizers whose models compute their own spectrograms (MS-CLAP, MuQ-MuLan,
    CLaMP 3): ``clip`` cuts, crops or normalises one waveform at ``sample_rate``, ``collate`` stacks
    clips, ``audio`` does both for a batch of waveforms. Picklable; holds the tokenizer, no weights."""

    def __init__(self, tokenizer: Any, sample_rate: int, max_text_tokens: int) -> None:
        self.tokenizer = tokenizer
        self._sample_rate = int(sample_rate)
        self.max_text_tokens = int(max_text_tokens)

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    def clip(self, wave: Waveform, what: str = "waveform") -> dict[str, np.ndarray]:
        raise NotImplementedError

    def collate(self, clips: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def audio(self, waves: Sequence[Waveform], first_index: int = 0) -> dict[str, torch.Tensor]:
        """``first_index``: position of ``waves[0]`` in the caller's list, so errors name the real item."""
        if len(waves) == 0:
            raise ValueError("featurize: no waveforms given")
        return self.collate(
            [self.clip(w, what=f"waveform {i}") for i, w in enumerate(waves, start=first_index)]
        )


class ClapFeaturizer:
    """Turns waveforms and texts into the tensors a transformers ``ClapModel`` consumes."""

    def __init__(self, feature_extractor, tokenizer, enable_fusion: bool) -> None:
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.enable_fusion = enable_fusion
        # The checkpoint decides the cropping mode, whatever the preprocessor file says: fused
        # models were trained on 4-channel fusion inputs, unfused ones on a single crop.
        self.truncation = "fusion" if enable_fusion else "rand_trunc"
        self._token_ids: dict[str, list[int]] = {}  # text -> its token ids (see ``text``)

    @property
    def sample_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @property
    def max_samples(self) -> int:
        return int(self.feature_extractor.nb_max_samples)

    def is_longer(self, num_samples: int) -> bool:
        """The extractor's own rule: longer iff the clip has more mel frames than one window."""
        hop = self.feature_extractor.hop_length
        return num_samples > self.max_samples and num_samples // hop != self.max_samples // hop

    def describe(self) -> dict[str, Any]:
        """Everything a clip's features depend on besides the clip (the feature cache's key):
        the extractor's settings, the cropping mode and seed, the transformers version."""
        import transformers

        return {
            "featurizer": type(self).__name__,
            "extractor": _jsonable(self.feature_extractor.to_dict()),
            "truncation": self.truncation,
            "crop_seed": _CROP_SEED,
            "transformers": transformers.__version__,
        }

    def clip(self, wave: Waveform, what: str = "waveform") -> dict[str, np.ndarray]:
        """One clip's features as NumPy arrays: ``input_features`` (channels, frames, mels) float32 and
        ``is_longer`` (a 0-d bool). ``collate`` stacks clips into the model's batch."""
        array = as_mono_array(wave, what=what)
        with _fixed_numpy_seed(_CROP_SEED):
            out = self.feature_extractor(
                array,
                sampling_rate=self.sample_rate,
                truncation=self.truncation,
                return_tensors="np",
            )
        return {
            "input_features": np.ascontiguousarray(out["input_features"][0], dtype=np.float32),
            "is_longer": np.array(self.is_longer(array.shape[0])),
        }

    def collate(self, clips: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        """A batch from ``clip`` outputs: ``input_features`` (B, ...), ``is_longer`` (B, 1)."""
        if len(clips) == 0:
            raise ValueError("featurize: no waveforms given")
        longer = torch.tensor([bool(c["is_longer"]) for c in clips], dtype=torch.bool).unsqueeze(1)
        shape = clips[0]["input_features"].shape
        channels = shape[0] if len(shape) == 3 else 1
        if channels > 1 and in_loader_worker() and all(_one_channel(c) for c in clips):
            # Cached fused features of clips up to 10 s: four equal crops, read as one broadcast. A
            # worker hands over the one crop, a quarter of the shared memory and of the copy to the
            # device; the model's input step restores the four (``expand_channels``).
            compact = batch_tensor((len(clips), 1, *shape[1:]))
            rows = compact.numpy()
            for row, clip in enumerate(clips):
                np.copyto(rows[row], clip["input_features"][:1])
            return {"input_features": compact, "is_longer": longer, CHANNELS: channels}
        features = batch_tensor((len(clips), *shape))
        rows = features.numpy()
        for row, clip in enumerate(clips):
            np.copyto(rows[row], clip["input_features"])
        return {"input_features": features, "is_longer": longer}

    def audio(self, waves: Sequence[Waveform], first_index: int = 0) -> dict[str, torch.Tensor]:
        """``first_index``: position of ``waves[0]`` in the caller's list, so errors name the real item."""
        if len(waves) == 0:
            raise ValueError("featurize: no waveforms given")
        return self.collate(
            [
                self.clip(wave, what=f"waveform {index}")
                for index, wave in enumerate(waves, start=first_index)
            ]
        )

    def text(self, texts: Sequence[str], first_index: int = 0) -> dict[str, torch.Tensor]:
        check_texts(texts, first_index)
        if getattr(self.tokenizer, "padding_side", "right") != "right":
            tokens = self.tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=TEXT_MAX_TOKENS,
                return_tensors="pt",
            )
            return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
        # The tokenizer's own batch call pads each text's ids on the right to the batch's longest;
        # the ids of a text never change, so they are computed once per process (a training epoch
        # tokenises the same texts again) and padded here exactly as it would.
        known = self._token_ids
        missing = [text for text in dict.fromkeys(texts) if text not in known]
        if missing:
            encoded = self.tokenizer(missing, truncation=True, max_length=TEXT_MAX_TOKENS)
            known.update(zip(missing, encoded["input_ids"]))
        ids = [known[text] for text in texts]
        width = max(len(row) for row in ids)
        input_ids = torch.full(
            (len(ids), width), int(self.tokenizer.pad_token_id), dtype=torch.long
        )
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, values in enumerate(ids):
            input_ids[row, : len(values)] = torch.tensor(values, dtype=torch.long)
            attention_mask[row, : len(values)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}
