"""What a probe is: a plain object that measures an embedder on its own data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from humanclap.backbones.embedder import Embedder
from humanclap.probes.cache import EmbeddingCache, ProbeInputs

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Table:
    """A table laid out like the papers': one row per model, one column per metric.

    ``columns`` are (header, metric key); cells are looked up in each model's metrics, so a table
    never shows a number that is not also in ``metrics.json``. A metric a model lacks (e.g. a
    subset too small to report) is shown as "–".

    ``formats`` (optional) renders the cells of some metrics differently: it maps a metric-key
    suffix (the key itself or its last ``/``-separated part(s), e.g. ``"class"`` matches
    ``eq/warm/class``) to a function of the value returning the cell text, e.g. a trend code
    shown as an arrow. The first matching suffix wins; a missing metric is still "–".
    """

    columns: list[tuple[str, str]]
    note: str = ""
    formats: dict[str, Callable[[float], str]] = field(default_factory=dict)

    def render(self, rows: Mapping[str, Mapping[str, float]], digits: int = 3) -> str:
        header = "| model | " + " | ".join(h for h, _ in self.columns) + " |"
        rule = "|---|" + "---:|" * len(self.columns)
        lines = [header, rule]
        for name, metrics in rows.items():
            cells = [self._format(key, metrics.get(key), digits) for _, key in self.columns]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines + ([f"\n{self.note}"] if self.note else []))

    def _format(self, key: str, value: float | None, digits: int) -> str:
        if value is not None:
            for suffix, format_value in self.formats.items():
                if key == suffix or key.endswith("/" + suffix):
                    return format_value(value)
        return _cell(key, value, digits)


def _cell(key: str, value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    name = key.rsplit("/", 1)[-1]
    if (name == "n" or name.startswith("n_")) and float(value).is_integer():  # counts
        return str(int(value))
    return f"{value:.{digits}f}"


@dataclass
class ProbeResult:
    """What one probe measured on one model.

    ``metrics`` are named scalars (logged, written to ``metrics.json``); ``tables`` lay some of
    them out as in the papers (rendered side by side for several models);
    ``figures`` build matplotlib figures on demand, so training epochs that do not save them pay
    nothing.
    """

    metrics: dict[str, float]
    tables: dict[str, Table] = field(default_factory=dict)
    figures: dict[str, Callable[[], Figure]] = field(default_factory=dict)


class Probe(Protocol):
    """Runs identically in the epoch-end callback and in ``humanclap.evaluate``.

    ``inputs`` lists every clip and text the probe will ask for, so an evaluation embeds the
    union of all probes' inputs once; ``run`` takes its rows from the shared cache (an
    ``Embedder`` is wrapped in a fresh cache). Under DDP every rank calls ``run`` with the same
    requests and gets the same result.
    """

    name: str

    def inputs(self) -> ProbeInputs: ...

    def run(self, cache: EmbeddingCache) -> ProbeResult: ...


def run_probes(
    probes: Mapping[str, Probe],
    embedder: Embedder,
    batch_size: int = 32,
    progress: bool = False,
    feature_cache: str | Path | None = None,
    num_workers: int = 0,
) -> tuple[dict[str, ProbeResult], EmbeddingCache]:
    """Run several probes on one model through one cache: ({name: ProbeResult}, cache).

    The union of all probes' inputs is embedded first in one pass (one progress bar per kind),
    then each probe computes its metrics from cached rows. ``feature_cache`` and ``num_workers``:
    see :class:`EmbeddingCache`.
    """
    cache = EmbeddingCache(
        embedder,
        batch_size=batch_size,
        progress=progress,
        feature_cache=feature_cache,
        num_workers=num_workers,
    )
    cache.prefetch(probe.inputs() for probe in probes.values())
    return {name: probe.run(cache) for name, probe in probes.items()}, cache
