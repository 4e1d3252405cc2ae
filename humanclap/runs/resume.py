"""Resume and preemption: ``resume=auto|<path>``, exact continuation, one Slurm requeue mechanism.

- :func:`last_epoch_checkpoint` writes ``<output_dir>/checkpoints/last.ckpt`` at the end of every
  epoch. ``resume=auto`` continues from the newest complete checkpoint there (normally
  ``last.ckpt``); with none yet the run starts fresh. ``resume=<file>`` continues from that file.
- The continuation is exact: Lightning restarts an epoch-end checkpoint at the next epoch, and
  :class:`humanclap.lit.callbacks.RandomState` stores the global RNG states in every checkpoint and
  puts them back before the first resumed epoch draws its shuffle order, so the resumed epochs see the same batches and
  dropout masks as an uninterrupted run with the same seed.
- Slurm: submitit (``hydra/launcher=slurm``) owns the preemption signal (USR2, ``signal_delay_s``
  before the time limit) and requeues the same Hydra job into the same output directory; Lightning's
  own SLURM auto-requeue (SIGUSR1 -> checkpoint inside a signal handler + ``scontrol requeue``) is
  switched off (:func:`cluster_plugins`), so exactly one thing requeues and no checkpoint is written
  from a signal handler. The requeued job continues from ``last.ckpt`` with ``resume=auto``.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint

from humanclap.backbones.checkpoint_safety import LIGHTNING_CHECKPOINT, read_torch_checkpoint
from humanclap.errors import HumanClapError

log = logging.getLogger(__name__)


class ResumeMismatch(HumanClapError, ValueError):
    """A checkpoint to resume from was written by a run with another configuration."""


# Config keys that may differ between a run and its continuation (resume=auto refuses a checkpoint
# whose stored config differs anywhere else: it would silently continue a different experiment).
MAY_CHANGE_ON_RESUME = (
    "resume",
    "run_name",
    "sweep_name",
    "paths",
    "logger",
    "overwrite_export",
    "trainer.max_epochs",
    "trainer.enable_progress_bar",
    # where and how clips are featurised: the features, hence the results, are the same
    "cache",
    "cache_dir",
    "probe_workers",
    "data.num_workers",
)


def checkpoint_dir(output_dir: str | Path) -> Path:
    """Where the run's ``ModelCheckpoint`` writes (``last.ckpt`` and the best epoch)."""
    return Path(output_dir) / "checkpoints"


def last_epoch_checkpoint(output_dir: str | Path) -> ModelCheckpoint:
    """Writes ``<output_dir>/checkpoints/last.ckpt`` at the end of every epoch, for ``resume=auto``.

    A callback of its own: since Lightning 2.6, ``ModelCheckpoint(save_last=True)`` refreshes
    ``last.ckpt`` only in epochs where it also saved a top-k checkpoint, so after an epoch that did
    not improve the monitored loss, a resumed run would have gone back to the last improving epoch.
    """
    return ModelCheckpoint(
        dirpath=checkpoint_dir(output_dir),
        filename=ModelCheckpoint.CHECKPOINT_NAME_LAST,
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
    )


def checkpoint_to_resume(
    resume: str | None, output_dir: str | Path, config: Mapping[str, Any]
) -> str | None:
    """The ``ckpt_path`` for ``trainer.fit``: ``None`` (fresh run), or a checkpoint file.

    ``resume``: ``None`` -> fresh; ``"auto"`` -> the newest complete checkpoint of this run
    (``<output_dir>/checkpoints``), written by a run with the same ``config`` (except
    :data:`MAY_CHANGE_ON_RESUME`), else fresh; any other string -> that file, which must exist.
    """
    if resume in (None, ""):
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        if restarts not in ("", "0"):
            log.warning(
                "this Slurm job was requeued (SLURM_RESTART_COUNT=%s) but resume is not set: training "
                "starts from scratch. Pass resume=auto to continue from the last epoch.",
                restarts,
            )
        return None
    if resume != "auto":
        path = Path(str(resume)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"resume={resume}: no checkpoint file at {path.resolve()} "
                "(pass resume=auto to continue this run, or the path of a .ckpt file)"
            )
        _check_same_run(path, config, f"resume={resume}")
        log.info("resume: continuing from %s", path)
        return str(path)

    directory = checkpoint_dir(output_dir)
    for path in _newest_first(directory.glob("*.ckpt")):
        if not _complete(path):
            log.warning(
                "resume=auto: skipping %s (incomplete: the run was killed while writing it)", path
            )
            continue
        _check_same_run(path, config, "resume=auto")
        log.info("resume=auto: continuing from %s", path)
        return str(path)
    log.info("resume=auto: no checkpoint in %s yet, starting a fresh run", directory)
    return None


def _newest_first(paths) -> list[Path]:
    # last.ckpt is written right after the best-epoch file of the same save: prefer it on equal times.
    return sorted(
        paths, key=lambda p: (p.stat().st_mtime_ns, p.name.startswith("last")), reverse=True
    )


def _complete(path: Path) -> bool:
    """A torch checkpoint is a zip file: a truncated one has no central directory (cheap to check)."""
    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError):
        return False


def _check_same_run(path: Path, config: Mapping[str, Any], how: str) -> None:
    """Refuse a checkpoint whose stored config differs outside :data:`MAY_CHANGE_ON_RESUME`.

    Lightning restores the optimizer, its learning rate included, from the checkpoint: continuing
    with another config would silently train on with the old values.
    """
    stored = read_torch_checkpoint(
        path, LIGHTNING_CHECKPOINT, mmap=True
    )  # refuses pickled code, names the file
    stored = stored.get("hyper_parameters", {}).get("config")
    if stored is None:
        return  # not written by humanclap.train: nothing to compare
    differences = [f"{key}: {old!r} -> {new!r}" for key, old, new in _differences(stored, config)]
    if differences:
        more = f"\n  ... and {len(differences) - 10} more" if len(differences) > 10 else ""
        overrides = path.parent.parent / ".hydra" / "overrides.yaml"
        where = f" (its command-line overrides are in {overrides})" if overrides.is_file() else ""
        raise ResumeMismatch(
            f"{how}: {path} was written by a run with a different configuration (stored -> now):\n  "
            + "\n  ".join(differences[:10])
            + more
            + f"\nResuming continues the same run, with the optimizer state and learning rate stored in the "
            f"checkpoint. Rerun with that run's settings{where}, or leave out resume= (or pass another "
            f"run_name=<name>) to start a new run."
        )


_ABSENT = object()

# Keys that runs of earlier versions did not store, with the value that does what those runs did:
# a checkpoint without the key resumes under this value as if it had stored it.
ADDED_LATER: dict[str, Any] = {
    "scheduler": {"_target_": "humanclap.lit.schedulers.Constant"},
    "early_stopping": {"patience": None, "min_delta": 0.0},
    "stages": None,
}


def _differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if prefix.rstrip(".") in MAY_CHANGE_ON_RESUME:
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return [
            difference
            for key in sorted(set(old) | set(new), key=str)
            if not (key not in old and new.get(key) == ADDED_LATER.get(f"{prefix}{key}", _ABSENT))
            for difference in _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def cluster_plugins() -> list:
    """Trainer plugins: on Slurm, Lightning's SLURMEnvironment with its auto-requeue switched off.

    submitit owns the preemption signal and the requeue (see the module docstring); Lightning
    would otherwise install a SIGUSR1 handler that saves ``hpc_ckpt_*.ckpt`` from inside the
    signal handler and requeues a second time.
    """
    if not SLURMEnvironment.detect():
        return []
    return [SLURMEnvironment(auto_requeue=False)]
