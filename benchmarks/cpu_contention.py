"""CPU contention: Quickstart training steps on idle cores and next to two busy processes.

Each measurement is a fresh process that composes recipes/train.yaml as
``python -m humanclap.train recipe=wsce_mae`` does (tiny model, batch 8, the embedded synthetic data),
builds the same backbone, data module, module and trainer as ``humanclap.train.train`` and times
training steps (wall time from one step's start to the next, so data loading counts; the first
--warmup steps are not timed). Two thread policies:

- ``threads=auto``: the run's own choice, by the same call ``train()`` makes (humanclap/lit/cpu_threads.py);
- torch's default (one thread per core), the behaviour before it.

"Contended" runs next to --hogs processes that each multiply matrices in a loop with torch's default
threads, as another user's job would. Idle and contended runs alternate (--repeats times) so drifting
load from elsewhere hits both alike; each figure is the median over repeats of a run's median step
time. The last line is the ratio for ``threads=auto``; the line before it the ratio for torch's default.

    python benchmarks/cpu_contention.py [--steps 30] [--warmup 5] [--repeats 2] [--hogs 2] [--hog torch|python]
        [--same-session] [--env KEY=VALUE]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
# Another user's job: torch with its default threads, or a single-threaded Python loop. Each ends
# when the benchmark does (its parent changes), also if the benchmark is killed.
HOGS = {
    "torch": "import torch\na = torch.randn(256, 256)\nbusy = lambda: [a @ a for _ in range(100)]",
    "python": "busy = lambda: sum(range(100_000))",
}
HOG_LOOP = """
import os
parent = os.getppid()
busy()
print('ready', flush=True)
while os.getppid() == parent:
    busy()
"""
POLICIES = {"auto": "threads=auto", "default": "torch default"}


def worker(policy: str, steps: int, warmup: int, output_dir: str) -> dict:
    """One timed training run in this (fresh) process; ``policy`` is ``auto`` or ``default``."""
    # What loads first matters: `python -m humanclap.train` imports the humanclap package before torch
    # (and with it the OpenMP runtime), the old behaviour is torch as it comes.
    importlib.import_module("humanclap" if policy == "auto" else "torch")
    import logging
    import warnings

    import lightning as L
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from humanclap.lit import cpu_threads
    from humanclap.lit.module import HumanClapModule

    warnings.filterwarnings("ignore")  # Lightning's advice about workers, once per run
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with initialize_config_dir(version_base="1.3", config_dir=str(RECIPES)):
        cfg = compose(
            "train",
            overrides=["recipe=wsce_mae", f"paths.output_dir={output_dir}", "run_name=bench"],
        )
    L.seed_everything(cfg.seed, workers=True)
    backbone = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, _partial_=True)(featurizer=backbone.featurizer)
    module = HumanClapModule(
        backbone=backbone, loss=instantiate(cfg.loss), optimizer=instantiate(cfg.optimizer)
    )
    starts: list[float] = []

    class StepStarts(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            starts.append(time.perf_counter())

    trainer = instantiate(
        cfg.trainer,
        callbacks=[StepStarts()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        max_steps=warmup + steps + 1,
    )
    if policy == "auto":
        cpu_threads.apply_to_trainer(
            cfg.threads, trainer, backbone
        )  # as humanclap.train.train does
    trainer.fit(module, datamodule=datamodule)
    seconds = [b - a for a, b in zip(starts[warmup:], starts[warmup + 1 :])]
    return {"threads": torch.get_num_threads(), "step": statistics.median(seconds)}


def timed_run(policy: str, steps: int, warmup: int, extra_env: dict[str, str]) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "HUMANCLAP_AUTO_THREADS")
    }
    env.update(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", **extra_env)
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                policy,
                "--steps",
                str(steps),
                "--warmup",
                str(warmup),
                "--output-dir",
                scratch,
            ],
            env=env,
            capture_output=True,
            text=True,
        )
    if result.returncode:
        raise SystemExit(f"worker ({policy}) failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def start_hogs(kind: str, n: int, same_session: bool) -> list[subprocess.Popen]:
    # Another user's processes are in a session (and a scheduling group: Linux's autogroup, a systemd
    # user slice, a container's cgroup) of their own; in ours the scheduler would share our session's
    # time among their threads and ours instead of among sessions.
    hogs = [
        subprocess.Popen(
            [sys.executable, "-c", HOGS[kind] + HOG_LOOP],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=not same_session,
        )
        for _ in range(n)
    ]
    for hog in hogs:
        hog.stdout.readline()  # busy from here on
    return hogs


def stop(hogs: list[subprocess.Popen]) -> None:
    for hog in hogs:
        hog.kill()
        hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hogs", type=int, default=2)
    parser.add_argument("--hog", choices=sorted(HOGS), default="torch")
    parser.add_argument(
        "--same-session", action="store_true", help="run the busy processes in this session"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment of the timed runs, e.g. --env OMP_WAIT_POLICY=PASSIVE",
    )
    parser.add_argument("--worker", choices=sorted(POLICIES), help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.warmup, args.output_dir)))
        return

    from humanclap.lit.cpu_threads import usable_cpus

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the busy processes on the way out

    where = "this session" if args.same_session else "sessions of their own"
    print(
        f"{usable_cpus()} usable CPUs; load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())} at the start; "
        f"{args.hogs} busy '{args.hog}' processes in {where} when contended",
        flush=True,
    )
    extra_env = dict(item.split("=", 1) for item in args.env)
    if extra_env:
        print(f"timed runs with {' '.join(args.env)}")
    runs: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(args.repeats):
        for condition in ("idle", "contended"):
            hogs = (
                start_hogs(args.hog, args.hogs, args.same_session)
                if condition == "contended"
                else []
            )
            try:
                for policy in POLICIES:
                    run = timed_run(policy, args.steps, args.warmup, extra_env)
                    runs.setdefault((policy, condition), []).append(run)
                    print(
                        f"  run {repeat + 1} {condition:9s} {POLICIES[policy]:13s}: {run['step'] * 1e3:7.1f} ms/step "
                        f"({run['threads']} thread{'s' if run['threads'] > 1 else ''}, "
                        f"load {os.getloadavg()[0]:.2f})",
                        flush=True,
                    )
            finally:
                stop(hogs)
    step = {key: statistics.median(run["step"] for run in value) for key, value in runs.items()}
    for policy in POLICIES:
        print(
            f"{POLICIES[policy]:13s}: idle {step[policy, 'idle'] * 1e3:7.1f} ms/step, "
            f"contended {step[policy, 'contended'] * 1e3:7.1f} ms/step"
        )
    print(f"load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    print(
        f"torch default / threads=auto step time: idle {step['default', 'idle'] / step['auto', 'idle']:.2f}, "
        f"contended {step['default', 'contended'] / step['auto', 'contended']:.2f}"
    )
    print(
        f"old behaviour (torch default threads): contended/idle = "
        f"{step['default', 'contended'] / step['default', 'idle']:.2f}"
    )
    print(f"contended/idle = {step['auto', 'contended'] / step['auto', 'idle']:.2f}")


if __name__ == "__main__":
    main()
