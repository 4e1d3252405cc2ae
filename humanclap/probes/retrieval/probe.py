"""Retrieval probe: does the model rank the matching clips (texts) first for a text (clip)?

Text -> audio and audio -> text R@k, MRR (clamp3 §4.2) and mAP@k, the pairs rated
``>= match_threshold`` being the matches; ties count against the model (``*_optimistic``: the
other rule). Matches, metric definitions and ties: see docs/probes.md#retrieval.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor
from torchmetrics.functional.retrieval import (
    retrieval_average_precision,
    retrieval_hit_rate,
    retrieval_reciprocal_rank,
)

from humanclap.backbones.embedder import Embedder
from humanclap.data.pairs import RatedPairs, unique_in_order
from humanclap.probes.base import ProbeResult, Table
from humanclap.probes.cache import AudioRef, EmbeddingCache, ProbeInputs, as_cache

DIRECTIONS = {"t2a": "text → audio", "a2t": "audio → text"}
OPTIMISTIC = "_optimistic"


def _check_ks(ks: Sequence[int], map_k: int) -> tuple[tuple[int, ...], int]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty list of integers >= 1, got {list(ks)}")
    if isinstance(map_k, bool) or not isinstance(map_k, int) or map_k < 1:
        raise ValueError(f"map_k must be an integer >= 1, got {map_k!r}")
    return tuple(dict.fromkeys(ks)), map_k


def ranked_matches(scores: Tensor, matches: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's match flags in rank order (best first): (pessimistic, optimistic).

    Rows are queries, columns the gallery. Sorted by score (descending); within a block of
    exactly equal scores non-matches come first (pessimistic) or last (optimistic). Rows without
    a tie between a match and a non-match are the same in both.
    """
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    ranked_scores = scores.gather(1, order)
    ranked = matches.gather(1, order)
    tied = ranked_scores[:, 1:] == ranked_scores[:, :-1]
    mixed = (tied & (ranked[:, 1:] != ranked[:, :-1])).any(dim=1)
    if not bool(mixed.any()):
        return ranked, ranked
    rows = ranked[mixed]
    # Tie-block id of every position: a new block starts wherever the score changes.
    block = torch.cat([torch.zeros(len(rows), 1, dtype=torch.long), (~tied[mixed]).long()], dim=1).cumsum(dim=1)
    pessimistic, optimistic = ranked.clone(), ranked.clone()
    pessimistic[mixed] = rows.gather(1, torch.argsort(2 * block + rows.long(), dim=1, stable=True))
    optimistic[mixed] = rows.gather(1, torch.argsort(2 * block + (~rows).long(), dim=1, stable=True))
    return pessimistic, optimistic


def _pattern_mean(ranked: Tensor, pattern: Tensor, metric: Callable[[Tensor, Tensor], Tensor]) -> float:
    """Mean of ``metric(preds, matches)`` over the rows of ``ranked``, one torchmetrics call per
    distinct row of ``pattern`` (rows with equal patterns are known to score alike)."""
    _, group, counts = torch.unique(pattern, dim=0, return_inverse=True, return_counts=True)
    n = len(ranked)
    representative = torch.full((len(counts),), n, dtype=torch.long).scatter_reduce(
        0, group, torch.arange(n), reduce="amin")
    # Position i (0 = best) gets score n_gallery - i: positive, distinct and exact in float32.
    preds = torch.arange(ranked.shape[1], 0, -1, dtype=torch.float32)
    values = torch.stack([metric(preds, ranked[int(row)]) for row in representative]).double()
    return float((values * counts.double()).sum() / n)


def _means(ranked: Tensor, ks: tuple[int, ...], map_k: int) -> dict[str, float]:
    head = ranked[:, : max(*ks, map_k)]  # R@k and mAP@k only see the top k
    first = ranked.to(torch.uint8).argmax(dim=1)  # MRR only sees the first match
    values = {f"R@{k}": _pattern_mean(ranked, head, lambda p, t, k=k: retrieval_hit_rate(p, t, top_k=k))
              for k in ks}
    values["MRR"] = _pattern_mean(ranked, first, retrieval_reciprocal_rank)
    values[f"mAP@{map_k}"] = _pattern_mean(ranked, head,
                                           lambda p, t: retrieval_average_precision(p, t, top_k=map_k))
    return values


def retrieval_metrics(scores: Tensor, matches: Tensor, ks: Sequence[int] = (1, 5, 10),
                      map_k: int = 10) -> dict[str, float]:
    """R@k, MRR and mAP@map_k of one direction, pessimistic and ``_optimistic`` about ties.

    ``scores`` (queries x gallery) and the boolean ``matches`` of the same shape; rows without a
    match are left out. Also ``n_queries`` and ``n_gallery``.
    """
    ks, map_k = _check_ks(ks, map_k)
    if scores.shape != matches.shape or scores.dim() != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and matches {tuple(matches.shape)} must be the same 2-D shape")
    scores = scores.detach().cpu().double().contiguous()
    matches = matches.detach().cpu().bool().contiguous()
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("similarities contain NaN or inf (non-finite embeddings?)")
    queries = matches.any(dim=1)
    if not bool(queries.any()):
        raise ValueError("no query has a match")
    pessimistic, optimistic = ranked_matches(scores[queries], matches[queries])
    metrics = _means(pessimistic, ks, map_k)
    lucky = metrics if optimistic is pessimistic else _means(optimistic, ks, map_k)
    metrics.update({f"{name}{OPTIMISTIC}": value for name, value in lucky.items()})
    metrics.update(n_queries=float(queries.sum()), n_gallery=float(scores.shape[1]))
    return metrics


class RetrievalProbe:
    """Text -> audio and audio -> text retrieval among the clips and texts of a pair set.

    Args:
        pairs: the pairs (in training: the validation split of the training data).
        match_threshold: a pair with ``score >= match_threshold`` is a match.
        ks: cut-offs of R@k (hit rate: any match in the top k).
        map_k: cut-off of mAP@k (torchmetrics' definition, see docs/probes.md#retrieval).
        batch_size: inputs per model call when ``run`` gets an ``Embedder``.
    """

    name = "retrieval"

    def __init__(self, pairs: RatedPairs, match_threshold: float = 0.5, ks: Sequence[int] = (1, 5, 10),
                 map_k: int = 10, batch_size: int = 32) -> None:
        self.ks, self.map_k = _check_ks(ks, map_k)
        if len(pairs) == 0:
            raise ValueError(f"retrieval probe: {pairs.name} has no pairs")
        self.pairs = pairs
        self.match_threshold = float(match_threshold)
        self.batch_size = batch_size
        self.clips = unique_in_order(p.audio for p in pairs)
        self.texts = unique_in_order(p.text for p in pairs)
        clip_index = {clip: i for i, clip in enumerate(self.clips)}
        text_index = {text: i for i, text in enumerate(self.texts)}
        self.matches = torch.zeros(len(self.texts), len(self.clips), dtype=torch.bool)
        """texts x clips: True where some pair of the two has score >= match_threshold."""
        for p in pairs:
            if p.score >= self.match_threshold:
                self.matches[text_index[p.text], clip_index[p.audio]] = True
        if not bool(self.matches.any()):
            scores = [p.score for p in pairs]
            raise ValueError(
                f"retrieval probe: no pair in {pairs.name} has score >= match_threshold={self.match_threshold:g} "
                f"(scores present: {min(scores):g} to {max(scores):g} over {len(pairs)} pairs), so no query has a "
                "match; lower match_threshold")

    def inputs(self) -> ProbeInputs:
        """Every clip and text of the pairs, once each."""
        return ProbeInputs(audio=[AudioRef(self.pairs.audio_store, key) for key in self.clips], texts=list(self.texts))

    def similarities(self, source: EmbeddingCache | Embedder) -> Tensor:
        """Cosines texts x clips (float64, CPU) from the unit-norm embeddings."""
        cache = as_cache(source, self.batch_size)
        inputs = self.inputs()
        audio = cache.audio(inputs.audio).detach().cpu().double()
        text = cache.text(inputs.texts).detach().cpu().double()
        return text @ audio.T

    def run(self, source: EmbeddingCache | Embedder) -> ProbeResult:
        similarity = self.similarities(source)
        metrics: dict[str, float] = {}
        for prefix, scores, matches in (("t2a", similarity, self.matches), ("a2t", similarity.T, self.matches.T)):
            values = retrieval_metrics(scores, matches, self.ks, self.map_k)
            metrics.update({f"{prefix}/{name}": value for name, value in values.items()})
        return ProbeResult(metrics, tables={"retrieval": self.table()})

    def table(self) -> Table:
        """Both directions side by side, as the CLAP papers lay them out."""
        names = [*(f"R@{k}" for k in self.ks), "MRR", f"mAP@{self.map_k}", "n_queries"]
        return Table(
            [(f"{prefix} {name}", f"{prefix}/{name}") for prefix in DIRECTIONS for name in names],
            note=(f"t2a = text → audio, a2t = audio → text. A pair with score ≥ {self.match_threshold:g} is a "
                  "match; R@k: any match in the top k; MRR: 1 / rank of the first match; "
                  f"mAP@{self.map_k}: precision at each match in the top {self.map_k}, averaged over the matches "
                  "found there (torchmetrics). Ties count against the model: a tied wrong item ranks ahead of a "
                  f"right one (`{OPTIMISTIC}` metrics break ties the other way)."))
