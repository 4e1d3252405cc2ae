"""What names a clip in the feature cache: its file's path, size and modification time, or the
content fingerprint of a generated store."""

from __future__ import annotations

import os
from typing import Any

from humanclap.data.audio import FileAudioStore


def clip_identity(store: Any, key: str) -> str | None:
    """A string that changes whenever the audio of ``store.load(key, ...)`` may change, or ``None``
    when the clip cannot be named (a missing file; a store without ``fingerprint``): not cached.

    Files: real path, size and ``st_mtime_ns`` (like make or pip's caches: rewriting a file changes
    them; a copy that keeps size and mtime with other samples would not, see docs/data.md#feature-cache).
    Generated stores: their ``fingerprint([key])``, a hash of the rendered clip or of its recipe.
    """
    if isinstance(store, FileAudioStore):
        try:
            stat = os.stat(key)
        except OSError:
            return None  # loading it raises the error that names the file
        return f"file\0{os.path.realpath(key)}\0{stat.st_size}\0{stat.st_mtime_ns}"
    own = getattr(store, "clip_identity", None)
    if own is not None:  # stores of several kinds of clips (humanclap.data.hf_source.HFAudioStore)
        return own(key)
    fingerprint = getattr(store, "fingerprint", None)
    if fingerprint is None:
        return None
    value = fingerprint([key])
    if value is None:
        return None
    return f"{type(store).__module__}.{type(store).__qualname__}\0{key}\0{value}"
