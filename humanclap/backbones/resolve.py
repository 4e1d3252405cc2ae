"""Turn what a user types after ``model=`` into a backbone: the evaluate CLI's model argument.

Tried in this order: a model config in ``recipes/model/``, a local path (ClapModel directory,
LAION-CLAP ``.pt``, Lightning ``.ckpt``), a hub id ``org/name``. See docs/models.md#model-names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from humanclap.backbones.base import Backbone
from humanclap.backbones.checkpoint_safety import (
    LIGHTNING_CHECKPOINT,
    STORED_MODEL,
    CheckpointError,
    build_stored_model,
    plain_reason,
    read_torch_checkpoint,
)
from humanclap.backbones.clamp3 import from_clamp3, is_clamp3_directory, is_clamp3_file
from humanclap.backbones.laion_checkpoint import from_laion_checkpoint
from humanclap.backbones.msclap import from_msclap, is_msclap_directory, is_msclap_file
from humanclap.backbones.muq import from_muq_mulan, is_muq_mulan_directory
from humanclap.backbones.pretrained import (
    default_processor,
    from_pretrained,
    looks_like_hub_id,
    looks_like_path,
    missing_path,
)
from humanclap.cli import user_error
from humanclap.recipe_files import RECIPES

MODEL_CONFIGS = RECIPES / "model"
LAION_SUFFIXES = (".pt", ".pth")
LIGHTNING_SUFFIX = ".ckpt"
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")  # transformers >= 5, older


class UnknownModel(CheckpointError):
    """A model argument that names no config, no readable checkpoint on disk and no hub id."""


@dataclass
class ResolvedModel:
    """A loaded backbone and where it came from (written to ``metrics.json``)."""

    name: str
    kind: str
    source: str
    backbone: Backbone


def model_config_names() -> list[str]:
    return sorted(path.stem for path in MODEL_CONFIGS.glob("*.yaml"))


def model_config(name: str) -> DictConfig:
    """``recipes/model/<name>.yaml`` as Hydra composes it for ``model=<name>``.

    A model config may extend others of the folder, as Hydra's config inheritance does: ``defaults:
    [human_clap, _self_]`` merges ``human_clap.yaml``, then the config's own keys.
    """
    config = OmegaConf.load(MODEL_CONFIGS / f"{name}.yaml")
    defaults = config.pop("defaults", ["_self_"])
    composed = OmegaConf.create()
    for entry in defaults:
        if not isinstance(entry, str):
            raise ValueError(
                f"recipes/model/{name}.yaml: its defaults may only name other model configs, got {entry!r}"
            )
        composed = OmegaConf.merge(composed, config if entry == "_self_" else model_config(entry))
    return composed


def resolve_model(
    spec: str | Mapping[str, Any],
    name: str | None = None,
    seed: int = 0,
    laion_tokenizer: str = "roberta-base",
    processor: str | None = None,
    config_name: str | None = None,
) -> ResolvedModel:
    """Load the backbone ``spec`` names (see docs/models.md#model-names); a mapping is a ``_target_`` config.

    ``laion_tokenizer`` is the RoBERTa tokenizer (hub id or directory) for LAION ``.pt`` files,
    which do not contain one. ``processor`` (hub id or directory) serves transformers directories
    that hold weights only, such as a downloaded ``sarulab-speech/human-clap-*`` release;
    directories with their own ``preprocessor_config.json`` always use their own. ``config_name``:
    the ``recipes/model/`` config a mapping was composed from (``model=<name>`` in evaluate).
    """
    if isinstance(spec, Mapping) or OmegaConf.is_dict(spec):
        config = OmegaConf.create(dict(spec)) if not OmegaConf.is_dict(spec) else spec
        target = str(config.get("_target_", "?"))
        if config_name is not None:
            label, source = name or config_name, f"recipes/model/{config_name}.yaml"
        else:
            label, source = (
                name
                or str(config.get("source") or config.get("path") or target.rsplit(".", 1)[-1]),
                target,
            )
        return ResolvedModel(
            label, "config", source, _instantiate(config, seed, config_name or label)
        )
    spec = str(spec)
    label = name or spec.rstrip("/").split("/")[-1]
    if spec in model_config_names():
        backbone = _instantiate(model_config(spec), seed, spec)
        return ResolvedModel(label, "config", f"recipes/model/{spec}.yaml", backbone)
    path = Path(spec).expanduser()
    if path.is_dir() and is_msclap_directory(path):
        return ResolvedModel(label, "msclap_dir", str(path), from_msclap(str(path)))
    if path.is_dir() and is_muq_mulan_directory(path):  # an export, or a release's config.json
        return ResolvedModel(label, "muq_mulan_dir", str(path), from_muq_mulan(str(path)))
    if path.is_dir() and is_clamp3_directory(path):
        return ResolvedModel(label, "clamp3_dir", str(path), from_clamp3(str(path)))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UnknownModel(
                f"model directory '{spec}' has no config.json, so it is not a transformers "
                f"ClapModel checkpoint. {_accepted()}"
            )
        has_processor = any((path / name).is_file() for name in PROCESSOR_FILES)
        if not has_processor and processor is None:
            raise UnknownModel(
                f"model directory '{spec}' has weights but no processor (processor_config.json or "
                f"preprocessor_config.json); "
                f"pass the processor it was trained with, e.g. processor=laion/clap-htsat-fused "
                f"(or a local copy of it) for the Human-CLAP releases"
            )
        return ResolvedModel(
            label,
            "transformers_dir",
            str(path),
            from_pretrained(str(path), processor=None if has_processor else processor),
        )
    if path.is_file():
        if path.suffix in LAION_SUFFIXES and is_msclap_file(path):
            return ResolvedModel(label, "msclap_pth", str(path), from_msclap(str(path)))
        if path.suffix in LAION_SUFFIXES and is_clamp3_file(path):
            return ResolvedModel(label, "clamp3_pth", str(path), from_clamp3(str(path)))
        if path.suffix in LAION_SUFFIXES:
            return ResolvedModel(
                label,
                "laion_pt",
                str(path),
                from_laion_checkpoint(str(path), tokenizer=laion_tokenizer),
            )
        if path.suffix == LIGHTNING_SUFFIX:
            return ResolvedModel(
                label, "lightning_ckpt", str(path), from_lightning_checkpoint(path)
            )
        raise UnknownModel(
            f"model file '{spec}' has an unknown kind (suffix '{path.suffix}'). {_accepted()}"
        )
    if looks_like_path(spec):  # never a hub id: checkpoints/mine when ./checkpoints exists
        raise UnknownModel(f"{missing_path('model', spec)} {_accepted()}")
    if looks_like_hub_id(
        spec
    ):  # `processor` serves the weights-only releases (PROCESSOR_FOR), as for directories
        weights_only = default_processor(spec) != spec
        return ResolvedModel(
            label, "hub", spec, from_pretrained(spec, processor=processor if weights_only else None)
        )
    raise UnknownModel(
        f"model '{spec}' does not exist: it is not a config name, a file or directory, "
        f"or a hub id 'org/name'. {_accepted()}"
    )


def from_lightning_checkpoint(path: str | Path) -> Backbone:
    """The backbone of a ``humanclap.train`` Lightning checkpoint.

    The file is read weights-only, the model config stored in its hyper-parameters must pass
    :func:`~humanclap.backbones.checkpoint_safety.check_model_config` (an allowed humanclap builder
    with plain arguments) and is built by calling that builder, then every ``backbone.*`` weight is
    loaded (strictly) from the checkpoint.
    """
    path = Path(path)
    checkpoint = read_torch_checkpoint(path, LIGHTNING_CHECKPOINT, error=UnknownModel)
    config = _entry(checkpoint, "hyper_parameters", "config", "model")
    state = _entry(checkpoint, "state_dict")
    if not config or not isinstance(state, dict):
        raise UnknownModel(
            f"'{path}' is not a humanclap.train checkpoint (no {STORED_MODEL} "
            f"or state_dict); export a transformers directory or pass the model config instead"
        )
    backbone = build_stored_model(config, path)
    weights = {
        key.removeprefix("backbone."): value
        for key, value in state.items()
        if isinstance(key, str) and key.startswith("backbone.")
    }
    misfit = f"'{path}': the backbone.* weights of its state_dict do not fit the model its {STORED_MODEL} builds"
    try:
        result = backbone.load_state_dict(weights, strict=False)
    except (
        RuntimeError,
        TypeError,
        AttributeError,
    ) as error:  # a shape, or a value that is no tensor
        raise CheckpointError(f"{misfit} ({plain_reason(error, sentences=2)}).") from None
    if result.missing_keys or result.unexpected_keys:
        missing, extra = (
            [f"backbone.{key}" for key in keys]
            for keys in (result.missing_keys, result.unexpected_keys)
        )
        raise CheckpointError(
            f"{misfit}: {len(missing)} missing {missing[:3]}, {len(extra)} not in the model {extra[:3]}."
        )
    return backbone


def key_holding(config: Any, value: str, prefix: str = "") -> str | None:
    """The dotted key of the first string ``value`` in ``config`` (nested mappings), or None."""
    if OmegaConf.is_config(config):
        config = OmegaConf.to_container(config, resolve=False)  # ${seed} has no root here
    for key, entry in config.items() if isinstance(config, dict) else []:
        if isinstance(entry, dict):
            found = key_holding(entry, value, f"{prefix}{key}.")
            if found:
                return found
        elif entry == value:
            return f"{prefix}{key}"
    return None


def _entry(document: Any, *keys: str) -> Any:
    """``document[k1][k2]...``, or None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(document, Mapping):
            return None
        document = document.get(key)
    return document


def _instantiate(config: DictConfig, seed: int, name: str) -> Backbone:
    """A model config of the user's (never one read from a checkpoint) built with Hydra."""
    # Model configs may interpolate ${seed} (tiny.yaml); outside a composed run, give them one.
    root = OmegaConf.create({"seed": seed, "model": config})
    unset = sorted(OmegaConf.missing_keys(root.model))  # full keys: model.source
    if unset:  # e.g. model=hf_dir alone
        raise UnknownModel(
            f"model config '{name}' needs a value for {', '.join(unset)} (??? in the config): "
            f"give it after the config name, as in model={name} {unset[0]}=<value>"
        )
    try:
        return instantiate(root.model)
    except InstantiationException as error:
        cause = user_error(error)  # our own message, not Hydra's repr of it
        if cause is None:
            raise
        raise cause from None


def _accepted() -> str:
    return (
        "A model is one of: a config name in recipes/model/ ("
        + ", ".join(model_config_names())
        + "); a transformers ClapModel directory (with config.json); a LAION-CLAP .pt/.pth file; a "
        "Lightning .ckpt from humanclap.train; an MS-CLAP release .pth or export directory; a MuQ-MuLan "
        "release or export directory; or a "
        "Hugging Face hub id 'org/name'."
    )
