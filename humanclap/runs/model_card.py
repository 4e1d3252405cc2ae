"""``README.md`` of an exported model: what it is (run, recipe, base model, exported epoch and metric)
and how to load it, with plain transformers or, for a model with Transformer heads, with humanclap."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from humanclap.backbones.aggregation import HEADS_CONFIG, HEADS_MODEL_TYPE, HEADS_WEIGHTS

MODEL_CARD = "README.md"


def write_model_card(
    export_dir: Path, cfg: DictConfig, summary: Mapping[str, Any], heads: bool, selected_by: str
) -> Path:
    """Write ``export_dir/README.md`` for the model :func:`humanclap.train.train` just exported."""
    path = Path(export_dir) / MODEL_CARD
    path.write_text(model_card(str(export_dir), cfg, summary, heads, selected_by))
    return path


def model_card(
    export_dir: str, cfg: DictConfig, summary: Mapping[str, Any], heads: bool, selected_by: str
) -> str:
    choices = _choices()
    recipe, loss = choices.get("recipe"), choices.get("loss")
    lambdas = ", ".join(f"{name} {value:g}" for name, value in cfg.loss.get("lambdas", {}).items())
    # Named when it is not the recipe's namesake: recipe=timbre (loss wsce_mae), recipe=wsce_mae loss=mse.
    weights = f"loss `{loss}`: {lambdas}" if loss and loss != recipe else f"loss weights: {lambdas}"
    metric, exported = summary["metric"], summary["exported"]
    result = f"{_number(exported)}"
    if summary.get("baseline") is not None and exported is not None:
        result += (
            f" (untrained baseline {_number(summary['baseline'])}, gain {_signed(summary['gain'])})"
        )
    what = (
        "CLAP with Transformer aggregation heads"
        if heads
        else "A CLAP model (transformers `ClapModel`)"
    )
    rows = [
        ("run", f"`{cfg.run_name}`"),
        ("recipe", (f"`{recipe}`" if recipe else "—") + (f" ({weights})" if lambdas else "")),
        ("base model", describe_model(cfg.model, choices.get("model"))),
        ("data", f"`{choices['data']}`" if choices.get("data") else "—"),
        ("exported epoch", f"{summary['exported_epoch']} ({selected_by})"),
        (f"`{metric}`", result),
    ]
    lines = [
        f"# {cfg.run_name}",
        "",
        f"{what}, fine-tuned with humanclap (`python -m humanclap.train`).",
        "",
        *_not_pretrained(cfg.model),
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in rows),
        "",
        "`humanclap_run.json` holds this summary, the probe metrics of every epoch and the full config.",
        "",
        "## Load it",
        "",
    ]
    lines += _heads_loading(export_dir) if heads else _plain_loading(export_dir)
    return "\n".join(lines) + "\n"


def _plain_loading(export_dir: str) -> list[str]:
    return [
        "With transformers:",
        "",
        "```python",
        "from transformers import ClapModel, ClapProcessor",
        "",
        f'model = ClapModel.from_pretrained("{export_dir}")',
        f'processor = ClapProcessor.from_pretrained("{export_dir}")',
        "```",
        "",
        "Measure it with the probes of a training run:",
        "",
        "```bash",
        f"python -m humanclap.evaluate model={export_dir}",
        "```",
    ]


def _heads_loading(export_dir: str) -> list[str]:
    return [
        f"The Transformer heads (`{HEADS_WEIGHTS}`, `{HEADS_CONFIG}`; event-ordering §2.1) replace CLAP's "
        "pooling and projection layers, so **plain transformers cannot use this model**: "
        "`ClapModel.from_pretrained` loads the CLAP towers without the heads, whose embeddings are not the "
        f"trained ones (it warns that the model type is `{HEADS_MODEL_TYPE}`). Load it with humanclap:",
        "",
        "```python",
        "from humanclap.backbones import from_pretrained",
        "",
        f'model = from_pretrained("{export_dir}")  # towers + heads (TransformerHeadBackbone)',
        "audio = model.embed_audio([waveform])  # mono float arrays at model.sample_rate; unit-norm rows",
        'text = model.embed_text(["a dog barks, then a bell rings"])',
        "```",
        "",
        "or measure it:",
        "",
        "```bash",
        f"python -m humanclap.evaluate model={export_dir}",
        "```",
    ]


RANDOM_BUILDERS = ("tiny_clap", "clap_htsat_random")
"""Model builders whose weights are random, not pretrained (humanclap/backbones/tiny.py,
random_full_size.py): a card of a run on them says so."""


def random_builder(node: Mapping[str, Any]) -> str | None:
    """The ``_target_`` of a random base model (also under Transformer heads), else None."""
    if node.get("backbone") is not None:
        return random_builder(node["backbone"])
    target = str(node.get("_target_", ""))
    return target if target.rsplit(".", 1)[-1] in RANDOM_BUILDERS else None


def _not_pretrained(node: Mapping[str, Any]) -> list[str]:
    target = random_builder(node)
    if target is None:
        return []
    return [
        f"**Not pretrained**: the base model has random weights (`{target}`), so this run "
        "shows that the pipeline works, not what fine-tuning a pretrained CLAP achieves.",
        "",
    ]


def describe_model(node: Mapping[str, Any], choice: str | None = None) -> str:
    """``laion_htsat_fused`` (`laion/clap-htsat-fused`): the config name and the weights it loads."""
    origin = _origin(node)
    return f"`{choice}` ({origin})" if choice else origin


def _origin(node: Mapping[str, Any]) -> str:
    if node.get("backbone") is not None:
        return f"{_origin(node['backbone'])} + Transformer heads"
    for key in ("source", "path"):
        if node.get(key):
            return f"`{node[key]}`"
    return f"`{node.get('_target_', '?')}`"


def _choices() -> dict[str, str]:
    """The config group choices of the run (``recipe``, ``loss``, ``model``, ``data``), if Hydra composed it."""
    if not HydraConfig.initialized():
        return {}
    return {
        key: str(value)
        for key, value in HydraConfig.get().runtime.choices.items()
        if value is not None
    }


def _number(value: float | None) -> str:
    if value is None:
        return "not measured"
    return "undefined (NaN)" if math.isnan(value) else f"{value:.3f}"


def _signed(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "undefined"
    return f"{value:+.3f}"
