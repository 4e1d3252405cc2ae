"""BatchNorm whose training statistics are those of the global DDP batch, on every backend.

CLAP's audio tower normalises its mel input with a ``BatchNorm2d`` (transformers'
``ClapAudioEncoder.batch_norm``; the fusion block of fused models has more). In training mode a
BatchNorm uses the statistics of the batch it sees, so under DDP each rank normalised with its own
share's mean and variance: losses and gradients differed from one process on the global batch, and
the running statistics the probes use were rank 0's alone. ``torch.nn.SyncBatchNorm`` fixes that on
GPUs only (it refuses CPU tensors, so gloo runs cannot use it). :class:`GlobalBatchNorm` sums the
per-channel counts, sums and squared deviations over ranks with gradients, so the output, the
gradients and the running statistics are exactly those of a single process on the global batch.
Outside training or without ``torch.distributed`` it is an ordinary BatchNorm.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from humanclap.distributed import all_reduce_with_grad, rank_and_world


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm over the concatenated batches of all ranks (any input with channels in dim 1)."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...), got {input.dim()}D input")

    def forward(self, input: Tensor) -> Tensor:
        if not self.training or rank_and_world()[1] == 1:
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.to(torch.promote_types(input.dtype, torch.float32))
        local_count = x.new_full((1,), x.numel() / x.shape[1])
        totals = all_reduce_with_grad(torch.cat([x.sum(dims), local_count]))
        count = totals[-1].detach()
        mean = totals[:-1] / count
        centred = x - mean.view(shape)
        var = (
            all_reduce_with_grad((centred * centred).sum(dims)) / count
        )  # biased, as BatchNorm normalises
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                unbiased = var.detach() * count / (count - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return out.to(input.dtype)


def use_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm in ``module`` (in place) by a :class:`GlobalBatchNorm` that shares
    its parameters and buffers, so state-dict keys and values are unchanged; returns ``module``."""
    for name, child in list(module.named_children()):
        if isinstance(child, _BatchNorm) and not isinstance(
            child, (GlobalBatchNorm, nn.SyncBatchNorm)
        ):
            replacement = GlobalBatchNorm(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            replacement._parameters = child._parameters  # the same Parameter objects
            replacement._buffers = child._buffers
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            use_global_batchnorm(child)
    return module
