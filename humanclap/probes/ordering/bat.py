"""Before-After Test (BAT, event-ordering §3.2-3.3, Fig. 3): is the true order closer to the audio?

The share of pairs with cos(audio, original) > cos(audio, before <-> after swapped); a tie fails.
See docs/probes.md#before-after-test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from humanclap.backbones.embedder import Embedder
from humanclap.data.pairs import RatedPairs, unique_in_order
from humanclap.probes.base import ProbeResult, Table
from humanclap.probes.cache import AudioRef, EmbeddingCache, ProbeInputs, as_cache
from humanclap.probes.ordering.swap_retrieval import manipulated_sentences
from humanclap.text.ordering import swap_before_after

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HALVES = ("before", "after")


class BeforeAfterProbe:
    """BAT: the share of (clip, sentence) pairs where the sentence beats its before<->after swap.

    Args:
        pairs: the pairs (training: the validation split; evaluate: the chosen split).
        match_threshold: a pair with ``score >= match_threshold`` is an original.
        balance: subsample the larger half (before / after) to the size of the smaller one.
        seed: the seed of that subsample.
        batch_size: inputs per model call when ``run`` gets an ``Embedder``.
    """

    name = "bat"

    def __init__(
        self,
        pairs: RatedPairs,
        match_threshold: float = 0.5,
        balance: bool = False,
        seed: int = 0,
        batch_size: int = 32,
    ) -> None:
        self.pairs = pairs
        self.match_threshold = float(match_threshold)
        self.balance = balance
        self.batch_size = batch_size
        sentences, self.stats = manipulated_sentences(
            pairs,
            self.match_threshold,
            swap_before_after,
            self.name,
            "has exactly one temporal 'before' or 'after'",
        )
        self.items = [
            (clip, s.text, s.manipulated, s.connective) for s in sentences for clip in s.clips
        ]
        """(clip, original, swapped, "before" | "after") per original pair."""
        if balance:
            halves = {h: [i for i, item in enumerate(self.items) if item[3] == h] for h in HALVES}
            size = min(len(indices) for indices in halves.values())
            if size == 0:
                raise ValueError(
                    f"bat probe: balance=True but {pairs.name} has {len(halves['before'])} 'before' and "
                    f"{len(halves['after'])} 'after' pair(s); set balance=false to use them unbalanced"
                )
            rng = np.random.default_rng(seed)
            keep = {int(i) for h in HALVES for i in rng.choice(halves[h], size, replace=False)}
            self.items = [item for i, item in enumerate(self.items) if i in keep]  # data order kept

    def inputs(self) -> ProbeInputs:
        """The clips of the pairs measured, their sentences and the swapped sentences."""
        return ProbeInputs(
            audio=[
                AudioRef(self.pairs.audio_store, clip)
                for clip in unique_in_order(item[0] for item in self.items)
            ],
            texts=unique_in_order(
                [item[1] for item in self.items] + [item[2] for item in self.items]
            ),
        )

    def cosines(self, source: EmbeddingCache | Embedder) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos(audio, original), cos(audio, swapped)) per item, float64."""
        cache = as_cache(source, self.batch_size)
        audio = (
            cache.audio([AudioRef(self.pairs.audio_store, item[0]) for item in self.items])
            .detach()
            .cpu()
            .double()
        )
        original = cache.text([item[1] for item in self.items]).detach().cpu().double()
        swapped = cache.text([item[2] for item in self.items]).detach().cpu().double()
        cos_original, cos_swapped = (audio * original).sum(-1), (audio * swapped).sum(-1)
        if not bool(torch.isfinite(cos_original).all() and torch.isfinite(cos_swapped).all()):
            raise ValueError("bat probe: similarities contain NaN or inf (non-finite embeddings?)")
        return cos_original, cos_swapped

    def run(self, source: EmbeddingCache | Embedder) -> ProbeResult:
        cos_original, cos_swapped = self.cosines(source)
        correct = (cos_original > cos_swapped).double()  # a tie is a failure
        half = [item[3] for item in self.items]
        metrics: dict[str, float] = {"accuracy": float(correct.mean()), "n": float(len(self.items))}
        for h in HALVES:
            mask = torch.tensor([x == h for x in half])
            metrics[f"n_{h}"] = float(mask.sum())
            if bool(mask.any()):
                metrics[f"accuracy_{h}"] = float(correct[mask].mean())
        if all(f"accuracy_{h}" in metrics for h in HALVES):
            metrics["balanced_accuracy"] = (
                metrics["accuracy_before"] + metrics["accuracy_after"]
            ) / 2
        margins = cos_original - cos_swapped
        metrics["n_ties"] = float((margins == 0).sum())
        metrics["margin_mean"] = float(margins.mean())
        metrics.update(self.stats.metrics())
        return ProbeResult(
            metrics,
            tables={"bat": self.table()},
            figures={"bat_margins": lambda: margin_figure(margins, half, metrics)},
        )

    def table(self) -> Table:
        return Table(
            [
                ("accuracy", "accuracy"),
                ("balanced", "balanced_accuracy"),
                ("before", "accuracy_before"),
                ("after", "accuracy_after"),
                ("n_before", "n_before"),
                ("n_after", "n_after"),
                ("ties", "n_ties"),
            ],
            note=(
                "BAT (event-ordering Fig. 3): share of pairs (score ≥ "
                f"{self.match_threshold:g}) with cos(audio, sentence) > cos(audio, sentence with "
                "before↔after swapped); 0.5 = chance. Ties count as failures. balanced = mean of the "
                "before and after halves."
                + (" Halves subsampled to equal size." if self.balance else "")
            ),
        )


def margin_figure(margins: torch.Tensor, halves: list[str], metrics: dict[str, float]) -> Figure:
    """Histogram of cos(original) − cos(swapped) per half; right of 0 = correct."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.8, 2.8), layout="constrained")
    axes = figure.subplots()
    values = margins.numpy()
    bins = np.histogram_bin_edges(values, bins=30)
    for h, color in zip(HALVES, ("tab:blue", "tab:orange")):
        selected = values[[x == h for x in halves]]
        if len(selected):
            axes.hist(selected, bins=bins, alpha=0.6, color=color, label=f"{h} (n={len(selected)})")
    axes.axvline(0.0, color="0.3", linestyle="--", linewidth=0.8)
    axes.set(
        xlabel="cos(audio, original) − cos(audio, swapped)",
        ylabel="pairs",
        title=f"BAT accuracy {metrics['accuracy']:.3f}",
    )
    axes.legend(fontsize="small")
    return figure
