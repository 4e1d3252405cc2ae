"""``model=clamp3``: CLaMP 3's audio and text towers (Wu et al. 2025, sanderwood/clamp3, the SAAS
release) as a humanclap backbone, loaded from local files only.

Sources a backbone loads from:

* the release file (``weights_clamp3_saas_...pth``: ``{'model': state_dict, 'optimizer': ...}`` as
  ``train_clamp3_audio.py:355-363`` writes it) plus MERT-v1-95M's folder (``config.json``,
  ``pytorch_model.bin``) and xlm-roberta-base's folder (``config.json`` + tokenizer files), e.g.
  fetched by :func:`fetch_commands` into ``checkpoints/clamp3/``;
* a directory written by :meth:`Clamp3Backbone.save_pretrained` (``clamp3_config.json``, the weights
  in the same release format, ``mert/``, ``tokenizer/``), e.g. a fine-tuned export.

Loading is strict: every weight of the model comes from the file and every tensor of the file lands
in the model, except the symbolic-music tower (``symbolic_model.*``, ``symbolic_proj.*``), which is
dropped and counted. MERT's ``pytorch_model.bin`` loads strictly into ``HubertModel`` (an old
``weight_g``/``weight_v`` pair of the positional convolution is renamed to torch's parametrization).

MERT is a frozen feature extractor, as in CLaMP 3 (which trains on precomputed MERT features): always
in eval mode, never given gradients, part of no tower or stage part. The trainable audio tower is the
audio BERT + ``audio_proj``; the text tower XLM-R + ``text_proj``. CLaMP 3 has no temperature (a
constant ``LOGIT_SCALE = 1``, ``code/config.py:55``); the losses here need log(1/τ), so the backbone
adds one, initialised to log(1) = 0, kept in exports' ``clamp3_config.json`` but never in the
release-format weights. See docs/models.md#clamp-3.
"""

from __future__ import annotations

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
from humanclap.backbones.clamp3.featurizer import Clamp3Featurizer
from humanclap.backbones.clamp3.model import (
    MERT_V1_95M,
    RELEASE,
    RELEASE_FILE,
    XLM_ROBERTA_BASE,
    Clamp3Config,
    Clamp3Model,
    audio_bert,
    build_mert,
    mert_features,
    small_config,
)
from humanclap.backbones.random_weights import cached_random_export, seeded_state_dict

log = logging.getLogger(__name__)

CONFIG_FILE = "clamp3_config.json"
TOKENIZER_DIR = "tokenizer"
MERT_DIR = "mert"
DEFAULT_DIR = "checkpoints/clamp3"
HUB_REPO = "sander-wood/clamp3"
MERT_REPO, MERT_FOLDER, MERT_FILES = (
    "m-a-p/MERT-v1-95M",
    "MERT-v1-95M",
    "config.json pytorch_model.bin",
)
TEXT_REPO, TEXT_FOLDER = "FacebookAI/xlm-roberta-base", "xlm-roberta-base"
TEXT_FILES = '--include "*.json" --include sentencepiece.bpe.model'
"""XLM-R's tokenizer and config files (globs: which JSON files the repository holds varies)."""
CLAMP3_CHECKPOINT = "a CLaMP 3 checkpoint (.pth, {'model': state_dict, ...})"
MERT_WEIGHTS = "MERT's pytorch_model.bin (a state dict)"
SYMBOLIC = ("symbolic_model.", "symbolic_proj.")
"""The symbolic-music tower of the release: dropped on loading (audio and text only)."""

MERT_FLAGS = {
    "feat_extract_norm": ("group", True),
    "do_stable_layer_norm": (False, True),
    "feat_proj_layer_norm": (True, True),
    "conv_bias": (False, True),
    "feature_extractor_cqt": (False, False),
    "deepnorm": (False, False),
    "conv_pos_batch_norm": (False, False),
}
"""MERT config.json entries HubertModel reproduces only at these values: (value, must be present).
``attention_relax`` must be absent or <= 0 (off)."""

_OLD_WEIGHT_NORM = {
    "encoder.pos_conv_embed.conv.weight_g": "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
    "encoder.pos_conv_embed.conv.weight_v": "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
}  # fmt: skip


class Clamp3Error(CheckpointError):
    """A CLaMP 3 file or folder that is missing or does not hold what the model needs."""


def fetch_commands(directory: str = DEFAULT_DIR) -> str:
    """The commands that put the release, MERT and the tokenizer where ``model=clamp3`` looks."""
    return (
        f"hf download {HUB_REPO} {RELEASE_FILE} --local-dir {directory}\n"
        f"  hf download {MERT_REPO} {MERT_FILES} --local-dir {directory}/{MERT_FOLDER}\n"
        f"  hf download {TEXT_REPO} {TEXT_FILES} --local-dir {directory}/{TEXT_FOLDER}"
    )


class Clamp3Backbone(Backbone):
    """CLaMP 3's towers (``Clamp3Model``) and its frozen MERT behind the backbone interface."""

    def __init__(
        self,
        model: Clamp3Model,
        mert: nn.Module,
        featurizer: Clamp3Featurizer,
        name: str = "clamp3",
        logit_scale: float = 0.0,
    ) -> None:
        super().__init__(model, featurizer, name)
        self.mert = mert.requires_grad_(False)
        self.temperature = nn.Parameter(torch.tensor(float(logit_scale)))
        self.train(model.training)

    @property
    def config(self) -> Clamp3Config:
        return self.model.config

    @property
    def logit_scale(self) -> nn.Parameter:
        """log(1/τ), humanclap's addition (CLaMP 3 multiplies by a constant 1): 0 when loaded from
        the release, the trained value when loaded from an export."""
        return self.temperature

    @property
    def dtype(self) -> torch.dtype:
        return self.model.audio_proj.weight.dtype

    @property
    def embedding_dim(self) -> int:
        return self.config.hidden_size

    def train(self, mode: bool = True) -> Clamp3Backbone:
        """``Backbone.train``, and MERT always in eval mode (a frozen feature extractor)."""
        super().train(mode)
        if hasattr(self, "mert"):
            self.mert.eval()
        return self

    def unused_parameters(self) -> list[nn.Parameter]:
        return self.model.unused_parameters()

    def audio_embeddings(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        waves = features["input_features"].to(self.device, self.dtype)
        lengths = features["chunk_lengths"].to("cpu")
        vectors = mert_features(self.mert, waves, lengths)
        counts = (lengths > 0).sum(-1).tolist()
        return F.normalize(self.model.audio_features(vectors, counts), dim=-1)

    def text_embeddings(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = {key: value.to(self.device) for key, value in tokens.items()}
        return F.normalize(self.model.text_features(tokens), dim=-1)

    def tower_modules(self, tower: str) -> list[nn.Module]:
        if tower == "audio":
            return [self.model.audio_model, self.model.audio_proj]
        if tower == "text":
            return [self.model.text_model, self.model.text_proj]
        raise tower_error(tower)

    def part_modules(self, part: str) -> list[nn.Module]:
        if part == "audio":
            return [self.model.audio_model]
        if part == "text":
            return [self.model.text_model]
        if part == "projections":
            return [self.model.audio_proj, self.model.text_proj]
        if part == "temperature":
            return []
        raise part_error(part)

    def save_pretrained(self, directory: str | Path) -> Path:
        """``clamp3_config.json`` (with the temperature), the towers' weights in the release format
        (``{'model': state_dict}``, which CLaMP 3's own ``load_state_dict`` reads once the symbolic
        tower is there too), ``mert/`` (config.json + pytorch_model.bin) and ``tokenizer/`` (with
        the text model's config.json); ``model=<directory>`` loads it back."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)

        def cpu(module: nn.Module) -> dict[str, torch.Tensor]:
            return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}

        torch.save({"model": cpu(self.model)}, directory / self.config.weights_file)
        (directory / MERT_DIR).mkdir(exist_ok=True)
        torch.save(cpu(self.mert), directory / MERT_DIR / "pytorch_model.bin")
        mert_record = {"model_type": "mert_model", **self.config.mert, "feature_extractor_cqt": False,
                       "deepnorm": False, "attention_relax": -1.0, "sample_rate": self.config.sample_rate}  # fmt: skip
        (directory / MERT_DIR / "config.json").write_text(json.dumps(mert_record, indent=2) + "\n")
        self.featurizer.tokenizer.save_pretrained(directory / TOKENIZER_DIR)
        text_record = {"model_type": "xlm-roberta", "architectures": ["XLMRobertaModel"],
                       **self.config.text}  # fmt: skip
        (directory / TOKENIZER_DIR / "config.json").write_text(
            json.dumps(text_record, indent=2) + "\n"
        )
        record = {
            "format": "humanclap-clamp3",
            "name": self.name,
            "weights": self.config.weights_file,
            "mert": MERT_DIR,
            "tokenizer": TOKENIZER_DIR,
            "logit_scale": float(self.logit_scale.detach().float().item()),
            "config": self.config.to_dict(),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
        return directory


# -- loading ----------------------------------------------------------------------------------


def is_clamp3_directory(path: str | Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def is_clamp3_file(path: str | Path) -> bool:
    """Whether a ``.pth``/``.pt`` file is a CLaMP 3 release (``{"model": {audio_model.*|symbolic_model.*}}``);
    read memory-mapped, so another file costs little to rule out. Unreadable files: False."""
    try:
        checkpoint = read_torch_checkpoint(path, CLAMP3_CHECKPOINT, error=Clamp3Error, mmap=True)
    except CheckpointError:
        return False
    return release_state(checkpoint) is not None


def release_state(checkpoint: Any) -> dict[str, Any] | None:
    """The ``model`` state dict of a CLaMP 3 file, or None if ``checkpoint`` is not one."""
    state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not any(
        isinstance(key, str) and key.startswith(("audio_model.", "symbolic_model."))
        for key in state
    ):
        return None
    return state


def without_symbolic(state: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """``state`` without the symbolic tower, and how many tensors were dropped."""
    kept = {key: value for key, value in state.items() if not str(key).startswith(SYMBOLIC)}
    return kept, len(state) - len(kept)


def _strict_load(module: nn.Module, state: dict[str, Any], source: Path, what: str) -> None:
    load_strictly(module, state, source, what, Clamp3Error)


def load_towers(config: Clamp3Config, state: dict[str, Any], source: Path) -> Clamp3Model:
    """The towers with ``state`` (symbolic tower dropped) loaded strictly."""
    state, dropped = without_symbolic(state)
    if dropped:
        log.info("CLaMP 3: %d symbolic-tower tensors of '%s' are not used", dropped, source)
    model = Clamp3Model(config)
    _strict_load(model, state, source, "CLaMP 3's audio and text towers")
    return model.eval()


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise Clamp3Error(f"'{path}' cannot be read as {what} ({plain_reason(error)}).") from None
    if not isinstance(values, dict):
        raise Clamp3Error(f"'{path}' cannot be read as {what} (not a JSON object).")
    return values


def mert_config(values: dict[str, Any], path: Path) -> dict[str, Any]:
    """The ``HubertConfig`` arguments of MERT's config.json; refuses the variants HubertModel does
    not reproduce (CQT branch, DeepNorm, attention relaxation, pre-LN, ...)."""
    for key, (wanted, required) in MERT_FLAGS.items():
        if (required or key in values) and values.get(key) != wanted:
            raise Clamp3Error(
                f"'{path}': MERT's {key} is {values.get(key, 'not given')!r}, but CLaMP 3 uses "
                f"MERT-v1-95M ({key}={wanted!r}); this MERT model is not the one CLaMP 3 was trained "
                f"on (fetch it with: hf download {MERT_REPO} {MERT_FILES} --local-dir <folder>)."
            )
    relax = values.get("attention_relax", -1.0)
    if relax is not None and float(relax) > 0:
        raise Clamp3Error(
            f"'{path}': MERT's attention_relax is {relax}; CLaMP 3's MERT has it off."
        )
    return {key: values.get(key, default) for key, default in MERT_V1_95M.items()}


def load_mert(directory: Path, config: dict[str, Any] | None = None) -> tuple[nn.Module, dict]:
    """MERT from its folder (config.json + pytorch_model.bin), strictly; ``config`` must match."""
    for name in ("config.json", "pytorch_model.bin"):
        if not (directory / name).is_file():
            raise Clamp3Error(
                f"CLaMP 3 needs MERT-v1-95M, and '{directory / name}' does not exist. Where the hub "
                f"is reachable:\n  hf download {MERT_REPO} {MERT_FILES} --local-dir {directory}\n"
                f"(or pass model.mert=<folder>)."
            )
    values = mert_config(
        read_json(directory / "config.json", "MERT's config.json"), directory / "config.json"
    )
    if config is not None and values != config:
        raise Clamp3Error(
            f"'{directory / 'config.json'}' does not describe the MERT this export was saved with."
        )
    state = read_torch_checkpoint(
        directory / "pytorch_model.bin", MERT_WEIGHTS, error=Clamp3Error, mmap=True
    )
    if not isinstance(state, dict):
        raise Clamp3Error(f"'{directory / 'pytorch_model.bin'}' is not {MERT_WEIGHTS}.")
    state = {_OLD_WEIGHT_NORM.get(key, key): value for key, value in state.items()}
    mert = build_mert(values)
    _strict_load(mert, state, directory / "pytorch_model.bin", "MERT-v1-95M (HubertModel)")
    return mert.eval(), values


def load_tokenizer(directory: Path) -> Any:
    from transformers import XLMRobertaTokenizer

    try:
        tokenizer = XLMRobertaTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise Clamp3Error(
            f"CLaMP 3's tokenizer folder '{directory}' cannot be read as the xlm-roberta-base "
            f"tokenizer ({plain_reason(error)})."
        ) from None
    if tokenizer.pad_token_id != 1 or tokenizer.sep_token != "</s>":
        raise Clamp3Error(
            f"'{directory}' is not an XLM-R tokenizer (<pad> must be id 1, </s> the separator)."
        )
    return tokenizer


def release_config(
    state: dict[str, Any], text: dict[str, Any], mert: dict[str, Any], source: Path
) -> Clamp3Config:
    """The architecture of a release file: the text model's config.json (as upstream's
    ``AutoModel.from_pretrained(TEXT_MODEL_NAME)``), MERT's, and the audio BERT's and projection's
    sizes read from the weights (upstream's ``AUDIO_HIDDEN_SIZE``, ``AUDIO_NUM_LAYERS``,
    ``MAX_AUDIO_LENGTH``, ``CLAMP3_HIDDEN_SIZE``); the shapes are then checked by the strict load."""
    try:
        positions = state["audio_model.embeddings.position_embeddings.weight"].shape
        hidden = int(state["audio_proj.weight"].shape[0])
    except (KeyError, AttributeError, IndexError):
        raise Clamp3Error(
            f"'{source}' does not fit CLaMP 3: it has no audio_model position embeddings or audio_proj."
        ) from None
    layers = {
        int(m.group(1))
        for key in state
        if (m := re.match(r"audio_model\.encoder\.layer\.(\d+)\.", str(key)))
    }
    if text.get("model_type") not in (None, "xlm-roberta"):
        raise Clamp3Error(
            f"CLaMP 3's text model is XLM-RoBERTa, but its config.json says model_type {text.get('model_type')!r}."
        )
    text_values = {key: text.get(key, default) for key, default in XLM_ROBERTA_BASE.items()}
    audio = audio_bert(int(positions[1]), len(layers), int(positions[0]))
    return Clamp3Config(text=text_values, audio=audio, mert=mert, hidden_size=hidden,
                        max_audio_length=int(positions[0]), weights_file=source.name)  # fmt: skip


def from_clamp3(
    path: str,
    mert: str | None = None,
    tokenizer: str | None = None,
    name: str | None = None,
) -> Clamp3Backbone:
    """Load CLaMP 3 from the release file (+ MERT and tokenizer folders) or a ``save_pretrained`` folder.

    ``mert``: MERT-v1-95M's folder, default ``<the file's folder>/MERT-v1-95M``; ``tokenizer``:
    xlm-roberta-base's folder (tokenizer files + config.json), default ``<the file's folder>/xlm-roberta-base``.
    """
    source = Path(path).expanduser()
    if source.is_dir():
        if not is_clamp3_directory(source):
            raise Clamp3Error(
                f"'{path}' is a folder without {CONFIG_FILE}, so not a CLaMP 3 export; pass the "
                f"release file itself (model.path=<folder>/{RELEASE_FILE})."
            )
        return _from_directory(source, name)
    if not source.is_file():
        raise Clamp3Error(
            f"CLaMP 3 weights '{path}' do not exist. Where the Hugging Face hub is reachable, fetch "
            f"the release, MERT and the tokenizer with\n  {fetch_commands(str(source.parent))}\n"
            + (
                "then run the command again."
                if source.name == RELEASE_FILE
                else f"then pass model.path={source.parent}/{RELEASE_FILE}."
            )  # fmt: skip
        )
    mert_dir = Path(mert).expanduser() if mert else source.parent / MERT_FOLDER
    tokenizer_dir = Path(tokenizer).expanduser() if tokenizer else source.parent / TEXT_FOLDER
    if not (tokenizer_dir / "config.json").is_file():
        raise Clamp3Error(
            f"CLaMP 3 needs its text tower's config and tokenizer (xlm-roberta-base), and "
            f"'{tokenizer_dir / 'config.json'}' does not exist. Where the hub is reachable:\n  "
            f"hf download {TEXT_REPO} {TEXT_FILES} --local-dir {tokenizer_dir}\n"
            f"(or pass model.tokenizer=<folder>)."
        )
    checkpoint = read_torch_checkpoint(source, CLAMP3_CHECKPOINT, error=Clamp3Error, mmap=True)
    state = release_state(checkpoint)
    if state is None:
        raise Clamp3Error(
            f"'{path}' is not {CLAMP3_CHECKPOINT}: it holds no 'model' entry with audio_model.* "
            f"weights."
        )
    mert_model, mert_values = load_mert(mert_dir)
    text = read_json(tokenizer_dir / "config.json", "the text model's config.json")
    config = release_config(state, text, mert_values, source)
    model = load_towers(config, state, source)
    return _backbone(model, mert_model, load_tokenizer(tokenizer_dir), name or "clamp3", 0.0)


def _from_directory(directory: Path, name: str | None) -> Clamp3Backbone:
    record_file = directory / CONFIG_FILE
    try:
        record = json.loads(record_file.read_text())
        config = Clamp3Config.from_dict(record["config"])
        entries = [str(record[key]) for key in ("weights", "mert", "tokenizer")]
        logit_scale = float(record["logit_scale"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise Clamp3Error(
            f"'{record_file}' is not a readable CLaMP 3 export record ({plain_reason(error)})."
        ) from None
    for entry in entries:
        if Path(entry).is_absolute() or ".." in Path(entry).parts:
            raise Clamp3Error(
                f"'{record_file}': '{entry}' must name a file inside the export folder."
            )
    weights, mert_dir, tokenizer_dir = (directory / entry for entry in entries)
    checkpoint = read_torch_checkpoint(weights, CLAMP3_CHECKPOINT, error=Clamp3Error, mmap=True)
    state = release_state(checkpoint)
    if state is None:
        raise Clamp3Error(f"'{weights}' is not {CLAMP3_CHECKPOINT}.")
    model = load_towers(config, state, weights)
    mert, _ = load_mert(mert_dir, config.mert)
    label = name or str(record.get("name") or "clamp3")
    return _backbone(model, mert, load_tokenizer(tokenizer_dir), label, logit_scale)


def _backbone(
    model: Clamp3Model, mert: nn.Module, tokenizer: Any, name: str, logit_scale: float
) -> Clamp3Backbone:
    config = model.config
    featurizer = Clamp3Featurizer(tokenizer, config.max_text_length, config.sample_rate,
                                  config.chunk_samples, config.min_chunk_samples)  # fmt: skip
    return Clamp3Backbone(model.eval(), mert, featurizer, name=name, logit_scale=logit_scale)


# -- random models for tests and benchmarks ----------------------------------------------------

RANDOM_VERSION = 1  # bump when the recipe below changes, so cached builds are rebuilt
SIZES = ("full", "small")


def random_state_dict(module: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """:func:`~humanclap.backbones.random_weights.seeded_state_dict`, with weight norm's magnitude g
    (``original0``) at 1 + 0.1|n|."""
    return seeded_state_dict(
        module, seed, rules=(("original0", lambda noise: 1.0 + 0.1 * noise.abs()),)
    )


def train_tokenizer() -> Any:
    """An XLM-R-style tokenizer (SentencePiece Unigram, ``<s>``=0, ``<pad>``=1, ``</s>``=2,
    ``<unk>``=3, ``<mask>`` last) trained on tiny's word list: the real one's conventions, not its
    vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizer

    from humanclap.backbones.tiny import _WORDS

    words = _WORDS.split()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        ]
    )
    trainer = trainers.UnigramTrainer(vocab_size=500, special_tokens=specials, unk_token="<unk>",
                                      show_progress=False)  # fmt: skip
    unigram.train_from_iterator(
        words + [" ".join(words[i : i + 8]) for i in range(0, len(words), 8)], trainer
    )
    pieces = json.loads(unigram.to_str())["model"]["vocab"]
    vocab = [(token, 0.0) for token in specials]
    vocab += [(str(piece), float(score)) for piece, score in pieces if piece not in specials]
    vocab.append(("<mask>", 0.0))
    return XLMRobertaTokenizer(vocab=vocab)


def build_random_clamp3(directory: str | Path, size: str = "full", seed: int = 0) -> Path:
    """Write a random CLaMP 3 export (release-format weights, MERT folder, tokenizer, record).

    ``size="full"``: the release's exact architecture (~1.8 GB); ``"small"``: :func:`small_config`.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    tokenizer = train_tokenizer()
    config = RELEASE if size == "full" else small_config(len(tokenizer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, mert = Clamp3Model(config), build_mert(config.mert)
    model.load_state_dict(random_state_dict(model, seed))
    mert.load_state_dict(random_state_dict(mert, seed + 1))
    name = "clamp3-random" + ("" if size == "full" else "-small")
    with tempfile.TemporaryDirectory() as scratch:  # the tokenizer read back as a download is
        tokenizer.save_pretrained(scratch)
        tokenizer = load_tokenizer(Path(scratch))
    return _backbone(model, mert, tokenizer, name, 0.0).save_pretrained(directory)


def clamp3_random(
    size: str = "full", seed: int = 0, directory: str | None = None
) -> Clamp3Backbone:
    """Build (once, cached by its recipe) and load a random CLaMP 3 through the export path.
    NOT pretrained: for tests, smoke runs and benchmarks."""
    path = cached_random_export(
        "CLaMP 3",
        {"version": RANDOM_VERSION, "size": size, "seed": seed},
        lambda scratch: build_random_clamp3(scratch, size=size, seed=seed),
        CONFIG_FILE,
        real_model="clamp3",
        full_size=size == "full",
        directory=directory,
    )
    return from_clamp3(str(path))
