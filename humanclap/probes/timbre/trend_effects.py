"""The audio effects of the timbre trend probe: EQ and reverb rendered in one batched call (timbre-semantics §2.3).

§2.3 manipulates the reference with "a 40-band parametric equalizer" whose band gains are scaled
by the amount, and with a reverberator whose wet/dry ratio is the amount; both reproduce the
Audealize demo (``humanclap.dsp``). An effect renders all descriptors × amounts of one clip at
its own ``sample_rate``; :func:`render_effect` resamples the whole batch to the embedder's rate.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Hashable, Sequence
from typing import Protocol

import numpy as np
import torch

from humanclap.data.readers.audealize import SETTINGS_LENGTH


class Effect(Protocol):
    """An audio effect rendering many settings × amounts of one clip in one call.

    ``wave`` (T,) float32 at ``sample_rate``; ``settings`` (D, P) float64, one row per descriptor
    (EQ: P = 40 band values, reverb: P = 6, ``[d, g, m, f, E, wetdry]``); ``amounts`` the L
    intensities. Returns (D, L, T') float32: the clip manipulated with descriptor i at amount j.
    Implemented by ``humanclap.dsp.eq.GraphicEQ`` and ``humanclap.dsp.reverb.AudealizeReverb``.
    """

    sample_rate: int

    def __call__(
        self, wave: torch.Tensor, settings: torch.Tensor, amounts: Sequence[float]
    ) -> torch.Tensor: ...


def default_effects(
    names: Sequence[str] = ("eq", "reverb"), max_db: float = 5.0, sample_rate: int = 48_000
) -> dict[str, Effect]:
    """The Audealize effects of ``humanclap.dsp``: ``GraphicEQ(sample_rate, max_db)``,
    ``AudealizeReverb(sample_rate)``."""
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


def check_effect(name: str, effect) -> Effect:
    """``effect`` if it is callable with a positive integer ``sample_rate``; else a ValueError naming it."""
    rate = getattr(effect, "sample_rate", None)
    if (
        not callable(effect)
        or isinstance(rate, bool)
        or not isinstance(rate, (int, np.integer))
        or rate <= 0
    ):
        raise ValueError(
            f"effect '{name}' must be callable with a positive integer sample_rate, got {effect!r}"
        )
    return effect


_STATE = object()
"""What :func:`_configuration_value` returns for a value that is not configuration."""


def _configuration_value(value) -> Hashable:
    """A hashable, process-independent form of one attribute value, or ``_STATE``."""
    if value is None or isinstance(value, (bool, str, numbers.Number)):
        return value
    if isinstance(value, (torch.Tensor, np.ndarray)):
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        return ("array", str(array.dtype), array.shape, tuple(array.ravel().tolist()))
    if isinstance(value, tuple):
        parts = tuple(_configuration_value(v) for v in value)
        return _STATE if any(p is _STATE for p in parts) else parts
    return _STATE


def effect_identity(effect: Effect) -> tuple[str, str, str]:
    """A cache key for what an effect computes: (module, class, SHA-256 of its configuration).

    The configuration is every public attribute holding a number, string, None, tensor / array or
    a tuple of those (e.g. ``GraphicEQ``'s ``sample_rate``, ``max_db``, ``q``, ``centres_hz``,
    ``backend``). Lists, dicts and other objects are treated as state, not configuration (a fake
    that records its calls in a list keeps one identity). Unlike ``id(effect)`` this is the same
    in every process and DDP rank, is never reused by another object after garbage collection,
    and lets equally configured effects share their clips. The digest keeps keys short to hash.
    """
    configuration = []
    for name, raw in sorted(vars(effect).items()) if hasattr(effect, "__dict__") else []:
        value = _configuration_value(raw)
        if not name.startswith("_") and value is not _STATE:
            configuration.append((name, value))
    digest = hashlib.sha256(repr(configuration).encode()).hexdigest()
    return (type(effect).__module__, type(effect).__qualname__, digest)


def render_effect(
    name: str,
    effect: Effect,
    wave: np.ndarray,
    settings: Sequence[Sequence[float]],
    amounts: Sequence[float],
    sample_rate: int,
) -> torch.Tensor:
    """All D settings × L amounts of one clip in one effect call: (D, L, T) float32 at ``sample_rate``.

    ``wave`` is at the effect's rate; the whole batch is resampled at once if the rates differ.
    A wrong output shape is a ValueError; non-finite samples are left to the caller to report.
    """
    rows = torch.tensor([list(s) for s in settings], dtype=torch.float64)
    with torch.no_grad():
        out = effect(
            torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), rows, list(amounts)
        )
    out = torch.as_tensor(out).detach().to(device="cpu", dtype=torch.float32)
    expected = (len(rows), len(amounts))
    if out.dim() != 3 or tuple(out.shape[:2]) != expected or out.shape[2] == 0:
        raise ValueError(
            f"effect '{name}' returned shape {tuple(out.shape)}, expected "
            f"({expected[0]}, {expected[1]}, T) for {expected[0]} descriptors x {expected[1]} amounts"
        )
    if effect.sample_rate != sample_rate:
        from torchaudio.functional import resample

        out = resample(out, int(effect.sample_rate), int(sample_rate))
    return out
