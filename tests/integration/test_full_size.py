"""The full-size CLAP end to end (issue 15, item 5), through the command lines a user runs.

``model=clap_htsat_random`` (random weights in the exact ``laion/clap-htsat-fused`` architecture,
153.5 M parameters, 48 kHz, 10 s, fusion) trains 2 steps of batch 2 on a manifest of generated wav
files - 10 s clips and 12 s clips, which are longer than the model's 10 s window and take the fusion
branch (``is_longer``) - with the relevance probe before and after the epoch, exports, and
``humanclap.evaluate`` measures the export on the same pairs. The unfused variant is only built,
counted and embedded once (its training path is the same code).

Wall time and peak RSS of each command are printed (``-s`` shows them). Measured on 2 CPU cores
shared with other jobs (load average 2-5), three runs: training 64-78 s wall including the one-time
build of the model into the session's cache, 5.1 GiB peak RSS; evaluate 20-23 s, 1.6 GiB; both tests
of this module about 2 minutes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli import SUMMARY_LINE, run_module, run_record
from fakes import write_csv, write_wav
from safetensors import safe_open
from transformers import ClapModel, ClapProcessor

from humanclap.backbones.featurizer import ClapFeaturizer
from humanclap.backbones.random_full_size import NAME, clap_htsat_configs

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("full_size")]  # one 600 MB model at a time

RATE = 16_000
# clip -> seconds: a and c fill the 10 s window, b and d are longer (fusion, is_longer=True).
CLIPS = {"a": 10, "b": 12, "c": 10, "d": 12}
ROWS = [
    ("a.wav", "a dog barks", 8, "train"),
    ("a.wav", "soft piano music", 2, "train"),
    ("b.wav", "rain and wind blowing", 7, "train"),
    ("b.wav", "a bell rings", 3, "train"),
    ("c.wav", "water flowing", 9, "validation"),
    ("c.wav", "a car engine running", 1, "validation"),
    ("d.wav", "birds chirps in the distance", 6, "validation"),
    ("d.wav", "a man speaks", 4, "validation"),
]


def _manifest(directory: Path) -> Path:
    directory.mkdir()
    for index, (name, seconds) in enumerate(CLIPS.items()):
        write_wav(directory / f"{name}.wav", frames=seconds * RATE, frequency=220 + 110 * index)
    return write_csv(directory / "ratings.csv", ("audio", "text", "score", "split"), ROWS)


def _timed(cwd: Path, module: str, *args: str) -> tuple[str, float, float]:
    """``python -m module args``: its output, wall time (s) and peak RSS (GiB), printed."""
    finished = run_module(cwd, module, *args, timeout=1800)
    print(f"\n{module}: {finished.seconds:.0f} s wall, peak RSS {finished.peak_rss_gib:.2f} GiB")
    return finished.output, finished.seconds, finished.peak_rss_gib


@pytest.mark.timeout(3600)
def test_full_size_model_trains_probes_exports_and_evaluates(tmp_path):
    manifest = _manifest(tmp_path / "data")
    data = ["data=manifest", f"data.pairs.path={manifest}", "data.num_workers=0"]
    log, train_seconds, train_peak = _timed(
        tmp_path,
        "humanclap.train",
        "model=clap_htsat_random",
        *data,
        "data.batch_size=2",
        "trainer.max_epochs=1",
        "+trainer.max_steps=2",
        "probes=relevance",
        "logger=csv",
        "run_name=full-size",
        "++trainer.enable_progress_bar=false",
    )
    assert "clap-htsat-fused-random: random weights" in log and "NOT pretrained" in log
    assert SUMMARY_LINE.search(log), log[-3000:]

    last = tmp_path / "outputs" / "full-size" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True, mmap=True)["global_step"] == 2
    export = tmp_path / "checkpoints" / "full-size"
    record = run_record(export)
    steps = record["history"]
    assert [epoch for epoch, _ in steps] == [-1, 0]  # the baseline probe, then the epoch's
    for _, metrics in steps:
        assert math.isfinite(metrics["relevance/srcc"]) and math.isfinite(metrics["relevance/lcc"])
    assert "**Not pretrained**" in (export / "README.md").read_text()

    # The export has the released architecture, tensor for tensor; its processor fuses long clips.
    config, _ = clap_htsat_configs(enable_fusion=True)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in ClapModel(config).state_dict().items()}
    with safe_open(str(export / "model.safetensors"), framework="pt") as weights:
        shapes = {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}
    assert shapes == expected
    processor = ClapProcessor.from_pretrained(export)
    featurizer = ClapFeaturizer(processor.feature_extractor, processor.tokenizer, True)
    long_clip = np.zeros(12 * 48_000, dtype=np.float32) + 0.01
    features = featurizer.audio([long_clip])
    assert features["input_features"].shape == (1, 4, 1001, 64)
    assert features["is_longer"].tolist() == [[True]]

    log, evaluate_seconds, evaluate_peak = _timed(
        tmp_path,
        "humanclap.evaluate",
        f"model={export}",
        *data,
        "split=validation",
        "probes=[relevance]",
        "batch_size=4",
        "figures=false",
        "progress=false",
    )
    (metrics_file,) = (tmp_path / "outputs").glob("evaluate-*/metrics.json")
    (model,) = json.loads(metrics_file.read_text())["models"].values()
    assert model["kind"] == "transformers_dir"
    relevance = model["metrics"]["relevance"]
    assert relevance["n"] == 4
    for key in ("srcc", "lcc", "mse"):
        assert math.isfinite(relevance[key]), (key, relevance)
    print(
        f"full size end to end: train {train_seconds:.0f} s (peak RSS {train_peak:.2f} GiB), "
        f"evaluate {evaluate_seconds:.0f} s (peak RSS {evaluate_peak:.2f} GiB)"
    )


def test_the_unfused_variant_builds_with_the_released_shape_and_embeds(caplog):
    from humanclap.backbones import clap_htsat_random

    backbone = clap_htsat_random(enable_fusion=False)
    assert backbone.name == NAME[False] == "clap-htsat-unfused-random"
    assert sum(p.numel() for p in backbone.parameters()) == 153_492_890
    assert backbone.model.config.audio_config.enable_fusion is False
    assert backbone.featurizer.feature_extractor.truncation == "rand_trunc"
    assert "NOT pretrained" in caplog.text
    twelve_seconds = 0.1 * np.sin(2 * np.pi * 330 * np.arange(12 * 48_000) / 48_000)
    audio = backbone.embed_audio([twelve_seconds.astype(np.float32)])  # one 10 s crop
    text = backbone.embed_text(["a dog barks"])
    for embedding in (audio, text):
        assert embedding.shape == (1, 512) and torch.isfinite(embedding).all()
        assert torch.linalg.vector_norm(embedding).item() == pytest.approx(1.0, abs=1e-5)
