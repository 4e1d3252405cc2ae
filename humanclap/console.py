"""What a person sees while ``humanclap.train`` or ``humanclap.evaluate`` runs.

The console shows each message as one plain line, written above the progress bar rather than into
it (:class:`ProgressAwareHandler`), one compact line per probe after every epoch
(:func:`probe_line`) and, last, the run's summary. The Hydra logging config
``recipes/hydra/job_logging/humanclap.yaml`` also writes every message with its time to
``<output_dir>/<job>.log``, and sends the full probe tables (logger :data:`TABLES`) there only.

:func:`prepare_console` silences, each at its source, the library messages that say nothing
about the run. Nothing else is filtered: humanclap's own warnings and every other library warning
still reach the console.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Mapping
from typing import Any

from tqdm import tqdm

TABLES = "humanclap.tables"
"""Logger of the full probe tables: the log file (and report), not the console."""

# (label, metric key) shown per epoch; probes not listed show their first table without counts.
KEY_METRICS: dict[str, list[tuple[str, str]]] = {
    "relevance": [("srcc", "srcc"), ("lcc", "lcc"), ("mse", "mse")],
    "retrieval": [
        ("t2a R@1", "t2a/R@1"),
        ("t2a MRR", "t2a/MRR"),
        ("a2t R@1", "a2t/R@1"),
        ("a2t MRR", "a2t/MRR"),
    ],
}
MAX_FALLBACK_METRICS = 6


class ProgressAwareHandler(logging.Handler):
    """Writes each record as a line above the progress bar, never into it.

    The line goes through ``tqdm.write`` (a tqdm bar is cleared, the line printed and the bar drawn
    again below it) to the *current* ``sys.stdout`` / ``sys.stderr``: while Lightning's Rich progress
    bar is live, that is Rich's proxy, which prints the line above the bar.
    """

    def __init__(self, stream: str = "stdout", level: int = logging.NOTSET) -> None:
        super().__init__(level)
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"ProgressAwareHandler writes to stdout or stderr, not {stream!r}")
        self.stream_name = stream

    @property
    def stream(self):
        return getattr(sys, self.stream_name)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.stream.flush()
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)


class ConsoleFormatter(logging.Formatter):
    """Information as the bare message; warnings and errors prefixed ``warning:`` / ``error:`` (the
    CLI's own error style); a Python warning (``logging.captureWarnings``) as Python prints it."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).rstrip()  # Python warnings end with a newline of their own
        if record.levelno < logging.WARNING or record.name == "py.warnings":
            return text
        return f"{record.levelname.lower()}: {text}"


def prepare_console() -> None:
    """Silence the third-party messages of a default run that say nothing about it, each at its source:

    * Lightning's advertisement for its cloud logger and its device inventory (a GPU that is there but
      unused still gets Lightning's own warning),
    * the "Loading weights" / "Writing model shards" bars of transformers' from/save_pretrained
      (download progress bars are kept),
    * a torch deprecation that Lightning's own ``_pytree`` module triggers on every step.

    and route Python warnings through logging: printed above the progress bar and kept in the log file.
    """
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropMessages) for f in rank_zero.filters):
        rank_zero.addFilter(
            _DropMessages(
                "💡 Tip: For seamless cloud logging", "GPU available: ", "TPU available: "
            )
        )
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_tqdm_hook(_without_weight_bars)
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    logging.captureWarnings(True)


class _DropMessages(logging.Filter):
    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


_WEIGHT_BARS = ("Loading weights", "Writing model shards")


def _without_weight_bars(factory, args: tuple, kwargs: dict[str, Any]):
    if kwargs.get("desc") in _WEIGHT_BARS:
        kwargs = {**kwargs, "disable": True}
    return factory(*args, **kwargs)


def key_metrics(
    probe: str, metrics: Mapping[str, float], tables: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """(label, value text) of a probe's headline metrics: :data:`KEY_METRICS`, else the columns of
    its first table that are not counts (at most :data:`MAX_FALLBACK_METRICS`)."""
    if probe in KEY_METRICS:
        return [
            (label, _number(metrics[key])) for label, key in KEY_METRICS[probe] if key in metrics
        ]
    table = next(iter(tables.values()), None)
    if table is None:
        return []
    shown = [(label, key) for label, key in table.columns if key in metrics and not _is_count(key)]
    return [
        (label, table._format(key, metrics[key], 3)) for label, key in shown[:MAX_FALLBACK_METRICS]
    ]


def probe_line(when: str, probe: str, values: list[tuple[str, str]], probe_width: int = 0) -> str:
    """``epoch 3   relevance  srcc 0.312  lcc 0.290  mse 0.081``."""
    return f"{when:<9} {probe:<{probe_width}}  " + "  ".join(
        f"{label} {value}" for label, value in values
    )


def _is_count(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name == "n" or name.startswith("n_")


def _number(value: float) -> str:
    return f"{value:.3f}"
