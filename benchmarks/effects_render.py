"""Cost of rendering the timbre-semantics manipulations (timbre-semantics §2.3, Experiment 2).

All manipulated audio of one reference clip: D = 20 descriptors × L = 3 intensities
(0.3, 0.6, 1.0) × 2 effects (Audealize 40-band EQ, Audealize reverb) = 120 clips of 10 s at
48 kHz. The clip is ``--audio`` (default /work/shared/data/audio/salsa_piano.wav when present,
looped or cut to ``--seconds``), else seeded noise. Descriptor settings are the 20 most used
English words of the Audealize files when ``--eq-json`` / ``--reverb-json`` are given, else 20
seeded random curves / settings. Prints seconds for EQ, reverb and the total (best of
``--repeats``) and the time per rendered clip.

    python benchmarks/effects_render.py [--eq-json .../eqdescriptors.json] [--reverb-json ...]
        [--audio PATH] [--seconds 10] [--repeats 3] [--backend auto|torchaudio|scipy] [--model htsat|tiny|none]

Then embeds the rendered clips once with ``--model`` and prints rendering time / embedding time.

:func:`render_all` is the measured work, importable by other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from humanclap.dsp.eq import GraphicEQ
from humanclap.dsp.reverb import AudealizeReverb

DEFAULT_AUDIO = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "audio" / "salsa_piano.wav"
)
AMOUNTS = (0.3, 0.6, 1.0)


class Rendered(NamedTuple):
    eq: torch.Tensor  # (D, L, T)
    reverb: torch.Tensor  # (D, L, T)
    eq_seconds: float
    reverb_seconds: float

    @property
    def seconds(self) -> float:
        return self.eq_seconds + self.reverb_seconds

    @property
    def n_clips(self) -> int:
        return self.eq.shape[0] * self.eq.shape[1] + self.reverb.shape[0] * self.reverb.shape[1]


def render_all(
    wave: np.ndarray,
    eq_settings: np.ndarray,
    reverb_settings: np.ndarray,
    amounts: Sequence[float] = AMOUNTS,
    sample_rate: int = 48_000,
    backend: str = "auto",
) -> Rendered:
    """Every EQ and reverb version of ``wave``: eq_settings (D, 40), reverb_settings (D', 6)."""
    eq, reverb = (
        GraphicEQ(sample_rate=sample_rate, backend=backend),
        AudealizeReverb(sample_rate=sample_rate),
    )
    start = time.perf_counter()
    eq_out = eq(wave, eq_settings, amounts)
    middle = time.perf_counter()
    reverb_out = reverb(wave, reverb_settings, amounts)
    end = time.perf_counter()
    return Rendered(eq_out, reverb_out, middle - start, end - middle)


def load_clip(
    path: Path | None, sample_rate: int, seconds: float, seed: int = 0
) -> tuple[np.ndarray, str]:
    """``seconds`` of mono float32 audio (looped if shorter), or seeded noise when there is no file."""
    n = round(seconds * sample_rate)
    if path is not None and path.exists():
        from humanclap.data.audio import load_audio

        audio = load_audio(path, sample_rate)
        return np.resize(audio, n).astype(np.float32), str(path)
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(n)).astype(np.float32), "synthetic noise"


def _top_settings(path: Path, n: int) -> tuple[np.ndarray, list[str]]:
    entries = [e for e in json.loads(path.read_text()) if e.get("lang", "English") == "English"]
    entries.sort(key=lambda e: -e["num"])
    return np.array([e["settings"] for e in entries[:n]], dtype=np.float64), [
        e["word"] for e in entries[:n]
    ]


def descriptor_settings(
    n: int, eq_json: Path | None, reverb_json: Path | None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, str]:
    """(n, 40) EQ curves and (n, 6) reverb settings: the files' top-n words, else seeded random."""
    rng = np.random.default_rng(seed)
    sources = []
    if eq_json is not None:
        eq, words = _top_settings(eq_json, n)
        sources.append(f"EQ: {', '.join(words)}")
    else:
        eq = rng.normal(size=(n, 40))
        sources.append("EQ: random curves")
    if reverb_json is not None:
        reverb, words = _top_settings(reverb_json, n)
        sources.append(f"reverb: {', '.join(words)}")
    else:
        reverb = np.column_stack(
            [
                rng.uniform(0.01, 0.1, n),  # d
                rng.uniform(0.1, 0.97, n),  # g
                rng.uniform(-0.012, 0.012, n),  # m
                np.exp(rng.uniform(np.log(200), np.log(2e4), n)),  # f
                rng.uniform(0.0, 1.0, n),  # E
                np.ones(n),  # wetdry (replaced by the amounts)
            ]
        )
        sources.append("reverb: random settings")
    return eq, reverb, "; ".join(sources)


def audio_backbone(kind: str):
    """The model whose embedding pass the rendering is compared with.

    ``htsat``: a randomly initialised ClapModel with transformers' default (LAION HTSAT-tiny,
    unfused) audio tower and the real 48 kHz / 10 s feature extractor — the cost of a real CLAP
    checkpoint without downloading one; ``tiny``: the ~60 k-parameter test model.
    """
    from humanclap.backbones import tiny_clap

    tiny = tiny_clap()
    if kind == "tiny":
        return tiny
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    from humanclap.backbones.clap import ClapBackbone
    from humanclap.backbones.featurizer import ClapFeaturizer

    torch.manual_seed(0)
    model = ClapModel(ClapConfig()).eval()
    return ClapBackbone(
        model,
        ClapFeaturizer(ClapFeatureExtractor(), tiny.featurizer.tokenizer, False),
        name="htsat",
    )


def embedding_seconds(backbone, rendered: Rendered, batch_size: int = 8) -> float:
    """One embedding pass over every rendered clip (what a probe must do with them anyway)."""
    clips = [
        clip.numpy() for effect in (rendered.eq, rendered.reverb) for row in effect for clip in row
    ]
    start = time.perf_counter()
    backbone.embed_audio(clips, batch_size=batch_size)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--eq-json", type=Path)
    parser.add_argument("--reverb-json", type=Path)
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sample-rate", type=int, default=48_000)
    parser.add_argument("--descriptors", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="auto", choices=("auto", "torchaudio", "scipy"))
    parser.add_argument(
        "--model",
        default="htsat",
        choices=("htsat", "tiny", "none"),
        help="compare with one embedding pass of this model over the rendered clips",
    )
    args = parser.parse_args()

    wave, source = load_clip(args.audio, args.sample_rate, args.seconds)
    eq_settings, reverb_settings, settings_source = descriptor_settings(
        args.descriptors, args.eq_json, args.reverb_json
    )
    print(
        f"clip: {source}, {args.seconds:g} s at {args.sample_rate} Hz; torch threads: {torch.get_num_threads()}; "
        f"EQ backend: {args.backend}"
    )
    print(f"descriptors: {settings_source}")
    runs = [
        render_all(wave, eq_settings, reverb_settings, AMOUNTS, args.sample_rate, args.backend)
        for _ in range(args.repeats)
    ]
    eq_s, reverb_s = min(r.eq_seconds for r in runs), min(r.reverb_seconds for r in runs)
    last = runs[-1]
    assert torch.isfinite(last.eq).all() and torch.isfinite(last.reverb).all()
    n_eq, n_reverb = (
        last.eq.shape[0] * last.eq.shape[1],
        last.reverb.shape[0] * last.reverb.shape[1],
    )
    print(f"EQ:     {eq_s:7.2f} s  ({n_eq} clips, {eq_s / n_eq * 1e3:6.1f} ms/clip)")
    print(
        f"reverb: {reverb_s:7.2f} s  ({n_reverb} clips, {reverb_s / n_reverb * 1e3:6.1f} ms/clip)"
    )
    total = eq_s + reverb_s
    print(
        f"total:  {total:7.2f} s  ({last.n_clips} clips, {total / last.n_clips * 1e3:6.1f} ms/clip; "
        f"best of {args.repeats})"
    )
    if args.model != "none":
        backbone = audio_backbone(args.model)
        embed_s = embedding_seconds(backbone, last)
        print(
            f"one {args.model} embedding pass over the {last.n_clips} clips: {embed_s:.2f} s; "
            f"rendering / embedding = {total / embed_s:.3f}"
        )


if __name__ == "__main__":
    main()
