"""Human-CLAP losses, eqs. (2)-(6): hand-computed values, an independent implementation, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from humanclap.distributed import gather_with_grad
from humanclap.losses import HumanClapLoss, mae_loss, mse_loss, wsce_loss

# Tiny example: 2-D unit vectors, 1/tau = exp(log 2) = 2.
#   audio: a1 = (1, 0), a2 = (0, 1);  text: t1 = (0.6, 0.8), t2 = (0, 1);  scores a = (0.25, 1.0)
#   dots t_i . a_j = [[0.6, 0.8], [0.0, 1.0]];  cosines y = (0.6, 1.0)
AUDIO = [[1.0, 0.0], [0.0, 1.0]]
TEXT = [[0.6, 0.8], [0.0, 1.0]]
SCORES = [0.25, 1.0]
LOGIT_SCALE = math.log(2.0)


def _nll(target: float, *others: float) -> float:
    """-log(exp(target) / (exp(target) + sum exp(others))), written out by hand."""
    return -math.log(math.exp(target) / (math.exp(target) + sum(math.exp(o) for o in others)))


# text->audio rows: t1 . (a1, a2) = (0.6, 0.8), t2 . (a1, a2) = (0, 1);
# audio->text rows: a1 . (t1, t2) = (0.6, 0), a2 . (t1, t2) = (0.8, 1); all times 1/tau = 2.
SCE_1 = _nll(1.2, 1.6) + _nll(1.2, 0.0)
SCE_2 = _nll(2.0, 0.0) + _nll(2.0, 1.6)
WSCE_BATCH = (0.25 * SCE_1 + 1.0 * SCE_2) / (2 * 2)
WSCE_WEIGHT_SUM = (0.25 * SCE_1 + 1.0 * SCE_2) / (2 * 1.25)
MSE = ((0.25 - 0.6) ** 2 + (1.0 - 1.0) ** 2) / 2
MAE = (abs(0.25 - 0.6) + abs(1.0 - 1.0)) / 2


def tiny(dtype=torch.float64):
    audio = torch.tensor(AUDIO, dtype=dtype, requires_grad=True)
    text = torch.tensor(TEXT, dtype=dtype, requires_grad=True)
    scale = torch.tensor(LOGIT_SCALE, dtype=dtype, requires_grad=True)
    return audio, text, torch.tensor(SCORES, dtype=dtype), scale


def random_batch(n=7, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    audio = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    text = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    return (
        audio,
        text,
        torch.rand(n, generator=g, dtype=torch.float64),
        torch.tensor(1.3, dtype=torch.float64),
    )


def test_regression_terms_by_hand():
    y = torch.tensor([0.6, 1.0], dtype=torch.float64)
    a = torch.tensor(SCORES, dtype=torch.float64)
    assert mse_loss(y, a).item() == pytest.approx(MSE, abs=1e-12)  # eq. (2) = 0.06125
    assert mae_loss(y, a).item() == pytest.approx(MAE, abs=1e-12)  # eq. (4) = 0.175


@pytest.mark.parametrize(
    "normalization, expected", [("batch", WSCE_BATCH), ("weight_sum", WSCE_WEIGHT_SUM)]
)
def test_wsce_by_hand(normalization, expected):
    audio, text, scores, scale = tiny()
    assert wsce_loss(audio, text, scores, scale, normalization).item() == pytest.approx(
        expected, abs=1e-12
    )


def test_wsce_is_symmetric_not_text_to_audio_twice():
    """The two directions differ on this example; text->audio twice (ClapModel) would be wrong."""
    audio, text, scores, scale = tiny()
    t2a_twice = (0.25 * 2 * _nll(1.2, 1.6) + 1.0 * 2 * _nll(2.0, 0.0)) / 4
    assert abs(t2a_twice - WSCE_BATCH) > 1e-3
    assert wsce_loss(audio, text, scores, scale).item() != pytest.approx(t2a_twice)


def test_combination_eq6_by_hand():
    audio, text, scores, scale = tiny()
    out = HumanClapLoss({"wsce": 0.1, "mse": 1.0, "mae": 2.0})(audio, text, scores, scale)
    assert set(out) == {"loss", "wsce", "mse", "mae"}
    assert out["wsce"].item() == pytest.approx(WSCE_BATCH, abs=1e-12)
    assert out["mse"].item() == pytest.approx(MSE, abs=1e-12)
    assert out["mae"].item() == pytest.approx(MAE, abs=1e-12)
    assert out["loss"].item() == pytest.approx(0.1 * WSCE_BATCH + MSE + 2.0 * MAE, abs=1e-12)
    assert out["loss"].requires_grad and not out["wsce"].requires_grad  # components are detached


def test_weight_sum_variant_through_module():
    audio, text, scores, scale = tiny()
    out = HumanClapLoss({"wsce": 1.0}, wsce_normalization="weight_sum")(audio, text, scores, scale)
    assert out["loss"].item() == pytest.approx(WSCE_WEIGHT_SUM, abs=1e-12)


@pytest.mark.parametrize(
    "lambdas", [{"mse": 1.0}, {"mae": 1.0}, {"wsce": 0.0, "mse": 1.0, "mae": 0.0}]
)
def test_zero_lambda_terms_still_give_zero_gradients(lambdas):
    audio, text, scores, scale = tiny()
    HumanClapLoss(lambdas)(audio, text, scores, scale)["loss"].backward()
    assert scale.grad is not None  # the temperature is part of the graph: DDP sees no unused param
    assert scale.grad.item() == 0.0
    assert audio.grad is not None and text.grad is not None


def test_wsce_gives_temperature_gradient():
    audio, text, scores, scale = tiny()
    HumanClapLoss({"wsce": 1.0})(audio, text, scores, scale)["loss"].backward()
    assert scale.grad.item() != 0.0


@pytest.mark.parametrize("normalization", ["batch", "weight_sum"])
def test_all_zero_scores_are_finite(normalization):
    audio, text, _, scale = tiny()
    zeros = torch.zeros(2, dtype=torch.float64)
    assert wsce_loss(audio, text, zeros, scale, normalization).item() == 0.0
    out = HumanClapLoss({"wsce": 1.0, "mse": 1.0}, wsce_normalization=normalization)(
        audio, text, zeros, scale
    )
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["wsce"].item() == 0.0
    assert torch.isfinite(audio.grad).all() and torch.isfinite(scale.grad)


@pytest.mark.parametrize("normalization", ["batch", "weight_sum"])
def test_matches_independent_cross_entropy(normalization):
    audio, text, scores, scale = random_batch()
    logits = scale.exp() * text @ audio.T  # rows: text i, columns: audio j
    target = torch.arange(len(scores))
    per_pair = F.cross_entropy(logits, target, reduction="none") + F.cross_entropy(
        logits.T, target, reduction="none"
    )
    denominator = 2 * len(scores) if normalization == "batch" else 2 * scores.sum()
    expected = (scores * per_pair).sum() / denominator
    cos = F.cosine_similarity(audio, text, dim=-1)
    out = HumanClapLoss({"wsce": 0.3, "mse": 0.5, "mae": 0.7}, normalization)(
        audio, text, scores, scale
    )
    assert out["wsce"].item() == pytest.approx(expected.item(), abs=1e-12)
    assert out["mse"].item() == pytest.approx(F.mse_loss(cos, scores).item(), abs=1e-12)
    assert out["mae"].item() == pytest.approx(F.l1_loss(cos, scores).item(), abs=1e-12)
    assert out["loss"].item() == pytest.approx(
        0.3 * expected.item()
        + 0.5 * F.mse_loss(cos, scores).item()
        + 0.7 * F.l1_loss(cos, scores).item(),
        abs=1e-12,
    )


def test_low_precision_embeddings_are_computed_in_float32():
    audio, text, scores, scale = tiny(torch.float32)
    out = HumanClapLoss({"wsce": 1.0})(
        audio.detach().bfloat16(), text.detach().bfloat16(), scores, scale
    )
    assert out["loss"].dtype == torch.float32


def test_gather_with_grad_is_identity_without_distributed():
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x


@pytest.mark.parametrize(
    "lambdas, match",
    [
        ({"wsce": 1.0, "mes": 1.0}, "unknown loss term"),
        ({"mse": -0.1}, ">= 0"),
        ({"mse": float("nan")}, "finite"),
        ({"mae": float("inf")}, "finite"),
        ({"wsce": 0.0, "mse": 0}, "all lambdas are zero"),
        ({}, "all lambdas are zero"),
        ({"mse": "1"}, "real number"),
        ([("mse", 1.0)], "mapping"),
    ],
)
def test_invalid_lambdas(lambdas, match):
    with pytest.raises(ValueError, match=match):
        HumanClapLoss(lambdas)


def test_invalid_normalization():
    with pytest.raises(ValueError, match="normalization"):
        HumanClapLoss({"wsce": 1.0}, wsce_normalization="mean")
    audio, text, scores, scale = tiny()
    with pytest.raises(ValueError, match="normalization"):
        wsce_loss(audio, text, scores, scale, normalization="sum")


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a, t, s, z: (a[:1], t, s, z), r"\(N, D\)"),
        (lambda a, t, s, z: (a[0], t[0], s, z), r"\(N, D\)"),
        (lambda a, t, s, z: (a, t, s[:1], z), "scores must be"),
        (lambda a, t, s, z: (a, t, s[:, None], z), "scores must be"),
        (lambda a, t, s, z: (a, t, s + 0.5, z), r"\[0, 1\]"),
        (lambda a, t, s, z: (a, t, s - 0.5, z), r"\[0, 1\]"),
        (lambda a, t, s, z: (a, t, torch.tensor([0.5, float("nan")], dtype=s.dtype), z), "finite"),
        (lambda a, t, s, z: (a, t, s, torch.ones(2)), "scalar"),
        (lambda a, t, s, z: (a[:0], t[:0], s[:0], z), "empty"),
    ],
)
def test_invalid_inputs(change, match):
    loss = HumanClapLoss({"wsce": 1.0, "mse": 1.0})
    with pytest.raises(ValueError, match=match):
        loss(*change(*tiny()))
