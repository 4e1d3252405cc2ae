"""Zero-shot instrument recognition probe (two-tower paper, arXiv 2407.18058, "I can listen but
cannot read").

Classification by the cosine with one text per class (two-tower §"Method Summary") for every prompt
template, for the paper's definition prompts (a definition of each class, and the same without the
class name: :mod:`humanclap.probes.zero_shot.definitions`) and per family, ontology-triplet
accuracy (§"Key Results") and similarity diagnostics. The report says which prompts are the
paper's (:func:`template_source`). See docs/probes.md#zero-shot-probe.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from humanclap.backbones.embedder import Embedder
from humanclap.data.pairs import DataError
from humanclap.data.readers.esc50 import ESC50_TABLE, is_esc50_root, read_esc50
from humanclap.data.readers.instrument_ontology import Ontology, triplets
from humanclap.data.readers.labelled_audio import (
    TINYSOL_METADATA,
    LabelledAudio,
    prompt_name,
    read_labelled_manifest,
    read_tinysol,
)
from humanclap.data.readers.urbansound8k import US8K_TABLE, is_urbansound8k_root, read_urbansound8k
from humanclap.data.synthetic.instruments import synthetic_instruments
from humanclap.probes.base import ProbeResult, Table
from humanclap.probes.cache import AudioRef, EmbeddingCache, ProbeInputs, as_cache
from humanclap.probes.zero_shot.definitions import class_definitions, load_definitions
from humanclap.probes.zero_shot.figures import similarity_histograms
from humanclap.probes.zero_shot.metrics import (
    class_means,
    classification_metrics,
    named,
    similarity_split,
    spread,
    top2_margins,
    triplet_accuracy,
)

DEFAULT_TEMPLATES = (
    "A {x} track",
    "This is a recording of {x}",
    "Solo musical instrument sound of {x}",
    "Sound of {x} musical instrument",
    "A no {x} track",
)
DEFAULT_FAMILY_TEMPLATES = ("A {x} track",)
PAPER_TEMPLATES = (
    "A {x} track",
    "This is a recording of {x}",
    "Solo musical instrument sound of {x}",
    "Sound of {x} musical instrument",
)
"""The two-tower paper's label prompts (its code: ``embeddings_generation.py`` of
github.com/YannisBilly/i_can_listen_but_cannot_read)."""
OUR_TEMPLATES = {
    "A no {x} track": "a negation check: a text tower that reads ranks the named class last",
}
"""Templates humanclap adds (not the paper's), with what each checks."""
SOURCES = {
    "paper": "the two-tower paper's",
    "ours": "ours, not the paper's",
    "config": "from the config, not the paper's",
}
"""How the report names where a template comes from (:func:`template_source`)."""
DEFINITION_PROMPTS = {
    "definition": "definition",
    "definition_no_label": "definition without its label",
}
"""Metric slug -> name of the two definition prompts (two-tower paper)."""
CLASS_KS = (1, 2, 3, 4, 5)
FAMILY_KS = (1,)
CLASS_METRICS = ("top1", "top2", "top3", "top4", "top5", "f1_weighted", "roc_auc", "pr_auc")
HEADERS = {
    "top1": "Top-1",
    "top2": "Top-2",
    "top3": "Top-3",
    "top4": "Top-4",
    "top5": "Top-5",
    "f1_weighted": "F1 (weighted)",
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "n_tied": "n tied",
    "triplet_accuracy": "triplet acc.",
}


def template_source(template: str) -> str:
    """Where a class template comes from: ``"paper"`` (:data:`PAPER_TEMPLATES`), ``"ours"``
    (:data:`OUR_TEMPLATES`) or ``"config"`` (any other)."""
    if template in PAPER_TEMPLATES:
        return "paper"
    return "ours" if template in OUR_TEMPLATES else "config"


def describe_source(template: str) -> str:
    """The report's words for where ``template`` comes from (and, for ours, what it checks)."""
    source = template_source(template)
    checks = f" ({OUR_TEMPLATES[template]})" if source == "ours" else ""
    return f"{SOURCES[source]}{checks}"


def _marked(template: str) -> str:
    """«template», with "(ours)" or "(config)" after it unless it is the paper's."""
    source = template_source(template)
    return f"«{template}»" + ("" if source == "paper" else f" ({source})")


def check_templates(templates: Sequence[str] | str, what: str, field: str = "x") -> dict[str, str]:
    """slug -> template for a non-empty list of format strings whose only field is ``{<field>}``."""
    if isinstance(templates, str) or not isinstance(templates, Sequence) or not templates:
        raise ValueError(
            f"{what} must be a non-empty list of templates such as 'A {{{field}}} track', "
            f"got {templates!r}"
        )
    slugs: dict[str, str] = {}
    for template in templates:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(str(template)) if f is not None}
        except ValueError as err:
            raise ValueError(f"{what}: {template!r} is not a format string ({err})") from err
        if fields != {field}:
            raise ValueError(
                f"{what}: {template!r} must contain {{{field}}} (the class name) and no other field"
            )
        spelled = str(template).lower().replace(f"{{{field}}}", field)
        slug = re.sub(r"[^a-z0-9]+", "_", spelled).strip("_")
        if slug in slugs:
            raise ValueError(
                f"{what}: {slugs[slug]!r} and {template!r} have the same metric name {slug!r}"
            )
        slugs[slug] = str(template)
    return slugs


class ZeroShotInstrumentProbe:
    """Zero-shot instrument classification, prompt sensitivity, family level, ontology triplets.

    Args:
        data: ``"synthetic"``, a TinySOL audio root, a CSV manifest (``path,label[,family,fold]``)
            or a ``LabelledAudio``.
        folds: folds to keep (e.g. ``[0]``); None = all.
        metadata: the TinySOL metadata CSV when ``data`` is a TinySOL root without it.
        labels: raw label (TinySOL abbreviation) -> prompt name, overriding the built-in table.
        synthetic: keyword arguments of the synthetic set (``clips_per_class``, ``duration_s``, ``seed``).
        templates: class prompt templates with ``{x}``; the first one gives the headline metrics.
        definitions: the paper's definition prompts: a JSON file ``{class: definition}``,
            ``"default"`` (``humanclap/resources/instrument_definitions.json``, the 14 TinySOL
            classes) or a mapping; each class is prompted with its definition and with the
            definition without its class name (``remove_label``). None: no definition prompts.
        family_templates: family prompt templates; empty to skip the family level.
        ontology: the ontology JSON (None: the shipped one); used for triplets, and for families
            when the data has none.
        use_ontology: False skips the triplets (for label sets no ontology covers).
        bins: histogram bins of the figure.
        batch_size: clips or texts per model call when given an embedder rather than a cache.
    """

    name = "zero_shot_instruments"

    def __init__(
        self,
        data: str | Path | LabelledAudio = "synthetic",
        folds: Sequence[int | str] | int | str | None = None,
        metadata: str | Path | None = None,
        labels: Mapping[str, str] | None = None,
        synthetic: Mapping[str, Any] | None = None,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        definitions: str | Path | Mapping[str, str] | None = None,
        family_templates: Sequence[str] = DEFAULT_FAMILY_TEMPLATES,
        ontology: str | Path | None = None,
        use_ontology: bool = True,
        bins: int = 40,
        batch_size: int = 32,
    ) -> None:
        self.templates = check_templates(templates, "templates")
        self.family_templates = (
            check_templates(family_templates, "family_templates") if family_templates else {}
        )
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.bins, self.batch_size = bins, batch_size
        self.data = load_labelled_audio(
            data, folds=folds, metadata=metadata, labels=labels, synthetic=synthetic
        )
        where = f"zero-shot probe on {self.data.name}"
        self.classes = self.data.classes
        if len(self.classes) < 2:
            raise ValueError(f"{where}: needs at least 2 classes, got {self.classes}")
        index = {label: i for i, label in enumerate(self.classes)}
        self.target = torch.tensor([index[c.label] for c in self.data])
        self.definitions: dict[str, dict[str, str]] = {}
        """Definition prompt slug -> class -> text (empty without ``definitions``)."""
        self.definitions_source = _definitions_source(definitions)
        if definitions is not None:
            texts = load_definitions(definitions)
            full, bare = class_definitions(texts, self.classes, f"{where}: definitions")
            self.definitions = {"definition": full, "definition_no_label": bare}
        self.ontology = Ontology.load(ontology) if use_ontology else None
        self.triplets: list[tuple[int, int, int]] = []
        if self.ontology is not None:
            found = triplets(self.ontology, self.classes)  # names every class the ontology lacks
            self.triplets = [(index[t.anchor], index[t.positive], index[t.negative]) for t in found]
        families = self.data.families
        if families is None and self.ontology is not None:
            of = {
                label: prompt_name(self.ontology.family(label), where, "family")
                for label in self.classes
            }
            families = list(dict.fromkeys(of[label] for label in self.classes))
            family_of = [of[c.label] for c in self.data]
        else:
            family_of = [c.family for c in self.data] if families is not None else []
        self.families = families if self.family_templates and families and len(families) > 1 else []
        self.family_target = (
            torch.tensor([self.families.index(f) for f in family_of]) if self.families else None
        )

    # -- inputs ---------------------------------------------------------------------------------
    def refs(self) -> list[AudioRef]:
        return [AudioRef(self.data.audio_store, clip.audio) for clip in self.data]

    def prompts(self, template: str, names: Sequence[str]) -> list[str]:
        return [template.format(x=name) for name in names]

    def inputs(self) -> ProbeInputs:
        """Every clip once, and one text per (template, class), (definition prompt, class) and
        (family template, family)."""
        texts = [
            t for template in self.templates.values() for t in self.prompts(template, self.classes)
        ]
        texts += [text for prompts in self.definitions.values() for text in prompts.values()]
        texts += [
            t
            for template in self.family_templates.values()
            for t in self.prompts(template, self.families)
        ]
        return ProbeInputs(audio=self.refs(), texts=list(dict.fromkeys(texts)))

    # -- measurement ----------------------------------------------------------------------------
    def run(self, source: EmbeddingCache | Embedder) -> ProbeResult:
        cache = as_cache(source, self.batch_size)
        audio = _unit(cache.audio(self.refs()))
        metrics: dict[str, float] = {
            "n_clips": float(len(self.data)),
            "n_classes": float(len(self.classes)),
        }
        first = None
        for slug, template in self.templates.items():
            text = _unit(cache.text(self.prompts(template, self.classes)))
            scores = audio @ text.T
            values, per_class = self._class_metrics(scores, text)
            metrics.update({f"prompt/{slug}/{key}": value for key, value in values.items()})
            if first is None:
                first = template, scores
                metrics.update(values)
                metrics.update(named(per_class, self.classes))
        for slug, prompts in self.definitions.items():  # measured as the templates are
            text = _unit(cache.text([prompts[c] for c in self.classes]))
            values, _ = self._class_metrics(audio @ text.T, text)
            metrics.update({f"prompt/{slug}/{key}": value for key, value in values.items()})
        first_slug = next(iter(self.templates))
        keys = [
            k for k in (*CLASS_METRICS, "triplet_accuracy") if f"prompt/{first_slug}/{k}" in metrics
        ]
        for key in keys:
            for name, value in spread(
                [metrics[f"prompt/{slug}/{key}"] for slug in self.templates]
            ).items():
                metrics[f"spread/{key}/{name}"] = value
        metrics.update(self._families(cache, audio))
        centroids = class_means(audio, self.target, len(self.classes))
        if self.ontology is not None:
            metrics["triplets/text/accuracy"] = metrics.pop("triplet_accuracy")
            metrics["triplets/audio/accuracy"] = triplet_accuracy(centroids, self.triplets)
            metrics["triplets/n"] = float(len(self.triplets))
            metrics["triplets/n_anchors"] = float(len({a for a, _, _ in self.triplets}))
        template, scores = first
        text_split = similarity_split(scores, self.target)
        audio_split = similarity_split(audio @ centroids.T, self.target)
        margins = top2_margins(scores)
        metrics.update(
            {
                "similarity/positive_mean": float(text_split[0].mean()),
                "similarity/negative_mean": float(text_split[1].mean()),
                "similarity/audio/positive_mean": float(audio_split[0].mean()),
                "similarity/audio/negative_mean": float(audio_split[1].mean()),
                "similarity/margin_mean": float(margins.mean()),
                "similarity/margin_median": float(np.median(margins)),
            }
        )
        figures: dict[str, Callable[[], Figure]] = {
            "similarity_histograms": lambda: similarity_histograms(
                text_split, audio_split, margins, template, self.bins
            )
        }
        return ProbeResult(metrics, tables=self.tables(), figures=figures)

    def _class_metrics(
        self, scores: torch.Tensor, text: torch.Tensor
    ) -> tuple[dict[str, float], dict[str, list[float]]]:
        """Classification metrics of one text per class (and triplet accuracy on those texts)."""
        values, per_class = classification_metrics(scores, self.target, CLASS_KS)
        if self.ontology is not None:
            values["triplet_accuracy"] = triplet_accuracy(text, self.triplets)
        return values, per_class

    def _families(self, cache: EmbeddingCache, audio: torch.Tensor) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.family_target is None:
            return out
        for position, (slug, template) in enumerate(self.family_templates.items()):
            text = _unit(cache.text(self.prompts(template, self.families)))
            values, _ = classification_metrics(audio @ text.T, self.family_target, FAMILY_KS)
            out.update({f"family/prompt/{slug}/{key}": value for key, value in values.items()})
            if position == 0:
                out.update({f"family/{key}": value for key, value in values.items()})
        return out

    # -- layout ---------------------------------------------------------------------------------
    def _sources(self) -> str:
        """The templates grouped by where they come from, for the report."""
        groups: dict[str, list[str]] = {}
        for template in self.templates.values():
            mark = f"«{template}»"
            if template_source(template) == "ours":
                mark += f" ({OUR_TEMPLATES[template]})"
            groups.setdefault(template_source(template), []).append(mark)
        return "; ".join(
            f"{SOURCES[source]}: {', '.join(groups[source])}"
            for source in SOURCES
            if source in groups
        )

    def _definition_note(self, slug: str) -> str:
        what = (
            "the two-tower paper's definition prompt: each class is described by its definition"
            if slug == "definition"
            else "the two-tower paper's definition prompt without the label: each class's "
            "definition with the class name (and its plural and possessive forms) removed, "
            "so the text tower must infer the instrument from the description"
        )
        label, text = next(iter(self.definitions[slug].items()))
        text = text if len(text) <= 120 else text[:119].rstrip() + "…"
        return (
            f"Prompt: {what}; definitions: {self.definitions_source} "
            f"(docs/probes.md#definition-prompts). E.g. {label}: «{text}». Otherwise as the first "
            "prompt's table."
        )

    def tables(self) -> dict[str, Table]:
        """Per prompt (the paper's rows: Top-k, ROC-AUC, PR-AUC), prompt spread, families, triplets,
        per class, similarities."""
        ks = [f"top{k}" for k in CLASS_KS if k <= len(self.classes)]
        tables = {}
        note = (
            "two-tower zero-shot classification: cosine of each clip with one text per class. Top-k: ties count "
            "against the model (`n tied` clips have their class tied with another); ROC-AUC and PR-AUC (average "
            "precision): one-vs-rest on the cosine, macro over classes."
        )
        columns = [*ks, "f1_weighted", "roc_auc", "pr_auc", "n_tied"]
        for slug, template in self.templates.items():
            tables[f"Zero-shot instruments — «{template}»"] = Table(
                [(HEADERS[k], f"prompt/{slug}/{k}") for k in columns] + [("clips", "n_clips")],
                note=f"Prompt: {describe_source(template)}. {note}",
            )
            note = "Otherwise as the first prompt's table."
        for slug, name in DEFINITION_PROMPTS.items():
            if slug in self.definitions:
                tables[f"Zero-shot instruments — {name}"] = Table(
                    [(HEADERS[k], f"prompt/{slug}/{k}") for k in columns] + [("clips", "n_clips")],
                    note=self._definition_note(slug),
                )
        spread_keys = ["top1", "roc_auc"] + (
            ["triplet_accuracy"] if self.ontology is not None else []
        )
        tables["Zero-shot instruments — prompt sensitivity"] = Table(
            [
                (f"{_marked(template)} Top-1", f"prompt/{slug}/top1")
                for slug, template in self.templates.items()
            ]
            + [
                (f"{HEADERS[k]} {name}", f"spread/{k}/{name}")
                for k in spread_keys
                for name in ("range", "std")
            ],
            note="range = max − min over the templates (not the definition prompts), std = population "
            f"standard deviation over them. Templates: {self._sources()}.",
        )
        if self.families:
            family_keys = ("top1", "f1_weighted", "roc_auc", "pr_auc")
            tables["Zero-shot instruments — family level"] = Table(
                [
                    (f"«{template}» {HEADERS[k]}", f"family/prompt/{slug}/{k}")
                    for slug, template in self.family_templates.items()
                    for k in family_keys
                ],
                note=f"One text per family ({', '.join(self.families)}).",
            )
        if self.ontology is not None:
            tables["Zero-shot instruments — ontology triplets"] = Table(
                [
                    ("text", "triplets/text/accuracy"),
                    ("audio (class means)", "triplets/audio/accuracy"),
                    ("triplets", "triplets/n"),
                    ("anchors", "triplets/n_anchors"),
                ],
                note="Share of triplets (a, p, n), depth(LCA(a, p)) > depth(LCA(a, n)) in the instrument ontology, "
                "with cos(a, p) > cos(a, n) (ties fail); text = class prompts of the first template, audio = "
                "unit-norm mean of each class's clip embeddings. Chance is 0.5.",
            )
        for metric in ("roc_auc", "pr_auc"):
            tables[f"Zero-shot instruments — {HEADERS[metric]} per class"] = Table(
                [(label, f"{metric}/{label}") for label in self.classes],
                note=f"First template «{next(iter(self.templates.values()))}», one-vs-rest.",
            )
        tables["Zero-shot instruments — similarity"] = Table(
            [
                ("positive", "similarity/positive_mean"),
                ("negative", "similarity/negative_mean"),
                ("audio positive", "similarity/audio/positive_mean"),
                ("audio negative", "similarity/audio/negative_mean"),
                ("top-2 margin mean", "similarity/margin_mean"),
                ("top-2 margin median", "similarity/margin_median"),
            ],
            note="Mean cosine of each clip with its own class (positive) and the other classes (negative): class "
            "texts of the first template, or class-mean audio embeddings (audio). Top-2 margin: best minus "
            "second-best class cosine.",
        )
        return tables


def _definitions_source(definitions: str | Path | Mapping[str, str] | None) -> str:
    """How the report names where the definitions come from."""
    if definitions is None:
        return "none"
    if isinstance(definitions, Mapping):
        return "given in the config"
    if str(definitions) == "default":
        return "humanclap's own (humanclap/resources/instrument_definitions.json), not the paper's"
    return str(definitions)


def _unit(rows: torch.Tensor) -> torch.Tensor:
    """Rows as unit-norm float64 on the CPU."""
    return torch.nn.functional.normalize(rows.detach().cpu().double(), dim=-1)


def load_labelled_audio(
    data: str | Path | LabelledAudio,
    folds: Iterable[int | str] | int | str | None = None,
    metadata: str | Path | None = None,
    labels: Mapping[str, str] | None = None,
    synthetic: Mapping[str, object] | None = None,
) -> LabelledAudio:
    """The labelled set a config names: ``"synthetic"`` (generated, offline), a ``.csv`` manifest,
    a folder recognised by its layout -- ESC-50 (``meta/esc50.csv``), UrbanSound8K
    (``metadata/UrbanSound8K.csv``), TinySOL (``TinySOL_metadata.csv``, or any folder when
    ``metadata`` is given) or a Hugging Face ``save_to_disk`` folder with columns ``audio, label[,
    fold]`` -- or a ready :class:`LabelledAudio`. ``folds`` selects folds;
    ``labels`` renames classes; ``synthetic`` holds the keyword arguments of
    :func:`humanclap.data.synthetic.instruments.synthetic_instruments`."""
    if isinstance(data, LabelledAudio):
        return data.select_folds(folds)
    if str(data) == "synthetic":
        return synthetic_instruments(**dict(synthetic or {})).select_folds(folds)
    path = Path(os.path.expanduser(str(data)))
    if path.is_dir():
        if metadata is None and not (path / TINYSOL_METADATA).is_file():
            if is_esc50_root(path):
                return read_esc50(path, folds=folds, labels=labels)
            if is_urbansound8k_root(path):
                return read_urbansound8k(path, folds=folds, labels=labels)
            if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
                from humanclap.data.readers.hf import read_hf_labelled

                return read_hf_labelled(path, labels=labels, folds=folds)
            raise DataError(
                f"{path}: not a labelled-audio folder: no {ESC50_TABLE} (ESC-50), {US8K_TABLE} "
                f"(UrbanSound8K), {TINYSOL_METADATA} (TinySOL; or pass its metadata=) or "
                "state.json / dataset_dict.json (a Hugging Face save_to_disk folder with columns "
                "audio, label[, fold])"
            )
        return read_tinysol(path, metadata=metadata, folds=folds, labels=labels)
    if path.suffix.lower() == ".csv":
        return read_labelled_manifest(path, folds=folds, labels=labels)
    raise DataError(
        f"{data}: not 'synthetic', a TinySOL, ESC-50 or UrbanSound8K folder or a .csv manifest"
        + ("" if path.exists() else " (no such file or directory)")
    )
