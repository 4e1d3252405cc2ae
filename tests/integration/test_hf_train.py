"""``python -m humanclap.train data=hf data.pairs.path=<saved dir>`` trains on a Hugging Face dataset
built here, and ``humanclap.evaluate`` measures the exported model on it."""

from __future__ import annotations

import json

import datasets
import pytest
from cli import SUMMARY_LINE, run_module
from fakes import write_wav

from humanclap.evaluate import evaluate


@pytest.mark.slow
def test_train_and_evaluate_on_a_saved_dataset(tmp_path, compose_evaluate):
    (tmp_path / "wav").mkdir()
    rows = {"audio": [], "text": [], "score": [], "split": []}
    texts = ["a low hum", "a high whistle"]
    for i in range(12):
        path = write_wav(tmp_path / "wav" / f"c{i}.wav", frequency=200.0 + 150 * i)
        for j, text in enumerate(texts):
            rows["audio"].append(str(path))
            rows["text"].append(text)
            rows["score"].append(1.0 if (i < 6) == (j == 0) else 0.1)
            rows["split"].append("validation" if i % 4 == 0 else "train")
    table = datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio())
    table.save_to_disk(str(tmp_path / "ratings"))

    done = run_module(
        tmp_path,
        "humanclap.train",
        "data=hf",
        "data.pairs.path=ratings",
        "trainer.max_epochs=2",
        "logger=csv",
        "++trainer.enable_progress_bar=false",
    )
    line = SUMMARY_LINE.search(done.output)
    assert line, done.output[-3000:]
    (export,) = (tmp_path / "checkpoints").iterdir()
    assert (
        json.loads((export / "humanclap_run.json").read_text())["config"]["data"]["pairs"]["path"]
        == "ratings"
    )

    cfg = compose_evaluate(
        f"model={export}",
        "data=hf",
        f"data.pairs.path={tmp_path / 'ratings'}",
        "split=validation",
        "probes=[relevance,retrieval]",
        "progress=false",
        "figures=false",
    )
    results = evaluate(cfg)
    (metrics,) = results.values()
    assert metrics["relevance"]["n"] == 6  # 3 validation clips x 2 texts
    assert metrics["retrieval"]["t2a/n_queries"] == 2
