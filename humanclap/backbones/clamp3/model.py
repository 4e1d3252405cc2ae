"""CLaMP 3's audio and text towers (sanderwood/clamp3 ``code/utils.py:325-505``, MIT) with upstream's
module names, so ``checkpoint['model']`` of the released ``.pth`` loads as is once its ``symbolic_*``
weights are dropped: ``text_model`` (XLM-RoBERTa), ``text_proj``, ``audio_model`` (a BERT on MERT
features, ``inputs_embeds``), ``audio_proj``.

MERT-v1-95M, the frozen feature extractor CLaMP 3 trains on (``preprocessing/audio/extract_mert.py``,
``hf_pretrains.py``), is transformers' ``HubertModel`` built from an explicit ``HubertConfig``: its
``pytorch_model.bin`` loads strictly and gives CLaMP 3's MERT features bit for bit (upstream's own
``MusicHubertModel`` needs transformers 4.40). Every block is a stock transformers class, built from
its configuration here, never from the hub. See docs/models.md#clamp-3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    HubertConfig,
    HubertModel,
    XLMRobertaConfig,
    XLMRobertaModel,
)

XLM_ROBERTA_BASE = dict(
    vocab_size=250_002,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=514,
    type_vocab_size=1,
    initializer_range=0.02,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
"""``FacebookAI/xlm-roberta-base``'s config.json (``TEXT_MODEL_NAME``, ``code/config.py:45``)."""

AUDIO_BERT = dict(
    vocab_size=1,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=128,
    type_vocab_size=2,
    initializer_range=0.02,
    layer_norm_eps=1e-12,
    pad_token_id=0,
)
"""``audio_config`` of ``code/train_clamp3_audio.py`` / ``extract_clamp3.py``: ``BertConfig(vocab_size=1,
hidden_size=AUDIO_HIDDEN_SIZE, num_hidden_layers=AUDIO_NUM_LAYERS, num_attention_heads=768//64,
intermediate_size=768*4, max_position_embeddings=MAX_AUDIO_LENGTH)``, the other values BertConfig's
defaults spelled out."""

MERT_V1_95M = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    feat_extract_norm="group",
    feat_extract_activation="gelu",
    conv_dim=[512] * 7,
    conv_stride=[5, 2, 2, 2, 2, 2, 2],
    conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    conv_bias=False,
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
    do_stable_layer_norm=False,
    feat_proj_layer_norm=True,
    layer_norm_eps=1e-5,
)
"""``m-a-p/MERT-v1-95M`` as a ``HubertConfig`` (HuBERT-base, 320x down-sampling: 75 frames/s at 24 kHz)."""

MERT_SIZE_KEYS = tuple(MERT_V1_95M)
"""The entries of MERT's config.json a ``HubertConfig`` is built from."""

RELEASE_FILE = (
    "weights_clamp3_saas_h_size_768_t_model_FacebookAI_xlm-roberta-base_t_length_128_a_size_768_"
    "a_layers_12_a_length_128_s_size_768_s_layers_12_p_size_64_p_length_512.pth"
)
"""The SAAS release on the hub (``sander-wood/clamp3``), the one CLaMP 3 recommends for audio."""


@dataclass(frozen=True)
class Clamp3Config:
    """CLaMP 3's hard-coded settings (``code/config.py``, ``extract_mert.py:11-19``)."""

    text: dict[str, Any] = field(default_factory=lambda: dict(XLM_ROBERTA_BASE))
    audio: dict[str, Any] = field(default_factory=lambda: dict(AUDIO_BERT))
    mert: dict[str, Any] = field(default_factory=lambda: dict(MERT_V1_95M))
    hidden_size: int = 768  # CLAMP3_HIDDEN_SIZE: the joint space
    max_text_length: int = 128  # MAX_TEXT_LENGTH: tokens per text segment
    max_audio_length: int = 128  # MAX_AUDIO_LENGTH: MERT vectors (5 s each) per audio segment
    sample_rate: int = 24_000
    chunk_seconds: float = 5.0  # sliding_window_size_in_sec, no overlap
    min_chunk_seconds: float = 1.0  # a shorter last chunk is dropped
    weights_file: str = RELEASE_FILE

    @property
    def chunk_samples(self) -> int:
        return int(round(self.chunk_seconds * self.sample_rate))

    @property
    def min_chunk_samples(self) -> int:
        return int(round(self.min_chunk_seconds * self.sample_rate))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Clamp3Config:
        return cls(**values)


RELEASE = Clamp3Config()
"""The released CLaMP 3 (SAAS): 768-d everywhere, 128-token text and audio segments."""


def small_config(text_vocab_size: int = 1000) -> Clamp3Config:
    """A few-hundred-thousand-parameter model of the release's code path with the same key names,
    for fast tests: 8-vector audio segments (multi-segment audio stays cheap), 128-token text
    segments as released. Widths follow upstream's conventions (audio heads = hidden // 64,
    intermediate = 4 x hidden), so a release-format file of it loads like the real one. Not any
    released model."""
    mert = dict(MERT_V1_95M, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=128, conv_dim=[8] * 7, num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=4)  # fmt: skip
    text = dict(XLM_ROBERTA_BASE, vocab_size=text_vocab_size, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=2, intermediate_size=64, max_position_embeddings=130)  # fmt: skip
    return replace(
        RELEASE,
        text=text,
        audio=audio_bert(hidden_size=64, num_hidden_layers=2, max_length=8),
        mert=mert,
        hidden_size=32,
        max_audio_length=8,
        weights_file="weights_clamp3_small.pth",
    )


def audio_bert(hidden_size: int, num_hidden_layers: int, max_length: int) -> dict[str, Any]:
    """``audio_config`` as ``extract_clamp3.py:42-47`` builds it from ``AUDIO_HIDDEN_SIZE``,
    ``AUDIO_NUM_LAYERS`` and ``MAX_AUDIO_LENGTH``."""
    return dict(AUDIO_BERT, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                num_attention_heads=max(1, hidden_size // 64), intermediate_size=hidden_size * 4,
                max_position_embeddings=max_length)  # fmt: skip


def build_mert(values: dict[str, Any]) -> HubertModel:
    """MERT as transformers' ``HubertModel`` (``values``: :data:`MERT_V1_95M`-like)."""
    return HubertModel(HubertConfig(**values))


def avg_pooling(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``CLaMP3Model.avg_pooling`` (``utils.py:431-436``): the mean over unmasked positions."""
    masks = masks.unsqueeze(-1).to(features.dtype)
    return (features * masks).sum(dim=1) / masks.sum(dim=1)


def segment_average(segments: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``extract_clamp3.py:166-176``: the projected segment vectors (B, S, D) averaged with weights
    (B, S): the segment length for each full segment, ``L % length`` for a last shorter one, 0 for
    absent segments. No normalisation (the backbone normalises)."""
    weights = weights.to(segments.dtype).unsqueeze(-1)
    return (segments * weights).sum(dim=1) / weights.sum(dim=1)


def segments(length: int, size: int) -> list[tuple[int, int, int]]:
    """``extract_clamp3.py:127-131``: (start, stop, weight) of the segments a sequence of ``length``
    is cut into: ``size``-long pieces, the last one the final ``size`` items (it overlaps the one
    before when ``length % size`` != 0), weighted by ``length % size``."""
    starts = list(range(0, length, size))
    pieces = [(start, min(start + size, length), size) for start in starts]
    if length % size:
        pieces[-1] = (max(0, length - size), length, length % size)
    return pieces


class Clamp3Model(nn.Module):
    """The audio and text half of ``CLaMP3Model`` (``utils.py:325-505``); the symbolic tower is left out."""

    def __init__(self, config: Clamp3Config) -> None:
        super().__init__()
        self.config = config
        self.text_model = XLMRobertaModel(XLMRobertaConfig(**config.text))
        self.text_proj = nn.Linear(config.text["hidden_size"], config.hidden_size)
        self.audio_model = BertModel(BertConfig(**config.audio))
        self.audio_proj = nn.Linear(config.audio["hidden_size"], config.hidden_size)

    def unused_parameters(self) -> list[nn.Parameter]:
        """In the checkpoint, in no embedding: both poolers (upstream pools ``last_hidden_state``)
        and the audio BERT's one-row ``word_embeddings`` (``inputs_embeds`` bypasses it). The
        token-type tables are used: both models add type 0 to every position."""
        return [
            *self.text_model.pooler.parameters(),
            *self.audio_model.pooler.parameters(),
            self.audio_model.embeddings.word_embeddings.weight,
        ]

    def _segments(self, encoder, projection, weights, masks, **inputs) -> torch.Tensor:
        """(B, S, ...) segments -> (B, D): encode the present ones (weight > 0) as one batch,
        ``get_*_features(get_global=True)`` each, then :func:`segment_average`."""
        present = weights > 0
        flat_masks = masks[present]
        hidden = encoder(**{k: v[present] for k, v in inputs.items()},
                         attention_mask=flat_masks)["last_hidden_state"]  # fmt: skip
        projected = projection(avg_pooling(hidden, flat_masks))
        rows = projected.new_zeros(*weights.shape, projected.shape[-1])
        rows[present] = projected
        return segment_average(rows, weights)

    def text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """``get_text_features(get_global=True)`` per segment, then the segment average."""
        return self._segments(self.text_model, self.text_proj, tokens["segment_weights"],
                              tokens["attention_mask"], input_ids=tokens["input_ids"])  # fmt: skip

    def audio_features(self, mert: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        """``get_audio_features(get_global=True)`` of each clip's MERT vectors ``mert`` (B, C, H),
        the first ``counts[b]`` rows valid: zero-vector bookends (``extract_clamp3.py:118-124``), cut
        into ``max_audio_length`` segments zero-padded to that length, then the segment average."""
        size = self.config.max_audio_length
        plans = [segments(int(count) + 2, size) for count in counts]
        batch, most = len(plans), max(len(plan) for plan in plans)
        hidden = mert.shape[-1]
        inputs = mert.new_zeros(batch, most, size, hidden)
        masks = torch.zeros(batch, most, size, dtype=torch.long, device=mert.device)
        weights = torch.zeros(batch, most, dtype=torch.long, device=mert.device)
        for row, (plan, count) in enumerate(zip(plans, counts)):
            sequence = torch.cat([mert.new_zeros(1, hidden), mert[row, : int(count)],
                                  mert.new_zeros(1, hidden)])  # fmt: skip
            for index, (start, stop, weight) in enumerate(plan):
                inputs[row, index, : stop - start] = sequence[start:stop]
                masks[row, index, : stop - start] = 1
                weights[row, index] = weight
        return self._segments(self.audio_model, self.audio_proj, weights, masks,
                              inputs_embeds=inputs)  # fmt: skip


@torch.no_grad()
def mert_features(
    mert: HubertModel, chunks: torch.Tensor, lengths: torch.Tensor, batch_size: int = 16
) -> torch.Tensor:
    """CLaMP 3's MERT vector of every chunk (``hf_pretrains.py:61-72``, ``extract_mert.py:97-98``): the
    time mean of each of the 13 hidden states (embedding output + 12 layers), averaged over layers.

    ``chunks`` (B, C, T) normalised waveforms, ``lengths`` (B, C) their lengths (0: no chunk). Chunks
    run at their own length, equal lengths together: HuBERT's first convolution is followed by a
    GroupNorm over time, so a zero-padded chunk would not give the chunk's features. A clip's vectors
    therefore never depend on the batch it is in. Returns (B, C, H); absent chunks are zero.
    """
    out = chunks.new_zeros(*lengths.shape, mert.config.hidden_size)
    for length in sorted({int(n) for n in lengths.flatten().tolist() if n > 0}):
        where = (lengths == length).nonzero().tolist()
        for first in range(0, len(where), batch_size):
            rows = where[first : first + batch_size]
            wave = torch.stack([chunks[b, c, :length] for b, c in rows])
            states = mert(wave, output_hidden_states=True).hidden_states
            vectors = torch.stack(states).mean(-2).mean(0)  # [L, n, T, H] -> [L, n, H] -> [n, H]
            for (b, c), vector in zip(rows, vectors):
                out[b, c] = vector
    return out
