"""recipe=timbre end to end on the embedded default (synthetic instruments, demo descriptors,
generated reference): both timbre probes are logged before training and after every epoch, and
the evaluate CLI writes their tables and figures."""

from __future__ import annotations

import json
from pathlib import Path

from humanclap.evaluate import evaluate
from humanclap.train import train

SMALL = ["data.pairs.n_instruments=12", "probes.timbre_trend.reference_seconds=1.0"]


def test_recipe_timbre_trains_and_logs_both_timbre_probes_each_epoch(compose_train):
    cfg = compose_train("recipe=timbre", *SMALL, "trainer.max_epochs=2", "logger=csv")
    assert cfg.data.pairs._target_.endswith("synthetic_timbre_ratings")
    assert set(cfg.probes) == {"relevance", "timbre_correlation", "timbre_trend"}
    summary = train(cfg)
    assert summary["metric"] == "timbre_correlation/descriptor/mean_r"
    run = json.loads((Path(summary["export_dir"]) / "humanclap_run.json").read_text())
    epochs = [epoch for epoch, _ in run["history"]]
    assert epochs == [-1, 0, 1]  # baseline, then every epoch
    for _, metrics in run["history"]:
        assert (
            metrics["timbre_trend/eq/n_descriptors"] == 6
            and metrics["timbre_trend/reverb/n_descriptors"] == 6
        )
        assert sum(metrics[f"timbre_trend/eq/{c}"] for c in ("up", "down", "peak", "flat")) == 6
        assert metrics["timbre_correlation/descriptor/n"] == 6  # the six synthetic descriptors
        assert "timbre_correlation/instrument/mean_r" in metrics and "relevance/srcc" in metrics
    # The CSV logger got the per-epoch values too.
    logged = (Path(cfg.paths.output_dir) / "csv").rglob("metrics.csv")
    header = next(iter(logged)).read_text().splitlines()[0]
    assert "timbre_trend/eq/up" in header and "timbre_correlation/descriptor/mean_r" in header


def test_evaluate_writes_timbre_tables_and_figures(compose_evaluate):
    cfg = compose_evaluate(
        "probes=[timbre_trend,timbre_correlation]",
        "data=synthetic_timbre",
        "split=validation",
        *SMALL,
        "progress=false",
    )
    results = evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    document = json.loads((out / "metrics.json").read_text())
    metrics = document["models"]["tiny"]["metrics"]
    assert set(metrics) == {"timbre_trend", "timbre_correlation"}
    assert metrics["timbre_trend"] == {
        k: (None if v != v else v) for k, v in results["tiny"]["timbre_trend"].items()
    }
    report = (out / "report.md").read_text()
    for title in (
        "Timbre trends — class counts",
        "EQ descriptor trends",
        "Reverb descriptor trends",
        "Timbre Exp. 1 — positive correlations and mean r",
    ):
        assert title in report, title
    eq_up = metrics["timbre_trend"]["eq/up"]
    assert f"| tiny | {int(eq_up)} |" in report  # the class-count row starts with EQ ↑
    figures = sorted(p.name for p in (out / "figures" / "tiny").glob("*.png"))
    assert "timbre_trend-eq_trends.png" in figures and "timbre_trend-reverb_trends.png" in figures
    assert "timbre_correlation-descriptor_correlation.png" in figures
