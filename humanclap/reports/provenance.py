"""Fingerprints and versions, so a ``metrics.json`` says exactly what was measured with what."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

from humanclap.data.audio import FileAudioStore
from humanclap.data.pairs import RatedPairs, unique_in_order

PACKAGES = ("humanclap", "torch", "transformers", "torchaudio", "torchmetrics", "lightning", "numpy", "scipy",
            "laion-clap", "hydra-core", "matplotlib")


def pairs_fingerprint(pairs: RatedPairs) -> dict[str, object]:
    """sha256 of the rating table (audio key, text, score, group, split per pair) and of the audio.

    Audio files are hashed by content; other stores by their ``fingerprint(keys)`` method if they
    have one (the synthetic store hashes its rendered clips), else the audio hash is ``None``.
    """
    rows = [[p.audio, p.text, repr(p.score), p.group, p.split] for p in pairs]
    table = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
    keys = unique_in_order(p.audio for p in pairs)
    return {"name": pairs.name, "pairs": len(pairs), "clips": len(keys),
            "texts": len(set(p.text for p in pairs)), "table_sha256": table,
            "audio_sha256": audio_fingerprint(pairs.audio_store, keys)}


def audio_fingerprint(store, keys: list[str]) -> str | None:
    if isinstance(store, FileAudioStore):
        digest = hashlib.sha256()
        for key in keys:
            digest.update(key.encode() + b"\0")
            with open(key, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()
    if hasattr(store, "fingerprint"):
        return store.fingerprint(keys)
    return None


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes), in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    found["git_commit"] = _git_commit()
    return found


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None
