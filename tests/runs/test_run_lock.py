"""One live run per output/export directory; exports are not overwritten silently; unwritable exports fail first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from humanclap.errors import HumanClapError
from humanclap.runs.run_lock import RunDirectoryInUse, claim_run_directories


def test_a_second_live_run_with_the_same_directories_is_refused_with_the_holder(tmp_path):
    first = claim_run_directories(
        tmp_path / "outputs/a", tmp_path / "checkpoints/a", resuming=False, overwrite_export=False
    )
    try:
        with pytest.raises(RunDirectoryInUse) as error:
            claim_run_directories(
                tmp_path / "outputs/a",
                tmp_path / "checkpoints/b",
                resuming=False,
                overwrite_export=False,
            )
        message = str(error.value)
        assert message.startswith(
            f"the output directory {tmp_path / 'outputs/a'} is in use by a live run "
            f"(pid {os.getpid()} on "
        )
        assert message.endswith("Pass another run_name=<name> for a new run.")
        # Same export directory under another output directory: refused too.
        with pytest.raises(
            RunDirectoryInUse, match=f"export directory {tmp_path / 'checkpoints/a'} is in use"
        ):
            claim_run_directories(
                tmp_path / "outputs/c",
                tmp_path / "checkpoints/a",
                resuming=False,
                overwrite_export=False,
            )
    finally:
        first.release()
    # Released (the run ended): the same directories can be claimed again.
    claim_run_directories(
        tmp_path / "outputs/a", tmp_path / "checkpoints/a", resuming=False, overwrite_export=False
    ).release()


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from humanclap.runs.run_lock import claim_run_directories
        claim_run_directories({str(tmp_path / "out")!r}, {str(tmp_path / "export")!r}, False, False)
        print("locked", flush=True)
        time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirectoryInUse, match=f"pid {holder.pid} on "):
            claim_run_directories(
                tmp_path / "out", tmp_path / "export", resuming=False, overwrite_export=False
            )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    claim_run_directories(
        tmp_path / "out", tmp_path / "export", resuming=True, overwrite_export=False
    ).release()


def test_children_forked_by_a_killed_run_do_not_keep_its_lock(tmp_path):
    """DataLoader workers are forked after the lock is taken and outlive a SIGKILLed run by seconds;
    the requeued run must not be refused meanwhile."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import os, time
        from humanclap.runs.run_lock import claim_run_directories
        claim_run_directories({str(tmp_path / "out")!r}, {str(tmp_path / "export")!r}, False, False)
        started, running = os.pipe()
        child = os.fork()
        if child == 0:
            os.write(running, b"x")  # fork's after-in-child hooks have run by now
            time.sleep(60)  # a worker that has not noticed its parent is gone
            os._exit(0)
        os.read(started, 1)  # on a busy machine the child may not have run at all yet
        print(child, flush=True)
        time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = None
    try:
        child = int(holder.stdout.readline())
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        os.kill(child, 0)  # still alive
        claim_run_directories(
            tmp_path / "out", tmp_path / "export", resuming=True, overwrite_export=False
        ).release()
    finally:
        holder.kill()
        if child is not None:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_an_existing_export_is_not_overwritten_silently(tmp_path):
    export = tmp_path / "checkpoints" / "run"
    export.mkdir(parents=True)
    (export / "model.safetensors").write_bytes(b"weights of an earlier run")
    with pytest.raises(RunDirectoryInUse) as error:
        claim_run_directories(tmp_path / "out", export, resuming=False, overwrite_export=False)
    assert str(error.value) == (
        f"the export directory {export} already holds a model (model.safetensors) from an earlier run. Pass another "
        "run_name=<name> for a new run. To replace that model, pass overwrite_export=true; to continue that run, "
        "resume=auto with its run_name."
    )
    # Continuing the run that wrote it, or saying so, is allowed; the refusal released its locks.
    claim_run_directories(tmp_path / "out", export, resuming=True, overwrite_export=False).release()
    claim_run_directories(tmp_path / "out", export, resuming=False, overwrite_export=True).release()


def test_an_unwritable_export_directory_fails_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(HumanClapError) as error:
        claim_run_directories(
            tmp_path / "out", blocker / "export", resuming=False, overwrite_export=False
        )
    assert str(error.value).startswith(
        f"the export directory {blocker / 'export'} cannot be written ("
    )
    assert str(error.value).endswith("Pass a writable paths.export_dir=<dir>.")
    # The output directory's lock was released with the refusal.
    claim_run_directories(
        tmp_path / "out", tmp_path / "export", resuming=False, overwrite_export=False
    ).release()


@pytest.mark.slow
def test_the_train_command_refuses_an_occupied_export_before_any_work(tmp_path):
    """As a user sees it: one sentence on stderr, status 1, nothing trained or written."""
    export = tmp_path / "export"
    export.mkdir()
    (export / "config.json").write_text("{}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "humanclap.train",
            "recipe=wsce_mae",
            "logger=csv",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.export_dir={export}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: the export directory {export} already holds a model (config.json) from an earlier run. Pass another "
        "run_name=<name> for a new run. To replace that model, pass overwrite_export=true; to continue that run, "
        "resume=auto with its run_name."
    )
    assert not (tmp_path / "run" / "checkpoints").exists() and sorted(
        p.name for p in export.iterdir()
    ) == [".humanclap.lock", "config.json"]


def test_an_export_directory_the_run_created_is_removed_if_nothing_was_exported(tmp_path):
    """A run that fails before exporting leaves no empty checkpoints/<run>/ behind; an existing one stays."""
    existing = tmp_path / "existing"
    existing.mkdir()
    claim_run_directories(tmp_path / "out1", tmp_path / "new", False, False).release()
    claim_run_directories(tmp_path / "out2", existing, False, False).release()
    assert not (tmp_path / "new").exists() and existing.is_dir()
    lock = claim_run_directories(tmp_path / "out3", tmp_path / "exported", False, False)
    (tmp_path / "exported" / "model.safetensors").write_bytes(b"weights")
    lock.release()
    assert (tmp_path / "exported" / "model.safetensors").is_file()
