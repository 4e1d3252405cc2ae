"""Load a transformers ``ClapModel`` checkpoint from a local directory or a Hugging Face hub id.

A hub id is looked up on the hub only when the hub answers within :data:`HUB_CHECK_SECONDS`
(and ``HF_HUB_OFFLINE`` is not set); otherwise a cached copy loads from the cache alone and an
uncached one fails at once with the commands that make it available (:class:`HubUnreachable`),
instead of huggingface_hub's retries (5 per missing file, ~30 s each). What counts as a path and
what as a hub id: :func:`looks_like_path`.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import pickle
import re
from pathlib import Path

import httpx2
from huggingface_hub import constants, is_offline_mode, snapshot_download, try_to_load_from_cache
from huggingface_hub.utils import get_session
from safetensors import SafetensorError
from transformers import ClapModel, ClapProcessor

from humanclap.backbones.aggregation import (
    HEADS_CONFIG,
    TransformerHeadBackbone,
    has_transformer_heads,
    heads_export_config,
    load_transformer_heads,
)
from humanclap.backbones.checkpoint_safety import (
    CheckpointError,
    plain_reason,
    refuse_custom_code,
    weight_file_problem,
)
from humanclap.backbones.clap import ClapBackbone
from humanclap.backbones.featurizer import ClapFeaturizer
from humanclap.errors import HumanClapError

FUSED_PROCESSOR = "laion/clap-htsat-fused"

# Checkpoints that ship model weights only; they are used with another repository's processor.
PROCESSOR_FOR = {
    # The released Human-CLAP weights are ClapModel safetensors fine-tuned from the fused LAION
    # model and used with its processor at 48 kHz (sarulab-speech model cards).
    "sarulab-speech/human-clap-*": FUSED_PROCESSOR,
}

HUB_CHECK_SECONDS = 3.0
"""How long to wait for the hub to answer before treating it as unreachable."""

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
DOWNLOAD_COMMAND = (
    "hf download"  # huggingface_hub >= 1.0 (transformers 5) ships `hf`, not `huggingface-cli`
)


class CheckpointNotAvailable(HumanClapError, FileNotFoundError):
    """A checkpoint that is neither a local directory nor reachable on the hub from here."""


class HubUnreachable(CheckpointNotAvailable):
    """A hub id that is not in the local Hugging Face cache while the hub cannot be reached.

    The message ends with the commands that make it available: a download into ``local_dir`` and
    how to use that directory (``use``, which a caller that knows its command line may replace
    with :meth:`instead`). ``argument`` is the parameter that named the hub id (``source``,
    ``processor`` or ``tokenizer``).
    """

    def __init__(self, what: str, source: str, argument: str, reason: str, use: str | None = None):
        self.what, self.source, self.argument, self.reason = what, source, argument, reason
        self.local_dir = f"checkpoints/{source.split('/')[-1]}"
        self.use = use or (
            f"then pass {self.local_dir} in its place (in a model config: "
            f"model.{argument}={self.local_dir})."
        )
        super().__init__(
            f"{what} '{source}' is neither a local directory nor in the local Hugging Face "
            f"cache, and {reason}. Download it once where the hub is reachable:\n"
            f"    {DOWNLOAD_COMMAND} {source} --local-dir {self.local_dir}\n{self.use}"
        )

    def instead(self, use: str) -> HubUnreachable:
        """The same error with another ending, e.g. the exact command to run with the directory."""
        return HubUnreachable(self.what, self.source, self.argument, self.reason, use)


def default_processor(source: str) -> str:
    for pattern, processor in PROCESSOR_FOR.items():
        if fnmatch.fnmatch(source, pattern):
            return processor
    return source


def looks_like_path(source: str) -> bool:
    """Whether ``source`` names a local file or directory rather than a hub id, even if it does not exist.

    A path starts with ``.``, ``/`` or ``~``, ends with a checkpoint suffix (``.pt``, ``.ckpt``, ...),
    has a separator but not the hub's ``org/name`` shape (``a/b/c``), or starts with a folder that
    exists here: ``checkpoints/mine`` is a path when ``./checkpoints`` exists, a hub id otherwise.
    """
    if source.startswith((".", "/", "~")) or source.endswith(CHECKPOINT_SUFFIXES) or "\\" in source:
        return True
    if "/" not in source:
        return False
    return not HUB_ID.fullmatch(source) or Path(source.split("/")[0]).is_dir()


def looks_like_hub_id(source: str) -> bool:
    return HUB_ID.fullmatch(source) is not None and not looks_like_path(source)


def missing_path(what: str, source: str) -> str:
    """``<what> '<source>' does not exist locally: `` and what its folder holds (or that it is missing)."""
    folder = os.path.dirname(source.rstrip("/\\")) or "."
    parent = Path(folder).expanduser()
    if not parent.is_dir():
        return f"{what} '{source}' does not exist locally, nor does its folder '{folder}/'."
    names = sorted(
        p.name + ("/" if p.is_dir() else "") for p in parent.iterdir() if not p.name.startswith(".")
    )
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} entries)" if len(names) > 12 else "")
    return f"{what} '{source}' does not exist locally; '{folder}/' holds: {shown or 'nothing'}."


@functools.cache
def _unreachable(endpoint: str) -> str | None:
    """Why the hub at ``endpoint`` cannot be asked (None: it answered within HUB_CHECK_SECONDS).

    One request per process, with huggingface_hub's own session (its proxies and certificates).
    """
    if is_offline_mode():
        return "the Hugging Face hub cannot be reached (HF_HUB_OFFLINE is set)"
    try:
        get_session().head(endpoint, timeout=HUB_CHECK_SECONDS)
    except httpx2.TransportError as error:
        return f"the Hugging Face hub ({endpoint}) cannot be reached ({plain_reason(error)})"
    return None


def hub_unreachable() -> str | None:
    """Why the configured hub cannot be asked now (HF_HUB_OFFLINE, no answer in time), or None."""
    return _unreachable(constants.ENDPOINT)


def _in_hub_cache(source: str) -> bool:
    try:
        snapshot_download(source, local_files_only=True)
    except (OSError, ValueError):  # LocalEntryNotFoundError; HFValidationError for a malformed id
        return False
    return True


# What transformers raises for a directory or cache entry it cannot load: missing or foreign files
# (OSError, ValueError), corrupt safetensors, and torch's errors for pytorch_model.bin.
_LOAD_ERRORS = (
    OSError,
    ValueError,
    RuntimeError,
    EOFError,
    pickle.UnpicklingError,
    SafetensorError,
)


def _from_source(loader, source: str, what: str, argument: str = "source"):
    """``loader(source)`` for a local directory or a hub id, never running code from the checkpoint.

    Local directories that name custom code are refused before transformers reads them, and
    ``trust_remote_code=False`` keeps transformers from importing (or asking whether to import)
    code named in a hub checkpoint. A failure names the directory and, if one is bad, the weight file.
    ``argument`` names the parameter ``source`` came from, for the hint of :class:`HubUnreachable`.
    """
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointNotAvailable(
                f"{what} '{source}' is a file; a transformers checkpoint is a directory with "
                f"config.json (use humanclap.backbones.from_laion_checkpoint for LAION .pt files)"
            )
        refuse_custom_code(path)
        try:
            return loader(str(path), trust_remote_code=False)
        except _LOAD_ERRORS as error:
            _raise_bad_weight_file(f"{what} directory '{source}'", path)
            raise CheckpointNotAvailable(
                f"{what} directory '{source}' cannot be loaded: {plain_reason(error, sentences=3)}"
            ) from error
    if not looks_like_hub_id(source):
        raise CheckpointNotAvailable(missing_path(what, source))
    unreachable = _unreachable(constants.ENDPOINT)
    if unreachable and not _in_hub_cache(source):
        raise HubUnreachable(what, source, argument, unreachable)
    try:
        # Without the hub, read the cache only: asking for files a repository does not have
        # (optional tokenizer files, ...) would otherwise retry each one for ~30 s.
        return loader(source, trust_remote_code=False, local_files_only=unreachable is not None)
    except OSError as error:
        raise CheckpointNotAvailable(
            f"{what} '{source}' is not a local directory and could not be loaded from the Hugging Face "
            f"hub ({constants.ENDPOINT}): {plain_reason(error)}."
        ) from error
    except _LOAD_ERRORS as error:
        cached = try_to_load_from_cache(source, "config.json")
        if isinstance(cached, str):
            _raise_bad_weight_file(f"{what} '{source}' (Hugging Face cache)", Path(cached).parent)
        raise CheckpointError(
            f"{what} '{source}' from the Hugging Face hub cannot be loaded "
            f"({type(error).__name__}: {plain_reason(error, sentences=3)})."
        ) from None


def _raise_bad_weight_file(checkpoint: str, directory: Path) -> None:
    problem = weight_file_problem(directory)
    if problem is not None:
        raise type(problem)(f"{checkpoint} cannot be loaded: {problem}") from None


def from_pretrained(
    source: str, processor: str | None = None, name: str | None = None
) -> ClapBackbone:
    """A ``ClapBackbone`` from a transformers checkpoint.

    Args:
        source: local directory (``save_pretrained`` output) or hub id such as
            ``laion/clap-htsat-fused`` or ``sarulab-speech/human-clap-wsce-mae``.
        processor: where the feature extractor and tokenizer come from; defaults to ``source``,
            or to ``laion/clap-htsat-fused`` for the weight-only Human-CLAP releases.
        name: label used in logs and reports; defaults to ``source``.
    """
    processor = processor or default_processor(source)
    # An export with Transformer heads says so in its config.json's model_type, which makes plain
    # transformers warn; it is read here as the ClapConfig it is, and its heads are restored below.
    marked = {"config": config} if (config := heads_export_config(source)) is not None else {}
    model = _from_source(
        functools.partial(ClapModel.from_pretrained, **marked), source, "CLAP model"
    )
    clap_processor = _from_source(
        functools.partial(ClapProcessor.from_pretrained, **(marked if processor == source else {})),
        processor,
        "CLAP processor",
        "processor",
    )
    audio_config = model.config.audio_config
    extractor = clap_processor.feature_extractor
    if extractor.feature_size != audio_config.num_mel_bins:
        raise ValueError(
            f"processor '{processor}' makes {extractor.feature_size} mel bins but model "
            f"'{source}' expects {audio_config.num_mel_bins}; pass the processor that belongs to it"
        )
    featurizer = ClapFeaturizer(
        extractor, clap_processor.tokenizer, bool(audio_config.enable_fusion)
    )
    backbone = ClapBackbone(model, featurizer, name=name or source)
    # A directory exported with Transformer aggregation heads (humanclap.backbones.aggregation)
    # also restores them; any other checkpoint loads exactly as before.
    if Path(source).expanduser().is_dir() and has_transformer_heads(source):
        return load_transformer_heads(backbone, source)
    return backbone


def from_pretrained_with_heads(
    source: str, processor: str | None = None, name: str | None = None
) -> TransformerHeadBackbone:
    """Load a directory written by ``TransformerHeadBackbone.save_pretrained``; refuses one without heads."""
    if not has_transformer_heads(source):
        raise FileNotFoundError(
            f"'{source}' has no {HEADS_CONFIG}: it is a plain ClapModel directory "
            f"(load it with humanclap.backbones.from_pretrained, or wrap it with with_transformer_heads)"
        )
    backbone = from_pretrained(source, processor=processor, name=name)
    assert isinstance(backbone, TransformerHeadBackbone)
    return backbone
