"""Modules that moved in the 2026-12 layout (issue 14), so a config naming an old ``_target_`` gets the new one.

``humanclap.probes.relevance.RelevanceProbe``, ``humanclap.probes.retrieval.RetrievalProbe``,
``humanclap.probes.zero_shot.ZeroShotInstrumentProbe`` and ``humanclap.data.synthetic.synthetic_pairs``
still work as written (their packages re-export them); every other old path fails with
:func:`moved_target_error`'s message naming the new one.
"""

from __future__ import annotations

import importlib
import re

from humanclap.errors import HumanClapError

MOVED_MODULES = {
    "humanclap.callbacks": "humanclap.lit.callbacks",
    "humanclap.data.audealize": "humanclap.data.readers.audealize",
    "humanclap.data.captions": "humanclap.data.readers.captions",
    "humanclap.data.dataset": "humanclap.lit.dataset",
    "humanclap.data.instrument_ontology": "humanclap.data.readers.instrument_ontology",
    "humanclap.data.labelled_audio": "humanclap.data.readers.labelled_audio",
    "humanclap.data.manifest": "humanclap.data.readers.manifest",
    "humanclap.data.nv_text": "humanclap.data.transforms.nv_text",
    "humanclap.data.order_synthesis": "humanclap.data.synthetic.order",
    "humanclap.data.reference_audio": "humanclap.data.synthetic.reference_clip",
    "humanclap.data.relate": "humanclap.data.readers.relate",
    "humanclap.data.synthetic": "humanclap.data.synthetic.sounds",
    "humanclap.data.synthetic_events": "humanclap.data.synthetic.events",
    "humanclap.data.synthetic_instruments": "humanclap.data.synthetic.instruments",
    "humanclap.data.synthetic_timbre": "humanclap.data.synthetic.timbre",
    "humanclap.data.timbre": "humanclap.data.readers.timbre_ratings",
    "humanclap.launch": "humanclap.runs.launch",
    "humanclap.loggers": "humanclap.lit.loggers",
    "humanclap.model_card": "humanclap.runs.model_card",
    "humanclap.probes.as_then_swap": "humanclap.probes.ordering.as_then_swap",
    "humanclap.probes.bat": "humanclap.probes.ordering.bat",
    "humanclap.probes.clause_swap": "humanclap.probes.ordering.clause_swap",
    "humanclap.probes.ordering": "humanclap.probes.ordering.swap_retrieval",
    "humanclap.probes.relevance": "humanclap.probes.relevance.probe",
    "humanclap.probes.relevance_figures": "humanclap.probes.relevance.figures",
    "humanclap.probes.retrieval": "humanclap.probes.retrieval.probe",
    "humanclap.probes.text_sensitivity": "humanclap.probes.ordering.text_sensitivity",
    "humanclap.probes.timbre_correlation": "humanclap.probes.timbre.correlation",
    "humanclap.probes.timbre_trend": "humanclap.probes.timbre.trend",
    "humanclap.probes.timbre_trend_figures": "humanclap.probes.timbre.trend_figures",
    "humanclap.probes.trend_effects": "humanclap.probes.timbre.trend_effects",
    "humanclap.probes.trend_references": "humanclap.probes.timbre.trend_references",
    "humanclap.probes.trend_rule": "humanclap.probes.timbre.trend_rule",
    "humanclap.probes.zero_shot": "humanclap.probes.zero_shot.probe",
    "humanclap.probes.zero_shot_figures": "humanclap.probes.zero_shot.figures",
    "humanclap.probes.zero_shot_metrics": "humanclap.probes.zero_shot.metrics",
    "humanclap.resume": "humanclap.runs.resume",
    "humanclap.run_lock": "humanclap.runs.run_lock",
    "humanclap.sweep_results": "humanclap.runs.sweep_results",
}
"""Old module -> new module."""

MOVED_CLASSES = {
    "humanclap.runs.resume.RandomState": "humanclap.lit.callbacks.RandomState",
    "humanclap.runs.launch.SameHyperparameters": "humanclap.lit.callbacks.SameHyperparameters",
}

_LOCATING = re.compile(r"Error (?:locating target|loading) '([\w.]+)'")


def new_target(target: str) -> str | None:
    """Where ``target`` (``module.attribute``) lives now, or None if it did not move (or is mistyped)."""
    for old, new in sorted(MOVED_MODULES.items(), key=lambda item: -len(item[0])):
        if target.startswith(old + ".") and not target.startswith(new + "."):
            moved = MOVED_CLASSES.get(new + target[len(old) :], new + target[len(old) :])
            module, _, name = moved.rpartition(".")
            try:
                exists = hasattr(importlib.import_module(module), name)
            except ImportError:
                exists = False
            return moved if exists else None
    return None


def moved_target_error(error: BaseException) -> HumanClapError | None:
    """A plain error for Hydra's "Error locating target" of a ``_target_`` that moved, else None."""
    found = _LOCATING.search(str(error))
    if found is None or (new := new_target(found.group(1))) is None:
        return None
    key = re.search(r"full_key: ([\w.\[\]]+)", str(error))
    where = f" (config key {key.group(1)}._target_)" if key else ""
    return HumanClapError(f"_target_ '{found.group(1)}'{where} has moved: write _target_: {new}")
