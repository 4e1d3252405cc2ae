"""The Hydra config tree composes, mirrors the code, and every recipe builds the right loss and schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from humanclap.backbones.resolve import model_config
from humanclap.lit.stages import parse_stages
from humanclap.losses import HumanClapLoss

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
PAPER_LAMBDAS = {"wsce": 0.1, "mse": 1.0, "mae": 1.0}  # human-clap §IV-A


MIXES = ["wsce", "mse", "mae", "wsce_mse", "wsce_mae", "mse_mae", "wsce_mse_mae"]
# The loss of every recipe as it was written out in recipes/recipe/<mix>.yaml before recipes/loss/ existed.
LOSS_OF = {
    mix: {
        "_target_": "humanclap.losses.HumanClapLoss",
        "lambdas": {
            term: (PAPER_LAMBDAS[term] if term in mix.split("_") else 0) for term in PAPER_LAMBDAS
        },
        "wsce_normalization": "batch",
    }
    for mix in MIXES
}


@pytest.mark.parametrize("recipe", MIXES)
def test_recipe_uses_paper_lambdas_for_its_terms(compose_train, recipe):
    cfg = compose_train(f"recipe={recipe}")
    assert OmegaConf.to_container(cfg.loss) == LOSS_OF[recipe]
    assert HydraConfig.get().runtime.choices.loss == recipe
    loss = instantiate(cfg.loss)
    assert isinstance(loss, HumanClapLoss)
    used = set(recipe.split("_"))
    assert dict(loss.lambdas) == {
        term: (PAPER_LAMBDAS[term] if term in used else 0.0) for term in PAPER_LAMBDAS
    }
    assert loss.wsce_normalization == "batch"


@pytest.mark.parametrize("mix", MIXES)
def test_each_loss_config_extends_the_base_and_sets_its_lambdas_only(compose_train, mix):
    text = (RECIPES / "loss" / f"{mix}.yaml").read_text()
    assert set(yaml.safe_load(text)) == {"defaults", "lambdas"} and yaml.safe_load(text)[
        "defaults"
    ] == ["human_clap", "_self_"]
    assert OmegaConf.to_container(compose_train(f"loss={mix}").loss) == LOSS_OF[mix]
    # The recipe of the same name only picks it.
    assert yaml.safe_load((RECIPES / "recipe" / f"{mix}.yaml").read_text()) == {
        "defaults": [{"override /loss": mix}]
    }


def test_base_loss_is_the_papers(compose_train):
    assert OmegaConf.to_container(compose_train("loss=human_clap").loss) == LOSS_OF["wsce_mse_mae"]


def test_lambda_override_from_command_line(compose_train):
    cfg = compose_train("recipe=wsce_mae", "loss.lambdas.wsce=0.05")
    assert instantiate(cfg.loss).lambdas["wsce"] == pytest.approx(0.05)
    assert "recipe" not in cfg  # the loss is `loss`, whatever recipe chose it


@pytest.mark.parametrize(
    "recipe, loss, lambdas",
    [
        ("timbre", "wsce_mae", LOSS_OF["wsce_mae"]["lambdas"]),
        ("ordering", "wsce1_mae", {"wsce": 1, "mse": 0, "mae": 1}),
    ],
)
def test_presets_pick_a_loss_without_repeating_it(compose_train, recipe, loss, lambdas):
    text = yaml.safe_load((RECIPES / "recipe" / f"{recipe}.yaml").read_text())
    assert {"override /loss": loss} in text["defaults"] and "loss" not in text
    assert OmegaConf.to_container(compose_train(f"recipe={recipe}").loss) == {
        **LOSS_OF["wsce_mae"],
        "lambdas": lambdas,
    }
    # Another loss with the same preset, in either order.
    for overrides in ([f"recipe={recipe}", "loss=mse"], ["loss=mse", f"recipe={recipe}"]):
        cfg = compose_train(*overrides)
        assert OmegaConf.to_container(cfg.loss) == LOSS_OF["mse"]
        assert cfg.run_name.startswith(f"{recipe}-")


def test_defaults_are_tiny_and_synthetic_with_their_own_schedule(compose_train):
    cfg = compose_train()
    assert cfg.model._target_ == "humanclap.backbones.tiny_clap"
    assert cfg.data.pairs._target_ == "humanclap.data.synthetic.sounds.synthetic_pairs"
    assert cfg.optimizer.lr == pytest.approx(1e-3) and cfg.trainer.max_epochs == 8
    assert cfg.data.batch_size == 8
    assert OmegaConf.to_container(cfg.loss) == LOSS_OF["wsce_mae"] and cfg.run_name.startswith(
        "wsce_mae-"
    )


SCHEDULE = {
    "tiny": (1e-3, 8),
    "tiny_transformer_head": (1e-3, 25),
    "laion_htsat_fused": (1e-5, 50),
    "human_clap_wsce_mae": (1e-5, 50),
}


@pytest.mark.parametrize("model", sorted(SCHEDULE))
@pytest.mark.parametrize(
    "others",
    [
        [],
        ["recipe=wsce_mae", "data=relate"],
        ["recipe=ordering"],
        ["recipe=timbre", "trainer=gpu", "optimizer=adamw", "sweep=optuna"],
    ],
)
def test_each_model_gets_its_schedule_whatever_the_order_of_overrides(compose_train, model, others):
    """The tiny models' lr 1e-3 / 8 epochs (25 with the Transformer heads; recipes/*/for_model/), every
    other model the paper's lr 1e-5 / 50 epochs; no matter where model= stands among the overrides, or
    which recipe or trainer is chosen."""
    lr, epochs = SCHEDULE[model]
    for overrides in ([f"model={model}", *others], [*others, f"model={model}"]):
        cfg = compose_train(*overrides)
        assert (cfg.optimizer.lr, cfg.trainer.max_epochs) == (pytest.approx(lr), epochs), overrides
        assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.optimizer.weight_decay == 0.01
    # The command line still wins over a model's own schedule.
    cfg = compose_train(f"model={model}", "optimizer.lr=2e-4", "trainer.max_epochs=3", *others)
    assert (cfg.optimizer.lr, cfg.trainer.max_epochs) == (pytest.approx(2e-4), 3)


def test_the_ordering_preset_schedules_its_own_tiny_model(compose_train):
    cfg = compose_train("recipe=ordering")
    assert cfg.model._target_.endswith("with_transformer_heads")
    assert (cfg.optimizer.lr, cfg.trainer.max_epochs) == (pytest.approx(1e-3), 25)


def test_real_backbones_keep_the_paper_schedule(compose_train):
    cfg = compose_train("recipe=wsce_mae", "model=laion_htsat_fused", "data=relate")
    assert cfg.optimizer._target_ == "torch.optim.AdamW"
    assert cfg.optimizer.lr == pytest.approx(1e-5)
    assert cfg.trainer.max_epochs == 50
    assert cfg.monitor == "val/loss" and cfg.monitor_mode == "min"


def test_model_configs_write_only_the_model(compose_train):
    """No model config is a global package (it would write optimizer / trainer keys); the schedules live
    in the groups they belong to, each file only its own keys."""
    for path in sorted((RECIPES / "model").glob("*.yaml")):
        assert "@package" not in path.read_text(), path
        assert not {"optimizer", "trainer", "model"} & set(yaml.safe_load(path.read_text())), path
    for group, key in (("optimizer", "lr"), ("trainer", "max_epochs")):
        for path in sorted((RECIPES / group / "for_model").glob("*.yaml")):
            assert (RECIPES / "model" / path.name).is_file(), f"{path} names no model config"
            assert list(yaml.safe_load(path.read_text())) == [key], path


@pytest.mark.parametrize(
    "variant", ["wsce", "mse", "wsce_mse", "wsce_mae", "mse_mae", "wsce_mse_mae"]
)
def test_human_clap_releases_use_the_fused_processor(compose_train, variant):
    expected = {
        "_target_": "humanclap.backbones.from_pretrained",
        "source": f"sarulab-speech/human-clap-{variant.replace('_', '-')}",
        "processor": "laion/clap-htsat-fused",
    }
    assert OmegaConf.to_container(compose_train(f"model=human_clap_{variant}").model) == expected
    assert (
        OmegaConf.to_container(model_config(f"human_clap_{variant}")) == expected
    )  # evaluate's models=[...]
    # One base, one line each: the hub id.
    text = yaml.safe_load((RECIPES / "model" / f"human_clap_{variant}.yaml").read_text())
    assert text == {"defaults": ["human_clap", "_self_"], "source": expected["source"]}
    local = compose_train(f"model=human_clap_{variant}", "model.source=/data/human-clap").model
    assert local.source == "/data/human-clap" and local.processor == "laion/clap-htsat-fused"


def test_every_group_config_instantiates_one_thing(compose_train):
    """Configs mirror code: each recipes/<group>/<x>.yaml, as composed, names a _target_; the presets
    users pick (recipes/recipe/) are the exception."""
    for path in sorted(RECIPES.glob("*/*.yaml")):
        group, name = path.parent.name, path.stem
        spec = yaml.safe_load(path.read_text())
        if group == "probes":  # one probe per file, keyed by its name; combine with probes=[a,b]
            assert list(spec) == [name] and "_target_" in spec[name], path
        elif group == "sweep":  # configures Hydra's sweeper (global package)
            assert "_target_" in spec["hydra"]["sweeper"], path
        elif group == "stages":  # presets of the run's `stages` list (global package), nothing else
            assert path.read_text().startswith("# @package _global_\n"), path
            assert set(spec) == {"stages"}, path
            cfg = compose_train(f"stages={name}")
            assert parse_stages(OmegaConf.to_container(cfg.stages), cfg.trainer.max_epochs), path
        elif (
            group == "recipe"
        ):  # presets: they pick other groups' options (and the metrics that select), nothing else
            assert path.read_text().startswith("# @package _global_\n"), path
            assert set(spec) <= {"defaults", "optimized_metric", "monitor", "monitor_mode"} and {
                "override /loss"
            } <= set().union(*(entry for entry in spec["defaults"] if isinstance(entry, dict))), (
                path
            )
        else:
            assert "@package" not in path.read_text(), path
            extends = "defaults" in spec  # e.g. loss/wsce_mae.yaml: [human_clap, _self_]
            assert "_target_" in (compose_train(f"{group}={name}")[group] if extends else spec), (
                path
            )


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


def test_probes_get_the_run_pairs_only_if_they_take_them(compose_evaluate):
    """A probe measures the run's pairs when its _target_ takes `pairs` and its config gives none; the
    probes that bring their own data take none; zero_shot_classification measures the run's labelled
    audio when its config gives no `data` (humanclap/probes/build.py)."""
    from humanclap.probes.build import measures_run_labels, measures_run_pairs

    names = sorted(path.stem for path in (RECIPES / "probes").glob("*.yaml"))
    probes = compose_evaluate(f"probes=[{','.join(names)}]").probes
    assert {name for name, spec in probes.items() if not measures_run_pairs(spec)} == {
        "timbre_trend",
        "zero_shot_classification",
        "zero_shot_instruments",
    }
    assert {name for name, spec in probes.items() if measures_run_labels(spec)} == {
        "zero_shot_classification"
    }
    own = {
        **OmegaConf.to_container(probes.relevance),
        "pairs": {"_target_": "humanclap.data.synthetic.sounds.synthetic_pairs"},
    }
    assert measures_run_pairs(probes.relevance) and not measures_run_pairs(own)


@pytest.mark.parametrize(
    "overrides, row",
    [
        (["recipe=wsce_mae"], "| recipe | `wsce_mae` (loss weights: wsce 0.1, mse 0, mae 1) |"),
        (["recipe=timbre"], "| recipe | `timbre` (loss `wsce_mae`: wsce 0.1, mse 0, mae 1) |"),
        (
            ["recipe=wsce_mae", "loss=mse"],
            "| recipe | `wsce_mae` (loss `mse`: wsce 0, mse 1, mae 0) |",
        ),
    ],
)
def test_model_card_names_the_recipe_and_its_loss(compose_train, overrides, row):
    from humanclap.runs.model_card import model_card

    summary = {
        "metric": "relevance/srcc",
        "exported": 0.3,
        "baseline": 0.1,
        "gain": 0.2,
        "exported_epoch": 2,
    }
    card = model_card(
        "checkpoints/x",
        compose_train(*overrides),
        summary,
        heads=False,
        selected_by="lowest val/loss",
    )
    assert row in card.splitlines()
