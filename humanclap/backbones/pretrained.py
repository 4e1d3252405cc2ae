"""Load a transformers ``ClapModel`` checkpoint from a local directory or a Hugging Face hub id."""

from __future__ import annotations

import fnmatch
import pickle
from pathlib import Path

from huggingface_hub import try_to_load_from_cache
from safetensors import SafetensorError
from transformers import ClapModel, ClapProcessor

from humanclap.backbones.checkpoint_safety import (CheckpointError, plain_reason, refuse_custom_code,
                                                    weight_file_problem)
from humanclap.backbones.clap import ClapBackbone
from humanclap.backbones.featurizer import ClapFeaturizer

FUSED_PROCESSOR = "laion/clap-htsat-fused"

# Checkpoints that ship model weights only; they are used with another repository's processor.
PROCESSOR_FOR = {
    # The released Human-CLAP weights are ClapModel safetensors fine-tuned from the fused LAION
    # model and used with its processor at 48 kHz (sarulab-speech model cards).
    "sarulab-speech/human-clap-*": FUSED_PROCESSOR,
}


class CheckpointNotAvailable(FileNotFoundError):
    """A checkpoint that is neither a local directory nor reachable on the hub from here."""


def default_processor(source: str) -> str:
    for pattern, processor in PROCESSOR_FOR.items():
        if fnmatch.fnmatch(source, pattern):
            return processor
    return source


def looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def _offline_hint(source: str) -> str:
    local = f"checkpoints/{source.split('/')[-1]}"
    return (
        f"To use it without network access, download it once where the hub is reachable:\n"
        f"    huggingface-cli download {source} --local-dir {local}\n"
        f"copy that directory here and pass its path instead (e.g. model.source={local}), or "
        f"pre-fill the Hugging Face cache (HF_HOME) and set HF_HUB_OFFLINE=1."
    )


# What transformers raises for a directory or cache entry it cannot load: missing or foreign files
# (OSError, ValueError), corrupt safetensors, and torch's errors for pytorch_model.bin.
_LOAD_ERRORS = (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError)


def _from_source(loader, source: str, what: str):
    """``loader(source)`` for a local directory or a hub id, never running code from the checkpoint.

    Local directories that name custom code are refused before transformers reads them, and
    ``trust_remote_code=False`` keeps transformers from importing (or asking whether to import)
    code named in a hub checkpoint. A failure names the directory and, if one is bad, the weight file.
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
            raise CheckpointNotAvailable(f"{what} directory '{source}' cannot be loaded: "
                                         f"{plain_reason(error, sentences=3)}") from error
    if not looks_like_hub_id(source):
        raise CheckpointNotAvailable(
            f"{what} '{source}' does not exist locally and is not a hub id of the form 'org/name'"
        )
    try:
        return loader(source, trust_remote_code=False)
    except OSError as error:
        raise CheckpointNotAvailable(
            f"{what} '{source}' is not a local directory and could not be fetched from the "
            f"Hugging Face hub ({type(error).__name__}: {str(error).splitlines()[0]}).\n"
            + _offline_hint(source)
        ) from error
    except _LOAD_ERRORS as error:
        cached = try_to_load_from_cache(source, "config.json")
        if isinstance(cached, str):
            _raise_bad_weight_file(f"{what} '{source}' (Hugging Face cache)", Path(cached).parent)
        raise CheckpointError(f"{what} '{source}' from the Hugging Face hub cannot be loaded "
                              f"({type(error).__name__}: {plain_reason(error, sentences=3)}).") from None


def _raise_bad_weight_file(checkpoint: str, directory: Path) -> None:
    problem = weight_file_problem(directory)
    if problem is not None:
        raise type(problem)(f"{checkpoint} cannot be loaded: {problem}") from None


def from_pretrained(source: str, processor: str | None = None, name: str | None = None) -> ClapBackbone:
    """A ``ClapBackbone`` from a transformers checkpoint.

    Args:
        source: local directory (``save_pretrained`` output) or hub id such as
            ``laion/clap-htsat-fused`` or ``sarulab-speech/human-clap-wsce-mae``.
        processor: where the feature extractor and tokenizer come from; defaults to ``source``,
            or to ``laion/clap-htsat-fused`` for the weight-only Human-CLAP releases.
        name: label used in logs and reports; defaults to ``source``.
    """
    processor = processor or default_processor(source)
    model = _from_source(ClapModel.from_pretrained, source, "CLAP model")
    clap_processor = _from_source(ClapProcessor.from_pretrained, processor, "CLAP processor")
    audio_config = model.config.audio_config
    extractor = clap_processor.feature_extractor
    if extractor.feature_size != audio_config.num_mel_bins:
        raise ValueError(
            f"processor '{processor}' makes {extractor.feature_size} mel bins but model "
            f"'{source}' expects {audio_config.num_mel_bins}; pass the processor that belongs to it"
        )
    featurizer = ClapFeaturizer(extractor, clap_processor.tokenizer, bool(audio_config.enable_fusion))
    backbone = ClapBackbone(model, featurizer, name=name or source)
    # A directory exported with Transformer aggregation heads (humanclap.backbones.aggregation)
    # also restores them; any other checkpoint loads exactly as before.
    from humanclap.backbones.aggregation import has_transformer_heads, load_transformer_heads

    if Path(source).expanduser().is_dir() and has_transformer_heads(source):
        return load_transformer_heads(backbone, source)
    return backbone
