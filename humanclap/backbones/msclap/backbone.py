"""``model=msclap_2022`` / ``model=msclap_2023``: Microsoft's CLAP (Elizalde et al. 2022, 2023) as a
humanclap backbone, loaded from local files only.

Sources a backbone loads from:

* an original release file (``CLAP_weights_2023.pth``, ``{"model": state_dict}`` as msclap's
  ``CLAPWrapper`` reads it) plus the text tower's tokenizer folder (``gpt2`` or
  ``bert-base-uncased``), e.g. fetched by :func:`fetch_commands` into ``checkpoints/msclap/``;
* a directory written by :meth:`MsClapBackbone.save_pretrained` (``msclap_config.json``, the weights
  in the same release format, ``tokenizer/``), e.g. a fine-tuned export.

Loading is strict: every weight of the model must come from the file and every tensor of the file
must land in the model, except buffers older transformers stored (``position_ids``, GPT-2's
causal-mask ``attn.bias``). msclap itself loads with ``strict=False``. See docs/models.md#ms-clap.
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
from humanclap.backbones.msclap.featurizer import MsClapFeaturizer
from humanclap.backbones.msclap.model import VERSIONS, MsClapConfig, MsClapModel, small_config
from humanclap.backbones.random_weights import cached_random_export, seeded_state_dict

log = logging.getLogger(__name__)

CONFIG_FILE = "msclap_config.json"
TOKENIZER_DIR = "tokenizer"
HUB_REPO = "microsoft/msclap"
DEFAULT_DIR = "checkpoints/msclap"
MSCLAP_CHECKPOINT = "an MS-CLAP checkpoint (.pth, {'model': state_dict})"
TOKENIZER_FILES = {
    "gpt2": (
        "openai-community/gpt2",
        "config.json merges.txt tokenizer.json tokenizer_config.json vocab.json",
    ),
    "bert-base-uncased": (
        "google-bert/bert-base-uncased",
        "config.json tokenizer.json tokenizer_config.json vocab.txt",
    ),
}
"""Hub repository and files of each text tower's tokenizer (what ``fetch_commands`` downloads)."""

_OLD_BUFFERS = re.compile(
    r"caption_encoder\.base\.(embeddings\.position_ids|h\.\d+\.attn\.(bias|masked_bias))$"
)


class MsClapError(CheckpointError):
    """An MS-CLAP file or directory that is missing or does not hold what the model needs."""


def fetch_commands(version: str, directory: str = DEFAULT_DIR) -> str:
    """The commands that put a release and its tokenizer where ``model=msclap_<version>`` looks."""
    config = VERSIONS[version]
    repo, files = TOKENIZER_FILES[config.text_model]
    return (
        f"hf download {HUB_REPO} {config.weights_file} --local-dir {directory}\n"
        f"  hf download {repo} {files} --local-dir {directory}/{config.text_model}"
    )


class MsClapBackbone(Backbone):
    """MS-CLAP's towers (``MsClapModel``) behind the backbone interface."""

    def __init__(
        self, model: MsClapModel, featurizer: MsClapFeaturizer, name: str = "msclap"
    ) -> None:
        super().__init__(model, featurizer, name)
        self.train(model.training)

    @property
    def config(self) -> MsClapConfig:
        return self.model.config

    @property
    def logit_scale(self) -> nn.Parameter:
        """log(1/τ): msclap's ``logit_scale`` (``compute_similarity`` uses its exp)."""
        return self.model.logit_scale

    @property
    def dtype(self) -> torch.dtype:
        return self.model.audio_encoder.projection.linear1.weight.dtype

    @property
    def embedding_dim(self) -> int:
        return self.config.d_proj

    def unused_parameters(self) -> list[nn.Parameter]:
        return self.model.unused_parameters()

    def audio_embeddings(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        waves = features["input_features"].to(self.device, self.dtype)
        return F.normalize(self.model.audio_encoder(waves), dim=-1)

    def text_embeddings(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = {key: value.to(self.device) for key, value in tokens.items()}
        return F.normalize(self.model.caption_encoder(tokens), dim=-1)

    def tower_modules(self, tower: str) -> list[nn.Module]:
        if tower == "audio":
            return [self.model.audio_encoder.base, self.model.audio_encoder.projection]
        if tower == "text":
            return [self.model.caption_encoder.base, self.model.caption_encoder.projection]
        raise tower_error(tower)

    def part_modules(self, part: str) -> list[nn.Module]:
        if part == "audio":
            return [self.model.audio_encoder.base]
        if part == "text":
            return [self.model.caption_encoder.base]
        if part == "projections":
            return [self.model.audio_encoder.projection, self.model.caption_encoder.projection]
        if part == "temperature":
            return []
        raise part_error(part)

    def save_pretrained(self, directory: str | Path) -> Path:
        """``msclap_config.json``, the weights in the release format (msclap's ``CLAPWrapper(model_fp=...)``
        reads them too) and ``tokenizer/``; ``model=<directory>`` loads it back."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            key: value.detach().to("cpu").clone() for key, value in self.model.state_dict().items()
        }
        torch.save({"model": state}, directory / self.config.weights_file)
        self.featurizer.tokenizer.save_pretrained(directory / TOKENIZER_DIR)
        record = {
            "format": "humanclap-msclap",
            "name": self.name,
            "weights": self.config.weights_file,
            "tokenizer": TOKENIZER_DIR,
            "config": self.config.to_dict(),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
        return directory


# -- loading ----------------------------------------------------------------------------------


def is_msclap_directory(path: str | Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def is_msclap_file(path: str | Path) -> bool:
    """Whether a ``.pth``/``.pt`` file is an MS-CLAP release (``{"model": {caption_encoder.*...}}``);
    read memory-mapped, so a LAION-CLAP file costs little to rule out. Unreadable files: False (the
    LAION reader then reports them)."""
    try:
        checkpoint = read_torch_checkpoint(path, MSCLAP_CHECKPOINT, error=MsClapError, mmap=True)
    except CheckpointError:
        return False
    return release_state(checkpoint, path) is not None


def version_of(state: dict[str, Any]) -> str | None:
    """ "2023" (HTSAT audio) or "2022" (Cnn14 audio) from a state dict's keys; None if neither."""
    if any(key.startswith("audio_encoder.base.htsat.") for key in state):
        return "2023"
    if any(key.startswith("audio_encoder.base.conv_block1.") for key in state):
        return "2022"
    return None


def release_state(checkpoint: Any, path: str | Path) -> dict[str, torch.Tensor] | None:
    """The state dict of an MS-CLAP release file, or None if ``checkpoint`` is not one."""
    state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not any(
        isinstance(key, str) and key.startswith("caption_encoder.") for key in state
    ):
        return None
    return state


def load_weights(model: MsClapModel, state: dict[str, Any], source: str | Path) -> None:
    """Strict load (see the module docstring), errors naming the file and the first offending keys."""
    state = {key: value for key, value in state.items() if not _OLD_BUFFERS.search(str(key))}
    load_strictly(model, state, source, f"MS-CLAP {model.config.version}", MsClapError)


def load_tokenizer(directory: str | Path, config: MsClapConfig) -> Any:
    from transformers import BertTokenizer, GPT2Tokenizer

    cls = GPT2Tokenizer if config.text_kind == "gpt2" else BertTokenizer
    try:
        return cls.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise MsClapError(
            f"MS-CLAP {config.version}'s tokenizer folder '{directory}' cannot be read as the "
            f"{config.text_model} tokenizer ({plain_reason(error)})."
        ) from None


def from_msclap(
    path: str,
    version: str | None = None,
    tokenizer: str | None = None,
    name: str | None = None,
) -> MsClapBackbone:
    """Load MS-CLAP from a release file (+ ``tokenizer`` folder) or a ``save_pretrained`` directory.

    ``version``: "2022" or "2023"; read from the file's weights when not given. ``tokenizer``: the
    text tower's tokenizer folder; default ``<the file's folder>/<gpt2|bert-base-uncased>``.
    """
    source = Path(path).expanduser()
    if version is not None and str(version) not in VERSIONS:
        raise MsClapError(f"MS-CLAP version must be one of {sorted(VERSIONS)}, got {version!r}")
    if source.is_dir():
        if not is_msclap_directory(source):
            raise MsClapError(
                f"'{path}' is a folder without {CONFIG_FILE}, so not an MS-CLAP export; pass the "
                f"release file itself (model.path=<folder>/CLAP_weights_<version>.pth)."
            )
        return _from_directory(source, name)
    if not source.is_file():
        wanted = str(version or "2023")
        raise MsClapError(
            f"MS-CLAP weights '{path}' do not exist. Where the Hugging Face hub is reachable, fetch "
            f"the release and its tokenizer with\n  {fetch_commands(wanted, str(source.parent))}\n"
            + (
                "then run the command again."
                if source.name == VERSIONS[wanted].weights_file
                else f"then pass model.path={source.parent}/{VERSIONS[wanted].weights_file}."
            )
        )
    checkpoint = read_torch_checkpoint(source, MSCLAP_CHECKPOINT, error=MsClapError, mmap=True)
    state = release_state(checkpoint, source)
    if state is None:
        raise MsClapError(
            f"'{path}' is not {MSCLAP_CHECKPOINT}: it holds no 'model' entry with caption_encoder.* "
            f"weights (a LAION-CLAP .pt loads with model=laion_ckpt model.path={path})."
        )
    found = version_of(state)
    if version is not None and found is not None and found != str(version):
        raise MsClapError(
            f"'{path}' holds MS-CLAP {found} weights (its audio encoder is "
            f"{'HTSAT' if found == '2023' else 'Cnn14'}), not version {version}; use model=msclap_{found}."
        )
    version = str(version or found or "")
    if version not in VERSIONS:
        raise MsClapError(
            f"'{path}': its audio encoder is neither MS-CLAP 2022's Cnn14 nor 2023's HTSAT."
        )
    config = VERSIONS[version]
    tokenizer_dir = Path(tokenizer).expanduser() if tokenizer else source.parent / config.text_model
    if not tokenizer_dir.is_dir():
        raise MsClapError(
            f"MS-CLAP {version} needs its text tower's tokenizer ({config.text_model}), and the folder "
            f"'{tokenizer_dir}' does not exist. Where the hub is reachable:\n  "
            f"{fetch_commands(version, str(source.parent)).splitlines()[1].strip()}\n"
            f"(or pass model.tokenizer=<folder>)."
        )
    model = MsClapModel(config)
    load_weights(model, state, source)
    return _backbone(model, load_tokenizer(tokenizer_dir, config), name or f"msclap-{version}")


def _from_directory(directory: Path, name: str | None) -> MsClapBackbone:
    record_file = directory / CONFIG_FILE
    try:
        record = json.loads(record_file.read_text())
        config = MsClapConfig.from_dict(record["config"])
        weights, tokenizer = str(record["weights"]), str(record["tokenizer"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MsClapError(
            f"'{record_file}' is not a readable MS-CLAP export record ({plain_reason(error)})."
        ) from None
    for entry in (weights, tokenizer):
        if Path(entry).is_absolute() or ".." in Path(entry).parts:
            raise MsClapError(
                f"'{record_file}': '{entry}' must name a file inside the export folder."
            )
    checkpoint = read_torch_checkpoint(
        directory / weights, MSCLAP_CHECKPOINT, error=MsClapError, mmap=True
    )
    state = release_state(checkpoint, directory / weights)
    if state is None:
        raise MsClapError(f"'{directory / weights}' is not {MSCLAP_CHECKPOINT}.")
    model = MsClapModel(config)
    load_weights(model, state, directory / weights)
    label = name or str(record.get("name") or f"msclap-{config.version}")
    return _backbone(model, load_tokenizer(directory / tokenizer, config), label)


def _backbone(model: MsClapModel, tokenizer: Any, name: str) -> MsClapBackbone:
    config = model.config
    model.eval()
    featurizer = MsClapFeaturizer(
        tokenizer, config.text_kind, config.text_len, config.sampling_rate, config.duration
    )
    return MsClapBackbone(model, featurizer, name=name)


# -- random models for tests and benchmarks ----------------------------------------------------

RANDOM_VERSION = 1  # bump when the recipe below changes, so cached builds are rebuilt
SIZES = ("full", "small")


def random_state_dict(model: MsClapModel, seed: int = 0) -> dict[str, torch.Tensor]:
    """:func:`~humanclap.backbones.random_weights.seeded_state_dict`; the front-end constants (STFT
    kernels, mel matrix), attention masks and the temperature keep their values, and the input
    BatchNorm centres and scales log-mels in dB to about N(0, 1)."""
    return seeded_state_dict(
        model,
        seed,
        keep=("melW", "conv_real.weight", "conv_imag.weight", "attn_mask", "logit_scale"),
        rules=(
            ("bn0.running_mean", lambda noise: -30.0 + noise),
            ("bn0.running_var", lambda noise: 400.0 + noise.abs()),
        ),
    )


def build_random_msclap(
    directory: str | Path, version: str = "2023", size: str = "full", seed: int = 0
) -> Path:
    """Write a random MS-CLAP export (release-format weights, tokenizer, record) to ``directory``.

    ``size="full"``: the release's exact architecture; ``"small"``: :func:`small_config`. The tokenizer
    is trained on tiny's word list with the real one's conventions (GPT-2: "!" is id 0 and
    ``<|endoftext|>`` the end token; BERT: [PAD] 0, [CLS], [SEP]), not the real vocabulary.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    directory = Path(directory)
    config = VERSIONS[version] if size == "full" else small_config(version)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = _train_tokenizer(Path(scratch), config)
    if size == "small":
        text = dict(config.text, vocab_size=len(tokenizer))
        if config.text_kind == "gpt2":
            text.update(bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
        config = MsClapConfig(**{**config.__dict__, "text": text})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MsClapModel(config)
    model.load_state_dict(random_state_dict(model, seed))
    name = f"msclap-{version}-random" + ("" if size == "full" else "-small")
    return _backbone(model, tokenizer, name).save_pretrained(directory)


def _train_tokenizer(directory: Path, config: MsClapConfig) -> Any:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import BertTokenizer, GPT2Tokenizer

    from humanclap.backbones.tiny import _WORDS

    words = _WORDS.split()
    if config.text_kind == "gpt2":
        bpe = ByteLevelBPETokenizer()  # the byte alphabet first, sorted: "!" gets id 0 as in GPT-2
        bpe.train_from_iterator(
            words + [" " + w for w in words], vocab_size=600, min_frequency=1, show_progress=False
        )
        bpe.save_model(str(directory))
        tokenizer = GPT2Tokenizer(
            vocab=str(directory / "vocab.json"), merges=str(directory / "merges.txt")
        )
        tokenizer.add_special_tokens({"pad_token": "!"})
        return tokenizer
    letters = sorted({c for w in words for c in w})
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *letters,
        *(f"##{c}" for c in letters),
        *sorted(set(words)),
    ]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizer(vocab=str(directory / "vocab.txt"))


def msclap_random(
    version: str = "2023", size: str = "full", seed: int = 0, directory: str | None = None
) -> MsClapBackbone:
    """Build (once, cached by its recipe) and load a random MS-CLAP through the export path.
    NOT pretrained: for tests, smoke runs and benchmarks."""
    version = str(version)
    if version not in VERSIONS:
        raise ValueError(f"MS-CLAP version must be one of {sorted(VERSIONS)}, got {version!r}")
    path = cached_random_export(
        f"MS-CLAP {version}",
        {"version": RANDOM_VERSION, "size": size, "seed": seed},
        lambda scratch: build_random_msclap(scratch, version=version, size=size, seed=seed),
        CONFIG_FILE,
        real_model=f"msclap_{version}",
        full_size=size == "full",
        directory=directory,
    )
    return from_msclap(str(path))
