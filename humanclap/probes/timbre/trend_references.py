"""The reference recordings of the timbre trend probe: names -> clips to manipulate (timbre-semantics §2.3).

The paper manipulates "a common reference file" (the SocialFX listening-test track). Here a
reference is a file (loaded with :func:`humanclap.data.audio.load_audio`), an
:class:`~humanclap.probes.cache.AudioRef`, or (``references=None``) the generated clip of
:mod:`humanclap.data.synthetic.reference_clip`. Each gets a name, which prefixes its metrics when there is
more than one reference (``<name>/eq/up``), so a name must not contain ``/`` nor be an effect name.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

from humanclap.data.audio import FileAudioStore
from humanclap.data.readers.audealize import SETTINGS_LENGTH
from humanclap.data.synthetic.reference_clip import ReferenceAudioStore
from humanclap.data.tables import require_file
from humanclap.probes.cache import AudioRef

GENERATED_NAME = "generated"
"""Name of the generated reference (``references=None``)."""


def generated_reference(seconds: float, seed: int) -> AudioRef:
    """The generated clip of ``seconds`` and ``seed``
    (:func:`~humanclap.data.synthetic.reference_clip.reference_clip`)."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, numbers.Real)
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise ValueError(f"reference_seconds must be a finite number > 0, got {seconds!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"reference_seed must be an integer, got {seed!r}")
    return AudioRef(ReferenceAudioStore(seconds=float(seconds), seed=int(seed)), "reference")


def _named_items(references) -> list[tuple[object, object]]:
    """(name, path or AudioRef) pairs; files in a list are named by their stem."""
    if isinstance(references, (str, Path, AudioRef)):
        references = [references]
    if isinstance(references, Mapping):
        return list(references.items())
    if not isinstance(references, Sequence):
        raise ValueError(
            f"references must be null, a path, a list of paths or a mapping name -> path, "
            f"got {references!r}"
        )
    items = []
    for value in references:
        if isinstance(value, AudioRef):
            raise ValueError("AudioRef references need names: pass a mapping name -> AudioRef")
        items.append((Path(value).stem, value))
    stems = [name for name, _ in items]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ValueError(
            f"reference files share the name(s) {duplicates}; pass a mapping name -> path"
        )
    return items


def resolve_references(references, seconds: float = 4.0, seed: int = 0) -> dict[str, AudioRef]:
    """name -> AudioRef of every reference; ``None`` = ``{"generated": generated_reference(seconds, seed)}``.

    ``references``: a path, a list of paths (named by file stem) or a mapping name -> path or
    ``AudioRef``. A missing file is a ``DataError`` naming it.
    """
    generated = generated_reference(seconds, seed)
    if references is None:
        return {GENERATED_NAME: generated}
    items = _named_items(references)
    if not items:
        raise ValueError("references is empty (null = the generated default reference)")
    resolved: dict[str, AudioRef] = {}
    for name, value in items:
        if not isinstance(name, str) or not name or "/" in name or name in SETTINGS_LENGTH:
            raise ValueError(
                f"reference name {name!r} must be a non-empty string without '/' and not "
                f"an effect name ({list(SETTINGS_LENGTH)})"
            )
        if isinstance(value, AudioRef):
            resolved[name] = value
        elif isinstance(value, (str, Path)):
            resolved[name] = AudioRef(
                FileAudioStore(), str(require_file(Path(value).expanduser()).resolve())
            )
        else:
            raise ValueError(f"reference '{name}': expected a path or an AudioRef, got {value!r}")
    return resolved
