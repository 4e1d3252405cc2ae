"""Timbre *trend* probe: does similarity to a descriptor grow with the effect that realises it?
(timbre-semantics §2.3, Experiment 2 "Audio Effect Timbre Semantics", Tables 1-2)

Δ_d(a) = cos(audio_manip(d, a), text(d)) − cos(audio_orig, text(d)) for every EQ and reverb
descriptor d and amount a, classified as up / down / peak / flat over the levels. ``protocol=release``
adds the statistics of the authors' code release (:mod:`~humanclap.probes.timbre.trend_release`).
See docs/probes.md#timbre-trend.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from humanclap.backbones.embedder import Embedder
from humanclap.data.readers.audealize import (
    DEMO_EQ_FILE,
    DEMO_REVERB_FILE,
    SETTINGS_LENGTH,
    AudealizeDescriptor,
    read_audealize_descriptors,
)
from humanclap.data.readers.timbre_ratings import check_template
from humanclap.probes.base import ProbeResult, Table
from humanclap.probes.cache import EmbeddingCache, ProbeInputs, as_cache
from humanclap.probes.timbre.trend_effects import (
    Effect,
    check_effect,
    default_effects,
    effect_identity,
    render_effect,
)
from humanclap.probes.timbre.trend_figures import TREND_COLOURS, trend_figure
from humanclap.probes.timbre.trend_references import resolve_references
from humanclap.probes.timbre.trend_release import (
    PROTOCOLS,
    RATES,
    RELEASE_AMOUNTS,
    RELEASE_TEMPLATE,
    percent,
    release_metrics,
    release_prompt,
)
from humanclap.probes.timbre.trend_rule import (
    TREND_CODES,
    TREND_SYMBOLS,
    TRENDS,
    check_tolerance,
    classify_trend,
    trend_statistics,
    trend_symbol,
)

__all__ = [  # the rule, figure and effects are re-exported: tests and configs import them from here
    "DEFAULT_AMOUNTS",
    "PROTOCOLS",
    "RELEASE_AMOUNTS",
    "TREND_CODES",
    "TREND_COLOURS",
    "TREND_SYMBOLS",
    "TRENDS",
    "Effect",
    "TimbreTrendProbe",
    "amount_label",
    "classify_trend",
    "default_effects",
    "trend_figure",
    "trend_statistics",
    "trend_symbol",
]

EFFECT_LABELS = {"eq": "EQ", "reverb": "Reverb"}
PAPER_TABLES = {"eq": "Table 1", "reverb": "Table 2"}
DEFAULT_AMOUNTS = (0.3, 0.6, 1.0)
"""Low / medium / high intensity (§2.3): the amounts of ``protocol=paper``."""
PROTOCOL_AMOUNTS = {"paper": DEFAULT_AMOUNTS, "release": RELEASE_AMOUNTS}
"""``amounts=None``: the amounts of the protocol."""
PAPER_TEMPLATE = "{descriptor}"
"""The paper's text of a descriptor: the bare word (§2.3, step 1)."""


def amount_label(amount: float) -> str:
    """How an amount appears in metric keys: ``str(float(a))``, e.g. ``0.3``, ``1.0``."""
    return str(float(amount))


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _plain(value):
    """Hydra passes DictConfig / ListConfig; the probe wants dicts and lists."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _check_amounts(amounts) -> tuple[float, ...]:
    amounts = _plain(amounts)
    if isinstance(amounts, (str, bytes)) or not isinstance(amounts, Sequence) or len(amounts) == 0:
        raise ValueError(f"amounts must be a non-empty list of numbers, got {amounts!r}")
    if any(
        isinstance(a, bool) or not isinstance(a, numbers.Real) or not math.isfinite(a)
        for a in amounts
    ):
        raise ValueError(f"amounts must be finite numbers, got {list(amounts)}")
    values = tuple(float(a) for a in amounts)
    if values[0] <= 0 or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"amounts must be positive and strictly increasing, got {list(values)}")
    return values


def _check_descriptors(
    descriptors: Mapping[str, Sequence[AudealizeDescriptor]],
) -> dict[str, list[AudealizeDescriptor]]:
    if not descriptors:
        raise ValueError(
            f"no effects given: descriptors must map some of {list(SETTINGS_LENGTH)} to descriptors"
        )
    checked: dict[str, list[AudealizeDescriptor]] = {}
    for effect, items in descriptors.items():
        if effect not in SETTINGS_LENGTH:
            raise ValueError(f"unknown effect {effect!r}; known: {list(SETTINGS_LENGTH)}")
        items = list(items)
        if not items:
            raise ValueError(f"effect '{effect}': at least one descriptor is needed")
        seen: set[str] = set()
        for d in items:
            if len(d.settings) != SETTINGS_LENGTH[effect]:
                raise ValueError(
                    f"effect '{effect}', descriptor '{d.word}': {len(d.settings)} settings, "
                    f"expected {SETTINGS_LENGTH[effect]} (is it a {d.effect} descriptor?)"
                )
            if "/" in d.word or not d.word:
                raise ValueError(
                    f"effect '{effect}': descriptor word {d.word!r} must be non-empty without '/'"
                )
            if d.word in seen:
                raise ValueError(f"effect '{effect}': duplicate descriptor '{d.word}'")
            seen.add(d.word)
        checked[effect] = items
    return checked


class TimbreTrendProbe:
    """Δ_d(a) trends of EQ and reverb descriptors (timbre-semantics §2.3; see docs/probes.md#timbre-trend).

    Args:
        descriptors: effect name (``"eq"``, ``"reverb"``) -> its descriptors, e.g. from
            :func:`humanclap.data.readers.audealize.read_audealize_descriptors`; at least one per effect,
            settings of the effect's length (EQ 40, reverb 6), unique words without ``/``.
        effects: effect name -> :class:`Effect` rendering it; the same names as ``descriptors``.
        references: ``None`` = the generated clip (:mod:`humanclap.data.synthetic.reference_clip`); a
            path, a list of paths (named by file stem) or a mapping name -> path or ``AudioRef``
            (:func:`~humanclap.probes.timbre.trend_references.resolve_references`). A missing file is a
            ``DataError`` naming it.
        amounts: the intensities a, positive and strictly increasing; at most 1 when a reverb is
            measured (its wet/dry mix). ``None`` = the protocol's: paper 0.3, 0.6, 1.0; release
            0.2, 0.4, 0.6, 0.8, 1.0.
        template: the text of a descriptor, with ``{descriptor}`` exactly once. ``None`` = the
            protocol's: paper ``"{descriptor}"`` (the bare word); release
            :func:`~humanclap.probes.timbre.trend_release.release_prompt` (``"a warm sound"``,
            ``"an echo sound"``). A template given is used as it is, in either protocol.
        tolerance: changes of Δ of at most this much count as no change (:mod:`~humanclap.probes.timbre.trend_rule`).
        include_origin: the unmanipulated point (a = 0, Δ = 0) starts the sequence that is
            classified and fitted. Default: no (the paper examines Δ "across intensity levels").
            The release statistics never include it.
        protocol: ``"paper"`` (the paper text: trend classes) or ``"release"``: in addition, the
            statistics of the authors' code release (positive-slope and final-Δ rates, all-source
            consistency; :func:`~humanclap.probes.timbre.trend_release.release_metrics`), with
            its amounts and prompt unless ``amounts`` / ``template`` are given.
        batch_size: inputs per model call when ``run`` gets an ``Embedder``.
        reference_seconds, reference_seed: the generated reference (``references=None``): a
            length > 0 in seconds and an integer seed.

    Use :meth:`from_files` to build it from Audealize files (the Hydra entry point).
    """

    name = "timbre_trend"

    def __init__(
        self,
        descriptors: Mapping[str, Sequence[AudealizeDescriptor]],
        effects: Mapping[str, Effect],
        references=None,
        amounts: Sequence[float] | None = None,
        template: str | None = None,
        tolerance: float = 0.0,
        include_origin: bool = False,
        batch_size: int = 32,
        reference_seconds: float = 4.0,
        reference_seed: int = 0,
        protocol: str = "paper",
    ) -> None:
        if not isinstance(protocol, str) or protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
        self.protocol = protocol
        self.descriptors = _check_descriptors(descriptors)
        if set(effects) != set(self.descriptors):
            raise ValueError(
                f"effects {sorted(effects)} must match the effects of the descriptors "
                f"{sorted(self.descriptors)}"
            )
        self.effects = {name: check_effect(name, effect) for name, effect in effects.items()}
        self.amounts = _check_amounts(PROTOCOL_AMOUNTS[protocol] if amounts is None else amounts)
        if "reverb" in self.descriptors and self.amounts[-1] > 1:
            raise ValueError(
                f"amounts {list(self.amounts)}: the reverb's amount is its wet/dry mix, at most 1"
            )
        if not isinstance(include_origin, (bool, np.bool_)):
            raise ValueError(f"include_origin must be true or false, got {include_origin!r}")
        self.include_origin = bool(include_origin)
        if len(self.amounts) + self.include_origin < 2:
            raise ValueError(
                "a trend needs at least two points: give two amounts or include_origin=True"
            )
        # the release's prompt is a rule ("an" for echo), not a template: only when none is given
        self._release_prompt = protocol == "release" and template is None
        if template is None:
            template = RELEASE_TEMPLATE if protocol == "release" else PAPER_TEMPLATE
        self.template = check_template(template, exactly_once=True)
        self.tolerance = check_tolerance(tolerance)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self.references = resolve_references(_plain(references), reference_seconds, reference_seed)

    @classmethod
    def from_files(
        cls,
        eq_descriptors: str | Path | None = None,
        reverb_descriptors: str | Path | None = None,
        top_n: int | None = 20,
        lang: str | None = "English",
        eq_words: Sequence[str] | None = None,
        reverb_words: Sequence[str] | None = None,
        effects: Sequence[str] = ("eq", "reverb"),
        references=None,
        amounts: Sequence[float] | None = None,
        template: str | None = None,
        tolerance: float = 0.0,
        include_origin: bool = False,
        max_db: float = 5.0,
        sample_rate: int = 48_000,
        batch_size: int = 32,
        reference_seconds: float = 4.0,
        reference_seed: int = 0,
        protocol: str = "paper",
    ) -> TimbreTrendProbe:
        """The probe on Audealize descriptor files with the Audealize EQ and reverb (``humanclap.dsp``).

        ``eq_descriptors`` / ``reverb_descriptors``: ``eqdescriptors.json`` /
        ``reverbdescriptors.json`` (``None`` = the shipped demo files, our own illustrative
        settings); ``top_n``, ``lang`` and ``eq_words`` / ``reverb_words`` select descriptors as in
        :func:`~humanclap.data.readers.audealize.read_audealize_descriptors`. ``effects`` names the
        effects to run (default both). ``max_db`` is the EQ's gain at amount 1
        (``GraphicEQ(max_db=...)``), ``sample_rate`` the effects' rate. The probe brings its own
        data (descriptors and references), so it takes no ``pairs``: the run's pairs are not passed to it.
        """
        effects = _plain(effects)
        if (
            isinstance(effects, str)
            or not isinstance(effects, Sequence)
            or not effects
            or any(e not in SETTINGS_LENGTH for e in effects)
        ):
            raise ValueError(
                f"effects must be a non-empty list of {list(SETTINGS_LENGTH)}, got {effects!r}"
            )
        files = {
            "eq": eq_descriptors or DEMO_EQ_FILE,
            "reverb": reverb_descriptors or DEMO_REVERB_FILE,
        }
        words = {"eq": _plain(eq_words), "reverb": _plain(reverb_words)}
        descriptors = {}
        for effect in effects:
            items = read_audealize_descriptors(
                files[effect], top_n=top_n, lang=lang, words=words[effect]
            )
            if not items:
                raise ValueError(f"{effect}_words selects no descriptors from {files[effect]}")
            if len(items[0].settings) != SETTINGS_LENGTH[effect]:
                raise ValueError(
                    f"{files[effect]} holds {items[0].effect} descriptors "
                    f"({len(items[0].settings)} settings), not {effect} ({SETTINGS_LENGTH[effect]})"
                )
            descriptors[effect] = items
        return cls(
            descriptors,
            default_effects(effects, max_db=max_db, sample_rate=sample_rate),
            references=references,
            amounts=amounts,
            template=template,
            tolerance=tolerance,
            include_origin=include_origin,
            batch_size=batch_size,
            reference_seconds=reference_seconds,
            reference_seed=reference_seed,
            protocol=protocol,
        )

    # -- inputs ---------------------------------------------------------------------------------
    def prompt(self, word: str) -> str:
        """text(d): the template filled with the descriptor (the release's prompt rule under
        ``protocol=release`` without a template)."""
        if self._release_prompt:
            return release_prompt(word)
        return self.template.format(descriptor=word)

    def inputs(self) -> ProbeInputs:
        """The references (originals) and every descriptor prompt, once each.

        The manipulated clips are generated in ``run`` (``EmbeddingCache.waves``).
        """
        texts = [self.prompt(d.word) for items in self.descriptors.values() for d in items]
        return ProbeInputs(
            audio=list(dict.fromkeys(self.references.values())), texts=list(dict.fromkeys(texts))
        )

    def keys(self, effect: str, reference: str) -> list[Hashable]:
        """Cache keys of the manipulated clips of one (effect, reference): descriptor-major.

        The same on every DDP rank: the effect is keyed by its configuration, not its ``id``.
        """
        identity, ref = effect_identity(self.effects[effect]), self.references[reference]
        return [
            ("timbre_trend", effect, d.word, amount, reference, d.settings, identity, ref)
            for d in self.descriptors[effect]
            for amount in self.amounts
        ]

    # -- audio ----------------------------------------------------------------------------------
    def render(self, effect: str, reference: str, sample_rate: int) -> np.ndarray:
        """All descriptors × amounts of one reference through one effect call: (D, L, T) float32
        at ``sample_rate``."""
        implementation, ref = self.effects[effect], self.references[reference]
        items = self.descriptors[effect]
        wave = ref.store.load(ref.key, implementation.sample_rate)
        out = render_effect(
            effect, implementation, wave, [d.settings for d in items], self.amounts, sample_rate
        )
        finite = torch.isfinite(out).flatten(2).all(dim=2)
        if not bool(finite.all()):
            i, j = (int(v) for v in torch.nonzero(~finite)[0])
            raise ValueError(
                f"effect '{effect}' produced non-finite audio for '{items[i].word}' at amount "
                f"{self.amounts[j]:g} on reference '{reference}'"
            )
        return out.numpy()

    # -- measurement ----------------------------------------------------------------------------
    def deltas(
        self, source: EmbeddingCache | Embedder
    ) -> dict[tuple[str, str], dict[str, np.ndarray]]:
        """``{(reference, effect): {"delta": (D, L), "sim_manip": (D, L), "sim_orig": (D,)}}`` (float64)."""
        cache = as_cache(source, self.batch_size)
        out: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        memo: dict[Hashable, np.ndarray] = {}
        group_of: dict[Hashable, tuple[str, str]] = {}

        def make(key: Hashable) -> np.ndarray:
            if key not in memo:  # first missing clip of its (effect, reference): render them all
                effect, reference = group_of[key]
                keys = self.keys(effect, reference)
                waves = self.render(effect, reference, cache.sample_rate)
                memo.update(zip(keys, waves.reshape(len(keys), -1)))
            return memo.pop(key)

        for effect, items in self.descriptors.items():
            text = cache.text([self.prompt(d.word) for d in items]).double()
            for reference, ref in self.references.items():
                original = cache.audio([ref]).double()[0]
                keys = self.keys(effect, reference)
                group_of.update(dict.fromkeys(keys, (effect, reference)))
                try:
                    manipulated = (
                        cache.waves(keys, make).double().view(len(items), len(self.amounts), -1)
                    )
                finally:
                    memo.clear()  # under DDP this rank embedded only its share: drop the rest
                sim_manip = (manipulated * text[:, None, :]).sum(dim=-1)
                sim_orig = text @ original
                out[(reference, effect)] = {
                    "sim_manip": sim_manip.numpy(),
                    "sim_orig": sim_orig.numpy(),
                    "delta": (sim_manip - sim_orig[:, None]).numpy(),
                }
        return out

    def run(self, source: EmbeddingCache | Embedder) -> ProbeResult:
        measured = self.deltas(source)
        references = list(self.references)
        metrics: dict[str, float] = {"n_references": float(len(references))}
        mean_deltas: dict[str, dict[str, np.ndarray]] = {}
        mean_trends: dict[str, dict[str, str]] = {}
        trajectories: dict[str, dict[str, list[np.ndarray]]] = {}
        for effect, items in self.descriptors.items():
            trajectories[effect] = {
                d.word: [measured[(r, effect)]["delta"][i] for r in references]
                for i, d in enumerate(items)
            }
            metrics[f"{effect}/n_descriptors"] = float(len(items))
            counts = dict.fromkeys(TRENDS, 0)
            for reference in references:
                values = measured[(reference, effect)]
                stats = self._descriptor_metrics(effect, items, values["delta"], values["sim_orig"])
                ref_counts = dict.fromkeys(TRENDS, 0)
                for d in items:
                    ref_counts[stats[d.word]["trend"]] += 1
                for trend, n in ref_counts.items():
                    counts[trend] += n
                if len(references) > 1:
                    metrics.update(
                        {f"{reference}/{effect}/{t}": float(n) for t, n in ref_counts.items()}
                    )
                    metrics.update(
                        {
                            f"{reference}/{k}": v
                            for k, v in self._flatten(effect, items, stats).items()
                        }
                    )
            metrics.update({f"{effect}/{t}": float(n) for t, n in counts.items()})
            delta = np.mean([measured[(r, effect)]["delta"] for r in references], axis=0)
            sim_orig = np.mean([measured[(r, effect)]["sim_orig"] for r in references], axis=0)
            stats = self._descriptor_metrics(effect, items, delta, sim_orig)
            metrics.update(self._flatten(effect, items, stats))
            mean_deltas[effect] = {d.word: delta[i] for i, d in enumerate(items)}
            mean_trends[effect] = {d.word: stats[d.word]["trend"] for d in items}
        if self.protocol == "release":
            metrics.update(release_metrics(self.amounts, trajectories))
        figures = {
            f"{effect}_trends": (
                lambda e=effect: trend_figure(
                    f"{EFFECT_LABELS[e]}: Δ vs amount"
                    + (f" (mean of {len(references)} references)" if len(references) > 1 else ""),
                    self.amounts,
                    mean_deltas[e],
                    mean_trends[e],
                    self.include_origin,
                )
            )
            for effect in self.descriptors
        }
        return ProbeResult(metrics, tables=self.tables(), figures=figures)

    def _descriptor_metrics(
        self, effect, items, delta: np.ndarray, sim_orig: np.ndarray
    ) -> dict[str, dict]:
        stats = {}
        for i, d in enumerate(items):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="non-finite Δ")
                stats[d.word] = trend_statistics(
                    self.amounts, delta[i], self.tolerance, self.include_origin
                )
            stats[d.word]["sim_orig"] = float(sim_orig[i])
            if not np.isfinite(delta[i]).all():
                warnings.warn(
                    f"timbre_trend: non-finite Δ for {effect} '{d.word}' (NaN embeddings?); "
                    "classified as flat",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return stats

    def _flatten(self, effect: str, items, stats: dict[str, dict]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for d in items:
            s, prefix = stats[d.word], f"{effect}/{d.word}"
            for amount, value in zip(self.amounts, s["deltas"]):
                metrics[f"{prefix}/delta@{amount_label(amount)}"] = value
            metrics[f"{prefix}/slope"] = s["slope"]
            metrics[f"{prefix}/spearman"] = s["spearman"]
            if self.protocol == "release":
                metrics[f"{prefix}/pearson"] = s["pearson"]
            metrics[f"{prefix}/class"] = TREND_CODES[s["trend"]]
            metrics[f"{prefix}/sim_orig"] = s["sim_orig"]
        return metrics

    # -- presentation ---------------------------------------------------------------------------
    def tables(self) -> dict[str, Table]:
        """Class counts per effect (Tables 1-2 summarised) and each effect's descriptor trends."""
        n_refs = len(self.references)
        rule = (
            f"Δ_d(a) = cos(audio_manip(d, a), text(d)) − cos(audio_orig, text(d)) at a = "
            f"{', '.join(f'{a:g}' for a in self.amounts)}"
            + (" with (0, 0) prepended" if self.include_origin else " (the levels only)")
            + f"; a change counts if larger than {self.tolerance:g}. ↑ only rises, ↓ only falls, "
            "∧ rises then falls, – flat or inconsistent."
        )
        counts = Table(
            [
                column
                for e in self.descriptors
                for column in [
                    *((f"{EFFECT_LABELS[e]} {TREND_SYMBOLS[t]}", f"{e}/{t}") for t in TRENDS),
                    (f"{EFFECT_LABELS[e]} n", f"{e}/n_descriptors"),
                ]
            ],
            note=rule + (f" Counts summed over {n_refs} references." if n_refs > 1 else ""),
            formats={t: _count for t in TRENDS},
        )
        tables = {"Timbre trends — class counts (timbre-semantics Tables 1-2)": counts}
        for effect, items in self.descriptors.items():
            tables[
                f"{EFFECT_LABELS[effect]} descriptor trends (timbre-semantics {PAPER_TABLES[effect]})"
            ] = Table(
                [(d.word, f"{effect}/{d.word}/class") for d in items],
                note="Class of the Δ sequence"
                + (f" averaged over {n_refs} references" if n_refs > 1 else "")
                + "; slopes and Spearman ρ are the `/slope`, `/spearman` metrics.",
                formats={"class": trend_symbol},
            )
        if self.protocol == "release":
            tables["Timbre trends — release statistics (timbre-semantics-release Tables 1-2)"] = (
                self._release_table()
            )
        return tables

    def _release_table(self) -> Table:
        """The release's summary (its Table 1) and per-effect rows (Table 2) as one row per model."""
        headers = {
            "positive_slope_rate": "pos. slope",
            "positive_final_delta_rate": "pos. final Δ",
            "all_source_consistency": "consistency",
            "mean_pearson_r": "mean r",
            "mean_spearman_rho": "mean ρ",
        }
        columns = [(f"overall {h}", key) for key, h in headers.items()]
        for effect in self.descriptors:
            columns += [
                (f"{EFFECT_LABELS[effect]} {h}", f"{effect}/{k}") for k, h in headers.items()
            ]
        n_refs = len(self.references)
        return Table(
            columns,
            note=(
                f"The release protocol (lindseydeng/timbre-semantics-release, analysis.py): per "
                f"(reference, effect, descriptor) the least-squares slope of Δ over a = "
                f"{', '.join(f'{a:g}' for a in self.amounts)} and Δ at a = {self.amounts[-1]:g}; "
                "shares with slope > 0 and final Δ > 0; consistency: share of descriptors with "
                f"slope > 0 for every reference ({n_refs} here); mean Pearson r and Spearman ρ of "
                "Δ with a. Overall: both effects pooled."
            ),
            formats=dict.fromkeys(RATES, percent),
        )
