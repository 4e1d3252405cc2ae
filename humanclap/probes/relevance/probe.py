"""Relevance probe: does CLAPScore agree with human relevance ratings? (human-clap §II-C, §IV)

CLAPScore = max(cos(e^audio, e^text), 0)                                   (human-clap eq. 1)

compared with the rescaled human score a ∈ [0, 1] by Spearman's rank correlation (SRCC),
Pearson's linear correlation (LCC), mean squared error (MSE, Table I) and Kendall's τ; overall,
per subset of the ``group`` column (Table II: natural vs each TTA generator), per named union of
groups (e.g. all synthesized audio), and split by human score > 0.5 vs <= 0.5 (Table III: "Sub.
score > 5" on the 0-10 scale), crossed with the groups. Subsets with fewer than
``min_subset_size`` pairs are left out and their number is reported as ``skipped_subsets``.
Correlations of a constant CLAPScore (e.g. every cosine <= 0) are NaN; ``cosine_srcc`` ranks the
unclamped cosines instead. NaN never comes from non-finite embeddings: ``EmbeddingCache`` refuses
those with an error that says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from humanclap.backbones.embedder import Embedder
from humanclap.data.pairs import RatedPairs, unique_in_order
from humanclap.probes.base import ProbeResult, Table
from humanclap.probes.cache import AudioRef, EmbeddingCache, ProbeInputs, as_cache
from humanclap.probes.metrics import kendall_tau, lcc, mse, srcc
from humanclap.probes.relevance.figures import range_figure, scatter_figure

METRIC_NAMES = ("srcc", "lcc", "mse", "ktau")
RANGE_LABELS = {
    "clapscore_min": "min",
    "clapscore_p05": "5 %",
    "clapscore_median": "median",
    "clapscore_p95": "95 %",
    "clapscore_max": "max",
    "clapscore_zero_fraction": "share at 0",
}


def score_range(predicted: torch.Tensor) -> dict[str, float]:
    """The range of CLAPScores actually used (human-clap Fig. 3), incl. the share clamped to 0."""
    q = torch.quantile(predicted.double(), torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64))
    return {
        "clapscore_min": float(predicted.min()),
        "clapscore_p05": float(q[0]),
        "clapscore_median": float(q[1]),
        "clapscore_p95": float(q[2]),
        "clapscore_max": float(predicted.max()),
        "clapscore_zero_fraction": float((predicted == 0).double().mean()),
    }


def clap_scores(audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Eq. (1) for row-aligned unit-norm embeddings."""
    return cosines(audio, text).clamp(min=0.0)


def cosines(audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Eq. (3): cosine of row-aligned unit-norm embeddings."""
    return (audio * text).sum(dim=-1)


def agreement(predicted: torch.Tensor, human: torch.Tensor) -> dict[str, float]:
    """SRCC, LCC, MSE and Kendall τ between model scores and human scores (human-clap §IV, Table I)
    by :mod:`humanclap.probes.metrics`, in float64; correlations of constant scores or of fewer
    than 2 pairs are NaN."""
    return {
        "srcc": srcc(predicted, human),
        "lcc": lcc(predicted, human),
        "mse": mse(predicted, human),
        "ktau": kendall_tau(predicted, human),
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
            raise ValueError(
                f"relevance probe needs at least 2 rated pairs, got {len(pairs)} in {pairs.name}"
            )
        self.pairs = pairs
        known = {p.group for p in pairs}
        for name, groups in (group_sets or {}).items():
            unknown = sorted(set(groups) - known)
            if unknown:
                raise ValueError(
                    f"group set '{name}' names groups {unknown} not in {pairs.name}; "
                    f"groups present: {sorted(g for g in known if g)}"
                )
        # The data's own sets may name groups a split happens not to contain.
        own = {name: [g for g in groups if g in known] for name, groups in pairs.group_sets.items()}
        self.group_sets = {
            **own,
            **{name: list(groups) for name, groups in (group_sets or {}).items()},
        }
        self.high_score_threshold = high_score_threshold
        self.min_subset_size = min_subset_size
        self.batch_size = batch_size

    def inputs(self) -> ProbeInputs:
        """Every clip and text of the pairs, once each."""
        return ProbeInputs(
            audio=[
                AudioRef(self.pairs.audio_store, key)
                for key in unique_in_order(p.audio for p in self.pairs)
            ],
            texts=unique_in_order(p.text for p in self.pairs),
        )

    def clap_scores(self, source: EmbeddingCache | Embedder) -> torch.Tensor:
        """CLAPScore (eq. 1) of every pair."""
        return self.cosines(source).clamp(min=0.0)

    def cosines(self, source: EmbeddingCache | Embedder) -> torch.Tensor:
        """Cosine (eq. 3) of every pair; each unique clip and text is embedded once."""
        cache = as_cache(source, self.batch_size)
        audio = cache.audio([AudioRef(self.pairs.audio_store, p.audio) for p in self.pairs])
        text = cache.text([p.text for p in self.pairs])
        return cosines(audio, text)

    def subsets(self) -> dict[str, torch.Tensor]:
        """Boolean masks over the pairs, keyed by subset name ('' = all pairs)."""
        groups = [p.group for p in self.pairs]
        # float64 like the scores themselves: in float32, scores within ~3e-8 of the threshold fall
        # into the wrong band.
        scores = torch.tensor([p.score for p in self.pairs], dtype=torch.float64)
        by_group = {
            g: torch.tensor([x == g for x in groups])
            for g in unique_in_order(groups)
            if g is not None
        }
        by_group.update(
            {
                name: torch.tensor([x in members for x in groups])
                for name, members in self.group_sets.items()
            }
        )
        bands = {
            "high": scores > self.high_score_threshold,
            "low": scores <= self.high_score_threshold,
        }
        masks = {"": torch.ones(len(groups), dtype=torch.bool), **by_group, **bands}
        for band, band_mask in bands.items():
            for group, group_mask in by_group.items():
                masks[f"{band}/{group}"] = band_mask & group_mask
        return masks

    def run(self, source: EmbeddingCache | Embedder) -> ProbeResult:
        cosine = self.cosines(source)
        predicted = cosine.clamp(min=0.0)
        human = torch.tensor([p.score for p in self.pairs], dtype=torch.float64)
        metrics: dict[str, float] = {
            **score_range(predicted),
            # Without eq. (1)'s clamp: still defined when every cosine is negative (an untrained
            # model often puts all pairs on one side), where CLAPScore is constant and SRCC NaN.
            "cosine_srcc": agreement(cosine, human)["srcc"],
        }
        skipped = 0
        masks = self.subsets()
        for subset, mask in masks.items():
            n = int(mask.sum())
            if n < self.min_subset_size:
                skipped += 1
                continue
            prefix = f"{subset}/" if subset else ""
            metrics[f"{prefix}n"] = float(n)
            metrics.update(
                {f"{prefix}{k}": v for k, v in agreement(predicted[mask], human[mask]).items()}
            )
        metrics["skipped_subsets"] = float(skipped)
        groups = [p.group for p in self.pairs]
        return ProbeResult(
            metrics,
            tables=self.tables(masks),
            figures={
                "relevance_scatter": lambda: scatter_figure(predicted, human, groups, metrics),
                "clapscore_range": lambda: range_figure(predicted, metrics),
            },
        )

    def tables(self, masks: dict[str, torch.Tensor]) -> dict[str, Table]:
        """Table I (overall), II (by group), III (by human-score band) and the CLAPScore range."""
        groups = [
            name for name in masks if name and "/" not in name and name not in ("high", "low")
        ]
        t = self.high_score_threshold
        bands = [("high", f"> {t:g}"), ("low", f"≤ {t:g}")]
        return {
            "Table I — agreement with human scores": Table(
                [
                    ("n", "n"),
                    ("SRCC", "srcc"),
                    ("LCC", "lcc"),
                    ("MSE", "mse"),
                    ("Kendall τ", "ktau"),
                    ("SRCC of cosines", "cosine_srcc"),
                ]
            ),
            "Table II — SRCC by group": Table(
                [("all", "srcc"), *[(g, f"{g}/srcc") for g in groups]],
                note="Subset sizes are the `<group>/n` metrics.",
            ),
            "Table III — SRCC by human score": Table(
                [
                    (f"{label} {g or 'all'}", f"{band}/{g + '/' if g else ''}srcc")
                    for band, label in bands
                    for g in ["", *groups]
                ],
                note=f"Human scores rescaled to [0, 1]; {t:g} corresponds to the paper's 5 of 10.",
            ),
            "CLAPScore range — eq. (1)": Table(
                [(label, key) for key, label in RANGE_LABELS.items()],
                note="Fig. 3 (a): MSE + MAE fine-tuning compresses CLAPScores into about 0.2-1.0.",
            ),
        }
