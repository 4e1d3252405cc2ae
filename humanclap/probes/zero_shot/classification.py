"""Zero-shot classification of labelled audio (ESC-50, UrbanSound8K, TinySOL, your own), as
LAION-CLAP evaluates it (arXiv 2211.06687 §4; LAION-AI/CLAP
``src/laion_clap/evaluate/eval_zeroshot_classification.py``): one text per class, each clip
classified by its cosine with every class text.

Per fold: top-1 and top-5 accuracy and macro F1, their mean and population std over the folds, and
the same over all clips at once; a confusion matrix. See docs/probes.md#zero-shot-classification.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from humanclap.backbones.embedder import Embedder
from humanclap.data.readers.labelled_audio import LabelledAudio
from humanclap.probes.base import ProbeResult, Table
from humanclap.probes.cache import AudioRef, EmbeddingCache, ProbeInputs, as_cache
from humanclap.probes.zero_shot.figures import confusion_matrix
from humanclap.probes.zero_shot.metrics import accuracy_and_macro_f1, confusion_counts
from humanclap.probes.zero_shot.probe import _unit, check_templates, load_labelled_audio

# LAION-CLAP's zero-shot prompt (src/laion_clap/evaluate/eval_zeroshot_classification.py).
DEFAULT_TEMPLATES = ("This is a sound of {label}.",)
KS = (1, 5)
FOLD_METRICS = ("top1", "top5", "f1_macro")
HEADERS = {"top1": "Top-1", "top5": "Top-5", "f1_macro": "F1 (macro)", "n_clips": "clips"}


class ZeroShotClassificationProbe:
    """Zero-shot classification, per fold and over all clips, for every prompt template.

    Args:
        data: None (the run's labelled audio: ``humanclap.evaluate data=esc50``), a
            ``LabelledAudio``, or what :func:`load_labelled_audio` reads: an ESC-50, UrbanSound8K
            or TinySOL folder, a labels ``.csv`` (``path,label[,family,fold]``) or ``"synthetic"``.
        folds: folds to keep (e.g. ``[1, 2]``); None = all.
        labels: raw class name -> prompt name, overriding the LAION-style clean-up.
        templates: prompt templates with ``{label}``; the first gives the headline metrics.
        batch_size: clips or texts per model call when given an embedder rather than a cache.
        metadata: the TinySOL metadata CSV when ``data`` is a TinySOL folder without it.
        synthetic: keyword arguments of the synthetic set (``clips_per_class``, ...).
    """

    name = "zero_shot_classification"

    def __init__(
        self,
        data: str | Path | LabelledAudio | None = None,
        folds: Sequence[int | str] | int | str | None = None,
        labels: Mapping[str, str] | None = None,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        batch_size: int = 32,
        metadata: str | Path | None = None,
        synthetic: Mapping[str, Any] | None = None,
    ) -> None:
        self.templates = check_templates(templates, "templates", field="label")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if data is None:
            raise ValueError(
                "no labelled audio to classify: give data=<ESC-50 folder | UrbanSound8K folder | "
                "TinySOL folder | labels .csv | synthetic>"
            )
        self.batch_size = batch_size
        self.data = load_labelled_audio(
            data, folds=folds, labels=labels, metadata=metadata, synthetic=synthetic
        )
        self.classes = self.data.classes
        if len(self.classes) < 2:
            raise ValueError(
                f"zero-shot classification on {self.data.name}: needs at least 2 classes, "
                f"got {self.classes}"
            )
        index = {label: i for i, label in enumerate(self.classes)}
        self.target = torch.tensor([index[c.label] for c in self.data])
        self.folds = self.data.folds()
        self.fold_rows = {
            fold: torch.tensor([i for i, c in enumerate(self.data) if c.fold == fold])
            for fold in self.folds
        }

    # -- inputs ---------------------------------------------------------------------------------
    def refs(self) -> list[AudioRef]:
        return [AudioRef(self.data.audio_store, clip.audio) for clip in self.data]

    def prompts(self, template: str) -> list[str]:
        return [template.format(label=label) for label in self.classes]

    def inputs(self) -> ProbeInputs:
        """Every clip once and one text per (template, class)."""
        texts = [t for template in self.templates.values() for t in self.prompts(template)]
        return ProbeInputs(audio=self.refs(), texts=list(dict.fromkeys(texts)))

    # -- measurement ----------------------------------------------------------------------------
    def run(self, source: EmbeddingCache | Embedder) -> ProbeResult:
        cache = as_cache(source, self.batch_size)
        audio = _unit(cache.audio(self.refs()))
        metrics: dict[str, float] = {
            "n_classes": float(len(self.classes)),
            "n_folds": float(len(self.folds)),
        }
        first: tuple[str, torch.Tensor] | None = None
        for slug, template in self.templates.items():
            scores = audio @ _unit(cache.text(self.prompts(template))).T
            values = self.measure(scores)
            metrics.update({f"prompt/{slug}/{key}": value for key, value in values.items()})
            if first is None:
                first = template, scores
                metrics.update(values)
        template, scores = first  # type: ignore[misc]
        title = f"{self.data.name}: «{template}», top-1 {metrics['all/top1']:.3f}"
        figures: dict[str, Callable[[], Figure]] = {
            "confusion": lambda: confusion_matrix(
                confusion_counts(scores, self.target), self.classes, title
            )
        }
        return ProbeResult(metrics, tables=self.tables(), figures=figures)

    def measure(self, scores: torch.Tensor) -> dict[str, float]:
        """``fold<f>/<m>`` per fold, ``mean/<m>`` and ``std/<m>`` over the folds (numpy's
        population std, ddof=0) and ``all/<m>`` over every clip at once."""
        num_classes = len(self.classes)
        out: dict[str, float] = {}
        for fold, rows in self.fold_rows.items():
            values = accuracy_and_macro_f1(scores[rows], self.target[rows], num_classes, KS)
            out.update({f"fold{fold}/{key}": value for key, value in values.items()})
        for metric in FOLD_METRICS:
            per_fold = [out[f"fold{f}/{metric}"] for f in self.folds if f"fold{f}/{metric}" in out]
            if per_fold:
                out[f"mean/{metric}"] = float(np.mean(per_fold))
                out[f"std/{metric}"] = float(np.std(per_fold))
        values = accuracy_and_macro_f1(scores, self.target, num_classes, KS)
        out.update({f"all/{key}": value for key, value in values.items()})
        return out

    # -- layout ---------------------------------------------------------------------------------
    def tables(self) -> dict[str, Table]:
        """Per template: one row per fold, the mean ± std over folds and all clips; with several
        templates, their top-1 side by side."""
        shown = [m for m in FOLD_METRICS if m != "top5" or len(self.classes) >= 5] + ["n_clips"]
        note = (
            "Zero-shot classification: cosine of each clip with one text per class. Ties count "
            "against the model. F1 (macro): of the top-1 prediction, mean over classes. "
            "mean ± std: over the folds (population std, ddof=0); all: every clip at once."
        )
        tables: dict[str, Table] = {}
        for position, (slug, template) in enumerate(self.templates.items()):
            prefix = "" if position == 0 else f"prompt/{slug}/"
            tables[f"Zero-shot classification — «{template}»"] = FoldTable(
                [(HEADERS[m], f"{prefix}all/{m}") for m in shown],
                note=note,
                folds=self.folds,
                prefix=prefix,
            )
            note = "As the first prompt's table."
        if len(self.templates) > 1:
            tables["Zero-shot classification — prompt sensitivity"] = Table(
                [
                    (f"«{template}» {label}", f"prompt/{slug}/{part}/top1")
                    for slug, template in self.templates.items()
                    for label, part in (("Top-1", "all"), ("Top-1 fold mean", "mean"))
                    if part == "all" or self.folds
                ],
                note="Top-1 over all clips and its mean over the folds, per prompt template.",
            )
        return tables


@dataclass
class FoldTable(Table):
    """A :class:`Table` with one row per fold under each model (or epoch): the folds, then
    ``mean ± std`` over the folds, then ``all`` (every clip at once).

    ``columns`` name the ``all`` keys, ``<prefix>all/<metric>``; the fold rows read
    ``<prefix>fold<f>/<metric>`` and the mean row ``<prefix>mean/<metric>`` ±
    ``<prefix>std/<metric>``, so every number shown is in the metrics.
    """

    folds: list[str] = field(default_factory=list)
    prefix: str = ""

    def render(self, rows: Mapping[str, Mapping[str, float]], digits: int = 3) -> str:
        header = "| model | fold | " + " | ".join(h for h, _ in self.columns) + " |"
        lines = [header, "|---|---|" + "---:|" * len(self.columns)]
        for name, metrics in rows.items():
            for fold in self.folds:
                cells = [
                    self._cell(metrics, self._key(key, f"fold{fold}"), digits)
                    for _, key in self.columns
                ]
                lines.append(f"| {name} | {fold} | " + " | ".join(cells) + " |")
            if self.folds:
                cells = [self._mean_std(metrics, key, digits) for _, key in self.columns]
                lines.append(f"| {name} | mean ± std | " + " | ".join(cells) + " |")
            cells = [self._cell(metrics, key, digits) for _, key in self.columns]
            lines.append(f"| {name} | all | " + " | ".join(cells) + " |")
        return "\n".join(lines + ([f"\n{self.note}"] if self.note else []))

    def _key(self, key: str, part: str) -> str:
        return self.prefix + part + "/" + key.removeprefix(self.prefix + "all/")

    def _cell(self, metrics: Mapping[str, float], key: str, digits: int) -> str:
        return self._format(key, metrics.get(key), digits)

    def _mean_std(self, metrics: Mapping[str, float], key: str, digits: int) -> str:
        mean, std = metrics.get(self._key(key, "mean")), metrics.get(self._key(key, "std"))
        if mean is None or std is None:
            return "–"
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
