"""MS-CLAP's network (msclap 1.3.4 ``msclap/models/clap.py``, MIT, Microsoft) with upstream's module
names, so its checkpoints' ``{"model": state_dict}`` loads as is: ``audio_encoder.{base,projection}``,
``caption_encoder.{base,projection}``, ``logit_scale``.

The text towers are transformers' ``BertModel`` (2022: ``bert-base-uncased``, the [CLS] output) and
``GPT2Model`` (2023: ``gpt2``, the output at the last token, the appended ``<|endoftext|>``), built
here from their configuration, never from the hub. See docs/models.md#ms-clap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

from humanclap.backbones.msclap.cnn14 import Cnn14, Cnn14Config
from humanclap.backbones.msclap.htsat import HtsatConfig, HtsatWrapper

BERT_BASE_UNCASED = dict(
    vocab_size=30_522,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=512,
    type_vocab_size=2,
    initializer_range=0.02,
    layer_norm_eps=1e-12,
    pad_token_id=0,
)
"""``bert-base-uncased``'s config.json (every value is also BertConfig's default)."""

GPT2_SMALL = dict(
    vocab_size=50_257,
    n_positions=1024,
    n_embd=768,
    n_layer=12,
    n_head=12,
    activation_function="gelu_new",
    resid_pdrop=0.1,
    embd_pdrop=0.1,
    attn_pdrop=0.1,
    layer_norm_epsilon=1e-5,
    initializer_range=0.02,
    bos_token_id=50_256,
    eos_token_id=50_256,
)
"""``gpt2``'s config.json (the 124 M model; every value is also GPT2Config's default)."""


@dataclass(frozen=True)
class MsClapConfig:
    """One MS-CLAP release: ``config_2022.yml`` / ``config_2023.yml`` of msclap, with the text
    tower's configuration spelled out (upstream reads it from the hub)."""

    version: str
    text_model: str  # the hub name of the text tower and tokenizer: bert-base-uncased | gpt2
    text: dict[str, Any]  # BertConfig / GPT2Config arguments
    text_len: int
    audio: Cnn14Config | HtsatConfig
    sampling_rate: int = 44_100
    duration: float = 5.0  # seconds a clip is cropped or repeated to
    transformer_embed_dim: int = 768
    out_emb: int = 2048
    d_proj: int = 1024

    @property
    def text_kind(self) -> str:
        return "gpt2" if "gpt" in self.text_model else "bert"

    @property
    def weights_file(self) -> str:
        return f"CLAP_weights_{self.version}.pth"

    @property
    def clip_samples(self) -> int:
        return int(round(self.duration * self.sampling_rate))

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["audio_encoder"] = "HTSAT" if isinstance(self.audio, HtsatConfig) else "Cnn14"
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MsClapConfig:
        values = dict(values)
        kind = values.pop("audio_encoder")
        audio = dict(values.pop("audio"))
        for key, value in audio.items():
            if isinstance(value, list):
                audio[key] = tuple(value)
        audio_config = (HtsatConfig if kind == "HTSAT" else Cnn14Config)(**audio)
        return cls(audio=audio_config, **values)


VERSIONS: dict[str, MsClapConfig] = {
    "2022": MsClapConfig(
        version="2022",
        text_model="bert-base-uncased",
        text=BERT_BASE_UNCASED,
        text_len=100,
        audio=Cnn14Config(),
        duration=5,
        out_emb=2048,
    ),
    "2023": MsClapConfig(
        version="2023",
        text_model="gpt2",
        text=GPT2_SMALL,
        text_len=77,
        audio=HtsatConfig(),
        duration=7,
        out_emb=768,
    ),
}
"""The two released MS-CLAP models (hub ``microsoft/msclap``, ``CLAP_weights_{2022,2023}.pth``)."""


def small_config(version: str) -> MsClapConfig:
    """A few-hundred-thousand-parameter model of a release's architecture and code path (1 s clips),
    for fast tests and trying things: not any released model."""
    base = VERSIONS[version]
    if base.text_kind == "gpt2":
        text = dict(GPT2_SMALL, n_positions=128, n_embd=32, n_layer=2, n_head=2)
    else:
        text = dict(BERT_BASE_UNCASED, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=128)  # fmt: skip
    if isinstance(base.audio, HtsatConfig):
        audio = replace(
            base.audio, spec_size=128, embed_dim=16, depths=(1, 1), num_heads=(2, 4), classes_num=8
        )
        out_emb = audio.num_features
    else:
        audio = replace(base.audio, channels=(4, 8, 8, 16, 16, 32), out_emb=32, classes_num=8)
        out_emb = 32
    return replace(
        base,
        text=text,
        transformer_embed_dim=32,
        audio=audio,
        out_emb=out_emb,
        d_proj=32,
        duration=1,
    )


class Projection(nn.Module):
    """msclap's projection: ``LayerNorm(l1(x) + dropout(l2(gelu(l1(x)))))``, no biases, dropout 0.5."""

    def __init__(self, d_in: int, d_out: int, p: float = 0.5) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)
        self.drop = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embed1 = self.linear1(x)
        return self.layer_norm(embed1 + self.drop(self.linear2(F.gelu(embed1))))


class AudioEncoder(nn.Module):
    def __init__(self, config: MsClapConfig) -> None:
        super().__init__()
        if isinstance(config.audio, HtsatConfig):
            self.base: nn.Module = HtsatWrapper(config.audio)
        else:
            self.base = Cnn14(config.audio)
        self.projection = Projection(config.out_emb, config.d_proj)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.projection(self.base(waves))


class TextEncoder(nn.Module):
    def __init__(self, config: MsClapConfig) -> None:
        super().__init__()
        self.kind = config.text_kind
        if self.kind == "gpt2":
            self.base: nn.Module = GPT2Model(GPT2Config(**config.text))
        else:
            self.base = BertModel(BertConfig(**config.text))
        self.projection = Projection(config.transformer_embed_dim, config.d_proj)

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.base(**tokens)[0]
        if self.kind == "gpt2":
            # The last real token (the appended <|endoftext|>). Upstream counts ids != 0 (GPT-2's
            # "!", its pad token), which differs only for texts containing "!"; see docs.
            last = tokens["attention_mask"].sum(-1) - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        else:
            pooled = hidden[:, 0, :]  # [CLS]
        return self.projection(pooled)


class MsClapModel(nn.Module):
    def __init__(self, config: MsClapConfig) -> None:
        super().__init__()
        self.config = config
        self.audio_encoder = AudioEncoder(config)
        self.caption_encoder = TextEncoder(config)
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

    def unused_parameters(self) -> list[nn.Parameter]:
        """The AudioSet classifier and BERT's pooler: in the checkpoints, not in any embedding."""
        unused = list(self.audio_encoder.base.classifier_parameters())
        pooler = getattr(self.caption_encoder.base, "pooler", None)
        if pooler is not None:
            unused += list(pooler.parameters())
        return unused
