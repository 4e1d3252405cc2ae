"""Text-side sensitivity: does the text tower even notice an ordering manipulation? (no audio)

cos(text(original), text(manipulated)) for each manipulation of :mod:`humanclap.text.ordering`.
See docs/probes.md#text-sensitivity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from humanclap.backbones.embedder import Embedder
from humanclap.data.pairs import RatedPairs, unique_in_order
from humanclap.probes.base import ProbeResult, Table
from humanclap.probes.cache import EmbeddingCache, ProbeInputs, as_cache
from humanclap.probes.ordering.swap_retrieval import DATA_HINT, matching_clips
from humanclap.text.ordering import MANIPULATIONS, ManipulationStats, manipulate_all

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STATISTICS = ("mean", "median", "min", "p05")


class TextSensitivityProbe:
    """cos(text(original), text(manipulated)) per ordering manipulation.

    Args:
        pairs: the pairs (training: the validation split; evaluate: the chosen split); only their
            texts are used.
        match_threshold: only texts of pairs with ``score >= match_threshold`` are originals.
        manipulations: which of ``before_after``, ``clause_swap``, ``as_then`` to measure.
        unchanged_tolerance: a cosine >= 1 − this counts as "unchanged".
        batch_size: texts per model call when ``run`` gets an ``Embedder``.
    """

    name = "text_sensitivity"

    def __init__(
        self,
        pairs: RatedPairs,
        match_threshold: float = 0.5,
        manipulations: Sequence[str] = tuple(MANIPULATIONS),
        unchanged_tolerance: float = 1e-6,
        batch_size: int = 32,
    ) -> None:
        manipulations = list(manipulations)
        unknown = [m for m in manipulations if m not in MANIPULATIONS]
        if unknown or not manipulations:
            raise ValueError(
                f"text_sensitivity probe: unknown manipulation(s) {unknown or '(none given)'}; "
                f"choose from {list(MANIPULATIONS)}"
            )
        self.pairs = pairs
        self.match_threshold = float(match_threshold)
        self.unchanged_tolerance = float(unchanged_tolerance)
        self.batch_size = batch_size
        originals = list(matching_clips(pairs, self.match_threshold, self.name))
        self.manipulated: dict[str, list[tuple[str, str]]] = {}
        """kind -> (original, manipulated) for every text it could change."""
        self.stats: dict[str, ManipulationStats] = {}
        for kind in dict.fromkeys(manipulations):
            results, self.stats[kind] = manipulate_all(originals, MANIPULATIONS[kind])
            self.manipulated[kind] = [(r.original, r.text) for r in results if r.ok]
        if not any(self.manipulated.values()):
            counts = "; ".join(f"{kind}: {stats}" for kind, stats in self.stats.items())
            raise ValueError(
                f"text_sensitivity probe: no original text of {pairs.name} (score >= "
                f"{self.match_threshold:g}, {len(originals)} unique) can be manipulated ({counts}); "
                f"{DATA_HINT}"
            )

    def inputs(self) -> ProbeInputs:
        """No audio; every original text that some manipulation changes and every manipulated text."""
        texts = [text for items in self.manipulated.values() for pair in items for text in pair]
        return ProbeInputs(audio=[], texts=unique_in_order(texts))

    def cosines(self, source: EmbeddingCache | Embedder) -> dict[str, torch.Tensor]:
        """kind -> cos(text(original), text(manipulated)) per manipulated text, float64."""
        cache = as_cache(source, self.batch_size)
        out = {}
        for kind, items in self.manipulated.items():
            if items:
                original = cache.text([a for a, _ in items]).detach().cpu().double()
                changed = cache.text([b for _, b in items]).detach().cpu().double()
                out[kind] = (original * changed).sum(-1)
        return out

    def run(self, source: EmbeddingCache | Embedder) -> ProbeResult:
        cosines = self.cosines(source)
        metrics: dict[str, float] = {}
        for kind in self.manipulated:
            metrics[f"{kind}/n"] = float(len(self.manipulated[kind]))
            if kind in cosines:
                values = cosines[kind].numpy()
                if not np.isfinite(values).all():
                    raise ValueError(
                        "text_sensitivity probe: similarities contain NaN or inf (non-finite embeddings?)"
                    )
                metrics.update(
                    {
                        f"{kind}/mean": float(values.mean()),
                        f"{kind}/median": float(np.median(values)),
                        f"{kind}/min": float(values.min()),
                        f"{kind}/p05": float(np.percentile(values, 5)),
                        f"{kind}/unchanged": float((values >= 1 - self.unchanged_tolerance).mean()),
                    }
                )
            metrics.update(self.stats[kind].metrics(prefix=f"{kind}/skipped/"))
        return ProbeResult(
            metrics,
            tables={"text_sensitivity": self.table()},
            figures={"text_sensitivity": lambda: histogram_figure(cosines)},
        )

    def table(self) -> Table:
        return Table(
            [
                (f"{kind} {name}", f"{kind}/{name}")
                for kind in self.manipulated
                for name in ("mean", "p05", "min", "n")
            ],
            note=(
                "cos(text(original), text(manipulated)) over the original texts each manipulation "
                "changes; near 1 = the text tower barely notices the manipulation. p05 = 5th percentile."
            ),
        )


def histogram_figure(cosines: dict[str, torch.Tensor]) -> Figure:
    """One histogram of cos(original, manipulated) per manipulation (densities: the counts differ a lot)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.8, 2.8), layout="constrained")
    axes = figure.subplots()
    values = np.concatenate([c.numpy() for c in cosines.values()])
    bins = np.histogram_bin_edges(values, bins=30)
    for kind, cos in cosines.items():
        axes.hist(
            cos.numpy(),
            bins=bins,
            density=True,
            histtype="stepfilled",
            alpha=0.4,
            label=f"{kind} (n={len(cos)})",
        )
    axes.set(
        xlabel="cos(text(original), text(manipulated))",
        ylabel="density (each area = 1)",
        title="Text-side sensitivity to ordering manipulations",
    )
    axes.legend(fontsize="small")
    return figure
