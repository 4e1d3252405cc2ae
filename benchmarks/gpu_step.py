"""The full-size CLAP's training step on a GPU: samples/s, loader wait vs compute, FLOP utilisation.

The model is ``model=clap_htsat_random`` (random weights in the exact ``laion/clap-htsat-fused``
architecture, 153.5 M parameters; ``--unfused``: ``laion/clap-htsat-unfused``'s), so nothing is
downloaded. For each batch size a real DataLoader (``--num-workers`` worker processes, as
``data.num_workers``) reads generated 10 s wav files at 16 kHz, resamples them to 48 kHz and
featurises them (log-mel, tokens) as training does, through the feature cache (``--feature-cache
warm``, the default: the features are read, as in every epoch after the first; ``off``: computed,
as in the first epoch); the step is forward + backward + AdamW over
both towers with the run's default loss (wSCE + MAE), timed with ``torch.cuda.synchronize``. Per
batch size it prints:

* samples/s over the whole step (loader wait + compute),
* the step time split into loader wait (time blocked in ``next(loader)``) and compute
  (host-to-device copy, forward, backward, AdamW), and the wait's share,
* peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's peak RSS so far),
* MFU: model FLOPs per second / ``--peak-tflops`` (default 312, the A100's dense bf16 peak), over
  the whole step and over compute alone.

Model FLOPs per pair are counted, not estimated: one forward + backward of one pair (a 10 s clip
and a caption padded to the benchmark's text length) on the CPU under
``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions and attention, 2 FLOPs
per multiply-add; elementwise ops and AdamW are not counted). The count is printed with its audio /
text split.

Precision (``--precision``): ``bf16-mixed`` (default on CUDA, what ``trainer=gpu`` uses): autocast
to bfloat16 around the forward, float32 weights, gradients and AdamW states; ``bf16-true``: the
weights themselves in bfloat16; ``32-true`` (default on the CPU): float32 throughout.

Without a CUDA device it prints that no step was timed, and the FLOP count, then exits 0;
``--device cpu`` times this machine's CPU instead.

    python benchmarks/gpu_step.py [--device cuda] [--batch-sizes 8,32,128] [--steps 10]
        [--warmup 3] [--precision bf16-mixed] [--num-workers 2] [--peak-tflops 312] [--unfused]
        [--threads auto]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from transformers import ClapFeatureExtractor, ClapModel

from humanclap.backbones.clap import ClapBackbone
from humanclap.backbones.featurizer import ClapFeaturizer
from humanclap.backbones.random_full_size import (
    NAME,
    TOKENIZER_VOCABULARY,
    clap_htsat_configs,
    clap_htsat_random,
)
from humanclap.backbones.tiny import train_tokenizer
from humanclap.data.audio import FileAudioStore, load_audio
from humanclap.features import ClipFeatures
from humanclap.features.loader import from_transfer
from humanclap.lit.cpu_threads import apply_cpu_threads
from humanclap.lit.dataset import RatedPairCollator
from humanclap.losses import HumanClapLoss

FILE_RATE = 16_000  # the generated wav files; the loader resamples them to the model's 48 kHz
CLIPS = 32  # distinct files; items cycle over them
# Captions of the embedded word list (one BPE token per word, or close): batches pad to the longest.
TEXTS = [
    "a dog barks then a bell rings in the background",
    "water flowing with birds chirps and wind blowing",
    "a man speaks while a car engine running near",
    "soft warm piano music playing in a quiet room",
    "bright metallic bells ringing with a slow steady pulse",
    "rain and a distant siren followed by footsteps",
    "a woman speaks then a crowd laughing loud",
    "deep dull hum of a machine motor running",
]


def parse_batch_sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 8,32,128, got {text!r}")
    return sizes


class GeneratedPairs(Dataset):
    """``length`` pairs over ``CLIPS`` wav files; each item's audio is what training's loader gives:
    the clip's features from ``ClipFeatures`` (loaded, resampled and featurised, or read from the
    feature cache when ``--feature-cache warm``)."""

    def __init__(self, paths: list[Path], features: ClipFeatures, length: int) -> None:
        self.paths, self.features, self.length = [str(p) for p in paths], features, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return {
            "index": index,
            "audio": self.features(FileAudioStore(), self.paths[index % len(self.paths)]),
            "text": TEXTS[index % len(TEXTS)],
            "score": (index % 11) / 10,
        }


def write_clips(directory: Path, seconds: float) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for index in range(CLIPS):
        t = np.arange(int(seconds * FILE_RATE)) / FILE_RATE
        tone = 0.1 * np.sin(2 * np.pi * (220 + 40 * index) * t) + 0.02 * rng.standard_normal(t.size)
        path = directory / f"clip{index:02d}.wav"
        sf.write(path, tone.astype(np.float32), FILE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def uncached_backbone(enable_fusion: bool) -> ClapBackbone:
    """The full-size random model in memory only (nothing written to $HUMANCLAP_CACHE)."""
    config, extractor = clap_htsat_configs(enable_fusion)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = train_tokenizer(Path(scratch), TOKENIZER_VOCABULARY)
    featurizer = ClapFeaturizer(ClapFeatureExtractor(**extractor), tokenizer, enable_fusion)
    return ClapBackbone(ClapModel(config), featurizer, name=NAME[enable_fusion])


def count_flops(backbone: ClapBackbone, clip: np.ndarray) -> dict[str, float]:
    """Model FLOPs of one pair, forward + backward, per tower (on the CPU, fp32, train mode)."""
    backbone.train()
    tokens = backbone.featurizer.text(TEXTS)  # padded to the longest caption, as in every batch
    features = {
        "audio": backbone.featurizer.audio([clip]),
        "text": {key: value[:1] for key, value in tokens.items()},
    }
    counts = {}
    for tower, embed in (
        ("audio", backbone.audio_embeddings),
        ("text", backbone.text_embeddings),
    ):
        with FlopCounterMode(display=False) as counter:
            embedding = embed(features[tower])
            forward = counter.get_total_flops()
            embedding.sum().backward()
        counts[tower], counts[f"{tower}_forward"] = counter.get_total_flops(), forward
    backbone.zero_grad(set_to_none=True)
    counts["total"] = counts["audio"] + counts["text"]
    counts["text_tokens"] = int(tokens["input_ids"].shape[1])
    return counts


def print_flops(counts: dict[str, float]) -> None:
    print(
        f"model FLOPs per pair, forward + backward: {counts['total'] / 1e9:.1f} GFLOP = audio "
        f"{counts['audio'] / 1e9:.1f} + text {counts['text'] / 1e9:.1f} ({counts['text_tokens']} "
        f"tokens); forward alone {(counts['audio_forward'] + counts['text_forward']) / 1e9:.1f}.\n"
        "  Counted by torch.utils.flop_counter.FlopCounterMode on one pair (a 10 s clip, one "
        "caption) on the CPU:\n  matrix products, convolutions and attention, 2 FLOPs per "
        "multiply-add; elementwise ops and AdamW are not counted."
    )


def featurisation_ms(paths: list[Path], featurizer: ClapFeaturizer, sample_rate: int) -> float:
    """Median time to load + resample + featurise one clip, in this process (one core)."""
    times = []
    for path in paths[:8]:
        start = time.perf_counter()
        featurizer.audio([load_audio(path, sample_rate)])
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def precision_context(precision: str, device: torch.device):
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batch_size(backbone, paths, batch_size, args, device, features) -> dict[str, float]:
    loader = DataLoader(
        GeneratedPairs(paths, features, batch_size * (args.warmup + args.steps)),
        batch_size=batch_size,
        collate_fn=RatedPairCollator(backbone.featurizer),
        num_workers=args.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )
    loss_fn = HumanClapLoss({"wsce": 0.1, "mae": 1.0})
    optimizer = torch.optim.AdamW(backbone.trainable_parameters(), lr=1e-5)
    backbone.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    waits, computes = [], []
    batches = iter(loader)
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        batch = from_transfer(next(batches))  # as the data module does
        loaded = time.perf_counter()
        with precision_context(args.precision, device):
            audio = backbone.audio_embeddings(batch["audio"])
            text = backbone.text_embeddings(batch["text"])
            loss = loss_fn(audio, text, batch["score"].to(device), backbone.logit_scale)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        backbone.clamp_logit_scale()
        synchronize(device)
        done = time.perf_counter()
        if step >= args.warmup:
            waits.append(loaded - start)
            computes.append(done - loaded)
    del optimizer, batches, loader
    backbone.zero_grad(set_to_none=True)
    wait, compute = statistics.mean(waits), statistics.mean(computes)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"wait": wait, "compute": compute, "step": wait + compute, "peak_gib": peak}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--batch-sizes", type=parse_batch_sizes, default=[8, 32, 128])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per batch size")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument(
        "--precision",
        choices=["bf16-mixed", "bf16-true", "32-true"],
        default=None,
        help="default: bf16-mixed on CUDA, 32-true on the CPU",
    )
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument(
        "--peak-tflops", type=float, default=312.0, help="the device's peak (A100 bf16: 312)"
    )
    parser.add_argument("--unfused", action="store_true", help="laion/clap-htsat-unfused's shape")
    parser.add_argument(
        "--feature-cache",
        choices=["warm", "off"],
        default="warm",
        help="warm: the clips' features are in the feature cache, as in every epoch after the "
        "first (default); off: every clip is loaded and featurised, as in the first epoch",
    )
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument(
        "--threads",
        default="auto",
        help="torch's CPU threads, as training's threads= (auto, <n> or null: torch's own)",
    )
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    device = torch.device(args.device)
    fused = not args.unfused
    args.precision = args.precision or ("bf16-mixed" if device.type == "cuda" else "32-true")

    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            f"No CUDA device here (torch.cuda.is_available() is False; torch {torch.__version__}): "
            "no step was timed.\nRun this on a GPU machine, or pass --device cpu to time this "
            "machine's CPU. The model FLOPs per pair do not depend on the device:"
        )
        print_flops(count_flops(uncached_backbone(fused), _one_clip(args.clip_seconds)))
        return 0

    torch.manual_seed(0)
    backbone = clap_htsat_random(enable_fusion=fused)  # built once into $HUMANCLAP_CACHE
    parameters = sum(p.numel() for p in backbone.parameters())
    threads = None if args.threads in ("null", "none") else args.threads
    # As a training run chooses them (threads=auto: the idle CPUs; torch's and numpy's BLAS).
    choice = apply_cpu_threads(threads, accelerator=device.type, model=backbone)
    flops = count_flops(backbone, _one_clip(args.clip_seconds))
    backbone.to(device)
    if args.precision == "bf16-true":
        backbone.to(torch.bfloat16)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    threads = f", CPU threads: {torch.get_num_threads()} ({choice.reason})"
    print(
        f"{backbone.name} ({parameters / 1e6:.1f} M parameters) on {device} ({where}{threads}), "
        f"{args.precision}, loader workers: {args.num_workers}, {args.clip_seconds:g} s clips"
    )
    print_flops(flops)
    with tempfile.TemporaryDirectory() as scratch:
        paths = write_clips(Path(scratch), args.clip_seconds)
        feature_ms = featurisation_ms(paths, backbone.featurizer, backbone.sample_rate)
        print(
            f"featurisation: {feature_ms:.0f} ms per {args.clip_seconds:g} s clip (read a 16 kHz "
            f"wav, resample to 48 kHz, log-mel) in one process: the {args.num_workers} loader "
            f"worker(s) feed at most ~{max(args.num_workers, 1) * 1e3 / feature_ms:.0f} clips/s "
            f"in a first epoch"
        )
        features = ClipFeatures(
            backbone.featurizer,
            Path(scratch) / "features" if args.feature_cache == "warm" else None,
        )
        if args.feature_cache == "warm":
            for path in paths:  # fill the cache, as the first epoch does
                features(FileAudioStore(), str(path))
            start = time.perf_counter()
            for path in paths:
                features(FileAudioStore(), str(path))
            cached_ms = 1e3 * (time.perf_counter() - start) / len(paths)
            print(
                f"feature cache warm: {cached_ms:.2f} ms per clip to read its features, as in every "
                f"epoch after the first (batching and the hand-over from the workers come on top: "
                f"benchmarks/epoch_breakdown.py measures the whole loader; --feature-cache off: the "
                f"first epoch)"
            )
        print(
            f"{'batch':>5} {'samples/s':>10} {'step ms':>9} {'loader wait ms':>15} {'wait %':>7} "
            f"{'compute ms':>11} {'ms/pair':>8} {'peak GiB':>9} {'MFU':>6} {'MFU compute':>12}"
        )
        for batch_size in args.batch_sizes:
            try:
                t = time_batch_size(backbone, paths, batch_size, args, device, features)
            except torch.cuda.OutOfMemoryError:
                print(f"{batch_size:>5} out of memory")
                backbone.zero_grad(set_to_none=True)
                gc.collect()
                torch.cuda.empty_cache()
                continue
            rate = batch_size / t["step"]
            mfu = flops["total"] * rate / (args.peak_tflops * 1e12)
            mfu_compute = flops["total"] * batch_size / t["compute"] / (args.peak_tflops * 1e12)
            print(
                f"{batch_size:>5} {rate:>10.1f} {1e3 * t['step']:>9.1f} {1e3 * t['wait']:>15.1f} "
                f"{100 * t['wait'] / t['step']:>6.1f}% {1e3 * t['compute']:>11.1f} "
                f"{1e3 * t['step'] / batch_size:>8.1f} {t['peak_gib']:>9.2f} {_percent(mfu):>6} "
                f"{_percent(mfu_compute):>12}"
            )
            sys.stdout.flush()
    print(
        f"MFU against --peak-tflops {args.peak_tflops:g}. A large wait share means the loader "
        "cannot keep up: raise data.num_workers (here --num-workers)."
    )
    return 0


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.3g}%"


def _one_clip(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 48_000)) / 48_000
    return (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


if __name__ == "__main__":
    raise SystemExit(main())
