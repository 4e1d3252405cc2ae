"""Fingerprints and versions, so a ``metrics.json`` says exactly what was measured with what."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import platform
import subprocess
import sys
from pathlib import Path

import torch

from humanclap.data.audio import audio_fingerprint, missing_files
from humanclap.data.pairs import RatedPairs, unique_in_order
from humanclap.data.readers.labelled_audio import LabelledAudio

log = logging.getLogger(__name__)

PACKAGES = (
    "humanclap",
    "torch",
    "transformers",
    "torchaudio",
    "torchmetrics",
    "lightning",
    "numpy",
    "scipy",
    "laion-clap",
    "hydra-core",
    "matplotlib",
)


def pairs_fingerprint(pairs: RatedPairs) -> dict[str, object]:
    """sha256 of the rating table (audio key, text, score, group, split per pair) and of the audio.

    Audio files are hashed by content; other stores by their ``fingerprint(keys)`` method if they
    have one (the synthetic store hashes its rendered clips), else the audio hash is ``None``.
    ``audio_missing`` counts the clip files that do not exist (pairs read without their audio,
    ``data.pairs.check_audio=false``); if any is missing the audio hash is ``None`` and
    ``audio_missing_first`` names the first.
    """
    keys = unique_in_order(p.audio for p in pairs)
    counts = {"pairs": len(pairs), "clips": len(keys), "texts": len(set(p.text for p in pairs))}
    rows = [[p.audio, p.text, repr(p.score), p.group, p.split] for p in pairs]
    return _fingerprint(pairs.name, counts, rows, pairs.audio_store, keys)


def labelled_fingerprint(data: LabelledAudio) -> dict[str, object]:
    """As :func:`pairs_fingerprint` for labelled audio: sha256 of the table (audio key, label,
    family, fold per clip) and of the audio, with the numbers of clips, classes and folds."""
    keys = unique_in_order(c.audio for c in data)
    counts = {"clips": len(keys), "classes": len(data.classes), "folds": data.folds()}
    rows = [[c.audio, c.label, c.family, c.fold] for c in data]
    return _fingerprint(data.name, counts, rows, data.audio_store, keys)


def _fingerprint(name: str, counts: dict, rows: list, store, keys: list[str]) -> dict[str, object]:
    """``name``, ``counts``, the table's sha256 and the audio's (None when a clip file is missing)."""
    table = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
    missing = missing_files(store, keys)
    found: dict[str, object] = {
        "name": name,
        **counts,
        "table_sha256": table,
        "audio_sha256": None if missing else audio_fingerprint(store, keys),
        "audio_missing": len(missing),
    }
    if missing:
        found["audio_missing_first"] = missing[0]
        log.info(
            "%s: %d of %d audio files missing (first: %s); metrics.json records no audio sha256",
            name,
            len(missing),
            len(keys),
            missing[0],
        )
    return found


def probe_data_fingerprint(probe: object) -> dict[str, object] | None:
    """The fingerprint of what a probe measures: its ``pairs`` or its labelled ``data``; None for
    a probe with neither (generated inputs)."""
    if hasattr(probe, "pairs"):
        return pairs_fingerprint(probe.pairs)
    if isinstance(getattr(probe, "data", None), LabelledAudio):
        return labelled_fingerprint(probe.data)
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
    found: dict[str, str | None] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    found["git_commit"] = _git_commit()
    return found


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        return None  # an installed wheel: its parent folders may belong to an unrelated repository
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None
