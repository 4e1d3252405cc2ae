"""Under DDP the relevance probe counts every pair exactly once, as on one process.

Lightning's validation sampler pads ranks with duplicate samples (5 pairs on 2 ranks become 6);
probes shard their own inputs instead, so the metrics of a 2-process run equal a 1-process run.
Both run in float64 (``precision="64-true"``): in float32 the embeddings depend on how clips are
batched (~1e-7), which the near-constant scores of the random tiny model amplify to ~1e-5.
"""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch

from humanclap.backbones import tiny_clap
from humanclap.data.synthetic.sounds import synthetic_pairs
from humanclap.lit.callbacks import ProbeCallback
from humanclap.lit.datamodule import RatedPairDataModule
from humanclap.lit.module import HumanClapModule
from humanclap.losses import HumanClapLoss
from humanclap.probes.relevance.probe import RelevanceProbe


def _validate(devices: int, tmp_path) -> dict[str, float]:
    backbone = tiny_clap()
    pairs = synthetic_pairs(n_sounds=10, texts_per_sound=1, val_fraction=0.5, seed=3)
    data = RatedPairDataModule(pairs, backbone.featurizer, batch_size=2)
    assert len(data.val_pairs) == 5
    module = HumanClapModule(
        backbone, HumanClapLoss({"mae": 1.0}), partial(torch.optim.AdamW, lr=1e-3)
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        precision="64-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[ProbeCallback({"relevance": RelevanceProbe(data.val_pairs)})],
    )
    trainer.validate(module, datamodule=data)
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("relevance/")}


@pytest.mark.slow
def test_two_process_relevance_equals_one_process(tmp_path):
    single = _validate(1, tmp_path / "one")
    double = _validate(2, tmp_path / "two")
    assert single["relevance/n"] == double["relevance/n"] == 5
    assert single.keys() == double.keys()
    for name, value in single.items():
        assert double[name] == pytest.approx(value, abs=1e-6, nan_ok=True), name
