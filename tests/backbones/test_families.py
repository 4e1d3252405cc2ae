"""What every model family owes the rest of humanclap (humanclap/backbones/base.py), checked on the
small random model of each: the LightningModule's loss reaches every trainable weight (DDP refuses
one it does not reach), an embedding does not depend on the batch it is computed in, and frozen
towers stay frozen and in eval mode while the model trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humanclap.backbones.resolve import resolve_model
from humanclap.lit.module import HumanClapModule
from humanclap.losses import HumanClapLoss

FAMILIES = ["tiny", "tiny_transformer_head", "msclap_tiny", "muq_mulan_tiny", "clamp3_tiny"]
TEXTS = ["a dog barks", "a bell rings twice, then a man speaks", "rain"]


@pytest.fixture(scope="module", params=FAMILIES)
def backbone(request):
    return resolve_model(request.param).backbone


def _waves(backbone, seconds=(0.6, 1.3, 2.1)):
    rate = backbone.sample_rate
    return [
        (0.1 * (i + 1) * np.random.RandomState(i).randn(int(s * rate))).astype(np.float32)
        for i, s in enumerate(seconds)
    ]


def test_the_loss_reaches_every_trainable_weight(backbone):
    module = HumanClapModule(backbone, HumanClapLoss({"wsce": 0.1, "mse": 0.0, "mae": 1.0}), None)
    module.train()
    module.zero_grad(set_to_none=True)
    audio = backbone.audio_embeddings(backbone.featurizer.audio(_waves(backbone)))
    text = backbone.text_embeddings(backbone.featurizer.text(TEXTS))
    scores = torch.tensor([1.0, 0.5, 0.0])
    module.loss(audio, text, scores, backbone.logit_scale)[
        "loss"
    ].backward()  # training_step's loss
    silent = [name for name, p in module.named_parameters() if p.requires_grad and p.grad is None]
    assert silent == []
    assert all(not p.requires_grad for p in backbone.unused_parameters())
    assert backbone.logit_scale.grad is not None


def test_embeddings_are_unit_norm_and_independent_of_the_batch(backbone):
    waves = _waves(backbone)
    together = backbone.embed_audio(waves, batch_size=3)
    alone = torch.cat([backbone.embed_audio([wave]) for wave in waves])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    texts = backbone.embed_text(TEXTS, batch_size=3)
    torch.testing.assert_close(texts, torch.cat([backbone.embed_text([t]) for t in TEXTS]),
                               atol=1e-5, rtol=0)  # fmt: skip
    for rows in (together, texts):
        torch.testing.assert_close(rows.norm(dim=-1), torch.ones(len(rows)), atol=1e-5, rtol=0)
        assert rows.shape[1] == backbone.embedding_dim


def test_a_frozen_tower_stays_frozen_and_in_eval_mode_while_training(backbone):
    backbone.freeze(audio=True, text=False)
    try:
        backbone.train()
        for module in backbone.tower_modules("audio"):
            assert not module.training
            assert all(not p.requires_grad for p in module.parameters())
        assert all(m.training for m in backbone.part_modules("text"))  # the text encoder trains
    finally:
        backbone.freeze()
        backbone.eval()
