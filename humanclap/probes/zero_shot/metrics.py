"""Metrics of the zero-shot probes: top-k accuracy, weighted and macro F1, ROC-AUC, PR-AUC and the
confusion matrix from torchmetrics' multiclass functional metrics, with ties and score ranges under
our control; top-2 margins, spreads over prompt templates and ontology-triplet accuracy.

See docs/probes.md#zero-shot-metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_auroc,
    multiclass_average_precision,
    multiclass_confusion_matrix,
    multiclass_f1_score,
)


def pessimistic_ranks(scores: Tensor, target: Tensor) -> Tensor:
    """Distinct per-row values (C for the first class ... 1 for the last) ordering each row by
    score, with exact ties broken against the true class: other classes first (class order)."""
    n, num_classes = scores.shape
    is_target = torch.nn.functional.one_hot(target, num_classes).long()
    order = torch.argsort(
        is_target, dim=1, stable=True
    )  # other classes (in class order), then the target
    order = order.gather(
        1, torch.argsort(scores.gather(1, order), dim=1, descending=True, stable=True)
    )
    values = torch.arange(num_classes, 0, -1, dtype=torch.float64).expand(n, num_classes)
    return torch.empty(n, num_classes, dtype=torch.float64).scatter_(1, order, values)


def classification_metrics(
    scores: Tensor, target: Tensor, ks: Sequence[int] = (1, 2, 3, 4, 5)
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(``top<k>`` for each k <= C, ``f1_weighted``, ``roc_auc``, ``pr_auc``, ``n_tied``;
    per-class ``{"roc_auc": (C,), "pr_auc": (C,)}``).

    ``scores``: clips x classes cosines; ``target``: class index per clip. Every class needs a
    clip and there must be at least two classes (one-vs-rest AUCs need both sides).
    """
    scores = scores.detach().cpu().double()
    target = target.detach().cpu().long()
    n, num_classes = scores.shape
    if num_classes < 2:
        raise ValueError(f"zero-shot classification needs at least 2 classes, got {num_classes}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("similarities contain NaN or inf (non-finite embeddings?)")
    counts = torch.bincount(target, minlength=num_classes)
    if bool((counts == 0).any()):
        raise ValueError(f"classes {torch.nonzero(counts == 0).flatten().tolist()} have no clip")
    ranks = pessimistic_ranks(scores, target)
    metrics = top_k_accuracies(ranks, target, num_classes, ks)
    metrics["f1_weighted"] = float(
        multiclass_f1_score(ranks, target, num_classes=num_classes, average="weighted")
    )
    probabilities = ((scores + 1) / 2).clamp(0.0, 1.0)
    per_class = {
        "roc_auc": multiclass_auroc(probabilities, target, num_classes=num_classes, average=None)
        .double()
        .numpy(),
        "pr_auc": multiclass_average_precision(
            probabilities, target, num_classes=num_classes, average=None
        )
        .double()
        .numpy(),
    }
    metrics.update({name: float(values.mean()) for name, values in per_class.items()})
    metrics["n_tied"] = n_tied(scores, target)
    return metrics, per_class


def top_k_accuracies(
    ranks: Tensor, target: Tensor, num_classes: int, ks: Sequence[int]
) -> dict[str, float]:
    """``top<k>`` for each k <= ``num_classes``, from :func:`pessimistic_ranks`."""
    return {
        f"top{k}": float(
            multiclass_accuracy(ranks, target, num_classes=num_classes, top_k=k, average="micro")
        )
        for k in ks
        if k <= num_classes
    }


def n_tied(scores: Tensor, target: Tensor) -> float:
    """How many clips have their true class's score equal to another class's."""
    true_score = scores.gather(1, target[:, None])
    return float(((scores == true_score).sum(dim=1) > 1).sum())


def accuracy_and_macro_f1(
    scores: Tensor, target: Tensor, num_classes: int, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """``top<k>`` (k <= ``num_classes``), ``f1_macro``, ``n_tied`` and ``n_clips`` of some clips
    (e.g. one fold) of a set of ``num_classes`` classes, ties against the model.

    Unlike :func:`classification_metrics` a class may have no clip here. ``f1_macro`` is
    torchmetrics' macro F1 of the top-1 prediction (the first of :func:`pessimistic_ranks`): the
    mean of the per-class F1 over the classes that have a clip or a prediction among these clips
    (torchmetrics leaves out a class with neither; one predicted but absent scores 0).
    """
    scores = scores.detach().cpu().double()
    target = target.detach().cpu().long()
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("similarities contain NaN or inf (non-finite embeddings?)")
    ranks = pessimistic_ranks(scores, target)
    metrics = top_k_accuracies(ranks, target, num_classes, ks)
    metrics["f1_macro"] = float(
        multiclass_f1_score(ranks, target, num_classes=num_classes, average="macro")
    )
    metrics["n_tied"] = n_tied(scores, target)
    metrics["n_clips"] = float(len(target))
    return metrics


def confusion_counts(scores: Tensor, target: Tensor) -> np.ndarray:
    """classes x classes clip counts: row = true class, column = top-1 prediction with ties
    against the model (the first of :func:`pessimistic_ranks`)."""
    scores = scores.detach().cpu().double()
    target = target.detach().cpu().long()
    ranks = pessimistic_ranks(scores, target)
    return multiclass_confusion_matrix(ranks, target, num_classes=scores.shape[1]).numpy()


def similarity_split(scores: Tensor, target: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(positive cosines: each clip with its class, negative cosines: each clip with every other class)."""
    scores = scores.detach().cpu().double()
    mask = torch.nn.functional.one_hot(target, scores.shape[1]).bool()
    return scores[mask].numpy(), scores[~mask].numpy()


def top2_margins(scores: Tensor) -> np.ndarray:
    """Per clip: best minus second-best class cosine (>= 0; 0 for a tie at the top)."""
    best = torch.topk(scores.detach().cpu().double(), k=2, dim=1).values
    return (best[:, 0] - best[:, 1]).numpy()


def spread(values: Sequence[float]) -> dict[str, float]:
    """``range`` (max − min) and ``std`` (population, ddof=0) of one metric across templates."""
    array = np.asarray(values, dtype=np.float64)
    return {"range": float(array.max() - array.min()), "std": float(array.std())}


def triplet_accuracy(embeddings: Tensor, triplets: Sequence[tuple[int, int, int]]) -> float:
    """Share of (anchor, positive, negative) rows with cos(e_a, e_p) > cos(e_a, e_n) (ties fail);
    NaN without triplets. ``embeddings``: one row per class (normalised here)."""
    if not triplets:
        return math.nan
    unit = torch.nn.functional.normalize(embeddings.detach().cpu().double(), dim=-1)
    a, p, n = (torch.tensor(column) for column in zip(*triplets))
    return float(((unit[a] * unit[p]).sum(-1) > (unit[a] * unit[n]).sum(-1)).double().mean())


def class_means(embeddings: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Unit-norm mean of each class's (unit-norm) clip embeddings: classes x dim."""
    unit = torch.nn.functional.normalize(embeddings.detach().cpu().double(), dim=-1)
    sums = torch.zeros(num_classes, unit.shape[1], dtype=torch.float64).index_add_(0, target, unit)
    return torch.nn.functional.normalize(sums, dim=-1)


def named(values: Mapping[str, np.ndarray], classes: Sequence[str]) -> dict[str, float]:
    """Per-class arrays as ``<metric>/<class>`` metrics."""
    return {
        f"{metric}/{label}": float(v)
        for metric, array in values.items()
        for label, v in zip(classes, array)
    }
