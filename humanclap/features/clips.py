"""``ClipFeatures``: a stored clip -> its featurizer arrays, computed once when a cache root is given."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from humanclap.features.disk import (
    cache_usage,
    entry_path,
    featurizer_directory,
    read_entry,
    write_entry,
)
from humanclap.features.identity import clip_identity

log = logging.getLogger(__name__)


class ClipFeatures:
    """Loads a clip (``store.load(key, featurizer.sample_rate)``) and featurises it (``featurizer.clip``),
    or reads the arrays a previous call stored under the cache root.

    Args:
        featurizer: a ``ClapFeaturizer`` (or subclass): ``clip``, ``collate``, ``describe``.
        cache_root: where entries live (:func:`humanclap.features.disk.cache_root`); ``None``: no cache,
            every call loads and featurises.

    Picklable (DataLoader workers get a copy); ``hits``/``misses`` count this process's calls only.
    A cache that cannot be written (full or read-only disk) is reported once and then only read.
    """

    def __init__(self, featurizer: Any, cache_root: str | Path | None = None) -> None:
        self.featurizer = featurizer
        self.directory: Path | None = None
        if cache_root is not None:
            self.directory = featurizer_directory(Path(cache_root), featurizer.describe())
        self.hits = 0
        self.misses = 0
        self._writable = True

    @property
    def sample_rate(self) -> int:
        return self.featurizer.sample_rate

    def _entry(self, store: Any, key: str) -> Path | None:
        if self.directory is None:
            return None
        identity = clip_identity(store, key)
        return None if identity is None else entry_path(self.directory, identity)

    def is_cached(self, store: Any, key: str) -> bool:
        entry = self._entry(store, key)
        return entry is not None and entry.exists()

    def __call__(self, store: Any, key: str) -> dict[str, np.ndarray]:
        entry = self._entry(store, key)
        if entry is not None:
            cached = read_entry(entry)
            if cached is not None:
                self.hits += 1
                return cached
        features = self.featurizer.clip(store.load(key, self.sample_rate), what=f"clip '{key}'")
        self.misses += 1
        if entry is not None and self._writable:
            try:
                write_entry(entry, features)
            except OSError as error:
                self._writable = False
                log.warning(
                    "feature cache: cannot write under %s (%s); features are computed without it "
                    "(choose another place with cache_dir=..., or cache=false)",
                    self.directory,
                    error,
                )
        return features

    def collate(self, clips: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        return self.featurizer.collate(clips)

    def usage(self) -> str:
        """One line for the log: where the cache is and how much it holds."""
        if self.directory is None:
            return "feature cache: off (cache=false)"
        entries, size = cache_usage(self.directory)
        amount = f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
        return f"feature cache: {entries:,} clips, {amount} in {self.directory}"
