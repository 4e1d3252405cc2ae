"""The Hydra config tree composes, mirrors the code, and every recipe builds the right loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from humanclap.losses import HumanClapLoss

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
PAPER_LAMBDAS = {"wsce": 0.1, "mse": 1.0, "mae": 1.0}  # human-clap §IV-A


@pytest.mark.parametrize("recipe", ["wsce", "mse", "mae", "wsce_mse", "wsce_mae", "mse_mae", "wsce_mse_mae"])
def test_recipe_uses_paper_lambdas_for_its_terms(compose_train, recipe):
    cfg = compose_train(f"recipe={recipe}")
    loss = instantiate(cfg.recipe)
    assert isinstance(loss, HumanClapLoss)
    used = set(recipe.split("_"))
    assert dict(loss.lambdas) == {term: (PAPER_LAMBDAS[term] if term in used else 0.0) for term in PAPER_LAMBDAS}


def test_lambda_override_from_command_line(compose_train):
    cfg = compose_train("recipe=wsce_mae", "recipe.lambdas.wsce=0.05")
    assert instantiate(cfg.recipe).lambdas["wsce"] == pytest.approx(0.05)


def test_defaults_are_tiny_and_synthetic_with_their_own_schedule(compose_train):
    cfg = compose_train()
    assert cfg.model._target_ == "humanclap.backbones.tiny_clap"
    assert cfg.data.pairs._target_ == "humanclap.data.synthetic.sounds.synthetic_pairs"
    assert cfg.optimizer.lr == pytest.approx(1e-3) and cfg.trainer.max_epochs < 50
    assert cfg.data.batch_size == 8


def test_real_backbones_keep_the_paper_schedule(compose_train):
    cfg = compose_train("model=laion_htsat_fused")
    assert cfg.optimizer._target_ == "torch.optim.AdamW"
    assert cfg.optimizer.lr == pytest.approx(1e-5)
    assert cfg.trainer.max_epochs == 50
    assert cfg.monitor == "val/loss" and cfg.monitor_mode == "min"


def test_human_clap_releases_use_the_fused_processor(compose_train):
    for variant in ["wsce", "mse", "wsce_mse", "wsce_mae", "mse_mae", "wsce_mse_mae"]:
        cfg = compose_train(f"model=human_clap_{variant}")
        assert cfg.model.source == f"sarulab-speech/human-clap-{variant.replace('_', '-')}"
        assert cfg.model.processor == "laion/clap-htsat-fused"


def test_every_group_config_instantiates_one_thing():
    """Configs mirror code: each recipes/<group>/<x>.yaml names a _target_ (tiny: under model)."""
    for path in sorted(RECIPES.glob("*/*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if path.parent.name == "probes":  # one probe per file, keyed by its name; combine with probes=[a,b]
            assert list(spec) == [path.stem] and "_target_" in spec[path.stem], path
        elif path.parent.name == "sweep":  # configures Hydra's sweeper (global package)
            assert "_target_" in spec["hydra"]["sweeper"], path
        elif path.read_text().startswith("# @package _global_"):
            assert "_target_" in spec[path.parent.name], path
        else:
            assert "_target_" in spec, path


def test_train_and_evaluate_run_every_probe_by_default(compose_train, compose_evaluate):
    expected = {"relevance", "retrieval"}
    assert set(compose_train().probes) == expected
    evaluate_cfg = compose_evaluate()
    assert set(evaluate_cfg.probes) == expected
    assert list(evaluate_cfg.models) == ["tiny"] and evaluate_cfg.split == "test"
    assert set(compose_train("probes=relevance").probes) == {"relevance"}


def test_unknown_recipe_lists_the_available_ones(compose_train):
    with pytest.raises(ConfigCompositionException) as error:
        compose_train("recipe=wsce_mse_typo")
    assert "wsce_mae" in str(error.value.__cause__ or error.value)


def test_required_data_paths_must_be_given(compose_train):
    from omegaconf.errors import MissingMandatoryValue

    cfg = compose_train("data=relate")
    with pytest.raises(MissingMandatoryValue):
        _ = cfg.data.pairs.csv_path


def test_run_name_includes_recipe(compose_train):
    cfg = compose_train("recipe=mse_mae")
    assert cfg.run_name.startswith("mse_mae-")
    assert cfg.paths.export_dir.endswith("export")  # the fixture points exports into tmp_path
