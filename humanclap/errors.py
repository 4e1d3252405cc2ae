"""The error family for bad user input: files, rows, scores, configs and checkpoints.

Every ``HumanClapError`` message is a complete sentence that names the offending file, line, key or
value, and any hint in it works as printed. The command-line entry points print such errors
without a traceback and exit with status 1 (:func:`humanclap.cli.report_user_errors`); anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class HumanClapError(Exception):
    """A problem with what the user gave us, explained in the message."""


class NonFiniteError(HumanClapError, ValueError):
    """NaN or infinite values where numbers must be finite: a diverged run's loss, weights or embeddings."""
