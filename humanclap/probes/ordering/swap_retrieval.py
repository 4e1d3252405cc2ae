"""Shared machinery of the event-ordering probes (event-ordering §3.2, Table 3, Figs. 2-3).

Which pairs are originals, and :class:`SwapRetrievalProbe`: R@k with original vs manipulated
queries, ties counted against the model. See docs/probes.md#originals-and-shared-machinery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from humanclap.backbones.embedder import Embedder
from humanclap.data.pairs import RatedPairs, unique_in_order
from humanclap.probes.base import ProbeResult, Table
from humanclap.probes.cache import AudioRef, EmbeddingCache, ProbeInputs, as_cache
from humanclap.probes.metrics import retrieval_metrics
from humanclap.text.ordering import Manipulation, ManipulationStats

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DATA_HINT = (
    "the ordering probes need captions with temporal connectives, e.g. the synthesized order set "
    "(data=order_synthetic) or AudioCaps' temporal subset (data=captions)"
)
GALLERIES = ("all", "connective")


@dataclass(frozen=True)
class Sentence:
    """An original sentence, its manipulated version and the clips it matches."""

    text: str
    manipulated: str
    connective: str
    """The connective the manipulation acted on ("before", "followed by", ...)."""
    clips: tuple[str, ...]
    """Clips of the pairs with this text and ``score >= match_threshold``, in order of appearance."""


def metric_key(connective: str) -> str:
    """A connective as a metric-key part: "followed by" -> "followed_by"."""
    return connective.replace(" ", "_")


def matching_clips(pairs: RatedPairs, match_threshold: float, probe: str) -> dict[str, list[str]]:
    """Original text -> the clips it matches (pairs with ``score >= match_threshold``)."""
    if len(pairs) == 0:
        raise ValueError(f"{probe} probe: {pairs.name} has no pairs")
    matches: dict[str, list[str]] = {}
    for pair in pairs:
        if pair.score >= match_threshold:
            clips = matches.setdefault(pair.text, [])
            if pair.audio not in clips:
                clips.append(pair.audio)
    if not matches:
        scores = [p.score for p in pairs]
        raise ValueError(
            f"{probe} probe: no pair in {pairs.name} has score >= match_threshold={match_threshold:g} "
            f"(scores present: {min(scores):g} to {max(scores):g} over {len(pairs)} pairs), so there is no "
            "original sentence; lower match_threshold"
        )
    return matches


def manipulated_sentences(
    pairs: RatedPairs,
    match_threshold: float,
    manipulation: Callable[[str], Manipulation],
    probe: str,
    what: str,
) -> tuple[list[Sentence], ManipulationStats]:
    """Every original text that ``manipulation`` can change, and the counts of the others.

    Raises ``ValueError`` naming the data and the skip counts when no text is left.
    """
    stats = ManipulationStats()
    sentences = []
    for text, clips in matching_clips(pairs, match_threshold, probe).items():
        result = stats.add(manipulation(text))
        if result.ok:
            sentences.append(Sentence(text, result.text, result.connective, tuple(clips)))
    if not sentences:
        raise no_sentence_error(probe, pairs, match_threshold, what, stats)
    return sentences, stats


def no_sentence_error(
    probe: str, pairs: RatedPairs, match_threshold: float, what: str, stats: ManipulationStats
) -> ValueError:
    return ValueError(
        f"{probe} probe: no original sentence of {pairs.name} (score >= {match_threshold:g}) {what}: "
        f"{stats.n_skipped} unique text(s) skipped ({stats}); {DATA_HINT}"
    )


class SwapRetrievalProbe:
    """Text -> audio R@k with original queries vs manipulated queries (event-ordering Table 3 / Fig. 2).

    Every original text the manipulation can change is a query, once as written and once
    manipulated; both must retrieve the clips the original matches. ``drop`` = R@k(original) −
    R@k(manipulated): a model that reads the ordering loses recall on the manipulated queries (the
    paper's Transformer: 0.486 -> 0.351 R@1 on clause-swapped queries), one that does not stays
    level (its MLP baseline: 0.405 -> 0.419). Ranks come from
    :func:`humanclap.probes.retrieval.probe.retrieval_metrics` (float64 cosines, R@k = any match in
    the top k, ties between a match and a non-match count against the model).

    **Gallery.** ``"all"``: every unique clip of the pairs (including clips that only occur in
    negatives or in sentences that were skipped). ``"connective"``: per connective, only the clips
    its queries match -- event-ordering §3.2's "the retrieval set is all other sentences with the
    same preposition"; the overall values are then the query-weighted means of the per-connective
    values.

    Subclasses set ``name``, ``manipulation``, ``connectives`` (their order in tables and
    figures) and ``labels``.
    """

    name = "swap_retrieval"
    manipulation: Callable[[str], Manipulation]
    connectives: tuple[str, ...] = ()
    what = "can be manipulated"
    swapped_label = "swapped"

    def __init__(
        self,
        pairs: RatedPairs,
        match_threshold: float = 0.5,
        k: int = 1,
        gallery: str = "all",
        batch_size: int = 32,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"{self.name} probe: k must be an integer >= 1, got {k!r}")
        if gallery not in GALLERIES:
            raise ValueError(
                f"{self.name} probe: gallery must be one of {list(GALLERIES)}, got {gallery!r}"
            )
        self.pairs = pairs
        self.match_threshold = float(match_threshold)
        self.k = k
        self.gallery = gallery
        self.batch_size = batch_size
        self.sentences, self.stats = manipulated_sentences(
            pairs, self.match_threshold, type(self).manipulation, self.name, self.what
        )
        self.groups = {
            c: [s for s in self.sentences if s.connective == c] for c in self.connectives
        }
        self.groups = {c: members for c, members in self.groups.items() if members}
        if gallery == "all":
            self.clips = unique_in_order(p.audio for p in pairs)
        else:
            self.clips = unique_in_order(clip for s in self.sentences for clip in s.clips)

    @property
    def recall(self) -> str:
        return f"R@{self.k}"

    def inputs(self) -> ProbeInputs:
        """The gallery clips, every original text and every manipulated text."""
        texts = unique_in_order(
            [s.text for s in self.sentences] + [s.manipulated for s in self.sentences]
        )
        return ProbeInputs(
            audio=[AudioRef(self.pairs.audio_store, clip) for clip in self.clips], texts=texts
        )

    def run(self, source: EmbeddingCache | Embedder) -> ProbeResult:
        cache = as_cache(source, self.batch_size)
        inputs = self.inputs()
        audio = cache.audio(inputs.audio).detach().cpu().double()
        original = cache.text([s.text for s in self.sentences]).detach().cpu().double() @ audio.T
        swapped = (
            cache.text([s.manipulated for s in self.sentences]).detach().cpu().double() @ audio.T
        )
        column = {clip: j for j, clip in enumerate(self.clips)}
        matches = torch.zeros(original.shape, dtype=torch.bool)
        for i, sentence in enumerate(self.sentences):
            matches[i, [column[clip] for clip in sentence.clips]] = True

        r = self.recall
        metrics: dict[str, float] = {}
        index = {id(s): i for i, s in enumerate(self.sentences)}
        for connective, members in self.groups.items():
            rows = torch.tensor([index[id(s)] for s in members])
            cols = torch.arange(len(self.clips))
            if self.gallery == "connective":
                cols = torch.tensor(sorted({column[clip] for s in members for clip in s.clips}))
            values = self._recalls(
                original[rows][:, cols], swapped[rows][:, cols], matches[rows][:, cols]
            )
            key = metric_key(connective)
            metrics.update({f"{key}/{name}": value for name, value in values.items()})
            metrics[f"{key}/n_queries"] = float(len(members))
            if self.gallery == "connective":
                metrics[f"{key}/n_gallery"] = float(len(cols))
        if self.gallery == "all":
            metrics.update(self._recalls(original, swapped, matches))
            metrics["n_gallery"] = float(len(self.clips))
        else:  # each query ranked within its connective's gallery: query-weighted means
            n = {c: len(members) for c, members in self.groups.items()}
            for name in (f"{r}_original", f"{r}_swapped"):
                metrics[name] = sum(metrics[f"{metric_key(c)}/{name}"] * n[c] for c in n) / sum(
                    n.values()
                )
            metrics["drop"] = metrics[f"{r}_original"] - metrics[f"{r}_swapped"]
        metrics["n_queries"] = float(len(self.sentences))
        metrics.update(self.stats.metrics())
        return ProbeResult(
            metrics, tables=self.tables(), figures={self.name: lambda: self.figure(metrics)}
        )

    def _recalls(self, original: Tensor, swapped: Tensor, matches: Tensor) -> dict[str, float]:
        r = self.recall
        values = {
            f"{r}_original": retrieval_metrics(original, matches, ks=(self.k,), map_k=self.k)[r],
            f"{r}_swapped": retrieval_metrics(swapped, matches, ks=(self.k,), map_k=self.k)[r],
        }
        values["drop"] = values[f"{r}_original"] - values[f"{r}_swapped"]
        return values

    def tables(self) -> dict[str, Table]:
        raise NotImplementedError

    def _gallery_note(self) -> str:
        gallery = (
            "every unique clip of the pairs"
            if self.gallery == "all"
            else "the clips matched by the queries of the same connective"
        )
        return (
            f"{self.recall}: any matching clip among the top {self.k} (text → audio); gallery: {gallery}. "
            f"Originals: pairs with score ≥ {self.match_threshold:g}; drop = original − {self.swapped_label}. "
            "Ties count against the model (a tied wrong clip ranks ahead of a right one)."
        )

    def figure(self, metrics: dict[str, float]) -> Figure:
        r = self.recall
        labels = ["all", *self.groups]
        keys = ["", *(f"{metric_key(c)}/" for c in self.groups)]
        return swap_figure(
            f"{self.name}: {r} original vs {self.swapped_label} queries",
            labels,
            [metrics[f"{k}{r}_original"] for k in keys],
            [metrics[f"{k}{r}_swapped"] for k in keys],
            [metrics[f"{k}n_queries"] for k in keys],
            r,
            self.swapped_label,
        )


def swap_figure(
    title: str,
    labels: Sequence[str],
    original: Sequence[float],
    swapped: Sequence[float],
    counts: Sequence[float],
    ylabel: str,
    swapped_label: str = "swapped",
) -> Figure:
    """Paired bars, original vs manipulated, per subset (event-ordering Fig. 2)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1.2 + 1.1 * len(labels), 3.2), layout="constrained")
    axes = figure.subplots()
    x = torch.arange(len(labels)).double().numpy()
    axes.bar(
        x - 0.2,
        original,
        width=0.4,
        label="original",
        color="tab:blue",
        hatch="//",
        edgecolor="white",
    )
    axes.bar(x + 0.2, swapped, width=0.4, label=swapped_label, color="tab:orange")
    for xi, a, b in zip(x, original, swapped):
        axes.text(xi - 0.2, a, f"{a:.3f}", ha="center", va="bottom", fontsize="x-small")
        axes.text(xi + 0.2, b, f"{b:.3f}", ha="center", va="bottom", fontsize="x-small")
    axes.set_xticks(x, [f"{label}\n(n={int(n)})" for label, n in zip(labels, counts)])
    axes.set(ylim=(0, 1.08), ylabel=ylabel, title=title)
    axes.legend(fontsize="small")
    return figure
