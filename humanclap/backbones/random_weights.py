"""Random models of the model families (``msclap_tiny``, ``muq_mulan_tiny``, ``clamp3_tiny`` and their
full-size versions): weights from a module's keys and shapes alone, and the cached export they load from.

Not the modules' own initialisation (which follows the global torch seed and the library version):
one seeded generator, keys in sorted order, so the same configuration and seed always give the same
file, and the reference embeddings of tests/fixtures/ stay valid.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

Rule = tuple[str, Callable[[torch.Tensor], torch.Tensor]]


def seeded_state_dict(
    module: nn.Module, seed: int = 0, keep: Sequence[str] = (), rules: Sequence[Rule] = ()
) -> dict[str, torch.Tensor]:
    """Every floating-point tensor of ``module.state_dict()`` drawn from N(0, 1) noise: keys ending in a
    ``rules`` suffix get ``rule(noise)`` (first match); otherwise BatchNorm variances 1 + 0.1|n|,
    means and biases 0.1 n, other 1-D tensors (norm weights, scales) 1 + 0.1 n, and matrices
    n / sqrt(fan-in) (variance-preserving). Keys ending in a ``keep`` suffix (constants such as
    filter banks or masks) and integer buffers keep their values."""
    generator = torch.Generator().manual_seed(seed)
    state = module.state_dict()
    out = {}
    for key in sorted(state):
        tensor = state[key]
        if not tensor.is_floating_point() or key.endswith(tuple(keep)):
            out[key] = tensor.clone()
            continue
        noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
        rule = next((rule for suffix, rule in rules if key.endswith(suffix)), None)
        if rule is not None:
            value = rule(noise)
        elif key.endswith("running_var"):
            value = 1.0 + 0.1 * noise.abs()
        elif key.endswith(("running_mean", "bias")):
            value = 0.1 * noise
        elif tensor.ndim == 1:
            value = 1.0 + 0.1 * noise
        else:
            value = noise / math.sqrt(max(1, tensor[0].numel()))
        out[key] = value.to(tensor.dtype)
    return out


def cached_random_export(
    title: str,
    recipe: dict[str, Any],
    build: Callable[[Path], object],
    marker: str,
    real_model: str,
    full_size: bool,
    directory: str | None = None,
) -> Path:
    """The folder of a random model's export, built once: ``build(scratch)`` writes it (a scratch
    folder renamed into place, so concurrent DDP ranks never read half of it) under
    ``$HUMANCLAP_CACHE/<title>-random-<digest of recipe>`` unless ``directory`` is given; ``marker``
    is the file a finished export holds. A full-size model warns, at every load, that it is not
    pretrained and which config (``real_model``) is."""
    from humanclap.backbones.tiny import build_once, recipe_directory

    slug = title.lower().replace(" ", "-")
    path = Path(directory) if directory else recipe_directory(f"{slug}-random", recipe)

    def announce_and_build(scratch: Path) -> None:
        log.info("Writing a random %s (%s) to %s", title, _described(recipe), path)
        build(scratch)

    build_once(path, announce_and_build, marker=marker)
    if full_size:
        log.warning(
            "%s-random: random weights in %s's architecture, NOT pretrained (scores mean nothing; "
            "for smoke tests and benchmarks). For the real model use model=%s.",
            slug, title, real_model,
        )  # fmt: skip
    return path


def _described(recipe: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in recipe.items() if key != "version")
