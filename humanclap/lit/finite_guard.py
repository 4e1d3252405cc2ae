"""Stop training at the first non-finite loss, gradient or parameter (issue 12).

:class:`FiniteGuard` checks the loss, the gradient norm and the parameter norm of every training
batch and raises :class:`TrainingDivergedError`; every DDP rank stops at the same batch.
See docs/training.md#divergence-guard.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor

from humanclap.errors import NonFiniteError

TERM_LABELS = {"wsce": "wSCE", "mse": "MSE", "mae": "MAE"}


class TrainingDivergedError(NonFiniteError):
    """Training produced a non-finite loss, gradient or parameter at global step ``step``."""

    def __init__(self, message: str, step: int, epoch: int) -> None:
        super().__init__(message)
        self.step = step
        self.epoch = epoch


@torch.no_grad()
def group_norms(tensors: Iterable[Tensor]) -> list[Tensor]:
    """The 2-norm over all of ``tensors``, one 0-d tensor per (device, dtype) group; no sync.

    One fused ``torch._foreach_norm`` per group, accumulated in float32 for half types (a float16
    norm overflows at 65504). NaN or inf in any element makes its group's norm non-finite.
    """
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    return [
        torch.linalg.vector_norm(
            torch.stack(
                torch._foreach_norm(
                    group,
                    2,
                    dtype=torch.float32 if dtype in (torch.float16, torch.bfloat16) else None,
                )
            )
        )
        for (_, dtype), group in groups.items()
    ]


def _optimizer_parameters(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [parameter for group in optimizer.param_groups for parameter in group["params"]]


def _nonfinite(named: Iterable[tuple[str, Tensor]]) -> list[str]:
    """Names of the tensors holding NaN or inf, checked element-wise (failure path: one sync each)."""
    return [name for name, tensor in named if not bool(torch.isfinite(tensor).all())]


class FiniteGuard(L.Callback):
    """Raises :class:`TrainingDivergedError` at the first batch whose loss, gradients or updated
    parameters are not finite (docs/training.md#divergence-guard).
    ``HumanClapModule.configure_callbacks`` adds it to every fit; it keeps no state in checkpoints."""

    def __init__(self) -> None:
        super().__init__()
        self._step = 0
        self._gradient_norms: list[Tensor] = []  # as seen before clipping and the step
        self._optimizer: torch.optim.Optimizer | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._step = trainer.global_step  # the step the module logs this batch under
        self._gradient_norms = []
        self._optimizer = None

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        self._optimizer = optimizer
        if (
            getattr(trainer.precision_plugin, "scaler", None) is None
        ):  # a GradScaler handles overflow itself
            self._gradient_norms = group_norms(
                p.grad for p in _optimizer_parameters(optimizer) if p.grad is not None
            )

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        norms = ([loss.detach()] if isinstance(loss, Tensor) else []) + self._gradient_norms
        if self._optimizer is not None:  # an optimizer step happened in this batch
            norms += group_norms(_optimizer_parameters(self._optimizer))
        if not norms:
            return
        device = norms[0].device
        if bool(
            torch.stack([torch.isfinite(n).all().to(device) for n in norms]).all()
        ):  # the one sync per batch
            return
        error = self._diverged(trainer, pl_module, outputs, batch, batch_idx)
        if error is not None:
            raise error

    # -- the report (failure path only: any number of syncs) -----------------------------------
    def _diverged(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> TrainingDivergedError | None:
        """The error for this batch, or None if every value is finite after all (a norm overflowed)."""
        names = {id(parameter): name for name, parameter in pl_module.named_parameters()}
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        loss_finite = not isinstance(loss, Tensor) or bool(torch.isfinite(loss).all())
        parameters = _optimizer_parameters(self._optimizer) if self._optimizer is not None else []
        with_gradient = (
            [p for p in parameters if p.grad is not None] if self._gradient_norms else []
        )
        # Clipping and the step ran since the gradient check, but neither makes a non-finite gradient finite.
        bad_gradients = _nonfinite((names.get(id(p), "?"), p.grad) for p in with_gradient)
        bad_parameters = _nonfinite((names.get(id(p), "?"), p) for p in parameters)
        if loss_finite and not bad_gradients and not bad_parameters:
            return None
        findings = []
        if not loss_finite:
            terms = outputs.get("terms", {}) if isinstance(outputs, Mapping) else {}
            bad = [
                f"{TERM_LABELS.get(name, name)}={float(value):g}"
                for name, value in terms.items()
                if not bool(torch.isfinite(value).all())
            ]
            detail = f" (non-finite terms: {', '.join(bad)})" if bad else ""
            findings.append(f"the loss is {float(loss.detach().float().sum()):g}{detail}")
        if bad_gradients:
            norm = math.hypot(*(float(n) for n in self._gradient_norms))
            findings.append(
                f"the gradient norm is {norm:g} ({len(bad_gradients)} of {len(with_gradient)} gradient "
                f"tensors non-finite, e.g. {bad_gradients[0]})"
            )
        if bad_parameters:
            findings.append(
                f"after the optimizer step {len(bad_parameters)} of {len(parameters)} trained parameter "
                f"tensors are non-finite (e.g. {bad_parameters[0]})"
            )
        cause = self._likely_cause(
            trainer,
            batch,
            first_step=self._step == 0,
            before_update=not loss_finite or bool(bad_gradients),
        )
        epoch = trainer.current_epoch
        message = (
            f"training diverged at global step {self._step} (epoch {epoch}, batch {batch_idx}): "
            f"{'; '.join(findings)}. Likely cause: {cause}. Training stopped and nothing was exported."
        )
        return TrainingDivergedError(message, step=self._step, epoch=epoch)

    @staticmethod
    def _likely_cause(trainer: L.Trainer, batch: Any, first_step: bool, before_update: bool) -> str:
        precision = str(trainer.precision)
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        learning_rate = f"optimizer.lr={lr:g}" if lr is not None else "optimizer.lr"
        inputs = nonfinite_inputs(batch)
        # Every rank is on this path at the same batch (docs/training.md), so a collective is safe here;
        # the gathered embeddings make a bad batch on one rank non-finite on all of them.
        bad_ranks = torch.nonzero(
            trainer.strategy.all_gather(
                torch.tensor(float(bool(inputs)), device=trainer.strategy.root_device)
            ).reshape(-1)
        )
        bad_ranks = bad_ranks.flatten().tolist()
        if inputs:
            where = f" on rank {trainer.global_rank}" if trainer.world_size > 1 else ""
            return (
                f"the data: the batch{where} has non-finite values in {', '.join(inputs)}; check the "
                f"scores and audio of this batch"
            )
        if bad_ranks:
            return (
                f"the data: the batch of rank {', '.join(map(str, bad_ranks))} has non-finite values; check "
                f"the scores and audio of this batch"
            )
        if precision.startswith("16"):
            return (
                f"numerical precision: precision={precision} overflows float16; use precision=bf16-mixed or "
                f"precision=32-true (or lower {learning_rate})"
            )
        if first_step and before_update:
            return (
                f"the model or the data, not the learning rate: the first step is non-finite before any "
                f"update; check the checkpoint (model=...), the scores and the precision (precision={precision})"
            )
        return (
            f"the learning rate is too high ({learning_rate}); lower it (the paper fine-tunes CLAP at 1e-5, "
            f"the tiny model trains at 1e-3). If it is not that, check the data (scores, audio) and the "
            f"precision (precision={precision})"
        )


def nonfinite_inputs(batch: Any, prefix: str = "") -> list[str]:
    """Dotted keys of the floating-point tensors in a (nested) batch that hold NaN or inf."""
    if isinstance(batch, Mapping):
        return [
            key
            for name, value in batch.items()
            for key in nonfinite_inputs(value, f"{prefix}{name}.")
        ]
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)):
        return [
            key
            for index, value in enumerate(batch)
            for key in nonfinite_inputs(value, f"{prefix}{index}.")
        ]
    if (
        isinstance(batch, Tensor)
        and batch.is_floating_point()
        and not bool(torch.isfinite(batch).all())
    ):
        return [prefix.rstrip(".") or "batch"]
    return []
