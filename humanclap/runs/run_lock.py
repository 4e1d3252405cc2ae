"""One live run per directory, and no export written over another run's model.

:func:`claim_run_directories` locks the output and export directories (``flock``, released however
the process ends), refuses an export over another run's model and checks that it is writable.
See docs/training.md#run-directories.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from humanclap.errors import HumanClapError

LOCK_FILE = ".humanclap.lock"
EXPORT_MARKERS = ("config.json", "model.safetensors", "humanclap_run.json")
"""Files whose presence means a directory already holds an exported model."""


class RunDirectoryInUse(HumanClapError):
    """Another live run writes to the same directory, or an export would be overwritten."""


class RunLock:
    """Exclusive locks on a run's directories, held until :meth:`release` or process exit.

    A forked child (a DataLoader worker) closes its copies of the lock's descriptors at once: an
    ``flock`` lasts while any process holds a descriptor of it, so otherwise the workers of a killed
    run would keep its directories locked until they notice their parent is gone (seconds), and the
    requeued run would be refused.
    """

    def __init__(self) -> None:
        self._handles: list[int] = []
        self._created: list[Path] = []

    def acquire(
        self, directory: Path, what: str, hint: str, remove_if_unused: bool = False
    ) -> None:
        """``remove_if_unused``: :meth:`release` removes ``directory`` if this lock created it and it
        still holds nothing else (the export directory of a run that failed before exporting)."""
        if remove_if_unused:
            self._created.append(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / LOCK_FILE
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 200).decode(errors="replace").strip() or "another process"
            os.close(handle)
            raise RunDirectoryInUse(
                f"the {what} {directory} is in use by a live run ({holder}); two runs with one name would mix "
                f"their checkpoints and overwrite each other's export. {hint}"
            ) from None
        os.ftruncate(handle, 0)
        os.write(handle, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self._handles.append(handle)
        _HELD.add(handle)

    def release(self) -> None:
        for directory in self._created:
            if [path.name for path in directory.iterdir()] == [LOCK_FILE]:
                (directory / LOCK_FILE).unlink()
                directory.rmdir()
        for handle in self._handles:
            if handle in _HELD:  # else this is a forked child, which closed it already
                _HELD.discard(handle)
                os.close(handle)  # closing the descriptor releases the flock
        self._handles.clear()
        self._created.clear()


_HELD: set[int] = set()  # the lock descriptors of this process


def _forget_in_child() -> None:
    for handle in _HELD:
        try:
            os.close(handle)  # the child's copy only: the parent's lock stays
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def claim_run_directories(
    output_dir: str | Path, export_dir: str | Path, resuming: bool, overwrite_export: bool
) -> RunLock:
    """Lock ``output_dir`` and ``export_dir`` for this run and check the export can be written.

    Raises :class:`RunDirectoryInUse` (another live run, or an existing export) or
    ``HumanClapError`` (export directory not writable), each naming the directory and the way out.
    """
    output_dir, export_dir = Path(output_dir), Path(export_dir)
    rename = "Pass another run_name=<name> for a new run."
    lock = RunLock()
    try:
        lock.acquire(output_dir, "output directory", rename)
        created = not export_dir.exists()
        _require_writable(export_dir)
        lock.acquire(export_dir, "export directory", rename, remove_if_unused=created)
        existing = [name for name in EXPORT_MARKERS if (export_dir / name).exists()]
        if existing and not (resuming or overwrite_export):
            raise RunDirectoryInUse(
                f"the export directory {export_dir} already holds a model ({', '.join(existing)}) from an earlier "
                f"run. {rename} To replace that model, pass overwrite_export=true; to continue that run, "
                f"resume=auto with its run_name."
            )
    except BaseException:
        lock.release()
        raise
    return lock


def _require_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as error:
        raise HumanClapError(
            f"the export directory {directory} cannot be written ({error.strerror or error}); the trained model "
            f"would be lost after the last epoch. Pass a writable paths.export_dir=<dir>."
        ) from error


@contextmanager
def claimed_run(
    output_dir: str | Path,
    export_dir: str | Path,
    *,
    rank_zero: bool,
    resuming: bool,
    overwrite_export: bool,
) -> Iterator[None]:
    """:func:`claim_run_directories` on rank 0 for the duration of the block (other ranks write nothing)."""
    lock = (
        claim_run_directories(output_dir, export_dir, resuming, overwrite_export)
        if rank_zero
        else None
    )
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
