"""Build the probes a config names (``recipes/probes/*.yaml``) for the run's data: rated pairs, or
labelled audio (``humanclap.evaluate data=esc50``)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate

from humanclap.data.audio_check import require_probe_audio
from humanclap.data.pairs import RatedPairs
from humanclap.data.readers.labelled_audio import LabelledAudio
from humanclap.errors import HumanClapError


class ProbeConfigError(ValueError):
    """A probe that cannot be built from its config and data."""


class ProbeDataError(ProbeConfigError, HumanClapError):
    """The run's data is not the kind a probe measures (rated pairs vs labelled audio); the
    command line prints the message alone."""


def _takes(spec: Mapping[str, Any], argument: str) -> bool:
    """Whether the config gives no ``argument`` and its ``_target_`` takes one."""
    if spec.get(argument) is not None or "_target_" not in spec:
        return False
    return argument in inspect.signature(get_object(spec["_target_"])).parameters


def measures_run_pairs(spec: Mapping[str, Any]) -> bool:
    """Whether a probe config measures the run's pairs: its ``_target_`` takes ``pairs`` and the config
    gives none of its own. A probe that brings its own data (timbre_trend, zero_shot_instruments) takes none."""
    return _takes(spec, "pairs")


def measures_run_labels(spec: Mapping[str, Any]) -> bool:
    """Whether a probe config measures the run's labelled audio: its ``_target_`` takes ``data`` and
    the config gives none (``zero_shot_classification`` with ``data: null``)."""
    return _takes(spec, "data")


def build_probes(
    probes_cfg: Mapping[str, Any] | None, default_data: RatedPairs | LabelledAudio | None
) -> dict[str, Any]:
    """Instantiate each probe; one that :func:`measures_run_pairs` gets ``default_data`` if it is
    rated pairs, one that :func:`measures_run_labels` gets it if it is labelled audio.

    In training ``default_data`` is the validation split, in ``humanclap.evaluate`` the chosen
    evaluation data. Errors name the probe and say what went wrong with its data or config, and
    what to pass when the run's data is not the kind the probe measures; a probe whose audio files
    are missing is refused here, before any model is loaded.
    """
    probes = {}
    for name, spec in (probes_cfg or {}).items():
        try:
            # _partial_ then call: instantiate(spec, pairs=...) would merge the object into the config.
            if measures_run_pairs(spec):
                if isinstance(default_data, LabelledAudio):
                    raise ProbeDataError(
                        f"probe '{name}' measures rated pairs (audio, text, score), but the run's "
                        f"data {default_data.name} is labelled audio: evaluate it on rated pairs "
                        f"(e.g. data=relate) or measure the labelled audio with "
                        f"probes=[zero_shot_classification]"
                    )
                probes[name] = instantiate(spec, _partial_=True)(pairs=default_data)
            elif measures_run_labels(spec):
                if not isinstance(default_data, LabelledAudio):
                    what = getattr(default_data, "name", None)
                    raise ProbeDataError(
                        f"probe '{name}' classifies labelled audio, but the run's data"
                        f"{f' {what}' if what else ''} is not labelled audio: give it its own with "
                        f"probes.{name}.data=<ESC-50 folder | UrbanSound8K folder | TinySOL folder "
                        f"| labels .csv | synthetic>, or evaluate labelled data (data=esc50 "
                        f"data.root=<folder> split=null)"
                    )
                probes[name] = instantiate(spec, _partial_=True)(data=default_data)
            else:
                probes[name] = instantiate(spec)
        except ProbeDataError:
            raise
        except (InstantiationException, ValueError, FileNotFoundError, ImportError) as error:
            cause = (
                error.__cause__
                if isinstance(error, InstantiationException) and error.__cause__
                else error
            )
            raise ProbeConfigError(f"probe '{name}' cannot be built: {cause}") from error
    require_probe_audio(probes)
    return probes
