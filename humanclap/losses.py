"""Human-CLAP losses (human-clap eqs. (2)-(6), see docs/references.md) and exact DDP gathering.

Notation of the paper: ``a_i in [0, 1]`` is the rescaled human score of the i-th audio-text pair,
``e_i^audio``/``e_i^text`` its embeddings (unit-norm, as CLAP's projections produce them),
``y_i`` their cosine (eq. 3), ``tau`` the learnable temperature and N the batch size.
``logit_scale`` is always ``log(1/tau)`` (CLAP's ``logit_scale_a``):
logits = exp(logit_scale) * dot.

The functions :func:`mse_loss`, :func:`mae_loss` and :func:`wsce_loss` are the plain equations over
the tensors they are given. :class:`HumanClapLoss` combines them (eq. 6) and, when
``torch.distributed`` runs with world_size > 1, computes the *local* share of the loss of the
global batch (open_clip's ``local_loss`` + ``gather_with_grad``), so that DDP training is exactly
single-process training on the concatenated global batch; see :meth:`HumanClapLoss.forward`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from humanclap.distributed import gather_sizes, gather_with_grad, rank_and_world

TERMS = ("wsce", "mse", "mae")
"""Names of the terms of eq. (6), in the order of lambda_1, lambda_2, lambda_3."""

NORMALIZATIONS = ("batch", "weight_sum")
"""wSCE normalisations: the paper's 1/(2N), or 1/(2 * sum_i a_i)."""


# -- the equations ----------------------------------------------------------------------------
def cosine(audio_emb: Tensor, text_emb: Tensor) -> Tensor:
    """Eq. (3): y_i = e_i^text . e_i^audio / (||e_i^text|| ||e_i^audio||), shape (N,)."""
    dots = (audio_emb * text_emb).sum(-1)
    return dots / (audio_emb.norm(dim=-1) * text_emb.norm(dim=-1)).clamp_min(1e-12)


def mse_loss(cosine: Tensor, scores: Tensor) -> Tensor:
    """Eq. (2): L_MSE = 1/N sum_i (a_i - y_i)^2; ``cosine`` = y (N,), ``scores`` = a (N,)."""
    return ((scores - cosine) ** 2).mean()


def mae_loss(cosine: Tensor, scores: Tensor) -> Tensor:
    """Eq. (4): L_MAE = 1/N sum_i |a_i - y_i|; ``cosine`` = y (N,), ``scores`` = a (N,)."""
    return (scores - cosine).abs().mean()


def _sce_rows(
    audio_rows: Tensor,
    text_rows: Tensor,
    audio_all: Tensor,
    text_all: Tensor,
    offset: int,
    logit_scale: Tensor,
) -> Tensor:
    """Per-row unweighted SCE of eq. (5): -(log p_t->a(i,i) + log p_a->t(i,i)), shape (rows,).

    Rows are pairs ``offset .. offset+rows-1`` of the batch ``*_all``; softmax denominators run
    over all of ``*_all`` (j = 1..N of eq. 5).
    """
    scale = logit_scale.exp()
    targets = torch.arange(offset, offset + audio_rows.shape[0], device=audio_rows.device)[:, None]
    text_to_audio = F.log_softmax(scale * text_rows @ audio_all.T, dim=-1)  # e_i^text . e_j^audio
    audio_to_text = F.log_softmax(scale * audio_rows @ text_all.T, dim=-1)  # e_i^audio . e_j^text
    return -(text_to_audio.gather(1, targets) + audio_to_text.gather(1, targets)).squeeze(1)


def _wsce_denominator(scores_all: Tensor, normalization: str) -> Tensor:
    """2N ("batch", eq. 5) or 2 sum_i a_i ("weight_sum"; 1 when all a_i = 0 so the loss is 0)."""
    if normalization == "batch":
        return scores_all.new_tensor(2.0 * scores_all.shape[0])
    total = 2.0 * scores_all.sum()
    return torch.where(total > 0, total, torch.ones_like(total))


def wsce_loss(
    audio_emb: Tensor,
    text_emb: Tensor,
    scores: Tensor,
    logit_scale: Tensor | float,
    normalization: str = "batch",
) -> Tensor:
    """Eq. (5), weighted symmetric cross entropy over one batch (both directions).

    L = -1/(2N) sum_i a_i [log softmax_j(e_i^text . e_j^audio / tau)_i
                           + log softmax_j(e_i^audio . e_j^text / tau)_i],
    with 1/tau = exp(logit_scale). ``normalization="batch"`` (default) is the paper's 1/(2N);
    ``"weight_sum"`` divides by 2 * sum_i a_i instead, i.e. a weighted *mean* of the per-pair SCE
    whose size does not shrink with low scores; a batch whose scores are all 0 gives 0 (not NaN).
    Not distribution-aware: under DDP use :class:`HumanClapLoss`.
    """
    audio_emb, text_emb, scores, logit_scale = _prepare(audio_emb, text_emb, scores, logit_scale)
    _check_normalization(normalization)
    _check_scores(scores)
    rows = _sce_rows(audio_emb, text_emb, audio_emb, text_emb, 0, logit_scale)
    return (scores * rows).sum() / _wsce_denominator(scores, normalization)


# -- eq. (6) ----------------------------------------------------------------------------------
class HumanClapLoss(nn.Module):
    """Eq. (6): L = lambda_1 L_wSCE + lambda_2 L_MSE + lambda_3 L_MAE.

    ``lambdas`` maps a subset of {"wsce", "mse", "mae"} to non-negative finite weights (missing
    keys are 0; at least one must be > 0); the paper's best mix is
    ``{"wsce": 0.1, "mse": 1, "mae": 1}``. ``wsce_normalization`` is passed to :func:`wsce_loss`.
    Every term is computed and added even when its lambda is 0 (as 0 * term), so the temperature
    always receives a (zero) gradient and DDP never sees an unused parameter.
    """

    def __init__(self, lambdas: Mapping[str, float], wsce_normalization: str = "batch") -> None:
        super().__init__()
        if not isinstance(lambdas, Mapping):
            raise ValueError(
                f"lambdas must be a mapping over {TERMS}, got {type(lambdas).__name__}"
            )
        unknown = sorted(str(key) for key in lambdas if key not in TERMS)
        if unknown:
            raise ValueError(f"unknown loss term(s) {unknown} in lambdas; expected keys of {TERMS}")
        weights = {}
        for term in TERMS:
            value = lambdas.get(term, 0.0)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"lambda for {term!r} must be a real number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"lambda for {term!r} must be finite and >= 0, got {value!r}")
            weights[term] = float(value)
        if not any(weights.values()):
            raise ValueError(f"all lambdas are zero ({weights}): the loss would be identically 0")
        _check_normalization(wsce_normalization)
        self.lambdas = weights
        self.wsce_normalization = wsce_normalization

    def extra_repr(self) -> str:
        return f"lambdas={self.lambdas}, wsce_normalization={self.wsce_normalization!r}"

    def forward(
        self, audio_emb: Tensor, text_emb: Tensor, scores: Tensor, logit_scale: Tensor | float
    ) -> dict[str, Tensor]:
        """Loss of a batch of N pairs: ``audio_emb`` (N, D), ``text_emb`` (N, D), ``scores`` (N,).

        Returns ``{"loss", "wsce", "mse", "mae"}``; only ``loss`` carries the autograd graph, the
        components are detached (for logging). Computed in at least float32.

        Distributed (``torch.distributed`` initialised, world_size W > 1): embeddings and scores
        of all ranks are gathered with gradients (uneven per-rank sizes are fine), giving the
        global batch of N_g pairs. Each rank returns only its local rows i of the global sums,
        with softmax denominators over the whole global batch, scaled by W:

            wSCE_r = W / (2 N_g)        * sum_{i on r} a_i SCE_i   ("weight_sum": W / (2 sum_g a))
            MSE_r  = W / N_g            * sum_{i on r} (a_i - y_i)^2        (MAE likewise)

        Hence mean_r(L_r) is the single-process loss of the global batch, and since DDP averages
        gradients over ranks (1/W) while the all-gather backward sums the gradients every rank
        sends to this rank's embeddings, the averaged gradient is exactly the single-process
        gradient (temperature included). Note that 1/n_local instead of W/N_g would be wrong for
        uneven splits. Returned values are these per-rank shares; average them over ranks (e.g.
        Lightning ``self.log(..., sync_dist=True)``) to get the global values. Every rank must
        call this the same number of times. Score values are validated after gathering, so a bad
        score raises the same ValueError on every rank instead of hanging the others.
        """
        audio_emb, text_emb, scores, logit_scale = _prepare(
            audio_emb, text_emb, scores, logit_scale
        )
        rank, world = rank_and_world()
        if world > 1:
            sizes = gather_sizes(scores.shape[0], scores.device)
            audio_all = gather_with_grad(audio_emb, sizes)
            text_all = gather_with_grad(text_emb, sizes)
            scores_all = gather_with_grad(scores.detach(), sizes)
            offset = sum(sizes[:rank])
        else:
            audio_all, text_all, scores_all, offset = audio_emb, text_emb, scores, 0
        _check_scores(scores_all)
        n_global = scores_all.shape[0]

        sce = _sce_rows(audio_emb, text_emb, audio_all, text_all, offset, logit_scale)
        wsce = world * (scores * sce).sum() / _wsce_denominator(scores_all, self.wsce_normalization)
        y = cosine(audio_emb, text_emb)
        mse = world * ((scores - y) ** 2).sum() / n_global
        mae = world * (scores - y).abs().sum() / n_global
        terms = {"wsce": wsce, "mse": mse, "mae": mae}
        loss = sum(self.lambdas[name] * value for name, value in terms.items())
        return {"loss": loss, **{name: value.detach() for name, value in terms.items()}}


# -- validation -------------------------------------------------------------------------------
def _check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"unknown wSCE normalization {normalization!r}; expected one of {NORMALIZATIONS}"
        )


def _prepare(
    audio_emb: Tensor, text_emb: Tensor, scores: Tensor, logit_scale: Tensor | float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Check shapes (N, D)/(N, D)/(N,) and a scalar logit_scale; cast to >= float32."""
    if audio_emb.dim() != 2 or text_emb.shape != audio_emb.shape:
        raise ValueError(
            f"audio_emb and text_emb must both be (N, D), got {tuple(audio_emb.shape)} "
            f"and {tuple(text_emb.shape)}"
        )
    scores = torch.as_tensor(scores, device=audio_emb.device)
    if scores.shape != audio_emb.shape[:1]:
        raise ValueError(f"scores must be ({audio_emb.shape[0]},), got {tuple(scores.shape)}")
    logit_scale = torch.as_tensor(logit_scale, device=audio_emb.device)
    if logit_scale.numel() != 1:
        raise ValueError(f"logit_scale must be a scalar, got shape {tuple(logit_scale.shape)}")
    dtype = torch.promote_types(audio_emb.dtype, torch.float32)
    return (
        audio_emb.to(dtype),
        text_emb.to(dtype),
        scores.to(dtype),
        logit_scale.to(dtype).reshape(()),
    )


def _check_scores(scores: Tensor) -> None:
    if scores.numel() == 0:
        raise ValueError("empty batch: at least one audio-text pair is needed")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite (rescaled human ratings in [0, 1])")
    if bool((scores < 0).any()) or bool((scores > 1).any()):
        raise ValueError(
            f"scores must lie in [0, 1] (rescaled human ratings), got range "
            f"[{float(scores.min()):.4g}, {float(scores.max()):.4g}]"
        )
