"""Build the probes a config names (``recipes/probes/*.yaml``) for a given set of pairs."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate

from humanclap.data.audio_check import require_probe_audio
from humanclap.data.pairs import RatedPairs


class ProbeConfigError(ValueError):
    """A probe that cannot be built from its config and data."""


def measures_run_pairs(spec: Mapping[str, Any]) -> bool:
    """Whether a probe config measures the run's pairs: its ``_target_`` takes ``pairs`` and the config
    gives none of its own. A probe that brings its own data (timbre_trend, zero_shot_instruments) takes none."""
    if spec.get("pairs") is not None or "_target_" not in spec:
        return False
    return "pairs" in inspect.signature(get_object(spec["_target_"])).parameters


def build_probes(probes_cfg: Mapping[str, Any] | None, default_pairs: RatedPairs) -> dict[str, Any]:
    """Instantiate each probe; one that :func:`measures_run_pairs` gets ``default_pairs``.

    In training ``default_pairs`` is the validation split, in ``humanclap.evaluate`` the chosen
    evaluation split. Errors name the probe and say what went wrong with its data or config; a
    probe whose audio files are missing is refused here, before any model is loaded.
    """
    probes = {}
    for name, spec in (probes_cfg or {}).items():
        try:
            if measures_run_pairs(spec):
                # _partial_ then call: instantiate(spec, pairs=...) would merge the object into the config.
                probes[name] = instantiate(spec, _partial_=True)(pairs=default_pairs)
            else:
                probes[name] = instantiate(spec)
        except (InstantiationException, ValueError, FileNotFoundError, ImportError) as error:
            cause = (
                error.__cause__
                if isinstance(error, InstantiationException) and error.__cause__
                else error
            )
            raise ProbeConfigError(f"probe '{name}' cannot be built: {cause}") from error
    require_probe_audio(probes)
    return probes
