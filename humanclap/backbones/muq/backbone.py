"""``model=muq_mulan``: Tencent's MuQ-MuLan (``muq`` 0.1.0, hub ``OpenMuQ/MuQ-MuLan-large``) as a
humanclap backbone, loaded from local files only.

Sources a backbone loads from:

* the release folder: ``config.json`` (``MuQMuLanConfig``) and ``pytorch_model.bin`` (the whole
  model, both pretrained towers included), plus XLM-R's tokenizer folder (default
  ``<folder>/xlm-roberta-base``; its ``config.json``, when there, describes the text tower) and,
  optionally, ``<folder>/MuQ-large-msd-iter/config.json`` (the audio model's configuration, else the
  built-in inferred values); :func:`fetch_commands` prints what to download;
* a directory written by :meth:`MuqMulanBackbone.save_pretrained` (``muq_mulan_config.json``, the
  weights in the release format, ``tokenizer/``), e.g. a fine-tuned export.

Loading is strict: every weight of the model must come from the file and every tensor of the file
must land in the model, except buffers older transformers stored (:data:`LEGACY_KEYS`). Upstream's
hub mixin loads with ``strict=False``. See docs/models.md#muq-mulan.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from humanclap.backbones.base import Backbone, part_error, tower_error
from humanclap.backbones.checkpoint_safety import (
    CheckpointError,
    load_strictly,
    plain_reason,
    read_torch_checkpoint,
)
from humanclap.backbones.muq.featurizer import MuqMulanFeaturizer
from humanclap.backbones.muq.model import (
    MUQ,
    RELEASE,
    SECTIONS,
    MuQMuLan,
    MuqMulanConfig,
    small_config,
)
from humanclap.backbones.random_weights import cached_random_export, seeded_state_dict

log = logging.getLogger(__name__)

CONFIG_FILE = "muq_mulan_config.json"
RELEASE_CONFIG = "config.json"
WEIGHTS_FILE = "pytorch_model.bin"
TOKENIZER_DIR = "tokenizer"
HUB_REPO = "OpenMuQ/MuQ-MuLan-large"
AUDIO_REPO = "OpenMuQ/MuQ-large-msd-iter"
TEXT_REPO = "FacebookAI/xlm-roberta-base"
TOKENIZER_FILES = '--include "*.json" --include sentencepiece.bpe.model'
"""XLM-R's tokenizer and config files (globs: which JSON files the repository holds varies)."""
DEFAULT_DIR = "checkpoints/muq_mulan"
MUQ_MULAN_CHECKPOINT = "a MuQ-MuLan checkpoint (pytorch_model.bin, a state dict of mulan.* tensors)"

LEGACY_KEYS = re.compile(r"^mulan\.text\.model\.embeddings\.(position_ids|token_type_ids)$")
"""Tensors of a file that are not weights and that the model need not have: index buffers
transformers < 4.31 saved with XLM-R (now non-persistent). Nothing else is tolerated."""

_NOT_CONFIG = ("architectures", "transformers_version", "_name_or_path", "model_type", "torch_dtype",
               "dtype", "auto_map")  # fmt: skip


class MuqMulanError(CheckpointError):
    """A MuQ-MuLan file or folder that is missing or does not hold what the model needs."""


def fetch_commands(directory: str = DEFAULT_DIR) -> str:
    """The commands that put the release, its tokenizer and its audio model's configuration where
    ``model=muq_mulan`` looks (the last is optional: it confirms the built-in values)."""
    return (
        f"hf download {HUB_REPO} config.json pytorch_model.bin --local-dir {directory}\n"
        f"  hf download {TEXT_REPO} {TOKENIZER_FILES} --local-dir {directory}/{_tail(TEXT_REPO)}\n"
        f"  hf download {AUDIO_REPO} config.json --local-dir {directory}/{_tail(AUDIO_REPO)}"
    )


def _tail(name: str) -> str:
    return str(name).rstrip("/").split("/")[-1]


class MuqMulanBackbone(Backbone):
    """MuQ-MuLan's towers (``MuQMuLan``) behind the backbone interface.

    Audio embedding: the mean of a file's per-clip unit latents (as ``extract_audio_latents``),
    renormalised to unit length (upstream leaves it shorter than 1 for files of several clips;
    cosine similarities and rankings are the same). Text embedding: the unit latent of each text.
    """

    def __init__(
        self, model: MuQMuLan, featurizer: MuqMulanFeaturizer, name: str = "muq-mulan"
    ) -> None:
        super().__init__(model, featurizer, name)
        self.train(model.training)

    @property
    def config(self) -> MuqMulanConfig:
        return self.model.config

    @property
    def logit_scale(self) -> nn.Parameter:
        """log(1/τ): upstream's ``mulan.contrast.temperatures`` (logits are multiplied by its exp)."""
        return self.model.mulan.contrast.temperatures

    @property
    def dtype(self) -> torch.dtype:
        return self.model.mulan.audio_to_latents.weight.dtype

    @property
    def embedding_dim(self) -> int:
        return int(self.config.mulan["dim_latent"])

    def unused_parameters(self) -> list[nn.Parameter]:
        return self.model.unused_parameters()

    def audio_embeddings(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        waves = features["input_values"].to(self.device, self.dtype)
        mask = features["clip_mask"].to(self.device, torch.bool)
        latents = self.model.mulan.get_audio_latents(waves[mask])  # (real clips, dim)
        weights = mask.to(latents.dtype)
        # per file: the mean of its clips' latents (rows of ``latents`` in mask order)
        index = torch.arange(mask.shape[0], device=self.device)[:, None].expand_as(mask)[mask]
        sums = torch.zeros(
            mask.shape[0], latents.shape[-1], device=self.device, dtype=latents.dtype
        )
        sums = sums.index_add(0, index, latents)
        means = sums / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
        return F.normalize(means, dim=-1)

    def text_embeddings(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.mulan.get_text_latents(
            tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        )

    def tower_modules(self, tower: str) -> list[nn.Module]:
        mulan = self.model.mulan
        if tower == "audio":
            return [mulan.audio, mulan.audio_to_latents]
        if tower == "text":
            return [mulan.text, mulan.text_to_latents]
        raise tower_error(tower)

    def part_modules(self, part: str) -> list[nn.Module]:
        """``audio``/``text``: the pretrained model and MuLan's transformer on it (and ``proj``);
        ``projections``: ``audio_to_latents``, ``text_to_latents``."""
        mulan = self.model.mulan
        if part == "audio":
            return [mulan.audio]
        if part == "text":
            return [mulan.text]
        if part == "projections":
            return [mulan.audio_to_latents, mulan.text_to_latents]
        if part == "temperature":
            return []
        raise part_error(part)

    def state_for_release(self) -> dict[str, torch.Tensor]:
        """The state dict as the release stores it (``temperatures`` as [1, 1, 1])."""
        return {
            key: value.detach().to("cpu").clone() for key, value in self.model.state_dict().items()
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        """``muq_mulan_config.json``, the weights in the release format (``MuQMuLan``'s own state dict,
        so upstream's ``load_state_dict`` reads it too) and ``tokenizer/``; ``model=<directory>``
        loads it back."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_for_release(), directory / WEIGHTS_FILE)
        self.featurizer.tokenizer.save_pretrained(directory / TOKENIZER_DIR)
        record = {
            "format": "humanclap-muq-mulan",
            "name": self.name,
            "weights": WEIGHTS_FILE,
            "tokenizer": TOKENIZER_DIR,
            "config": self.config.to_dict(),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
        return directory

    def save_release(self, directory: str | Path) -> Path:
        """The release's folder layout (what :func:`fetch_commands` downloads): ``config.json``,
        ``pytorch_model.bin``, ``xlm-roberta-base/`` (tokenizer and XLM-R's config.json) and
        ``MuQ-large-msd-iter/config.json``. For tests of the download path and upstream's code."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config
        (directory / RELEASE_CONFIG).write_text(json.dumps(config.release_json(), indent=2) + "\n")
        torch.save(self.state_for_release(), directory / WEIGHTS_FILE)
        text = directory / _tail(config.text_model["name"])
        self.featurizer.tokenizer.save_pretrained(text)
        xlmr = dict(config.xlm_roberta, model_type="xlm-roberta", architectures=["XLMRobertaModel"])
        (text / "config.json").write_text(json.dumps(xlmr, indent=2) + "\n")
        audio = directory / _tail(config.audio_model["name"])
        audio.mkdir(exist_ok=True)
        (audio / "config.json").write_text(json.dumps(config.muq, indent=2) + "\n")
        return directory


# -- loading ----------------------------------------------------------------------------------


def is_muq_mulan_directory(path: str | Path) -> bool:
    """A ``save_pretrained`` export, or a release folder (its config.json has MuQ-MuLan's sections;
    a transformers ClapModel's config.json has ``text_config``/``audio_config`` instead)."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        return True
    return _release_json(path) is not None


def _release_json(path: Path) -> dict[str, Any] | None:
    file = path / RELEASE_CONFIG
    if not file.is_file():
        return None
    try:
        values = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(values, dict) and {"mulan", "audio_model", "text_model"} <= set(values):
        return values
    return None


def load_weights(model: MuQMuLan, state: Any, source: str | Path) -> None:
    """Strict load (see the module docstring), errors naming the file and the first offending keys."""
    if not isinstance(state, dict) or not any(
        isinstance(key, str) and key.startswith("mulan.") for key in state
    ):
        raise MuqMulanError(
            f"'{source}' is not {MUQ_MULAN_CHECKPOINT}: it holds no mulan.* tensors."
        )
    state = {key: value for key, value in state.items() if not LEGACY_KEYS.search(str(key))}
    load_strictly(model, state, source, "this MuQ-MuLan configuration", MuqMulanError)


def load_tokenizer(directory: str | Path) -> Any:
    from transformers import XLMRobertaTokenizer

    try:
        return XLMRobertaTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise MuqMulanError(
            f"MuQ-MuLan's tokenizer folder '{directory}' cannot be read as an XLM-RoBERTa tokenizer "
            f"({plain_reason(error)})."
        ) from None


def _read_json(file: Path, what: str) -> dict[str, Any]:
    try:
        values = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise MuqMulanError(f"'{file}' cannot be read as {what} ({plain_reason(error)}).") from None
    if not isinstance(values, dict):
        raise MuqMulanError(f"'{file}' is not {what}: it holds no JSON object.")
    return values


def release_config(folder: Path, tokenizer_dir: Path) -> MuqMulanConfig:
    """The model's configuration from a release folder: ``config.json``'s sections over upstream's
    dataclass defaults, the audio model's ``config.json`` (if present) over :data:`MUQ`, the
    tokenizer folder's ``config.json`` (if present) for XLM-R. Validated."""
    file = folder / RELEASE_CONFIG
    values = _read_json(file, "MuQ-MuLan's config.json")
    missing = [section for section in SECTIONS if not isinstance(values.get(section), dict)]
    if missing:
        raise MuqMulanError(
            f"'{file}' is not MuQ-MuLan's config.json: it lacks the section(s) {missing} "
            f"(expected {list(SECTIONS)})."
        )
    sections = {key: {**getattr(RELEASE, key), **values[key]} for key in SECTIONS}
    muq = copy.deepcopy(MUQ)
    audio_file = folder / _tail(str(sections["audio_model"].get("name", ""))) / "config.json"
    if audio_file.is_file():
        muq.update(_read_json(audio_file, "MuQ's config.json"))
    xlmr = dict(RELEASE.xlm_roberta)
    text_file = tokenizer_dir / "config.json"
    if text_file.is_file():
        text = _read_json(text_file, "XLM-RoBERTa's config.json")
        if text.get("model_type", "xlm-roberta") != "xlm-roberta":
            raise MuqMulanError(
                f"'{text_file}' describes a {text.get('model_type')!r} model, not XLM-RoBERTa."
            )
        xlmr = {key: value for key, value in text.items() if key not in _NOT_CONFIG}
    try:
        return MuqMulanConfig.from_dict({**sections, "muq": muq, "xlm_roberta": xlmr})
    except (ValueError, TypeError) as error:
        raise MuqMulanError(f"'{file}': {plain_reason(error, sentences=2)}.") from None


def from_muq_mulan(
    path: str, tokenizer: str | None = None, name: str | None = None
) -> MuqMulanBackbone:
    """Load MuQ-MuLan from a release folder (``config.json`` + ``pytorch_model.bin``, tokenizer
    folder) or a ``save_pretrained`` directory. ``tokenizer``: XLM-R's tokenizer folder; default
    ``<path>/xlm-roberta-base`` (the last part of ``text_model.name``)."""
    folder = Path(path).expanduser()
    if folder.is_file() and folder.name in (WEIGHTS_FILE, RELEASE_CONFIG):
        folder = folder.parent  # model.path=<folder>/pytorch_model.bin
    if (folder / CONFIG_FILE).is_file():
        return _from_export(folder, name)
    hint = f"Where the Hugging Face hub is reachable, fetch the release with\n  {fetch_commands(str(folder))}\n"
    if not folder.is_dir():
        raise MuqMulanError(
            f"MuQ-MuLan folder '{path}' does not exist. {hint}then run the command again."
        )
    for needed in (RELEASE_CONFIG, WEIGHTS_FILE):
        if not (folder / needed).is_file():
            raise MuqMulanError(
                f"MuQ-MuLan folder '{folder}' has no {needed} (and no {CONFIG_FILE}, so it is no "
                f"export either). {hint}then run the command again."
            )
    if _release_json(folder) is None:
        raise MuqMulanError(
            f"'{folder / RELEASE_CONFIG}' is not MuQ-MuLan's config.json (no 'mulan', 'audio_model' "
            f"and 'text_model' sections); a transformers ClapModel folder loads with model=<folder>."
        )
    text_name = _tail(
        str(json.loads((folder / RELEASE_CONFIG).read_text())["text_model"].get("name", ""))
    )
    tokenizer_dir = (
        Path(tokenizer).expanduser() if tokenizer else folder / (text_name or "xlm-roberta-base")
    )
    if not tokenizer_dir.is_dir():
        raise MuqMulanError(
            f"MuQ-MuLan needs its text tower's tokenizer (xlm-roberta-base), and the folder "
            f"'{tokenizer_dir}' does not exist. Where the hub is reachable:\n  "
            f"hf download {TEXT_REPO} {TOKENIZER_FILES} --local-dir {tokenizer_dir}\n"
            f"(or pass model.tokenizer=<folder>)."
        )
    config = release_config(folder, tokenizer_dir)
    tokenizer_object = load_tokenizer(tokenizer_dir)
    model = MuQMuLan(config)
    weights = folder / WEIGHTS_FILE
    load_weights(model, read_torch_checkpoint(weights, MUQ_MULAN_CHECKPOINT, error=MuqMulanError,
                                              mmap=True), weights)  # fmt: skip
    return _backbone(model, tokenizer_object, name or "muq-mulan")


def _from_export(directory: Path, name: str | None) -> MuqMulanBackbone:
    record_file = directory / CONFIG_FILE
    try:
        record = json.loads(record_file.read_text())
        weights, tokenizer = str(record["weights"]), str(record["tokenizer"])
        config = MuqMulanConfig.from_dict(record["config"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MuqMulanError(
            f"'{record_file}' is not a readable MuQ-MuLan export record ({plain_reason(error)})."
        ) from None
    for entry in (weights, tokenizer):
        if Path(entry).is_absolute() or ".." in Path(entry).parts:
            raise MuqMulanError(
                f"'{record_file}': '{entry}' must name a file inside the export folder."
            )
    if not (directory / weights).is_file():
        raise MuqMulanError(f"MuQ-MuLan export '{directory}' lacks its weights file '{weights}'.")
    tokenizer_object = load_tokenizer(directory / tokenizer)
    model = MuQMuLan(config)
    state = read_torch_checkpoint(
        directory / weights, MUQ_MULAN_CHECKPOINT, error=MuqMulanError, mmap=True
    )
    load_weights(model, state, directory / weights)
    return _backbone(model, tokenizer_object, name or str(record.get("name") or "muq-mulan"))


def _backbone(model: MuQMuLan, tokenizer: Any, name: str) -> MuqMulanBackbone:
    config = model.config
    model.eval()
    featurizer = MuqMulanFeaturizer(
        tokenizer, config.sample_rate, config.clip_samples, config.max_text_tokens
    )
    return MuqMulanBackbone(model, featurizer, name=name)


# -- random models for tests and benchmarks ----------------------------------------------------

RANDOM_VERSION = 1  # bump when the recipe below changes, so cached builds are rebuilt
SIZES = ("full", "small")


def random_state_dict(model: MuQMuLan, seed: int = 0) -> dict[str, torch.Tensor]:
    """:func:`~humanclap.backbones.random_weights.seeded_state_dict`; the rotary frequencies and the
    temperature keep their values."""
    return seeded_state_dict(model, seed, keep=("inv_freq", "contrast.temperatures"))


def random_backbone(size: str = "small", seed: int = 0) -> MuqMulanBackbone:
    """A random MuQ-MuLan in memory (what :func:`build_random_muq_mulan` writes)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = train_tokenizer(Path(scratch))
    if size == "full":
        config = RELEASE
    else:
        config = small_config(vocab_size=len(tokenizer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MuQMuLan(config)
    model.load_state_dict(random_state_dict(model, seed))
    name = "muq-mulan-random" + ("" if size == "full" else "-small")
    return _backbone(model, tokenizer, name)


def build_random_muq_mulan(directory: str | Path, size: str = "full", seed: int = 0) -> Path:
    """Write a random MuQ-MuLan export (release-format weights, tokenizer, record) to ``directory``.

    ``size="full"``: the release's exact architecture (709 M, 2.84 GB); ``"small"``:
    :func:`~humanclap.backbones.muq.model.small_config`. The tokenizer is trained on tiny's word
    list with XLM-R's conventions (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, SentencePiece
    ``▁`` word starts), not the real vocabulary (whose full-size rows stay in the file)."""
    return random_backbone(size, seed).save_pretrained(directory)


def train_tokenizer(directory: Path) -> Any:
    """An XLM-R-style Unigram tokenizer over tiny's words, saved to and loaded from ``directory``."""
    from transformers import XLMRobertaTokenizer

    from humanclap.backbones.tiny import _WORDS

    words = sorted(set(_WORDS.split()))
    letters = sorted({c for w in words for c in w})
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("▁", -3.0)] + [(f"▁{w}", -2.0) for w in words] + [(c, -5.0) for c in letters]
    vocab += [(f"▁{c}", -5.5) for c in letters if f"▁{c}" not in {p for p, _ in vocab}]
    vocab += [("<mask>", 0.0)]
    tokenizer = XLMRobertaTokenizer(vocab=vocab, model_max_length=512)
    tokenizer.save_pretrained(str(directory))
    return XLMRobertaTokenizer.from_pretrained(str(directory), local_files_only=True)


def muq_mulan_random(
    size: str = "full", seed: int = 0, directory: str | None = None
) -> MuqMulanBackbone:
    """Build (once, cached by its recipe) and load a random MuQ-MuLan through the export path.
    NOT pretrained: for tests, smoke runs and benchmarks."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    path = cached_random_export(
        "MuQ-MuLan",
        {"version": RANDOM_VERSION, "size": size, "seed": seed},
        lambda scratch: build_random_muq_mulan(scratch, size=size, seed=seed),
        CONFIG_FILE,
        real_model="muq_mulan",
        full_size=size == "full",
        directory=directory,
    )
    return from_muq_mulan(str(path))
