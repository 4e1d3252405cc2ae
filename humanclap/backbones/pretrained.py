"""Load a transformers ``ClapModel`` checkpoint from a local directory or a Hugging Face hub id."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from transformers import ClapModel, ClapProcessor

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


def _from_source(loader, source: str, what: str):
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointNotAvailable(
                f"{what} '{source}' is a file; a transformers checkpoint is a directory with "
                f"config.json (use humanclap.backbones.from_laion_checkpoint for LAION .pt files)"
            )
        try:
            return loader(str(path))
        except (OSError, ValueError) as error:
            raise CheckpointNotAvailable(f"{what} directory '{source}' cannot be loaded: {error}") from error
    if not looks_like_hub_id(source):
        raise CheckpointNotAvailable(
            f"{what} '{source}' does not exist locally and is not a hub id of the form 'org/name'"
        )
    try:
        return loader(source)
    except OSError as error:
        raise CheckpointNotAvailable(
            f"{what} '{source}' is not a local directory and could not be fetched from the "
            f"Hugging Face hub ({type(error).__name__}: {str(error).splitlines()[0]}).\n"
            + _offline_hint(source)
        ) from error


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
