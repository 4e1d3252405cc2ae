"""What the command-line entry points share: user errors as one sentence, not a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

from humanclap.errors import HumanClapError
from humanclap.moved import moved_target_error

Task = TypeVar("Task", bound=Callable)


def user_error(error: BaseException) -> HumanClapError | None:
    """The :class:`HumanClapError` behind ``error``, also when Hydra's instantiate or Lightning wrapped it;
    a ``_target_`` that moved (:mod:`humanclap.moved`) counts as one."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, HumanClapError):
            return error
        if (moved := moved_target_error(error)) is not None:
            return moved
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def report_user_errors(task: Task) -> Task:
    """Run ``task``; a user error prints ``error: <message>`` on stderr and exits with status 1.

    Anything else is a bug in humanclap or a library and keeps its traceback.
    """

    @functools.wraps(task)
    def run(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        except Exception as error:
            cause = user_error(error)
            if cause is None:
                raise
            print(f"\nerror: {cause}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    return run  # type: ignore[return-value]
