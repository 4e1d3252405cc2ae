"""Timbre *trend* probe: does similarity to a descriptor grow with the effect that realises it?
(timbre-semantics §2.3, Experiment 2 "Audio Effect Timbre Semantics", Tables 1-2)

For each effect e (40-band EQ, Audealize reverb), each descriptor d with its SocialFX settings
(:mod:`humanclap.data.audealize`) and each intensity a (default 0.3 / 0.6 / 1.0 = low / medium /
high: the EQ band gains scaled by a, the reverb's wet/dry set to a), the reference recording is
manipulated and, with unit-norm embeddings (dot product = cosine),

    sim_manip(d, a) = cos(audio_manip(d, a), text(d))          (§2.3, step 3)
    sim_orig(d)     = cos(audio_orig, text(d))
    Δ_d(a)          = sim_manip(d, a) − sim_orig(d)

"A positive Δ_d(a) indicates that the manipulation moved the audio embedding closer to the
descriptor." ``text(d)`` is ``template.format(descriptor=d)`` (the paper embeds the bare word:
``"{descriptor}"``). Several references can be measured at once; each gets its own Δ.

**Trend classes** (:func:`classify_trend`; the paper's "monotonic increase, monotonic decrease,
or peaking at a specific intensity", and "flat or inconsistent"). The sequence is
``0, Δ(a_1), ..., Δ(a_L)`` when ``include_origin`` (default: the unmanipulated clip is the point
a = 0, Δ = 0 by definition), else ``Δ(a_1), ..., Δ(a_L)``. Walk it with a reference value r
(initially the first value); for each next value v:

* ``v − r > tolerance``: a *rise*, and r ← v;
* ``r − v > tolerance``: a *fall*, and r ← v;
* otherwise (``|v − r| <= tolerance``): no change, r is kept (so changes of at most
  ``tolerance`` are ignored, but several small steps in one direction add up).

Then, from the list of rises and falls: none → ``flat``; only rises → ``up``; only falls →
``down``; one or more rises followed by one or more falls → ``peak`` (an interior maximum);
anything else (a fall then a rise = a valley, or several reversals) → ``flat`` ("inconsistent").
With the default ``tolerance = 0`` every non-zero step counts. A non-finite Δ (NaN embeddings)
makes the descriptor ``flat`` with a ``RuntimeWarning``; its Δ/slope/spearman metrics are NaN.

Per descriptor also: the least-squares ``slope`` of Δ against a and the ``spearman`` rank
correlation (scipy) of Δ with a, both over the same points as the classification (with (0, 0)
when ``include_origin``); Spearman is NaN for a constant Δ.

**Metrics** (``<effect>`` = ``eq`` / ``reverb``, ``<a>`` = ``str(float(a))``, e.g. ``0.3``, ``1.0``):

* ``n_references``; ``<effect>/n_descriptors``;
* ``<effect>/up``, ``<effect>/down``, ``<effect>/peak``, ``<effect>/flat``: how many (reference,
  descriptor) sequences fall in each class, summed over references (one reference: the counts of
  the paper's Tables 1-2);
* ``<effect>/<word>/delta@<a>``, ``/slope``, ``/spearman``, ``/class``, ``/sim_orig``: of the mean
  Δ (and mean sim_orig) over references. ``class`` is a code: up = 1, down = −1, peak = 2,
  flat = 0 (:data:`TREND_CODES`; tables show ↑ ↓ ∧ –);
* with more than one reference, the class counts and the descriptor metrics of each reference
  under ``<reference>/``, e.g. ``piano/eq/up``, ``piano/eq/warm/slope``.

**Audio.** A reference is a file (loaded with :func:`humanclap.data.audio.load_audio`), an
:class:`~humanclap.probes.cache.AudioRef`, or (``references=None``) the generated clip of
:mod:`humanclap.data.reference_audio`. The effect runs at its own ``sample_rate``; its output is
resampled to the embedder's rate if they differ, while the original is loaded directly at the
embedder's rate (both 48 kHz for CLAP). All descriptors × amounts of one (effect, reference) are
rendered in one batched effect call, only when the embedding cache lacks one of them, and the
audio is dropped once that (effect, reference) is embedded (20 descriptors × 3 levels × 10 s at
48 kHz: 115 MB). Manipulated clips are cached under
``("timbre_trend", effect, word, amount, reference, settings, id(effect object), reference AudioRef)``
-- the effect object's id because its configuration (e.g. ``max_db``) is not part of the key, so
two probes with different effects never share clips.

Caveat (as in the paper, which compares with the unprocessed file): an effect that is not the
identity at amount 0 puts a jump between the origin and the first level. The Audealize reverb
outputs ``0.45·(dry·x + wet·(h ∗ x))``, so even its driest setting is the clip about 7 dB
quieter; Δ of reverb descriptors includes that level change.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from string import Formatter
from typing import TYPE_CHECKING, Any, Hashable, Mapping, Protocol, Sequence

import numpy as np
import torch
from scipy.stats import ConstantInputWarning, spearmanr

from humanclap.backbones.embedder import Embedder
from humanclap.data.audealize import (
    DEMO_EQ_FILE,
    DEMO_REVERB_FILE,
    SETTINGS_LENGTH,
    AudealizeDescriptor,
    read_audealize_descriptors,
)
from humanclap.data.audio import FileAudioStore
from humanclap.data.manifest import require_file
from humanclap.data.reference_audio import ReferenceAudioStore
from humanclap.probes.base import ProbeResult, Table
from humanclap.probes.cache import AudioRef, EmbeddingCache, ProbeInputs, as_cache

if TYPE_CHECKING:
    from matplotlib.figure import Figure


TRENDS = ("up", "down", "peak", "flat")
TREND_CODES: dict[str, float] = {"up": 1.0, "down": -1.0, "peak": 2.0, "flat": 0.0}
"""Numeric code of each class in the ``<effect>/<word>/class`` metrics."""
TREND_SYMBOLS: dict[str, str] = {"up": "↑", "down": "↓", "peak": "∧", "flat": "–"}
"""The paper's legend (↑ monotonic up, ↓ monotonic down, – flat or inconsistent) plus ∧ for a peak."""
TREND_COLOURS = {"up": "tab:green", "down": "tab:red", "peak": "tab:orange", "flat": "0.6"}
EFFECT_LABELS = {"eq": "EQ", "reverb": "Reverb"}
PAPER_TABLES = {"eq": "Table 1", "reverb": "Table 2"}
DEFAULT_AMOUNTS = (0.3, 0.6, 1.0)


class Effect(Protocol):
    """An audio effect rendering many settings × amounts of one clip in one call.

    ``wave`` (T,) float32 at ``sample_rate``; ``settings`` (D, P) float64, one row per descriptor
    (EQ: P = 40 band values, reverb: P = 6, ``[d, g, m, f, E, wetdry]``); ``amounts`` the L
    intensities. Returns (D, L, T') float32: the clip manipulated with descriptor i at amount j.
    Implemented by ``humanclap.dsp.eq.GraphicEQ`` and ``humanclap.dsp.reverb.AudealizeReverb``.
    """

    sample_rate: int

    def __call__(self, wave: torch.Tensor, settings: torch.Tensor, amounts: Sequence[float]) -> torch.Tensor: ...


# -- the trend of one Δ sequence -------------------------------------------------------------------

def _sequence(amounts: Sequence[float] | None, deltas: Sequence[float], include_origin: bool):
    values = [float(v) for v in deltas]
    xs = None if amounts is None else [float(a) for a in amounts]
    if include_origin:
        values = [0.0, *values]
        xs = None if xs is None else [0.0, *xs]
    return xs, values


def classify_trend(deltas: Sequence[float], tolerance: float = 0.0, include_origin: bool = True) -> str:
    """``"up"``, ``"down"``, ``"peak"`` or ``"flat"`` for Δ at increasing amounts (rule: module docstring).

    Non-finite Δ: ``"flat"`` with a ``RuntimeWarning``.
    """
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    _, values = _sequence(None, deltas, include_origin)
    if len(deltas) == 0:
        raise ValueError("no Δ values to classify")
    if not all(math.isfinite(v) for v in values):
        warnings.warn(f"non-finite Δ {list(deltas)} (NaN embeddings?); classified as flat", RuntimeWarning,
                      stacklevel=2)
        return "flat"
    moves: list[int] = []
    anchor = values[0]
    for value in values[1:]:
        if value - anchor > tolerance:
            step = 1
        elif anchor - value > tolerance:
            step = -1
        else:
            continue
        anchor = value
        if not moves or moves[-1] != step:  # keep runs collapsed: [1, -1] etc.
            moves.append(step)
    return {(): "flat", (1,): "up", (-1,): "down", (1, -1): "peak"}.get(tuple(moves), "flat")


def least_squares_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Slope of the least-squares line through (xs, ys); NaN if any y is NaN or xs are constant."""
    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    dx = x - x.mean()
    denominator = float((dx * dx).sum())
    return float((dx * (y - y.mean())).sum() / denominator) if denominator > 0 else math.nan


def trend_statistics(amounts: Sequence[float], deltas: Sequence[float], tolerance: float = 0.0,
                     include_origin: bool = True) -> dict[str, Any]:
    """Δ at each amount, least-squares slope, Spearman ρ and trend class of one descriptor.

    Returns ``{"deltas": [...], "slope": float, "spearman": float, "trend": str}``.
    """
    if len(amounts) != len(deltas):
        raise ValueError(f"{len(amounts)} amounts but {len(deltas)} Δ values")
    xs, ys = _sequence(amounts, deltas, include_origin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)  # constant Δ: ρ is NaN, reported as such
        rho = float(spearmanr(xs, ys).statistic) if len(xs) >= 2 else math.nan
    return {"deltas": [float(d) for d in deltas], "slope": least_squares_slope(xs, ys), "spearman": rho,
            "trend": classify_trend(deltas, tolerance, include_origin)}


def trend_symbol(code: float) -> str:
    """Table cell of a ``class`` code: ↑ ↓ ∧ – (an unknown code as a number)."""
    for trend, value in TREND_CODES.items():
        if code == value:
            return TREND_SYMBOLS[trend]
    return f"{code:g}"


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def amount_label(amount: float) -> str:
    """How an amount appears in metric keys: ``str(float(a))``, e.g. ``0.3``, ``1.0``."""
    return str(float(amount))


# -- the probe --------------------------------------------------------------------------------------

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
    if any(isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) for a in amounts):
        raise ValueError(f"amounts must be finite numbers, got {list(amounts)}")
    values = tuple(float(a) for a in amounts)
    if values[0] <= 0 or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"amounts must be positive and strictly increasing, got {list(values)}")
    return values


def _check_template(template: str) -> str:
    if not isinstance(template, str):
        raise ValueError(f"template must be a string, got {template!r}")
    try:
        fields = [name for _, name, _, _ in Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise ValueError(f"template {template!r} is not a valid format string ({err})") from None
    if fields != ["descriptor"]:
        raise ValueError(f"template must contain {{descriptor}} exactly once and no other field, got {template!r}")
    return template


def _resolve_references(references, seconds: float, seed: int) -> dict[str, AudioRef]:
    references = _plain(references)
    if references is None:
        return {"generated": AudioRef(ReferenceAudioStore(seconds=float(seconds), seed=int(seed)), "reference")}
    if isinstance(references, (str, Path, AudioRef)):
        references = [references]
    if isinstance(references, Mapping):
        items = list(references.items())
    elif isinstance(references, Sequence):
        items = []
        for value in references:
            if isinstance(value, AudioRef):
                raise ValueError("AudioRef references need names: pass a mapping name -> AudioRef")
            items.append((Path(value).stem, value))
        stems = [name for name, _ in items]
        duplicates = sorted({s for s in stems if stems.count(s) > 1})
        if duplicates:
            raise ValueError(f"reference files share the name(s) {duplicates}; pass a mapping name -> path")
    else:
        raise ValueError(f"references must be null, a path, a list of paths or a mapping name -> path, got {references!r}")
    if not items:
        raise ValueError("references is empty (null = the generated default reference)")
    resolved: dict[str, AudioRef] = {}
    for name, value in items:
        if not isinstance(name, str) or not name or "/" in name or name in SETTINGS_LENGTH:
            raise ValueError(f"reference name {name!r} must be a non-empty string without '/' and not "
                             f"an effect name ({list(SETTINGS_LENGTH)})")
        if isinstance(value, AudioRef):
            resolved[name] = value
        elif isinstance(value, (str, Path)):
            resolved[name] = AudioRef(FileAudioStore(), str(require_file(Path(value).expanduser()).resolve()))
        else:
            raise ValueError(f"reference '{name}': expected a path or an AudioRef, got {value!r}")
    return resolved


class TimbreTrendProbe:
    """Δ_d(a) trends of EQ and reverb descriptors (timbre-semantics §2.3; see the module docstring).

    Args:
        descriptors: effect name (``"eq"``, ``"reverb"``) -> its descriptors, e.g. from
            :func:`humanclap.data.audealize.read_audealize_descriptors`; at least one per effect,
            settings of the effect's length (EQ 40, reverb 6), unique words without ``/``.
        effects: effect name -> :class:`Effect` rendering it; the same names as ``descriptors``.
        references: ``None`` = the generated clip (:mod:`humanclap.data.reference_audio`); a
            path, a list of paths (named by file stem) or a mapping name -> path or ``AudioRef``.
            A missing file is a ``DataError`` naming it.
        amounts: the intensities a, positive and strictly increasing (paper: 0.3, 0.6, 1.0); at
            most 1 when a reverb is measured (its wet/dry mix).
        template: the text of a descriptor, with ``{descriptor}`` exactly once.
        tolerance: changes of Δ of at most this much count as no change (see the module docstring).
        include_origin: the unmanipulated point (a = 0, Δ = 0) starts the sequence that is
            classified and fitted.
        batch_size: inputs per model call when ``run`` gets an ``Embedder``.
        reference_seconds, reference_seed: the generated reference (``references=None``).

    Use :meth:`from_files` to build it from Audealize files (the Hydra entry point).
    """

    name = "timbre_trend"

    def __init__(
        self,
        descriptors: Mapping[str, Sequence[AudealizeDescriptor]],
        effects: Mapping[str, Effect],
        references=None,
        amounts: Sequence[float] = DEFAULT_AMOUNTS,
        template: str = "{descriptor}",
        tolerance: float = 0.0,
        include_origin: bool = True,
        batch_size: int = 32,
        reference_seconds: float = 4.0,
        reference_seed: int = 0,
    ) -> None:
        if not descriptors:
            raise ValueError(f"no effects given: descriptors must map some of {list(SETTINGS_LENGTH)} to descriptors")
        self.descriptors: dict[str, list[AudealizeDescriptor]] = {}
        for effect, items in descriptors.items():
            if effect not in SETTINGS_LENGTH:
                raise ValueError(f"unknown effect {effect!r}; known: {list(SETTINGS_LENGTH)}")
            items = list(items)
            if not items:
                raise ValueError(f"effect '{effect}': at least one descriptor is needed")
            seen: set[str] = set()
            for d in items:
                if len(d.settings) != SETTINGS_LENGTH[effect]:
                    raise ValueError(f"effect '{effect}', descriptor '{d.word}': {len(d.settings)} settings, "
                                     f"expected {SETTINGS_LENGTH[effect]} (is it a {d.effect} descriptor?)")
                if "/" in d.word or not d.word:
                    raise ValueError(f"effect '{effect}': descriptor word {d.word!r} must be non-empty without '/'")
                if d.word in seen:
                    raise ValueError(f"effect '{effect}': duplicate descriptor '{d.word}'")
                seen.add(d.word)
            self.descriptors[effect] = items
        if set(effects) != set(self.descriptors):
            raise ValueError(f"effects {sorted(effects)} must match the effects of the descriptors "
                             f"{sorted(self.descriptors)}")
        for effect, implementation in effects.items():
            rate = getattr(implementation, "sample_rate", None)
            if not callable(implementation) or isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
                raise ValueError(f"effect '{effect}' must be callable with a positive integer sample_rate, "
                                 f"got {implementation!r}")
        self.effects = dict(effects)
        self.amounts = _check_amounts(amounts)
        if "reverb" in self.descriptors and self.amounts[-1] > 1:
            raise ValueError(f"amounts {list(self.amounts)}: the reverb's amount is its wet/dry mix, at most 1")
        if len(self.amounts) + bool(include_origin) < 2:
            raise ValueError("a trend needs at least two points: give two amounts or include_origin=True")
        self.template = _check_template(template)
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
                or tolerance < 0:
            raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
        self.tolerance = float(tolerance)
        self.include_origin = bool(include_origin)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self.references = _resolve_references(references, reference_seconds, reference_seed)

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
        amounts: Sequence[float] = DEFAULT_AMOUNTS,
        template: str = "{descriptor}",
        tolerance: float = 0.0,
        include_origin: bool = True,
        max_db: float = 5.0,
        sample_rate: int = 48_000,
        batch_size: int = 32,
        reference_seconds: float = 4.0,
        reference_seed: int = 0,
        pairs: Any = None,
    ) -> "TimbreTrendProbe":
        """The probe on Audealize descriptor files with the Audealize EQ and reverb (``humanclap.dsp``).

        ``eq_descriptors`` / ``reverb_descriptors``: ``eqdescriptors.json`` /
        ``reverbdescriptors.json`` (``None`` = the shipped demo files, our own illustrative
        settings); ``top_n``, ``lang`` and ``eq_words`` / ``reverb_words`` select descriptors as in
        :func:`~humanclap.data.audealize.read_audealize_descriptors`. ``effects`` names the
        effects to run (default both). ``max_db`` is the EQ's gain at amount 1
        (``GraphicEQ(max_db=...)``), ``sample_rate`` the effects' rate. ``pairs`` is accepted
        and ignored: training builds every probe with the validation pairs, but this probe brings
        its own data (descriptors and references).
        """
        del pairs  # this probe brings its own data
        effects = list(_plain(effects))
        unknown = [e for e in effects if e not in SETTINGS_LENGTH]
        if unknown or not effects:
            raise ValueError(f"effects must be a non-empty list of {list(SETTINGS_LENGTH)}, got {effects}")
        files = {"eq": eq_descriptors or DEMO_EQ_FILE, "reverb": reverb_descriptors or DEMO_REVERB_FILE}
        words = {"eq": _plain(eq_words), "reverb": _plain(reverb_words)}
        descriptors = {}
        for effect in effects:
            descriptors[effect] = read_audealize_descriptors(files[effect], top_n=top_n, lang=lang, words=words[effect])
            length = len(descriptors[effect][0].settings)
            if length != SETTINGS_LENGTH[effect]:
                raise ValueError(f"{files[effect]} holds {descriptors[effect][0].effect} descriptors "
                                 f"({length} settings), not {effect} ({SETTINGS_LENGTH[effect]})")
        return cls(descriptors, default_effects(effects, max_db=max_db, sample_rate=sample_rate),
                   references=references, amounts=amounts, template=template, tolerance=tolerance,
                   include_origin=include_origin, batch_size=batch_size,
                   reference_seconds=reference_seconds, reference_seed=reference_seed)

    # -- inputs ---------------------------------------------------------------------------------
    def prompt(self, word: str) -> str:
        """text(d): the template filled with the descriptor."""
        return self.template.format(descriptor=word)

    def inputs(self) -> ProbeInputs:
        """The references (originals) and every descriptor prompt, once each.

        The manipulated clips are generated in ``run`` (``EmbeddingCache.waves``).
        """
        texts = [self.prompt(d.word) for items in self.descriptors.values() for d in items]
        return ProbeInputs(audio=list(dict.fromkeys(self.references.values())), texts=list(dict.fromkeys(texts)))

    def keys(self, effect: str, reference: str) -> list[Hashable]:
        """Cache keys of the manipulated clips of one (effect, reference): descriptor-major."""
        implementation, ref = self.effects[effect], self.references[reference]
        return [("timbre_trend", effect, d.word, amount, reference, d.settings, id(implementation), ref)
                for d in self.descriptors[effect] for amount in self.amounts]

    # -- audio ----------------------------------------------------------------------------------
    def render(self, effect: str, reference: str, sample_rate: int) -> np.ndarray:
        """All descriptors × amounts of one reference through one effect call: (D, L, T) float32
        at ``sample_rate``."""
        implementation, ref = self.effects[effect], self.references[reference]
        items = self.descriptors[effect]
        wave = np.asarray(ref.store.load(ref.key, implementation.sample_rate), dtype=np.float32)
        settings = torch.tensor([d.settings for d in items], dtype=torch.float64)
        with torch.no_grad():
            out = implementation(torch.from_numpy(np.ascontiguousarray(wave)), settings, list(self.amounts))
        out = torch.as_tensor(out).detach().to(device="cpu", dtype=torch.float32)
        expected = (len(items), len(self.amounts))
        if out.dim() != 3 or tuple(out.shape[:2]) != expected or out.shape[2] == 0:
            raise ValueError(f"effect '{effect}' returned shape {tuple(out.shape)}, expected "
                             f"({expected[0]}, {expected[1]}, T) for {expected[0]} descriptors x {expected[1]} amounts")
        if implementation.sample_rate != sample_rate:
            from torchaudio.functional import resample

            out = resample(out, int(implementation.sample_rate), int(sample_rate))
        finite = torch.isfinite(out).flatten(2).all(dim=2)
        if not bool(finite.all()):
            i, j = (int(v) for v in torch.nonzero(~finite)[0])
            raise ValueError(f"effect '{effect}' produced non-finite audio for '{items[i].word}' at amount "
                             f"{self.amounts[j]:g} on reference '{reference}'")
        return out.numpy()

    # -- measurement ----------------------------------------------------------------------------
    def deltas(self, source: EmbeddingCache | Embedder) -> dict[tuple[str, str], dict[str, np.ndarray]]:
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
                    manipulated = cache.waves(keys, make).double().view(len(items), len(self.amounts), -1)
                finally:
                    memo.clear()  # under DDP this rank embedded only its share: drop the rest
                sim_manip = (manipulated * text[:, None, :]).sum(dim=-1)
                sim_orig = text @ original
                out[(reference, effect)] = {"sim_manip": sim_manip.numpy(), "sim_orig": sim_orig.numpy(),
                                            "delta": (sim_manip - sim_orig[:, None]).numpy()}
        return out

    def run(self, source: EmbeddingCache | Embedder) -> ProbeResult:
        measured = self.deltas(source)
        references = list(self.references)
        metrics: dict[str, float] = {"n_references": float(len(references))}
        mean_deltas: dict[str, dict[str, np.ndarray]] = {}
        mean_trends: dict[str, dict[str, str]] = {}
        for effect, items in self.descriptors.items():
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
                    metrics.update({f"{reference}/{effect}/{t}": float(n) for t, n in ref_counts.items()})
                    metrics.update({f"{reference}/{k}": v for k, v in self._flatten(effect, items, stats).items()})
            metrics.update({f"{effect}/{t}": float(n) for t, n in counts.items()})
            delta = np.mean([measured[(r, effect)]["delta"] for r in references], axis=0)
            sim_orig = np.mean([measured[(r, effect)]["sim_orig"] for r in references], axis=0)
            stats = self._descriptor_metrics(effect, items, delta, sim_orig)
            metrics.update(self._flatten(effect, items, stats))
            mean_deltas[effect] = {d.word: delta[i] for i, d in enumerate(items)}
            mean_trends[effect] = {d.word: stats[d.word]["trend"] for d in items}
        figures = {f"{effect}_trends": (lambda e=effect: trend_figure(
                       f"{EFFECT_LABELS[e]}: Δ vs amount" + (f" (mean of {len(references)} references)"
                                                             if len(references) > 1 else ""),
                       self.amounts, mean_deltas[e], mean_trends[e], self.include_origin))
                   for effect in self.descriptors}
        return ProbeResult(metrics, tables=self.tables(), figures=figures)

    def _descriptor_metrics(self, effect, items, delta: np.ndarray, sim_orig: np.ndarray) -> dict[str, dict]:
        stats = {}
        for i, d in enumerate(items):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="non-finite Δ")
                stats[d.word] = trend_statistics(self.amounts, delta[i], self.tolerance, self.include_origin)
            stats[d.word]["sim_orig"] = float(sim_orig[i])
            if not np.isfinite(delta[i]).all():
                warnings.warn(f"timbre_trend: non-finite Δ for {effect} '{d.word}' (NaN embeddings?); "
                              "classified as flat", RuntimeWarning, stacklevel=3)
        return stats

    def _flatten(self, effect: str, items, stats: dict[str, dict]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for d in items:
            s, prefix = stats[d.word], f"{effect}/{d.word}"
            for amount, value in zip(self.amounts, s["deltas"]):
                metrics[f"{prefix}/delta@{amount_label(amount)}"] = value
            metrics[f"{prefix}/slope"] = s["slope"]
            metrics[f"{prefix}/spearman"] = s["spearman"]
            metrics[f"{prefix}/class"] = TREND_CODES[s["trend"]]
            metrics[f"{prefix}/sim_orig"] = s["sim_orig"]
        return metrics

    # -- presentation ---------------------------------------------------------------------------
    def tables(self) -> dict[str, Table]:
        """Class counts per effect (Tables 1-2 summarised) and each effect's descriptor trends."""
        n_refs = len(self.references)
        rule = (f"Δ_d(a) = cos(audio_manip(d, a), text(d)) − cos(audio_orig, text(d)) at a = "
                f"{', '.join(f'{a:g}' for a in self.amounts)}"
                + (" with (0, 0) prepended" if self.include_origin else "")
                + f"; a change counts if larger than {self.tolerance:g}. ↑ only rises, ↓ only falls, "
                  "∧ rises then falls, – flat or inconsistent.")
        counts = Table(
            [column for e in self.descriptors
             for column in [*((f"{EFFECT_LABELS[e]} {TREND_SYMBOLS[t]}", f"{e}/{t}") for t in TRENDS),
                            (f"{EFFECT_LABELS[e]} n", f"{e}/n_descriptors")]],
            note=rule + (f" Counts summed over {n_refs} references." if n_refs > 1 else ""),
            formats={t: _count for t in TRENDS})
        tables = {"Timbre trends — class counts (timbre-semantics Tables 1-2)": counts}
        for effect, items in self.descriptors.items():
            tables[f"{EFFECT_LABELS[effect]} descriptor trends (timbre-semantics {PAPER_TABLES[effect]})"] = Table(
                [(d.word, f"{effect}/{d.word}/class") for d in items],
                note="Class of the Δ sequence" + (f" averaged over {n_refs} references" if n_refs > 1 else "")
                     + "; slopes and Spearman ρ are the `/slope`, `/spearman` metrics.",
                formats={"class": trend_symbol})
        return tables


def default_effects(names: Sequence[str] = ("eq", "reverb"), max_db: float = 5.0,
                    sample_rate: int = 48_000) -> dict[str, Effect]:
    """The Audealize effects of ``humanclap.dsp``: ``GraphicEQ(sample_rate, max_db)``, ``AudealizeReverb(sample_rate)``."""
    effects: dict[str, Effect] = {}
    for name in names:
        if name == "eq":
            from humanclap.dsp.eq import GraphicEQ

            effects[name] = GraphicEQ(sample_rate=sample_rate, max_db=max_db)
        elif name == "reverb":
            from humanclap.dsp.reverb import AudealizeReverb

            effects[name] = AudealizeReverb(sample_rate=sample_rate)
        else:
            raise ValueError(f"unknown effect {name!r}; known: {list(SETTINGS_LENGTH)}")
    return effects


def trend_figure(title: str, amounts: Sequence[float], deltas: Mapping[str, Sequence[float]],
                 trends: Mapping[str, str], include_origin: bool = True) -> "Figure":
    """Δ_d(a) against the amount a, one line per descriptor coloured by its trend class."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=(6.0, 4.2), layout="constrained")
    axes = figure.subplots()
    xs = [0.0, *amounts] if include_origin else list(amounts)
    for word, values in deltas.items():
        ys = [0.0, *[float(v) for v in values]] if include_origin else [float(v) for v in values]
        colour = TREND_COLOURS[trends[word]]
        axes.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, alpha=0.85, color=colour)
        axes.annotate(word, (xs[-1], ys[-1]), xytext=(4, 0), textcoords="offset points", fontsize="x-small",
                      va="center", color=colour)
    axes.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
    span = xs[-1] - xs[0] or 1.0
    axes.set_xlim(xs[0] - 0.03 * span, xs[-1] + 0.25 * span)  # room for the word labels
    axes.set_xticks(xs)
    axes.set(xlabel="effect amount a", ylabel="Δ_d(a) = sim_manip − sim_orig", title=title)
    present = [t for t in TRENDS if t in trends.values()]
    axes.legend([Line2D([], [], color=TREND_COLOURS[t], marker="o", markersize=3) for t in present],
                [f"{TREND_SYMBOLS[t]} {t} ({list(trends.values()).count(t)})" for t in present],
                fontsize="small", loc="best")
    return figure
