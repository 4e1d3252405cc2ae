"""recipe=ordering end to end: synthesized before/after pairs, the Transformer aggregation heads,
and every ordering probe logged before training and after each epoch; the exported model
(ClapModel + heads) is evaluated on the synthesized order set. That the default run learns order
(test BAT >= 0.75) is checked by the README's run (tests/integration/test_readme.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from humanclap.evaluate import evaluate
from humanclap.train import train

ORDER_PROBES = ("bat", "clause_swap", "as_then_swap", "text_sensitivity")
SMALL = ["data.pairs.n_pairs=40", "data.pairs.n_events=30"]


def test_recipe_ordering_composes_the_order_data_heads_and_order_probes(compose_train):
    cfg = compose_train("recipe=ordering")
    assert cfg.data.pairs._target_.endswith("order_pairs_from_events")
    assert (cfg.data.pairs.duration_s, cfg.data.pairs.crossfade_s) == (1.0, 0.1)
    assert cfg.data.group_by_audio is True
    assert cfg.model._target_.endswith("with_transformer_heads")
    assert cfg.model.audio_cls_token is False and cfg.model.dropout == 0.0
    assert cfg.trainer.max_epochs == 25 and cfg.optimizer.lr == pytest.approx(1e-3)
    assert {"bat", "clause_swap", "text_sensitivity"} == set(cfg.probes)
    assert cfg.optimized_metric == cfg.monitor == "bat/accuracy" and cfg.monitor_mode == "max"
    assert dict(cfg.loss.lambdas) == {"wsce": 1.0, "mse": 0, "mae": 1}
    # The +ACBA mix is one data choice away and keeps the design of the order clips.
    mixed = compose_train("recipe=ordering", "data=synthetic_with_order")
    assert mixed.data.pairs._target_.endswith("with_order_pairs") and mixed.data.group_by_audio
    # A backbone chosen on the command line wins over the recipe's default model.
    assert compose_train("recipe=ordering", "model=tiny").model._target_.endswith("tiny_clap")


@pytest.mark.slow
def test_recipe_ordering_trains_logs_bat_each_epoch_and_exports_the_heads(
    compose_train, compose_evaluate
):
    cfg = compose_train(
        "recipe=ordering",
        *SMALL,
        "trainer.max_epochs=2",
        "logger=csv",
        f"probes=[{','.join(ORDER_PROBES)}]",
    )
    summary = train(cfg)
    assert summary["metric"] == "bat/accuracy"
    export = Path(summary["export_dir"])
    run = json.loads((export / "humanclap_run.json").read_text())
    assert [epoch for epoch, _ in run["history"]] == [-1, 0, 1]
    for _, metrics in run["history"]:
        # The validation split's order pairs: every original has one temporal connective.
        n_bat = metrics["bat/n_before"] + metrics["bat/n_after"]
        assert n_bat == metrics["bat/n"] > 0
        assert 0.0 <= metrics["bat/accuracy"] <= 1.0
        assert metrics["clause_swap/n_queries"] > 0 and metrics["as_then_swap/then/n_queries"] > 0
        assert metrics["text_sensitivity/clause_swap/n"] > 0
    header = (
        next((Path(cfg.paths.output_dir) / "csv").rglob("metrics.csv")).read_text().splitlines()[0]
    )
    assert "bat/accuracy" in header and "clause_swap/drop" in header
    assert (export / "aggregation_config.json").is_file()

    # The exported heads are loaded back by evaluate and measured on the synthesized order set.
    evaluation = compose_evaluate(
        f"models=[{export}]",
        "data=order_synthetic",
        "data.pairs.n_events=30",
        "data.pairs.n_pairs=40",
        f"probes=[{','.join(ORDER_PROBES)}]",
        "progress=false",
    )
    results = evaluate(evaluation)
    (name,) = results
    assert set(results[name]) == set(ORDER_PROBES)
    assert results[name]["bat"]["n"] > 0 and results[name]["clause_swap"]["n_queries"] > 0
    metrics = json.loads((Path(evaluation.paths.output_dir) / "metrics.json").read_text())[
        "models"
    ][name]["metrics"]
    assert metrics["bat"]["accuracy"] == pytest.approx(results[name]["bat"]["accuracy"])
