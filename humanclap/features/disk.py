"""The feature cache on disk: one directory per featurizer configuration, one file per clip.

``<root>/<Featurizer>-<digest>/featurizer.json`` holds the configuration the digest stands for;
``<root>/<Featurizer>-<digest>/<ab>/<sha256 of the clip identity>.feat`` holds one clip's arrays
(:func:`_encode`),
written to a temporary file and renamed into place, so DataLoader workers and DDP ranks that
write the same clip at once never let anyone read half an entry. Reading never holds more than
the clips of one batch in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from humanclap.errors import HumanClapError

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # bump when the entry layout changes


class CacheSettingError(HumanClapError, ValueError):
    """A ``cache=`` value that is not true or false, or a ``cache_dir`` that cannot be used."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$HUMANCLAP_CACHE/features``, else ``~/.cache/humanclap/features``."""
    if cache_dir is not None and str(cache_dir).strip():
        return Path(cache_dir).expanduser()
    base = os.environ.get("HUMANCLAP_CACHE") or Path.home() / ".cache" / "humanclap"
    return Path(base).expanduser() / "features"


def configured_root(cache: Any, cache_dir: Any = None) -> Path | None:
    """The cache root the ``cache`` / ``cache_dir`` options of train and evaluate select (``None``: off)."""
    if not isinstance(cache, bool):
        raise CacheSettingError(
            f"cache={cache!r}: use cache=true (features computed once and kept under cache_dir) or "
            f"cache=false (featurise every clip every time)"
        )
    return cache_root(cache_dir) if cache else None


def featurizer_directory(root: Path, description: dict[str, Any]) -> Path:
    """The directory of one featurizer configuration (created with its ``featurizer.json``)."""
    text = json.dumps({"format": FORMAT_VERSION, **description}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    directory = root / f"{description.get('featurizer', 'features')}-{digest}"
    manifest = directory / "featurizer.json"
    try:
        if not manifest.exists():
            directory.mkdir(parents=True, exist_ok=True)
            _atomic_write(manifest, lambda handle: handle.write(text.encode()))
    except OSError as error:
        raise CacheSettingError(
            f"cannot use {root} for the feature cache ({error.strerror or error}): pass "
            f"cache_dir=<a writable directory>, or cache=false to featurise without it"
        ) from None
    return directory


def entry_path(directory: Path, identity: str) -> Path:
    digest = hashlib.sha256(identity.encode()).hexdigest()
    return directory / digest[:2] / f"{digest}.feat"


def read_entry(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of one entry (read-only), or ``None`` if there is none or it cannot be read
    (then it is recomputed)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        return _decode(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("feature cache: ignoring unreadable entry %s (%s); recomputing it", path, error)
        return None


def write_entry(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write one entry atomically (format: :func:`_encode`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header, blobs = _encode(arrays)

    def write(handle) -> None:
        handle.write(header)
        for blob in blobs:
            handle.write(blob)

    _atomic_write(path, write)


# An entry is MAGIC, the length of a JSON header (uint32, little-endian), the header, then each array's
# raw bytes. One read and no per-array parsing: a cached clip costs about as much as copying it.
# Arrays whose channels (axis -3: the 4 crops of fused features) are all equal, as for every clip up
# to 10 s, keep one channel and are broadcast back on reading.
MAGIC = b"HCLAPF1\n"


def _encode(arrays: dict[str, np.ndarray]) -> tuple[bytes, list[bytes]]:
    fields, blobs, offset = [], [], 0
    for name, array in arrays.items():
        array = np.asarray(array)
        repeat = 1
        if array.ndim >= 3 and array.shape[-3] > 1:
            first = array[..., :1, :, :]
            if np.array_equal(array, np.broadcast_to(first, array.shape)):
                repeat, array = array.shape[-3], first
        blob = np.ascontiguousarray(array).tobytes()
        fields.append(
            {
                "name": name,
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "repeat": repeat,
                "offset": offset,
                "size": len(blob),
            }
        )
        blobs.append(blob)
        offset += len(blob)
    header = json.dumps(fields).encode()
    return MAGIC + len(header).to_bytes(4, "little") + header, blobs


def _decode(data: bytes) -> dict[str, np.ndarray]:
    if not data.startswith(MAGIC):
        raise ValueError("not a feature cache entry")
    start = len(MAGIC)
    length = int.from_bytes(data[start : start + 4], "little")
    fields = json.loads(data[start + 4 : start + 4 + length])
    body = start + 4 + length
    out = {}
    for field in fields:
        begin = body + field["offset"]
        if begin + field["size"] > len(data):
            raise ValueError("truncated entry")
        count = int(np.prod(field["shape"]))
        array = np.frombuffer(data, np.dtype(field["dtype"]), count, begin).reshape(field["shape"])
        if field["repeat"] > 1:
            shape = list(field["shape"])
            shape[-3] = field["repeat"]
            array = np.broadcast_to(array, shape)
        out[field["name"]] = array
    return out


def _atomic_write(path: Path, write) -> None:
    descriptor, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def cache_usage(directory: Path) -> tuple[int, int]:
    """(entries, bytes) under ``directory`` (a featurizer directory or the whole root)."""
    entries = size = 0
    if not directory.is_dir():
        return 0, 0
    for folder, _, files in os.walk(directory):
        for name in files:
            if name.endswith(".feat") and not name.startswith("."):
                entries += 1
                try:
                    size += os.stat(os.path.join(folder, name)).st_size
                except OSError:
                    pass
    return entries, size
