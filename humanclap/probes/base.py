"""What a probe is: a plain object that measures an embedder on its own data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from humanclap.backbones.embedder import Embedder


@dataclass
class ProbeResult:
    """Named scalar metrics plus human-readable tables (Markdown) for logs and reports."""

    metrics: dict[str, float]
    tables: dict[str, str] = field(default_factory=dict)


class Probe(Protocol):
    """Runs identically in the epoch-end callback and in ``humanclap.evaluate``; under DDP every
    rank calls ``run`` and gets the same result (probes shard their own inputs)."""

    name: str

    def run(self, embedder: Embedder) -> ProbeResult: ...
