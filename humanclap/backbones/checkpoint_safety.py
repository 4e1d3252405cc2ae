"""What a checkpoint may contain: tensors and plain data, never code.

Torch files are read by torch's weights-only unpickler (:func:`read_torch_checkpoint`), a stored
model config may only choose a builder from :data:`MODEL_BUILDERS` (:func:`check_model_config`) and
a transformers directory may not ask for custom code (:func:`refuse_custom_code`).
See docs/models.md#checkpoint-safety.
"""

from __future__ import annotations

import importlib
import json
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from humanclap.errors import HumanClapError

LIGHTNING_CHECKPOINT = "a Lightning checkpoint (.ckpt) written by humanclap.train"
LAION_CHECKPOINT = "a LAION-CLAP checkpoint (.pt)"
TRANSFORMERS_WEIGHTS = "transformers ClapModel weights (pytorch_model.bin)"


class CheckpointError(HumanClapError, ValueError):
    """A checkpoint file that cannot be read as the kind of checkpoint expected."""


class UnsafeCheckpoint(CheckpointError):
    """A checkpoint that would run code when loaded: pickled objects, a foreign builder, custom code."""


# -- torch files ---------------------------------------------------------------------------------

# Library advice that must not reach the user (each suggests running the file's code), and torch's
# preamble to it, which says nothing about the file.
_UNSAFE_ADVICE = re.compile(
    r"weights_only|trust_remote_code|trusted source|file an issue|safe_globals|"
    r"Check the documentation|Weights only load failed",
    re.IGNORECASE,
)


def plain_reason(error: BaseException, sentences: int = 1) -> str:
    """The first ``sentences`` of ``error``'s message that are not a library's advice to trust the
    file, without the final full stop (to quote inside a sentence of ours)."""
    kept = [
        sentence
        for line in str(error).splitlines()
        for sentence in re.split(r"(?<=\.)\s+", line.strip())
        if sentence and not _UNSAFE_ADVICE.search(sentence)
    ]
    return " ".join(kept[:sentences]).rstrip(".") or type(error).__name__


def read_torch_checkpoint(
    path: str | Path,
    kind: str,
    *,
    error: type[HumanClapError] = CheckpointError,
    mmap: bool = False,
) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that name ``path`` and ``kind``.

    A file that names a Python object raises :class:`UnsafeCheckpoint`; any other unreadable file
    raises ``error`` (a :class:`HumanClapError` the caller chose, e.g. its "unknown model" error).
    """
    path = Path(path)
    # torch maps only zip archives; any other file is read whole, so its error says what it is.
    mmap = mmap and zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as failure:
        named = re.search(r"GLOBAL ([\w.]+)", str(failure))
        if named:
            raise UnsafeCheckpoint(
                f"'{path}' was not loaded: besides tensors and plain data it names the Python object "
                f"'{named.group(1)}', which unpickling would import and call. humanclap reads only weights-only "
                f"PyTorch files and never runs code from a checkpoint; {kind} holds no Python objects."
            ) from None
        raise error(
            f"'{path}' cannot be read as {kind}: it is not a file written by torch.save "
            f"({plain_reason(failure)})."
        ) from None
    except EOFError:
        raise error(f"'{path}' cannot be read as {kind}: the file is empty.") from None
    except OSError as failure:
        raise error(
            f"'{path}' cannot be read as {kind}: {failure.strerror or plain_reason(failure)}."
        ) from None
    except (RuntimeError, ValueError) as failure:
        raise error(
            f"'{path}' cannot be read as {kind}: it is not a complete torch.save file "
            f"({plain_reason(failure)}); if it was copied or downloaded, the copy may be incomplete."
        ) from None


def load_strictly(
    module: torch.nn.Module,
    state: Mapping[str, Any],
    source: str | Path,
    what: str,
    error: type[HumanClapError] = CheckpointError,
) -> None:
    """``module.load_state_dict(state)`` where every weight of the module must come from the file and
    every tensor of the file must be used (torch's strict mode, with errors for people): a misfit
    raises ``error`` naming the file, ``what`` it should be, and the first keys on each side."""
    try:
        result = module.load_state_dict(dict(state), strict=False)
    except (RuntimeError, TypeError) as failure:  # a shape, or a value that is no tensor
        raise error(
            f"'{source}' does not fit {what} ({plain_reason(failure, sentences=2)})"
        ) from None
    parts = []
    for keys, one, many in (
        (result.missing_keys, "weight of the model is not in the file", "weights of the model are not in the file"),
        (result.unexpected_keys, "tensor of the file is not in the model", "tensors of the file are not in the model"),
    ):  # fmt: skip
        if keys:
            shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            parts.append(f"{len(keys)} {one if len(keys) == 1 else many} ({shown})")
    if parts:
        raise error(f"'{source}' does not fit {what}: {'; '.join(parts)}.")


# -- stored model configs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A type of plain value an argument accepts, named for error messages."""

    name: str
    accepts: Callable[[Any], bool]

    def or_null(self) -> Kind:
        return Kind(f"{self.name} or null", lambda value: value is None or self.accepts(value))


TEXT = Kind("a string", lambda value: isinstance(value, str))
WHOLE = Kind("an integer", lambda value: isinstance(value, int) and not isinstance(value, bool))
NUMBER = Kind(
    "a number", lambda value: isinstance(value, (int, float)) and not isinstance(value, bool)
)
FLAG = Kind("true or false", lambda value: isinstance(value, bool))
MAPPING = Kind("a mapping", lambda value: isinstance(value, Mapping))
MODEL_NODE = Kind(
    "a model config (a mapping with _target_)", lambda value: isinstance(value, Mapping)
)


@dataclass(frozen=True)
class ModelBuilder:
    """A humanclap function a stored model config may call, with the arguments it may pass."""

    module: str
    function: str
    arguments: Mapping[str, Kind]
    required: tuple[str, ...] = field(default=())

    @property
    def wraps_a_backbone(self) -> bool:
        return MODEL_NODE in self.arguments.values()

    def __call__(self, **arguments: Any):
        # module and function come from this table, never from the checkpoint
        return getattr(importlib.import_module(self.module), self.function)(**arguments)


_TINY = ModelBuilder(
    "humanclap.backbones.tiny", "tiny_clap", {"seed": WHOLE, "enable_fusion": FLAG}
)
_RANDOM_FULL_SIZE = ModelBuilder(
    "humanclap.backbones.random_full_size",
    "clap_htsat_random",
    {"enable_fusion": FLAG, "seed": WHOLE},
)
# The builders' `directory` is left out: a downloaded checkpoint does not choose where files are written.
_PRETRAINED = ModelBuilder(
    "humanclap.backbones.pretrained",
    "from_pretrained",
    {"source": TEXT, "processor": TEXT.or_null(), "name": TEXT.or_null()},
    required=("source",),
)
_LAION = ModelBuilder(
    "humanclap.backbones.laion_checkpoint",
    "from_laion_checkpoint",
    {"path": TEXT, "tokenizer": TEXT, "text_num_heads": WHOLE.or_null(), "name": TEXT.or_null()},
    required=("path",),
)
_HEADS = ModelBuilder(
    "humanclap.backbones.aggregation",
    "with_transformer_heads",
    {
        "backbone": MODEL_NODE,
        "num_layers": WHOLE,
        "num_heads": WHOLE,
        "dropout": NUMBER,
        "model_dim": WHOLE.or_null(),
        "output_dim": WHOLE.or_null(),
        "chunk_seconds": NUMBER,
        "max_chunks": WHOLE,
        "min_last_chunk_seconds": NUMBER,
        "text_cls_token": FLAG,
        "audio_cls_token": FLAG,
        "freeze_heads_with_towers": FLAG,
        "seed": WHOLE.or_null(),
    },
    required=("backbone",),
)

RELEASE = Kind(  # model.version=2023 on a command line is an integer
    "a string or an integer",
    lambda value: (
        isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    ),
)
_MSCLAP = ModelBuilder(
    "humanclap.backbones.msclap",
    "from_msclap",
    {
        "path": TEXT,
        "version": RELEASE.or_null(),
        "tokenizer": TEXT.or_null(),
        "name": TEXT.or_null(),
    },
    required=("path",),
)
_MSCLAP_RANDOM = ModelBuilder(
    "humanclap.backbones.msclap", "msclap_random", {"version": RELEASE, "size": TEXT, "seed": WHOLE}
)
_MUQ_MULAN = ModelBuilder(
    "humanclap.backbones.muq",
    "from_muq_mulan",
    {"path": TEXT, "tokenizer": TEXT.or_null(), "name": TEXT.or_null()},
    required=("path",),
)
_MUQ_MULAN_RANDOM = ModelBuilder(
    "humanclap.backbones.muq", "muq_mulan_random", {"size": TEXT, "seed": WHOLE}
)
_CLAMP3 = ModelBuilder(
    "humanclap.backbones.clamp3",
    "from_clamp3",
    {"path": TEXT, "mert": TEXT.or_null(), "tokenizer": TEXT.or_null(), "name": TEXT.or_null()},
    required=("path",),
)
_CLAMP3_RANDOM = ModelBuilder(
    "humanclap.backbones.clamp3", "clamp3_random", {"size": TEXT, "seed": WHOLE}
)

MODEL_BUILDERS: dict[str, ModelBuilder] = {
    # the names recipes/model/*.yaml use, then the same functions under their defining modules
    "humanclap.backbones.tiny_clap": _TINY,
    "humanclap.backbones.from_pretrained": _PRETRAINED,
    "humanclap.backbones.from_laion_checkpoint": _LAION,
    "humanclap.backbones.aggregation.with_transformer_heads": _HEADS,
    "humanclap.backbones.clap_htsat_random": _RANDOM_FULL_SIZE,
    "humanclap.backbones.tiny.tiny_clap": _TINY,
    "humanclap.backbones.random_full_size.clap_htsat_random": _RANDOM_FULL_SIZE,
    "humanclap.backbones.pretrained.from_pretrained": _PRETRAINED,
    "humanclap.backbones.laion_checkpoint.from_laion_checkpoint": _LAION,
    "humanclap.backbones.msclap.from_msclap": _MSCLAP,
    "humanclap.backbones.msclap.msclap_random": _MSCLAP_RANDOM,
    "humanclap.backbones.msclap.backbone.from_msclap": _MSCLAP,
    "humanclap.backbones.msclap.backbone.msclap_random": _MSCLAP_RANDOM,
    "humanclap.backbones.muq.from_muq_mulan": _MUQ_MULAN,
    "humanclap.backbones.muq.muq_mulan_random": _MUQ_MULAN_RANDOM,
    "humanclap.backbones.muq.backbone.from_muq_mulan": _MUQ_MULAN,
    "humanclap.backbones.muq.backbone.muq_mulan_random": _MUQ_MULAN_RANDOM,
    "humanclap.backbones.clamp3.from_clamp3": _CLAMP3,
    "humanclap.backbones.clamp3.clamp3_random": _CLAMP3_RANDOM,
    "humanclap.backbones.clamp3.backbone.from_clamp3": _CLAMP3,
    "humanclap.backbones.clamp3.backbone.clamp3_random": _CLAMP3_RANDOM,
}
"""``_target_`` -> builder: every model a stored config may build."""

STORED_MODEL = "hyper_parameters.config.model"
"""Where ``humanclap.train`` stores the model config in its checkpoints."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "null" if value is None else f"a {type(value).__name__}"


def check_arguments(
    values: Mapping[Any, Any],
    allowed: Mapping[str, Kind],
    *,
    file: str | Path,
    where: str,
    owner: str,
    required: tuple[str, ...] = (),
) -> None:
    """Every entry of ``values`` is one of ``owner``'s arguments ``allowed`` and of its kind.

    Raises :class:`UnsafeCheckpoint` naming ``file`` and the entry ``<where>.<key>`` (``where`` may
    be empty: the file's top level).
    """
    takes = ", ".join(allowed)
    for key, value in values.items():
        entry = f"{where}.{key}" if where else str(key)
        if not isinstance(key, str) or key not in allowed:
            option = isinstance(key, str) and key.startswith("_") and key.endswith("_")
            what = (
                "a Hydra instantiation option, which a checkpoint may not set"
                if option
                else f"not an argument a checkpoint may give {owner}"
            )
            raise UnsafeCheckpoint(f"'{file}': {entry} is {what}; allowed there: {takes}.")
        kind = allowed[key]
        if not kind.accepts(value):
            nested = (
                " (a nested _target_ node is allowed only as the backbone of "
                "humanclap.backbones.aggregation.with_transformer_heads)"
                if isinstance(value, Mapping) and "_target_" in value and kind is not MODEL_NODE
                else ""
            )
            raise UnsafeCheckpoint(
                f"'{file}': {entry} = {_show(value)} is {_describe(value)}, but {owner} "
                f"takes {kind.name} there{nested}."
            )
    for key in required:
        if key not in values:
            raise UnsafeCheckpoint(
                f"'{file}': {where or 'the file'} has no '{key}', which {owner} needs."
            )


def check_model_config(
    config: Any, file: str | Path, where: str = STORED_MODEL, *, wrapped: bool = False
) -> None:
    """Refuse (:class:`UnsafeCheckpoint`) a stored model config that is not an allowed builder with
    plain arguments; ``wrapped``: it is the backbone of another builder, so it may not wrap one itself."""
    if not isinstance(config, Mapping):
        raise UnsafeCheckpoint(
            f"'{file}': {where} is {_describe(config)}, not a model config "
            f"(a mapping with _target_)."
        )
    target = config.get("_target_")
    builder = MODEL_BUILDERS.get(target) if isinstance(target, str) else None
    if builder is None:
        raise UnsafeCheckpoint(
            f"'{file}': {where}._target_ = {_show(target)} is not a humanclap model builder; "
            f"allowed: {', '.join(MODEL_BUILDERS)}."
        )
    if wrapped and builder.wraps_a_backbone:
        plain = [name for name, other in MODEL_BUILDERS.items() if not other.wraps_a_backbone]
        raise UnsafeCheckpoint(
            f"'{file}': {where}._target_ = {target!r} wraps a backbone itself; a backbone "
            f"here must be one of: {', '.join(plain)}."
        )
    arguments = {key: value for key, value in config.items() if key != "_target_"}
    check_arguments(
        arguments,
        builder.arguments,
        file=file,
        where=where,
        owner=target,
        required=builder.required,
    )
    for key, kind in builder.arguments.items():
        if kind is MODEL_NODE and key in arguments:
            check_model_config(arguments[key], file, f"{where}.{key}", wrapped=True)


def build_stored_model(config: Any, file: str | Path, where: str = STORED_MODEL):
    """The backbone a stored model config describes: checked whole first, then built by calling the
    allowed builders directly (the checkpoint's strings only pick entries of :data:`MODEL_BUILDERS`)."""
    check_model_config(config, file, where)
    return _build(config)


def _build(config: Mapping[str, Any]):
    builder = MODEL_BUILDERS[config["_target_"]]
    arguments = {key: value for key, value in config.items() if key != "_target_"}
    for key, kind in builder.arguments.items():
        if kind is MODEL_NODE and key in arguments:
            arguments[key] = _build(arguments[key])
    return builder(**arguments)


# -- Transformer-head files ------------------------------------------------------------------------

# aggregation_config.json (humanclap.backbones.aggregation) holds the arguments of the two heads and
# of the chunking, and nothing else.
TRANSFORMER_HEAD_ARGUMENTS = {
    "input_dim": WHOLE,
    "output_dim": WHOLE,
    "num_layers": WHOLE,
    "num_heads": WHOLE,
    "max_positions": WHOLE,
    "dropout": NUMBER,
    "model_dim": WHOLE.or_null(),
    "feedforward_dim": WHOLE.or_null(),
    "cls_token": FLAG,
}
CHUNKING_ARGUMENTS = {
    "chunk_seconds": NUMBER,
    "max_chunks": WHOLE,
    "min_last_chunk_seconds": NUMBER,
}
HEADS_CONFIG_ENTRIES = {
    "format": TEXT,
    "version": WHOLE,
    "audio_head": MAPPING,
    "text_head": MAPPING,
    "chunking": MAPPING,
    "freeze_heads_with_towers": FLAG,
}


# -- transformers directories --------------------------------------------------------------------

TRANSFORMERS_CONFIG_FILES = (
    "config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
)
"""The JSON files of a transformers directory that can name custom code."""


def _code_entries(value: Any, where: str) -> list[tuple[str, Any]]:
    """``auto_map`` (Python classes to import) and hub kernels (``attn_implementation: org/repo``)."""
    if isinstance(value, list):
        return [
            entry
            for index, item in enumerate(value)
            for entry in _code_entries(item, f"{where}[{index}]")
        ]
    if not isinstance(value, Mapping):
        return []
    found = []
    for key, item in value.items():
        entry = f"{where}.{key}" if where else str(key)
        if key == "auto_map" or (
            str(key).endswith("_implementation") and isinstance(item, str) and "/" in item
        ):
            found.append((entry, item))
        else:
            found += _code_entries(item, entry)
    return found


def refuse_custom_code(directory: str | Path) -> None:
    """Refuse a transformers directory whose config files name code to import or download."""
    directory = Path(directory)
    for name in TRANSFORMERS_CONFIG_FILES:
        path = directory / name
        if not path.is_file():
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as failure:
            raise CheckpointError(
                f"'{path}' is not valid JSON ({plain_reason(failure)})."
            ) from None
        entries = _code_entries(document, "")
        if entries:
            entry, value = entries[0]
            raise UnsafeCheckpoint(
                f"'{path}': {entry} = {_show(value)} names code to import or download; humanclap loads only "
                f"transformers' own CLAP classes and never runs code from a checkpoint. If the directory holds a "
                f"plain ClapModel, delete that entry from {name}."
            )


def weight_file_problem(directory: str | Path) -> CheckpointError | None:
    """The error of the first weight file in ``directory`` that does not load, if one does not.

    The files transformers reads: ``*.safetensors`` (headers checked), else ``*.bin`` (read weights-only).
    """
    directory = Path(directory)
    safetensors = sorted(directory.glob("*.safetensors"))
    for path in safetensors:
        try:
            with safe_open(str(path), framework="pt") as weights:
                weights.keys()
        except (SafetensorError, OSError) as failure:
            return CheckpointError(
                f"'{path}' is not a complete safetensors file ({plain_reason(failure)}); it is "
                f"truncated or corrupt, so copy or download it again."
            )
    for path in [] if safetensors else sorted(directory.glob("*.bin")):
        try:
            read_torch_checkpoint(path, TRANSFORMERS_WEIGHTS)
        except CheckpointError as failure:
            return failure
    return None
