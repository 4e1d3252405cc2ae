"""``python -m humanclap.evaluate``: outputs, model kinds, side-by-side reports, bad input.

The LAION ``.pt`` case lives in test_laion_checkpoint.py (it needs that module's laion fixture).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import MissingConfigException
from matplotlib.image import imread
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from humanclap.backbones import from_pretrained, tiny_clap
from humanclap.backbones.resolve import UnknownModel, from_lightning_checkpoint, resolve_model
from humanclap.data.pairs import DataError
from humanclap.data.synthetic.sounds import synthetic_pairs
from humanclap.evaluate import evaluate, model_specs
from humanclap.probes.relevance.probe import RelevanceProbe
from humanclap.reports.provenance import weights_fingerprint

SMALL = ["data.pairs.n_sounds=20", "data.pairs.texts_per_sound=2", "progress=false"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny ClapModel directory as save_pretrained writes it (seed 3: not the `tiny` config's seed 0)."""
    return tiny_clap(seed=3).save_pretrained(tmp_path_factory.mktemp("tiny") / "tiny-seed3")


def _test_pairs():
    return synthetic_pairs(
        n_sounds=20, texts_per_sound=2, val_fraction=0.2, test_fraction=0.2, seed=0
    ).select("test")


def test_evaluate_writes_metrics_report_and_figures(compose_evaluate, tiny_dir):
    cfg = compose_evaluate(f"models=[{tiny_dir}]", "probes=[relevance]", *SMALL)
    returned = evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    document = json.loads((out / "metrics.json").read_text())

    # Same numbers as the probe run directly on the same checkpoint loaded by hand.
    pairs = _test_pairs()
    expected = RelevanceProbe(pairs).run(from_pretrained(str(tiny_dir))).metrics
    model = document["models"]["tiny-seed3"]
    assert model["kind"] == "transformers_dir" and model["source"] == str(tiny_dir)
    assert model["weights_sha256"] == weights_fingerprint(from_pretrained(str(tiny_dir)))
    assert set(model["metrics"]["relevance"]) == set(expected)
    for key, value in expected.items():
        stored = model["metrics"]["relevance"][key]
        assert (stored is None and math.isnan(value)) or stored == pytest.approx(value, abs=1e-7), (
            key
        )
        assert returned["tiny-seed3"]["relevance"][key] == pytest.approx(
            value, abs=1e-7, nan_ok=True
        )
    # Each unique clip and text embedded once.
    assert model["embedded"] == {"audio": 4, "text": len({p.text for p in pairs})}

    data = document["data"]["relevance"]
    assert (data["name"], data["pairs"], data["clips"]) == ("synthetic:test", 8, 4)
    assert len(data["table_sha256"]) == len(data["audio_sha256"]) == 64
    assert (
        document["versions"]["torch"] == torch.__version__.split("+")[0]
        or document["versions"]["torch"]
    )
    assert document["config"]["split"] == "test" and document["world_size"] == 1

    report = (out / "report.md").read_text()
    assert "### Table II — SRCC by group" in report and "| tiny-seed3 |" in report
    srcc = model["metrics"]["relevance"]["srcc"]
    assert f"| tiny-seed3 | 8 | {srcc:.3f} |" in report  # Table I row: n, SRCC, ...
    for name in ("relevance-relevance_scatter", "relevance-clapscore_range"):
        png = out / "figures" / "tiny-seed3" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = imread(png)
        assert image.shape[0] > 200 and image.shape[1] > 300 and image.std() > 0  # not blank
        assert f"(figures/tiny-seed3/{name}.png)" in report


def test_two_models_side_by_side(compose_evaluate, tiny_dir):
    cfg = compose_evaluate(
        f"models=[{tiny_dir},tiny]",
        "names=[seed3,seed0]",
        "probes=[relevance]",
        "figures=false",
        *SMALL,
    )
    results = evaluate(cfg)
    assert list(results) == ["seed3", "seed0"]
    out = Path(cfg.paths.output_dir)
    assert not (out / "figures").exists()
    document = json.loads((out / "metrics.json").read_text())
    assert document["models"]["seed0"]["kind"] == "config"
    assert (
        document["models"]["seed0"]["weights_sha256"]
        != document["models"]["seed3"]["weights_sha256"]
    )
    report = (out / "report.md").read_text()
    table_1 = report.split("### Table I")[1].split("###")[0]
    rows = [line for line in table_1.splitlines() if line.startswith("| seed")]
    assert [row.split("|")[1].strip() for row in rows] == ["seed3", "seed0"]
    for row, name in zip(rows, ["seed3", "seed0"]):
        assert f"{results[name]['relevance']['mse']:.3f}" in row


def test_the_same_model_twice_gets_distinct_names(compose_evaluate):
    cfg = compose_evaluate("models=[tiny,tiny]", "probes=[relevance]", "figures=false", *SMALL)
    results = evaluate(cfg)
    assert list(results) == ["tiny", "tiny-2"]
    assert results["tiny"]["relevance"] == pytest.approx(
        results["tiny-2"]["relevance"], nan_ok=True
    )


def test_lightning_checkpoint_gives_the_trained_weights(compose_train, tmp_path):
    from humanclap.train import train

    cfg = compose_train(
        "data.pairs.n_sounds=16",
        "data.pairs.texts_per_sound=2",
        "data.batch_size=4",
        "trainer.max_epochs=1",
        "logger=csv",
    )
    train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    exported = from_pretrained(
        cfg.paths.export_dir
    )  # the best (= only) epoch, as a transformers dir
    resolved = resolve_model(str(last))
    assert resolved.kind == "lightning_ckpt"
    assert weights_fingerprint(resolved.backbone) == weights_fingerprint(exported)
    assert weights_fingerprint(resolved.backbone) != weights_fingerprint(
        tiny_clap(seed=0)
    )  # it trained


# -- bad input --------------------------------------------------------------------------------------


def test_unknown_probe_lists_the_available_ones(compose_evaluate):
    from humanclap.evaluate import check_probe_names

    with pytest.raises(
        SystemExit,
        match=r"unknown probe\(s\) \['nonsense'\].*available probes: \[.*'relevance'.*'retrieval'",
    ):
        check_probe_names(["prog", "probes=[relevance,nonsense]"])
    check_probe_names(["prog", "probes=[relevance,retrieval]", "probes=relevance"])
    with pytest.raises(
        MissingConfigException, match="probes/nonsense"
    ):  # Hydra itself refuses it too
        compose_evaluate("probes=[relevance,nonsense]")


@pytest.mark.parametrize("kind", ["missing", "suffix", "empty_dir", "not_hub"])
def test_bad_model_paths_list_what_is_accepted(tmp_path, kind):
    spec = {
        "missing": str(tmp_path / "no-such-checkpoint"),
        "suffix": str(tmp_path / "weights.onnx"),
        "empty_dir": str(tmp_path / "empty"),
        "not_hub": "a/b/c",
    }[kind]
    (tmp_path / "weights.onnx").write_bytes(b"\0")
    (tmp_path / "empty").mkdir()
    message = {
        "missing": "does not exist",
        "suffix": "unknown kind \\(suffix '.onnx'\\)",
        "empty_dir": "has no config.json",
        "not_hub": "does not exist",
    }[kind]
    with pytest.raises(UnknownModel, match=message) as error:
        resolve_model(spec)
    text = str(error.value)
    for accepted in (
        "recipes/model/",
        "laion_htsat_fused",
        "human_clap_wsce_mae",
        "tiny",
        ".pt",
        ".ckpt",
        "hub id",
    ):
        assert accepted in text


def test_a_foreign_ckpt_is_refused(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(UnknownModel, match="not a humanclap.train checkpoint"):
        from_lightning_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(UnknownModel, match="cannot be read as a Lightning checkpoint"):
        from_lightning_checkpoint(path)


def test_missing_split_lists_the_splits(compose_evaluate):
    cfg = compose_evaluate("split=holdout", "probes=[relevance]", *SMALL)
    with pytest.raises(
        DataError, match=r"no split 'holdout'; splits present: \['test', 'train', 'validation'\]"
    ):
        evaluate(cfg)


def test_missing_probe_data_is_named(compose_evaluate, tmp_path):
    with pytest.raises(MissingMandatoryValue, match="csv_path"):
        evaluate(compose_evaluate("data=relate", "probes=[relevance]"))
    missing = tmp_path / "ratings.csv"
    with pytest.raises(DataError, match=str(missing)):
        evaluate(
            compose_evaluate("data=manifest", f"data.pairs.path={missing}", "probes=[relevance]")
        )


@pytest.mark.slow
def test_cli_end_to_end(tmp_path, tiny_dir):
    """The real entry point in a subprocess: exit code, outputs, and a failing call's message."""
    env = {
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "PATH": "/usr/bin:/bin",
        "HUMANCLAP_CACHE": str(tmp_path / "cache"),
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "humanclap.evaluate",
            f"model={tiny_dir}",
            *SMALL,
            f"hydra.run.dir={tmp_path / 'out'}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    document = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(document["models"]["tiny-seed3"]["metrics"]) == {"relevance", "retrieval"}
    assert (tmp_path / "out" / "report.md").is_file()
    assert len(list((tmp_path / "out" / "figures").rglob("*.png"))) >= 2
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "humanclap.evaluate",
            f"model={tmp_path / 'nope.pt'}",
            *SMALL,
            f"hydra.run.dir={tmp_path / 'bad'}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "does not exist" in bad.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "humanclap.evaluate", "probes=[relevance,nonsense]"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert unknown.returncode != 0 and "available probes: [" in unknown.stderr
    assert np.isfinite(document["models"]["tiny-seed3"]["metrics"]["relevance"]["mse"])


HF_DIR = {
    "_target_": "humanclap.backbones.from_pretrained",
    "source": "/data/run",
    "processor": None,
}
TINY = {"_target_": "humanclap.backbones.tiny_clap", "seed": 0, "enable_fusion": False}


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ([], ["tiny"]),
        (
            ["models=[laion_htsat_fused,human_clap_wsce_mae]"],
            ["laion_htsat_fused", "human_clap_wsce_mae"],
        ),
        (["model=tiny"], [TINY]),
        (["model=/x/y.pt", "split=test"], ["/x/y.pt"]),
        (["model=checkpoints/run"], ["checkpoints/run"]),
        (["model=laion/clap-htsat-fused"], ["laion/clap-htsat-fused"]),
        (["model=hf_dir", "model.source=/data/run"], [HF_DIR]),
        (["model.source=/data/run", "model=hf_dir"], [HF_DIR]),
        (
            ["model=human_clap_wsce", "model.source=/data/hc"],
            [{**HF_DIR, "source": "/data/hc", "processor": "laion/clap-htsat-fused"}],
        ),
        (
            ["model=tiny", "model.seed=3", "models=[a,b]"],
            [{**TINY, "seed": 3}],
        ),  # model= is the one model
    ],
    ids=[
        "default",
        "models",
        "config",
        "file",
        "dir",
        "hub-id",
        "config-keys",
        "keys-first",
        "extended-config",
        "model-over-models",
    ],
)
def test_evaluate_model_forms(compose_evaluate, overrides, expected):
    """Every documented way to name models composes to what evaluate loads: a config name is composed by
    Hydra (with its model.<key>= overrides), anything else stays the string given (resolve_model)."""
    specs = model_specs(compose_evaluate(*overrides))
    assert [
        OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
        for spec in specs
    ] == expected


def test_model_arguments_hydra_would_misread_are_refused():
    from humanclap.evaluate import check_model_arguments

    with pytest.raises(
        SystemExit, match=r"model= takes one model; several side by side: models=\[a,b\]"
    ):
        check_model_arguments(["prog", "model=[a,b]"])
    with pytest.raises(SystemExit, match="sets a key of a model config, so name the config too"):
        check_model_arguments(["prog", "model=/x/y.pt", "model.source=x"])
    check_model_arguments(["prog", "model=/x/y.pt", "models=[a,b]", "split=test"])
    check_model_arguments(["prog", "model=hf_dir", "model.source=x"])


def test_weights_only_directory_needs_a_processor(tmp_path, tiny_dir):
    """Like a downloaded Human-CLAP release: ClapModel weights without preprocessor files."""
    import shutil

    weights_only = tmp_path / "human-clap-like"
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_dir / name, weights_only / name)
    with pytest.raises(UnknownModel, match="no processor.*processor=laion/clap-htsat-fused"):
        resolve_model(str(weights_only))
    resolved = resolve_model(str(weights_only), processor=str(tiny_dir))
    assert weights_fingerprint(resolved.backbone) == weights_fingerprint(
        from_pretrained(str(tiny_dir))
    )
    # A directory with its own processor ignores the option.
    assert resolve_model(str(tiny_dir), processor=str(weights_only)).backbone.featurizer is not None


def test_float64_evaluation_matches_float32_closely_and_a_bad_dtype_is_named(compose_evaluate):
    from humanclap.evaluate import evaluate

    single = evaluate(compose_evaluate("probes=relevance", "progress=false", "figures=false"))[
        "tiny"
    ]["relevance"]
    double = evaluate(
        compose_evaluate("probes=relevance", "progress=false", "figures=false", "dtype=float64")
    )["tiny"]["relevance"]
    assert double["n"] == single["n"] and double["mse"] == pytest.approx(single["mse"], abs=1e-5)
    with pytest.raises(ValueError, match="dtype='float46' is not one of float32, float64"):
        evaluate(compose_evaluate("dtype=float46"))
