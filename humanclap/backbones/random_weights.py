"""Random weights for a module from its keys and shapes alone: the random models of every family
(``msclap_tiny``, ``muq_mulan_tiny``, ``clamp3_tiny`` and their full-size versions).

Not the modules' own initialisation (which follows the global torch seed and the library version):
one seeded generator, keys in sorted order, so the same configuration and seed always give the same
file, and the reference embeddings of tests/fixtures/ stay valid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

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
