"""MuQ-MuLan's network (``muq`` 0.1.0, MIT, Tencent AI Lab; hub ``OpenMuQ/MuQ-MuLan-large``) with
upstream's module names, so the release's ``pytorch_model.bin`` (815 tensors) loads strictly:
``mulan.audio.{model.model,aggregator,transformer,proj}``, ``mulan.text.{model,transformer,proj}``,
``mulan.{audio,text}_to_latents``, ``mulan.contrast.temperatures``.

Upstream builds both towers with ``from_pretrained`` from the hub before the checkpoint overwrites
them; here they are built from configuration only. The conformer layers and rotary embedding are
transformers' ``Wav2Vec2Conformer*`` with a real ``Wav2Vec2ConformerConfig`` (upstream passes an
``EasyDict``, which transformers 5 cannot run), and the text tower is transformers'
``XLMRobertaModel``. Everything only training uses (masking, the quantizer's lookup, losses) is left
out; its stored tensors are kept so the load stays strict. See docs/models.md#muq-mulan.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Wav2Vec2ConformerConfig, XLMRobertaConfig, XLMRobertaModel
from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import (
    Wav2Vec2ConformerEncoder,
)

from humanclap.backbones.muq.frontend import MelSTFT

# -- configuration ------------------------------------------------------------------------------

MULAN = dict(
    sr=24_000,
    clip_secs=10,
    dim_latent=512,
    decoupled_contrastive_learning=True,
    hierarchical_contrastive_loss=False,
    hierarchical_contrastive_loss_layers=None,
    sigmoid_contrastive_loss=False,
    rank_contrast=True,
)
"""``config.json["mulan"]`` (``MuLanConfig``, muq_mulan.py:19-28; values as the research report read
them from the release)."""

AUDIO_MODEL = dict(name="OpenMuQ/MuQ-large-msd-iter", model_dim=1024, use_layer_idx=-1)
TEXT_MODEL = dict(name="xlm-roberta-base", model_dim=768, use_layer_idx=-1)
# Inferred: the ``ModalModelConfig``/``*TransformerConfig`` defaults (muq_mulan.py:30-58), which match
# the release's 709.3 M parameters; the exact text ``name`` string is unverified.
AUDIO_TRANSFORMER = dict(
    dim=768, tf_depth=8, heads=8, dim_head=64, attn_dropout=0.0, ff_dropout=0.0, ff_mult=4
)
TEXT_TRANSFORMER = dict(AUDIO_TRANSFORMER, max_seq_len=1024)

W2V2 = dict(
    hidden_act="swish",
    hidden_dropout=0.1,
    activation_dropout=0.1,
    attention_dropout=0.1,
    conformer_conv_dropout=0.1,
    feat_proj_dropout=0.1,
    layerdrop=0.0,
    intermediate_size=4096,
    layer_norm_eps=1e-5,
    num_attention_heads=16,
    position_embeddings_type="rotary",
    rotary_embedding_base=10_000,
    conv_depthwise_kernel_size=31,
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
    max_source_positions=5000,
)
"""The conformer's ``w2v2_config`` (inferred, from a public fairseq wrapper of MuQ-large-msd-iter; the
keys of it the encoder layers read). ``hidden_size``/``num_hidden_layers`` come from ``encoder_dim``/
``encoder_depth`` as in muq_model.py:132-133."""

MUQ = dict(
    label_rate=25,
    num_codebooks=1,
    codebook_dim=16,
    codebook_size=4096,
    features=["melspec_2048"],
    hop_length=240,
    n_mels=128,
    conv_dim=512,
    encoder_dim=1024,
    encoder_depth=12,
    stat=dict(melspec_2048_mean=6.768444971712967, melspec_2048_std=18.417922652295623),
    w2v2_config=W2V2,
)
"""``OpenMuQ/MuQ-large-msd-iter``'s config.json (``MuQConfig``, muq/muq.py:9-33): inferred from a public
wrapper, unless the release folder has that file (then its values are used)."""

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
"""``xlm-roberta-base``'s config.json (the text tower: hidden 768, so MuLan's ``proj`` is Identity)."""

SECTIONS = ("mulan", "audio_model", "text_model", "audio_transformer", "text_transformer")
"""The top-level keys of the release's config.json (``MuQMuLanConfig``, muq_mulan.py:60-64)."""


@dataclass(frozen=True)
class MuqMulanConfig:
    """One MuQ-MuLan: the release's config.json sections plus the two towers' own configurations
    (upstream reads those from the hub: ``muq`` is MuQ-large-msd-iter's, ``xlm_roberta`` XLM-R's)."""

    mulan: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(MULAN))
    audio_model: dict[str, Any] = field(default_factory=lambda: dict(AUDIO_MODEL))
    text_model: dict[str, Any] = field(default_factory=lambda: dict(TEXT_MODEL))
    audio_transformer: dict[str, Any] = field(default_factory=lambda: dict(AUDIO_TRANSFORMER))
    text_transformer: dict[str, Any] = field(default_factory=lambda: dict(TEXT_TRANSFORMER))
    muq: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(MUQ))
    xlm_roberta: dict[str, Any] = field(default_factory=lambda: dict(XLM_ROBERTA_BASE))

    @property
    def sample_rate(self) -> int:
        return int(self.mulan["sr"])

    @property
    def clip_samples(self) -> int:
        """``delta = sr * clip_secs`` of ``_get_all_clips`` (muq_mulan.py:262)."""
        return int(self.mulan["sr"] * self.mulan["clip_secs"])

    @property
    def max_text_tokens(self) -> int:
        """XLM-R's positions minus the padding offset (514 - 2 = 512 for the release)."""
        return int(self.xlm_roberta["max_position_embeddings"]) - 2

    def release_json(self) -> dict[str, Any]:
        """The release's config.json (``MuQMuLanConfig``) of this model."""
        return {key: copy.deepcopy(getattr(self, key)) for key in SECTIONS}

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MuqMulanConfig:
        unknown = sorted(set(values) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise ValueError(f"unknown MuQ-MuLan config sections {unknown}")
        config = cls(**{key: copy.deepcopy(value) for key, value in values.items()})
        validate(config)
        return config


RELEASE = MuqMulanConfig()
"""``OpenMuQ/MuQ-MuLan-large`` (709.3 M parameters)."""


def small_config(vocab_size: int = 64) -> MuqMulanConfig:
    """A few-hundred-thousand-parameter model with the release's code path and key names (24 kHz,
    10 s clips, 128 mels, a conformer with rotary attention, XLM-R text): not any released model."""
    muq = copy.deepcopy(MUQ)
    muq.update(conv_dim=4, encoder_dim=48, encoder_depth=2, codebook_size=64)
    muq["w2v2_config"].update(
        intermediate_size=64,
        num_attention_heads=2,
        conv_depthwise_kernel_size=7,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    )
    xlmr = dict(XLM_ROBERTA_BASE, vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=2, intermediate_size=64, max_position_embeddings=130)  # fmt: skip
    tower = dict(
        dim=32, tf_depth=2, heads=2, dim_head=16, attn_dropout=0.0, ff_dropout=0.0, ff_mult=4
    )
    return MuqMulanConfig(
        mulan=dict(MULAN, dim_latent=16),
        audio_model=dict(AUDIO_MODEL, model_dim=48),
        text_model=dict(TEXT_MODEL, model_dim=32),
        audio_transformer=dict(tower),
        text_transformer=dict(tower, max_seq_len=1024),
        muq=muq,
        xlm_roberta=xlmr,
    )


_NUMBER = (int, float)
_EXPECTED: dict[str, dict[str, tuple[type, ...]]] = {
    "mulan": {"sr": (int,), "clip_secs": _NUMBER, "dim_latent": (int,)},
    "audio_model": {"name": (str,), "model_dim": (int,), "use_layer_idx": (int,)},
    "text_model": {"name": (str,), "model_dim": (int, type(None))},
    "audio_transformer": {k: (int,) for k in ("dim", "tf_depth", "heads", "dim_head", "ff_mult")},
    "text_transformer": {k: (int,) for k in ("dim", "tf_depth", "heads", "dim_head", "ff_mult")},
    "muq": {
        k: (int,)
        for k in (
            "label_rate",
            "codebook_dim",
            "codebook_size",
            "hop_length",
            "n_mels",
            "conv_dim",
            "encoder_dim",
            "encoder_depth",
        )
    },  # fmt: skip
}


def validate(config: MuqMulanConfig) -> None:
    """Raise ValueError naming the entry if ``config`` is not one this port computes as upstream."""
    for section, keys in _EXPECTED.items():
        values = getattr(config, section)
        if not isinstance(values, dict):
            raise ValueError(f"'{section}' must be a mapping, got {values!r}")
        for key, kinds in keys.items():
            value = values.get(key)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(f"'{section}.{key}' must be {_kinds(kinds)}, got {value!r}")
    mulan, muq = config.mulan, config.muq
    checks = [
        (mulan["sr"] == 24_000, "'mulan.sr' must be 24000 (MuQ's mel front end is fixed at 24 kHz)"),
        (mulan["clip_secs"] > 0 and config.clip_samples > 0, "'mulan.clip_secs' must be > 0"),
        (not mulan.get("sigmoid_contrastive_loss") and not mulan.get("hierarchical_contrastive_loss"),
         "sigmoid and hierarchical contrastive losses add weights this port does not have"),
        ("muq" in config.audio_model["name"].lower(),
         "'audio_model.name' must name a MuQ model (upstream's MERT path is not ported)"),
        ("xlm-roberta" in config.text_model["name"],
         "'text_model.name' must name an XLM-RoBERTa model (upstream requires it)"),
        (muq.get("features", ["melspec_2048"]) == ["melspec_2048"] and muq.get("num_codebooks", 1) == 1,
         "MuQ's 'features' must be ['melspec_2048'] with one codebook"),
        (not any(muq.get(k) for k in ("use_rvq_target", "use_vq_target", "use_encodec_target")),
         "MuQ's RVQ/VQ/Encodec targets are not ported"),
        (not muq.get("is_flash", False), "MuQ's flash conformer is not ported"),
        (100 // muq["label_rate"] in (2, 4), "'muq.label_rate' must be 25 or 50"),
        (config.audio_model["model_dim"] == muq["encoder_dim"],
         "'audio_model.model_dim' must equal MuQ's encoder_dim"),
        (-(muq["encoder_depth"] + 1) <= config.audio_model["use_layer_idx"] <= muq["encoder_depth"],
         "'audio_model.use_layer_idx' must index one of MuQ's encoder_depth + 1 hidden states"),
        (config.text_model["model_dim"] in (None, config.xlm_roberta.get("hidden_size")),
         "'text_model.model_dim' must be the text model's hidden_size"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    stat = muq.get("stat")
    if not isinstance(stat, dict):
        raise ValueError(f"MuQ's 'stat' must be a mapping, got {stat!r}")
    for key in ("melspec_2048_mean", "melspec_2048_std"):
        if isinstance(stat.get(key), bool) or not isinstance(stat.get(key), _NUMBER):
            raise ValueError(f"MuQ's 'stat.{key}' must be a number, got {stat.get(key)!r}")
    try:
        conformer_config(config)
        XLMRobertaConfig(**config.xlm_roberta)
    except (TypeError, ValueError) as error:
        raise ValueError(f"the towers' configuration is not usable ({error})") from None


def _kinds(kinds: tuple[type, ...]) -> str:
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def conformer_config(config: MuqMulanConfig) -> Wav2Vec2ConformerConfig:
    """A real ``Wav2Vec2ConformerConfig`` where upstream passes ``EasyDict(w2v2_config)``
    (muq_model.py:131-136), eager attention as transformers 4's conformer computed it."""
    values = {
        k: v for k, v in config.muq["w2v2_config"].items() if k not in ("model_type", "torch_dtype")
    }
    values.update(
        num_hidden_layers=config.muq["encoder_depth"], hidden_size=config.muq["encoder_dim"]
    )
    conformer = Wav2Vec2ConformerConfig(**values)
    conformer._attn_implementation = "eager"
    return conformer


# -- MuQ: the audio model (muq/muq/models/muq_model.py, muq/muq/modules/conv.py) -------------------


class Res2dModule(nn.Module):
    """conv.py:5-27."""

    def __init__(self, idim: int, odim: int, stride: tuple[int, int] = (2, 2)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(idim, odim, 3, padding=1, stride=stride)
        self.bn1 = nn.BatchNorm2d(odim)
        self.conv2 = nn.Conv2d(odim, odim, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(odim)
        self.relu = nn.ReLU()
        self.diff = (idim != odim) or (stride[0] > 1)
        if self.diff:
            self.conv3 = nn.Conv2d(idim, odim, 3, padding=1, stride=stride)
            self.bn3 = nn.BatchNorm2d(odim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.diff:
            x = self.bn3(self.conv3(x))
        return self.relu(x + out)


class Conv2dSubsampling(nn.Module):
    """conv.py:30-68: (B, mels, frames) -> (B, frames / 4, odim)."""

    def __init__(self, idim: int, hdim: int, odim: int, strides: list[int], n_bands: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            Res2dModule(idim, hdim, (2, strides[0])), Res2dModule(hdim, hdim, (2, strides[1]))
        )
        self.linear = nn.Linear(hdim * n_bands // 2 // 2, odim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.unsqueeze(1))  # (b, c, f, t)
        b, c, f, t = x.shape
        return self.linear(x.permute(0, 3, 1, 2).reshape(b, t, c * f))


class RandomProjectionQuantizer(nn.Module):
    """random_quantizer.py: only its two stored buffers (training targets; never used here)."""

    def __init__(self, input_dim: int, codebook_dim: int, codebook_size: int) -> None:
        super().__init__()
        self.register_buffer("random_projection", torch.zeros(input_dim, codebook_dim))
        self.register_buffer("codebook", torch.zeros(codebook_size, codebook_dim))


class MuQModel(nn.Module):
    """muq_model.py:13-156 (inference path: ``get_predictions`` with ``is_features_only``).

    Unused by any embedding (kept for the strict load): ``quantizer_melspec_2048``, ``linear``,
    ``cls_token``, ``conformer.pos_conv_embed`` (built but never called by the conformer encoder).
    """

    def __init__(self, config: MuqMulanConfig) -> None:
        super().__init__()
        muq = config.muq
        self.n_fold = int(100 // muq["label_rate"])
        self.hop_length = muq["hop_length"]
        self.mean = float(muq["stat"]["melspec_2048_mean"])
        self.std = float(muq["stat"]["melspec_2048_std"])
        self.preprocessor_melspec_2048 = MelSTFT(
            sample_rate=24_000, n_fft=2048, hop_length=muq["hop_length"], n_mels=muq["n_mels"]
        )
        self.quantizer_melspec_2048 = RandomProjectionQuantizer(
            muq["n_mels"] * self.n_fold, muq["codebook_dim"], muq["codebook_size"]
        )
        self.conv = Conv2dSubsampling(1, muq["conv_dim"], muq["encoder_dim"],
                                      strides={4: [2, 2], 2: [2, 1]}[self.n_fold],
                                      n_bands=muq["n_mels"])  # fmt: skip
        self.conformer = Wav2Vec2ConformerEncoder(conformer_config(config))
        self.linear = nn.Linear(muq["encoder_dim"], muq["codebook_size"])
        self.cls_token = nn.Parameter(torch.randn(muq["encoder_dim"]))

    def hidden_state(self, waves: torch.Tensor, index: int) -> torch.Tensor:
        """``hidden_states[index]`` of ``MuQ.forward`` (muq.py:66-90): 0 is the conformer's input,
        k the output of layer k-1, the last the final LayerNorm's output. Upstream's v4 encoder
        loop (``output_hidden_states``), written out as transformers 5 no longer collects them."""
        depth = len(self.conformer.layers)
        index = index % (depth + 1)
        with torch.no_grad():  # preprocessing + normalize are no_grad upstream (l.173, l.224)
            mel = self.preprocessor_melspec_2048(waves)[..., :-1]
            mel = ((mel - self.mean) / self.std).to(self.conv.linear.weight.dtype)
        hidden = self.conformer.dropout(self.conv(mel))
        positions = self.conformer.embed_positions(hidden)
        for layer in self.conformer.layers[:index]:
            hidden = layer(hidden, attention_mask=None, relative_position_embeddings=positions)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        if index == depth:
            hidden = self.conformer.layer_norm(hidden)
        return hidden

    def unused_parameters(self, index: int) -> list[nn.Parameter]:
        depth = len(self.conformer.layers)
        index = index % (depth + 1)
        unused = [self.cls_token, *self.linear.parameters()]
        unused += list(self.conformer.pos_conv_embed.parameters())
        for layer in self.conformer.layers[index:]:
            unused += list(layer.parameters())
        if index < depth:
            unused += list(self.conformer.layer_norm.parameters())
        return unused


class MuQ(nn.Module):
    """muq/muq.py:35-64: the hub wrapper, whose one child is ``model``."""

    def __init__(self, config: MuqMulanConfig) -> None:
        super().__init__()
        self.model = MuQModel(config)


# -- MuLan's transformer (muq_mulan/modules/transformer.py) -------------------------------------


class LayerNorm(nn.Module):
    """transformer.py:24-33: bias-less, only ``learned_gamma`` is stored."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.learned_gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.learned_gamma, self.beta.to(x.dtype))


class GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * x


def FeedForward(dim: int, mult: int = 4, dropout: float = 0.0) -> nn.Sequential:  # noqa: N802
    """transformer.py:43-52 (a function, as upstream: the keys are ``0``, ``1``, ``4``)."""
    hidden = int(dim * mult * 2 / 3)
    return nn.Sequential(
        LayerNorm(dim),
        nn.Linear(dim, hidden * 2, bias=False),
        GEGLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, dim, bias=False),
    )


class Attention(nn.Module):
    """transformer.py:55-129: pre-norm, l2-normalised queries and keys times learned scales, x 8."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.scale = 8
        inner = dim_head * heads
        self.norm = LayerNorm(dim)
        self.attn_dropout = nn.Dropout(dropout)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=False), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.norm(x)
        q, k, v = self.to_q(x), *self.to_kv(x).chunk(2, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        q = F.normalize(q, dim=-1) * self.q_scale
        k = F.normalize(k, dim=-1) * self.k_scale
        sim = torch.einsum("bhid,bhjd->bhij", q, k) * self.scale
        if mask is not None:  # key mask (b, j), as upstream's ``mask`` argument
            sim = sim.masked_fill(~mask[:, None, None, :], -torch.finfo(sim.dtype).max)
        attn = self.attn_dropout(sim.softmax(dim=-1))
        out = torch.einsum("bhij,bhjd->bhid", attn, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class Transformer(nn.Module):
    """transformer.py:132-170: residual attention + GEGLU blocks, no final norm."""

    def __init__(self, dim: int, depth: int, dim_head: int = 64, heads: int = 8,
                 attn_dropout: float = 0.0, ff_mult: int = 4, ff_dropout: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    Attention(dim, dim_head=dim_head, heads=heads, dropout=attn_dropout),
                    FeedForward(dim, mult=ff_mult, dropout=ff_dropout),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for attn, ff in self.layers:
            x = attn(x, mask=mask) + x
            x = ff(x) + x
        return x


def _transformer(values: dict[str, Any]) -> Transformer:
    return Transformer(values["dim"], values["tf_depth"], dim_head=values["dim_head"],
                       heads=values["heads"], attn_dropout=values.get("attn_dropout", 0.0),
                       ff_mult=values["ff_mult"], ff_dropout=values.get("ff_dropout", 0.0))  # fmt: skip


# -- the towers (muq_mulan/models/{audio,text}.py) ----------------------------------------------


class AudioTower(nn.Module):
    """``AudioSpectrogramTransformerPretrained`` (audio.py:339-439), MuQ branch: MuQ's hidden state
    ``use_layer_idx`` -> ``proj`` -> transformer -> mean over time. ``aggregator`` is unused upstream."""

    def __init__(self, config: MuqMulanConfig) -> None:
        super().__init__()
        self.dim = config.audio_transformer["dim"]
        self.use_layer_idx = config.audio_model["use_layer_idx"]
        self.model = MuQ(config)
        self.aggregator = nn.Conv1d(in_channels=25, out_channels=1, kernel_size=1)
        self.transformer = _transformer(config.audio_transformer)
        self.proj = nn.Linear(config.audio_model["model_dim"], self.dim)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        hidden = self.model.model.hidden_state(waves, self.use_layer_idx)
        return self.transformer(self.proj(hidden)).mean(dim=-2)


class TextTower(nn.Module):
    """``TextTransformerPretrained`` (text.py:112-241), XLM-R branch: XLM-R's last hidden state ->
    ``proj`` (Identity when the widths agree) -> transformer -> mean over tokens.

    Deliberate difference: upstream runs the transformer without a mask and averages over padding
    too (l.235-237), so a text's embedding depends on the longest text of its batch; here padding is
    masked out of both, which equals upstream for a text embedded alone (no padding). Upstream also
    runs XLM-R under ``no_grad`` (l.222); here it trains when the text tower does.
    """

    def __init__(self, config: MuqMulanConfig) -> None:
        super().__init__()
        self.dim = config.text_transformer["dim"]
        xlmr = XLMRobertaConfig(**config.xlm_roberta)
        xlmr._attn_implementation = "eager"
        self.model = XLMRobertaModel(xlmr)
        self.transformer = _transformer(config.text_transformer)
        width = config.text_model["model_dim"]
        self.proj: nn.Module = (
            nn.Linear(width, self.dim) if width is not None and width != self.dim else nn.Identity()
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.bool()
        out = self.transformer(self.proj(hidden), mask=mask)
        weights = mask.to(out.dtype).unsqueeze(-1)
        return (out * weights).sum(dim=-2) / weights.sum(dim=-2).clamp(min=1.0)


class Contrast(nn.Module):
    """``RankSoftmaxContrastiveLearning`` (contrastive.py:81-90): only ``temperatures``, which the
    loss multiplies logits by the exp of, so it is log(1/τ) (init log 10).

    Stored as upstream's ``[1, 1, 1]`` tensor; held here as a scalar (what the losses expect): the
    state-dict hooks reshape it on the way in and out."""

    def __init__(self) -> None:
        super().__init__()
        self.temperatures = nn.Parameter(torch.tensor(math.log(10.0)))
        self.register_state_dict_post_hook(_stored_shape)
        self.register_load_state_dict_pre_hook(_held_shape)


def _stored_shape(module: nn.Module, state: dict, prefix: str, metadata: Any) -> None:
    key = prefix + "temperatures"
    if key in state and state[key].ndim == 0:
        state[key] = state[key].reshape(1, 1, 1)


def _held_shape(module: nn.Module, state: dict, prefix: str, *args: Any) -> None:
    key = prefix + "temperatures"
    value = state.get(key)
    if isinstance(value, torch.Tensor) and value.shape == (1, 1, 1):
        state[key] = value.reshape(())


class MuLanModel(nn.Module):
    """models/mulan.py:13-145: the towers, their ``*_to_latents`` projections and the temperature."""

    def __init__(self, config: MuqMulanConfig) -> None:
        super().__init__()
        self.audio = AudioTower(config)
        self.text = TextTower(config)
        self.text_to_latents = nn.Linear(self.text.dim, config.mulan["dim_latent"])
        self.audio_to_latents = nn.Linear(self.audio.dim, config.mulan["dim_latent"])
        self.contrast = Contrast()

    def get_audio_latents(self, waves: torch.Tensor) -> torch.Tensor:
        """Unit latents of (N, samples) clips (mulan.py:75-86)."""
        return F.normalize(self.audio_to_latents(self.audio(waves)), p=2, dim=-1)

    def get_text_latents(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        return F.normalize(self.text_to_latents(self.text(input_ids, attention_mask)), p=2, dim=-1)


class MuQMuLan(nn.Module):
    """muq_mulan.py:66-270: the top module (``mulan.*`` keys); clipping is the featurizer's."""

    def __init__(self, config: MuqMulanConfig) -> None:
        super().__init__()
        validate(config)
        self.config = config
        self.mulan = MuLanModel(config)

    def unused_parameters(self) -> list[nn.Parameter]:
        """In the release, in no embedding: MuQ's head, cls token, quantizer and positional conv (and
        the layers after ``use_layer_idx``), the unused aggregator, XLM-R's pooler."""
        mulan = self.mulan
        unused = mulan.audio.model.model.unused_parameters(mulan.audio.use_layer_idx)
        unused += list(mulan.audio.aggregator.parameters())
        pooler = getattr(mulan.text.model, "pooler", None)
        if pooler is not None:
            unused += list(pooler.parameters())
        return unused
