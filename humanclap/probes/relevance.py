"""Relevance probe: does CLAPScore agree with human relevance ratings? (human-clap §II-C, §IV)

CLAPScore = max(cos(e^audio, e^text), 0)                                   (human-clap eq. 1)

compared with the rescaled human score a ∈ [0, 1] by Spearman's rank correlation (SRCC),
Pearson's linear correlation (LCC), mean squared error (MSE, Table I) and Kendall's τ; overall,
per subset of the ``group`` column (Table II: natural vs each TTA generator), per named union of
groups (e.g. all synthesized audio), and split by human score > 0.5 vs <= 0.5 (Table III: "Sub.
score > 5" on the 0-10 scale), crossed with the groups. Subsets with fewer than
``min_subset_size`` pairs are left out and their number is reported as ``skipped_subsets``.
Correlations of a constant CLAPScore (e.g. every cosine <= 0) are NaN; ``cosine_srcc`` ranks the
unclamped cosines instead.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
from scipy.stats import rankdata
from torchmetrics.functional import kendall_rank_corrcoef, mean_squared_error, pearson_corrcoef

from humanclap.backbones.embedder import Embedder
from humanclap.data.pairs import RatedPairs, unique_in_order
from humanclap.probes.base import ProbeResult
from humanclap.probes.sharded import embed_sharded

METRIC_NAMES = ("srcc", "lcc", "mse", "ktau")


def clap_scores(audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Eq. (1) for row-aligned unit-norm embeddings."""
    return cosines(audio, text).clamp(min=0.0)


def cosines(audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Eq. (3): cosine of row-aligned unit-norm embeddings."""
    return (audio * text).sum(dim=-1)


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks with ties sharing their mean rank, as in Spearman's definition."""
    return torch.from_numpy(rankdata(values.cpu().numpy())).to(values.dtype)


def agreement(predicted: torch.Tensor, human: torch.Tensor) -> dict[str, float]:
    """SRCC, LCC, MSE and Kendall τ between model scores and human scores (torchmetrics)."""
    predicted, human = predicted.double(), human.double()
    with warnings.catch_warnings():
        # Constant inputs give NaN correlations; torchmetrics warns about it, we report NaN.
        warnings.filterwarnings("ignore", message=".*(constant|variance).*")
        return {
            # SRCC = Pearson of average ranks. torchmetrics' spearman_corrcoef adds 1e-6 to the
            # denominator, so constant inputs came out as 0.0 instead of NaN (and n=2 as 0.999996).
            "srcc": float(pearson_corrcoef(_average_ranks(predicted), _average_ranks(human))),
            "lcc": float(pearson_corrcoef(predicted, human)),
            "mse": float(mean_squared_error(predicted, human)),
            "ktau": float(kendall_rank_corrcoef(predicted, human)),
        }


class RelevanceProbe:
    """CLAPScore vs human scores on a set of rated pairs.

    Args:
        pairs: the rated pairs (in training: the validation split of the training data).
        group_sets: extra subsets made of several groups, e.g.
            ``{"synthesized": ["audioldm", "audioldm2", "tango", "tango2"]}``; added to the ones
            the data defines itself (``RatedPairs.group_sets``, e.g. RELATE's ``synthesized``).
        high_score_threshold: pairs with a > threshold form the "high" subset (Table III).
        min_subset_size: smallest subset for which correlations are reported.
    """

    name = "relevance"

    def __init__(
        self,
        pairs: RatedPairs,
        group_sets: dict[str, Sequence[str]] | None = None,
        high_score_threshold: float = 0.5,
        min_subset_size: int = 3,
        batch_size: int = 32,
    ) -> None:
        if len(pairs) < 2:
            raise ValueError(f"relevance probe needs at least 2 rated pairs, got {len(pairs)} in {pairs.name}")
        self.pairs = pairs
        known = {p.group for p in pairs}
        for name, groups in (group_sets or {}).items():
            unknown = sorted(set(groups) - known)
            if unknown:
                raise ValueError(f"group set '{name}' names groups {unknown} not in {pairs.name}; "
                                 f"groups present: {sorted(g for g in known if g)}")
        # The data's own sets may name groups a split happens not to contain.
        own = {name: [g for g in groups if g in known] for name, groups in pairs.group_sets.items()}
        self.group_sets = {**own, **{name: list(groups) for name, groups in (group_sets or {}).items()}}
        self.high_score_threshold = high_score_threshold
        self.min_subset_size = min_subset_size
        self.batch_size = batch_size

    def clap_scores(self, embedder: Embedder) -> torch.Tensor:
        """CLAPScore (eq. 1) of every pair."""
        return self.cosines(embedder).clamp(min=0.0)

    def cosines(self, embedder: Embedder) -> torch.Tensor:
        """Cosine (eq. 3) of every pair, embedding each unique clip and text once."""
        audio_keys = unique_in_order(p.audio for p in self.pairs)
        texts = unique_in_order(p.text for p in self.pairs)
        audio = embed_sharded(
            audio_keys,
            lambda keys: embedder.embed_audio(
                [self.pairs.load_audio(k, embedder.sample_rate) for k in keys], batch_size=self.batch_size),
            self.batch_size,
        )
        text = embed_sharded(texts, lambda batch: embedder.embed_text(batch, batch_size=self.batch_size),
                             self.batch_size)
        audio_row = {key: i for i, key in enumerate(audio_keys)}
        text_row = {t: i for i, t in enumerate(texts)}
        a = audio[[audio_row[p.audio] for p in self.pairs]]
        t = text[[text_row[p.text] for p in self.pairs]]
        return cosines(a, t)

    def subsets(self) -> dict[str, torch.Tensor]:
        """Boolean masks over the pairs, keyed by subset name ('' = all pairs)."""
        groups = [p.group for p in self.pairs]
        # float64 like the scores themselves: in float32, scores within ~3e-8 of the threshold fall
        # into the wrong band.
        scores = torch.tensor([p.score for p in self.pairs], dtype=torch.float64)
        by_group = {g: torch.tensor([x == g for x in groups]) for g in unique_in_order(groups) if g is not None}
        by_group.update({name: torch.tensor([x in members for x in groups])
                         for name, members in self.group_sets.items()})
        bands = {"high": scores > self.high_score_threshold, "low": scores <= self.high_score_threshold}
        masks = {"": torch.ones(len(groups), dtype=torch.bool), **by_group, **bands}
        for band, band_mask in bands.items():
            for group, group_mask in by_group.items():
                masks[f"{band}/{group}"] = band_mask & group_mask
        return masks

    def run(self, embedder: Embedder) -> ProbeResult:
        cosine = self.cosines(embedder)
        predicted = cosine.clamp(min=0.0)
        human = torch.tensor([p.score for p in self.pairs], dtype=torch.float64)
        metrics: dict[str, float] = {
            "clapscore_min": float(predicted.min()),
            "clapscore_max": float(predicted.max()),
            # Without eq. (1)'s clamp: still defined when every cosine is negative (an untrained
            # model often puts all pairs on one side), where CLAPScore is constant and SRCC NaN.
            "cosine_srcc": agreement(cosine, human)["srcc"],
        }
        rows, skipped = [], 0
        for subset, mask in self.subsets().items():
            n = int(mask.sum())
            if n < self.min_subset_size:
                skipped += 1
                continue
            values = agreement(predicted[mask], human[mask])
            prefix = f"{subset}/" if subset else ""
            metrics[f"{prefix}n"] = float(n)
            metrics.update({f"{prefix}{k}": v for k, v in values.items()})
            rows.append((subset or "all", n, values))
        metrics["skipped_subsets"] = float(skipped)
        return ProbeResult(metrics, {"relevance": markdown_table(rows)})


def markdown_table(rows: list[tuple[str, int, dict[str, float]]]) -> str:
    header = "| subset | n | SRCC | LCC | MSE | Kendall τ |\n|---|---:|---:|---:|---:|---:|"
    lines = [f"| {name} | {n} | " + " | ".join(f"{values[k]:.3f}" for k in METRIC_NAMES) + " |"
             for name, n, values in rows]
    return "\n".join([header, *lines])
