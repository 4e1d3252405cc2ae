"""Timbre-correlation probe: do audio-text similarities follow human timbre ratings?

timbre-semantics §2.2 (Experiment 1): Pearson r and Spearman ρ between the ratings and the raw
cosines, per descriptor across instruments and per instrument across descriptors.
See docs/probes.md#timbre-correlation.
"""

from __future__ import annotations

import logging
import math
import re
import string
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from humanclap.backbones.embedder import Embedder
from humanclap.data.pairs import RatedPairs, unique_in_order
from humanclap.probes.base import ProbeResult, Table
from humanclap.probes.cache import AudioRef, EmbeddingCache, ProbeInputs, as_cache
from humanclap.probes.metrics import lcc, srcc, undefined_reason

log = logging.getLogger(__name__)

MIN_INSTRUMENTS = 3
MIN_DESCRIPTORS = 3
SUMMARY_KEYS = ("n", "n_positive", "n_negative", "n_undefined", "mean_r", "mean_spearman")


class UndefinedCorrelationWarning(UserWarning):
    """A correlation of a constant vector (constant ratings or similarities) is reported as NaN."""


def descriptor_names(texts: Sequence[str], template: str | None) -> dict[str, str]:
    """Prompt -> descriptor for display and metric keys: the ``{descriptor}`` of ``template``.

    A text the template does not produce keeps its own text; if that would make two names equal,
    every text is shown as itself.
    """
    if template is None:
        return {text: text for text in texts}
    pattern = _template_pattern(template)
    names = {}
    for text in texts:
        match = pattern.fullmatch(text) if pattern else None
        descriptor = match.group("d") if match else None
        names[text] = (
            descriptor if descriptor and template.format(descriptor=descriptor) == text else text
        )
    if len(set(names.values())) < len(names):
        return {text: text for text in texts}
    return names


def _template_pattern(template: str) -> re.Pattern | None:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"template {template!r} is not a format string ({err})") from err
    fields = {field for _, field, _, _ in parsed if field is not None}
    if fields != {"descriptor"}:
        raise ValueError(
            f"template {template!r} must contain {{descriptor}} and no other field (found {sorted(fields)})"
        )
    parts, seen = [], False
    for literal, field, _, _ in parsed:
        parts.append(re.escape(literal))
        if field is not None:
            parts.append("(?P=d)" if seen else "(?P<d>.+)")
            seen = True
    return re.compile("".join(parts), re.DOTALL)


def correlate(human: np.ndarray, model: np.ndarray) -> tuple[float, float, str | None]:
    """(Pearson r, Spearman ρ, why undefined or None) by :mod:`humanclap.probes.metrics`: NaN for
    a constant vector, and for a non-finite one (whose ρ scipy used to rank, inf as the largest)."""
    why = undefined_reason(human, model, names=("human ratings", "model similarities"))
    return lcc(human, model), srcc(human, model), why


def summarize(pearson: Sequence[float], spearman: Sequence[float]) -> dict[str, float]:
    """n, positive / negative / undefined counts and mean r, ρ of the defined correlations."""
    r, rho = np.asarray(pearson, dtype=np.float64), np.asarray(spearman, dtype=np.float64)
    defined = ~np.isnan(r)
    return {
        "n": float(len(r)),
        "n_positive": float((r[defined] > 0).sum()),
        "n_negative": float((r[defined] < 0).sum()),
        "n_undefined": float((~defined).sum()),
        "mean_r": float(r[defined].mean()) if defined.any() else math.nan,
        "mean_spearman": float(np.nanmean(rho)) if (~np.isnan(rho)).any() else math.nan,
    }


class TimbreCorrelationProbe:
    """Descriptor- and instrument-level correlation of human timbre ratings with s_{i,d} (§2.2).

    Args:
        pairs: one pair per (instrument, descriptor); ``group`` = instrument name, one recording
            per instrument. Every instrument must be rated on every descriptor (a missing cell is
            an error that names it: a correlation over a different set of instruments per
            descriptor would not be the paper's).
        instrument_groups: instrument name -> group (e.g. "Chinese" / "Western"); if None, the
            data's ``RatedPairs.group_sets`` (group -> instrument names) are used. Instruments
            not in ``pairs`` are ignored (the probe often measures a validation split), those in
            no group only count in the overall summaries.
        template: the prompt template of the data (``"a {descriptor} sound"``), so tables,
            figures and metric keys show the descriptor instead of the whole prompt.
        batch_size: clips or texts per model call when given an embedder rather than a cache.
    """

    name = "timbre_correlation"

    def __init__(
        self,
        pairs: RatedPairs,
        instrument_groups: Mapping[str, str] | None = None,
        template: str | None = None,
        batch_size: int = 32,
    ) -> None:
        self.pairs = pairs
        self.batch_size = batch_size
        where = f"timbre correlation probe on {pairs.name}"
        if len(pairs) == 0:
            raise ValueError(f"{where}: no pairs")
        unnamed = [i for i, p in enumerate(pairs) if not p.group]
        if unnamed:
            raise ValueError(
                f"{where}: {len(unnamed)} pair(s) without a group (the instrument name), "
                f"e.g. pair {unnamed[0]}"
            )
        self.instruments = unique_in_order(p.group for p in pairs)
        self.texts = unique_in_order(p.text for p in pairs)
        recordings: dict[str, list[str]] = {i: [] for i in self.instruments}
        scores: dict[tuple[str, str], float] = {}
        for index, pair in enumerate(pairs):
            if pair.audio not in recordings[pair.group]:
                recordings[pair.group].append(pair.audio)
            cell = (pair.group, pair.text)
            if cell in scores:
                raise ValueError(
                    f"{where}: instrument {pair.group!r} has more than one score for "
                    f"{pair.text!r} (pair {index})"
                )
            scores[cell] = pair.score
        several = {i: keys for i, keys in recordings.items() if len(keys) > 1}
        if several:
            shown = "; ".join(
                f"{i!r}: {len(keys)} ({', '.join(keys[:2])}{', ...' if len(keys) > 2 else ''})"
                for i, keys in list(several.items())[:5]
            )
            raise ValueError(
                f"{where}: each instrument needs exactly one recording; {len(several)} have several: "
                f"{shown}"
            )
        self.recordings = [recordings[i][0] for i in self.instruments]
        missing = [(i, t) for i in self.instruments for t in self.texts if (i, t) not in scores]
        if missing:
            shown = ", ".join(f"{i!r} x {t!r}" for i, t in missing[:10])
            raise ValueError(
                f"{where}: every instrument must be rated on every descriptor; {len(missing)} "
                f"(instrument, descriptor) cell(s) missing: {shown}{', ...' if len(missing) > 10 else ''}"
            )
        if len(self.instruments) < MIN_INSTRUMENTS or len(self.texts) < MIN_DESCRIPTORS:
            raise ValueError(
                f"{where}: needs at least {MIN_INSTRUMENTS} instruments and {MIN_DESCRIPTORS} "
                f"descriptors to correlate, got {len(self.instruments)} instrument(s) and "
                f"{len(self.texts)} descriptor(s)"
            )
        names = descriptor_names(self.texts, template)
        self.descriptors = [names[t] for t in self.texts]
        self.human = np.array(
            [[scores[i, t] for t in self.texts] for i in self.instruments], dtype=np.float64
        )
        """h_{i,d}: instruments x descriptors, ratings rescaled to [0, 1]."""
        self.groups = self._groups(instrument_groups)

    def _groups(self, instrument_groups: Mapping[str, str] | None) -> dict[str, list[str]]:
        """group -> its instruments present in the pairs (in pair order); empty groups dropped."""
        if instrument_groups is not None:
            members: dict[str, set[str]] = {}
            for instrument, group in instrument_groups.items():
                members.setdefault(str(group), set()).add(str(instrument))
        else:
            members = {group: set(names) for group, names in self.pairs.group_sets.items()}
        named = set().union(*members.values()) if members else set()
        absent = named - set(self.instruments)
        if absent:
            log.info(
                "timbre correlation: %d grouped instrument(s) not in %s are ignored, e.g. %r",
                len(absent),
                self.pairs.name,
                sorted(absent)[0],
            )
        groups = {g: [i for i in self.instruments if i in names] for g, names in members.items()}
        return {g: instruments for g, instruments in groups.items() if instruments}

    def inputs(self) -> ProbeInputs:
        """One recording per instrument and one text per descriptor."""
        return ProbeInputs(
            audio=[AudioRef(self.pairs.audio_store, key) for key in self.recordings],
            texts=list(self.texts),
        )

    def similarities(self, source: EmbeddingCache | Embedder) -> np.ndarray:
        """s_{i,d}: instruments x descriptors cosines (float64, unclamped); each input embedded once."""
        cache = as_cache(source, self.batch_size)
        audio = cache.audio([AudioRef(self.pairs.audio_store, key) for key in self.recordings])
        text = cache.text(list(self.texts))
        audio = torch.nn.functional.normalize(audio.double(), dim=-1)
        text = torch.nn.functional.normalize(text.double(), dim=-1)
        return (audio @ text.T).numpy()

    def run(self, source: EmbeddingCache | Embedder) -> ProbeResult:
        similarity = self.similarities(source)
        human = self.human
        metrics: dict[str, float] = {}
        undefined: dict[str, list[str]] = {"descriptor": [], "instrument": []}
        by_descriptor = [correlate(human[:, d], similarity[:, d]) for d in range(len(self.texts))]
        by_instrument = [correlate(human[i], similarity[i]) for i in range(len(self.instruments))]
        for level, labels, results in (
            ("descriptor", self.descriptors, by_descriptor),
            ("instrument", self.instruments, by_instrument),
        ):
            for label, (r, rho, why) in zip(labels, results):
                metrics[f"{level}/{label}/pearson"] = r
                metrics[f"{level}/{label}/spearman"] = rho
                if why:
                    undefined[level].append(f"{label!r} ({why})")
            summary = summarize([r for r, _, _ in results], [rho for _, rho, _ in results])
            metrics.update({f"{level}/{key}": value for key, value in summary.items()})
        instrument_r = dict(zip(self.instruments, by_instrument))
        for group, members in self.groups.items():
            summary = summarize(
                [instrument_r[i][0] for i in members], [instrument_r[i][1] for i in members]
            )
            metrics.update(
                {f"group/{group}/instrument/{key}": value for key, value in summary.items()}
            )
        for level, items in undefined.items():
            if items:
                warnings.warn(
                    f"timbre correlation on {self.pairs.name}: {level}-level correlation undefined "
                    f"(NaN, left out of n_positive and mean_r) for {len(items)} {level}(s): "
                    f"{', '.join(items)}",
                    UndefinedCorrelationWarning,
                    stacklevel=2,
                )
        return ProbeResult(metrics, tables=self.tables(), figures=self.figures(metrics))

    def tables(self) -> dict[str, Table]:
        """Counts of positive correlations and mean r (§2.2.1), and r per descriptor (Figs. 1-3)."""
        summary = [
            ("descriptors r > 0", "descriptor/n_positive"),
            ("descriptors", "descriptor/n"),
            ("descriptor mean r", "descriptor/mean_r"),
            ("instruments r > 0", "instrument/n_positive"),
            ("instruments", "instrument/n"),
            ("instrument mean r", "instrument/mean_r"),
        ]
        for group in self.groups:
            summary += [
                (f"{group} r > 0", f"group/{group}/instrument/n_positive"),
                (f"{group} instruments", f"group/{group}/instrument/n"),
                (f"{group} mean r", f"group/{group}/instrument/mean_r"),
            ]
        return {
            "Timbre Exp. 1 — positive correlations and mean r": Table(
                summary,
                note="Pearson r between human ratings and raw cosine similarities (timbre-semantics "
                "§2.2.1); undefined correlations (constant vectors) are left out of the counts "
                "and means and counted in `*/n_undefined`.",
            ),
            "Timbre Exp. 1 — descriptor-level Pearson r": Table(
                [(d, f"descriptor/{d}/pearson") for d in self.descriptors],
                note="Across instruments, per descriptor (timbre-semantics Figs. 1-3).",
            ),
        }

    def figures(self, metrics: Mapping[str, float]) -> dict[str, Callable[[], Figure]]:
        """Bar charts like timbre-semantics Figs. 1-3 (descriptors) and 4-9 (instruments per group)."""
        descriptor_r = [metrics[f"descriptor/{d}/pearson"] for d in self.descriptors]
        figures: dict[str, Callable[[], Figure]] = {
            "descriptor_correlation": lambda: correlation_bars(
                self.descriptors,
                descriptor_r,
                "descriptor",
                "descriptor-level correlation (across instruments)",
            ),
        }
        subsets = dict(self.groups)
        grouped = {i for members in subsets.values() for i in members}
        rest = [i for i in self.instruments if i not in grouped]
        if not subsets:
            subsets = {"": rest}
        elif rest:
            subsets["ungrouped"] = rest
        for group, members in subsets.items():
            values = [metrics[f"instrument/{i}/pearson"] for i in members]
            title = f"instrument-level profile correlation{f' — {group}' if group else ''}"
            key = "instrument_correlation" + (f"-{_slug(group)}" if group else "")
            figures[key] = lambda members=members, values=values, title=title: correlation_bars(
                members, values, "instrument", title
            )
        return figures


def correlation_bars(
    labels: Sequence[str], values: Sequence[float], what: str, title: str
) -> Figure:
    """One bar per descriptor / instrument, sorted by r (highest first; undefined ones last)."""
    values = np.asarray(values, dtype=np.float64)
    order = sorted(
        range(len(labels)), key=lambda k: (math.isnan(values[k]), -np.nan_to_num(values[k]))
    )
    shown = values[order]
    defined = ~np.isnan(shown)
    figure = Figure(figsize=(max(4.8, 0.28 * len(labels) + 1.6), 3.8), layout="constrained")
    axes = figure.subplots()
    x = np.arange(len(order))
    colors = ["tab:blue" if v > 0 else "tab:red" for v in np.nan_to_num(shown)]
    axes.bar(x[defined], shown[defined], color=[c for c, d in zip(colors, defined) if d])
    for k in x[~defined]:
        axes.text(
            k, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize="small", color="0.4"
        )
    axes.axhline(0.0, color="0.3", linewidth=0.8)
    axes.set_xticks(x, [labels[k] for k in order], rotation=60, ha="right", fontsize="small")
    axes.set_xlim(-0.6, len(order) - 0.4)
    axes.set_ylim(-1.0, 1.0)
    summary = summarize(values, values)
    mean = f"{summary['mean_r']:.3f}" if not math.isnan(summary["mean_r"]) else "n/a"
    axes.set(
        ylabel="Pearson r",
        title=f"{title}\n{int(summary['n_positive'])}/{len(values)} {what}s r > 0, mean r = {mean}",
    )
    axes.title.set_fontsize("medium")
    return figure


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "group"
