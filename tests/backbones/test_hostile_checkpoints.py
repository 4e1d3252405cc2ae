"""Checkpoints are data, never code (issue 12): hostile files of every kind are refused, naming the
file and the entry, and the code they carry never runs (its marker file never appears).

Three ways in: the Python API (resolve_model and the loaders), resume=<path> / resume=auto, and
``python -m humanclap.evaluate model=<file>`` as a user runs it.
"""

from __future__ import annotations

import builtins
import inspect
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fakes import RunsWhenUnpickled, lightning_checkpoint
from hydra.utils import instantiate
from omegaconf import OmegaConf

from humanclap.backbones import from_laion_checkpoint, from_pretrained, tiny_clap
from humanclap.backbones.aggregation import HEADS_CONFIG, HEADS_WEIGHTS, with_transformer_heads
from humanclap.backbones.checkpoint_safety import (
    MODEL_BUILDERS,
    CheckpointError,
    UnsafeCheckpoint,
    check_model_config,
)
from humanclap.backbones.resolve import (
    UnknownModel,
    from_lightning_checkpoint,
    model_config,
    model_config_names,
    resolve_model,
)
from humanclap.errors import HumanClapError
from humanclap.runs.resume import checkpoint_to_resume

REPO = Path(__file__).resolve().parents[2]
TINY = {"_target_": "humanclap.backbones.tiny_clap", "seed": 0, "enable_fusion": False}
HEADS = "humanclap.backbones.aggregation.with_transformer_heads"
PRETRAINED = "humanclap.backbones.from_pretrained"
UNSAFE_ADVICE = (
    "weights_only=False",
    "weights_only` set to `False",
    "trust_remote_code=True",
    "add_safe_globals",
)


@pytest.fixture
def marker(tmp_path):
    """The file every payload below tries to create."""
    return tmp_path / "payload-ran"


def _no_unsafe_advice(message: str) -> None:
    for advice in UNSAFE_ADVICE:
        assert advice not in message


# -- hostile model configs in a Lightning .ckpt -------------------------------------------------

HOSTILE_IDS = [
    "torch.load",
    "builtins.open",
    "builtins.exec",
    "os.system",
    "subprocess.run",
    "hydra.utils.instantiate",
    "as-backbone",
    "in-an-argument",
    "in-_args_",
    "in-_partial_",
    "in-_recursive_",
    "in-_convert_",
]


@pytest.fixture
def hostile(marker, tmp_path) -> dict[str, tuple[dict, str]]:
    """id -> (stored model config, the entry the error must name); each config runs code under Hydra."""
    pickled = tmp_path / "payload.pt"
    torch.save({"x": RunsWhenUnpickled(marker)}, pickled)
    touch = {"_target_": "builtins.open", "file": str(marker), "mode": "w"}
    configs = {
        "torch.load": (
            {"_target_": "torch.load", "f": str(pickled), "weights_only": False},
            "model._target_",
        ),
        "builtins.open": (
            {"_target_": "builtins.open", "file": str(marker), "mode": "w"},
            "model._target_",
        ),
        "builtins.exec": (
            {"_target_": "builtins.exec", "_args_": [f"open({str(marker)!r}, 'w')"]},
            "model._target_",
        ),
        "os.system": ({"_target_": "os.system", "command": f"touch {marker}"}, "model._target_"),
        "subprocess.run": (
            {"_target_": "subprocess.run", "args": ["touch", str(marker)]},
            "model._target_",
        ),
        "hydra.utils.instantiate": (
            {"_target_": "hydra.utils.instantiate", "config": touch},
            "model._target_",
        ),
        "as-backbone": ({"_target_": HEADS, "backbone": touch}, "model.backbone._target_"),
        "in-an-argument": ({"_target_": PRETRAINED, "source": touch}, "model.source"),
        "in-_args_": ({"_target_": PRETRAINED, "_args_": [touch]}, "model._args_"),
        "in-_partial_": ({**TINY, "_partial_": True, "seed": touch}, "model.seed"),
        "in-_recursive_": (
            {"_target_": HEADS, "backbone": TINY, "_recursive_": True, "seed": touch},
            "model._recursive_",
        ),
        "in-_convert_": ({**TINY, "_convert_": "all", "seed": touch}, "model.seed"),
    }
    assert list(configs) == HOSTILE_IDS
    return configs


# Hydra 1.3.8's own denylist already stops these three; our allow-list refuses them whatever Hydra does.
BLOCKED_BY_HYDRA = ("builtins.exec", "os.system", "subprocess.run")


@pytest.mark.parametrize("case", [case for case in HOSTILE_IDS if case not in BLOCKED_BY_HYDRA])
def test_the_hostile_configs_run_code_under_hydra(case, hostile, marker):
    """What the old loader (Hydra instantiate on the stored config) did with them: the payloads are live."""
    config, _ = hostile[case]
    try:
        instantiate(OmegaConf.create(config))
    except Exception:
        pass  # the builder may fail after its arguments (the payload) were built
    assert marker.exists()


@pytest.mark.parametrize("case", HOSTILE_IDS)
def test_a_ckpt_whose_model_config_names_code_is_refused(case, hostile, marker, tmp_path):
    config, entry = hostile[case]
    path = lightning_checkpoint(tmp_path / f"{case}.ckpt", config)
    for load in (from_lightning_checkpoint, lambda p: resolve_model(str(p))):
        with pytest.raises(UnsafeCheckpoint) as error:
            load(path)
        assert str(error.value).startswith(f"'{path}': hyper_parameters.config.{entry}")
    assert not marker.exists()


def test_a_foreign_builder_error_lists_the_allowed_ones(tmp_path):
    path = lightning_checkpoint(
        tmp_path / "x.ckpt", {"_target_": HEADS, "backbone": {"_target_": "builtins.open"}}
    )
    with pytest.raises(UnsafeCheckpoint) as error:
        from_lightning_checkpoint(path)
    assert str(error.value) == (
        f"'{path}': hyper_parameters.config.model.backbone._target_ = 'builtins.open' is not a humanclap model "
        f"builder; allowed: {', '.join(MODEL_BUILDERS)}."
    )
    assert isinstance(error.value, HumanClapError)


@pytest.mark.parametrize(
    "model, message",
    [
        (
            {**TINY, "evil": 1},
            "model.evil is not an argument a checkpoint may give humanclap.backbones.tiny_clap; "
            "allowed there: seed, enable_fusion",
        ),
        (
            {**TINY, "directory": "/tmp/elsewhere"},
            "model.directory is not an argument a checkpoint may give",
        ),
        (
            {**TINY, "_partial_": True},
            "model._partial_ is a Hydra instantiation option, which a checkpoint may not set",
        ),
        ({**TINY, "_convert_": "all"}, "model._convert_ is a Hydra instantiation option"),
        (
            {"_target_": HEADS, "backbone": TINY, "_recursive_": False},
            "model._recursive_ is a Hydra instantiation option",
        ),
        (
            {**TINY, "seed": "0"},
            "model.seed = '0' is a str, but humanclap.backbones.tiny_clap takes an integer there",
        ),
        (
            {**TINY, "seed": True},
            "model.seed = True is a bool, but humanclap.backbones.tiny_clap takes an integer",
        ),
        ({**TINY, "seed": [0]}, "model.seed = [0] is a list"),
        (
            {"_target_": PRETRAINED},
            "model has no 'source', which humanclap.backbones.from_pretrained needs",
        ),
        (
            {"_target_": PRETRAINED, "source": {"_target_": "os.getcwd"}},
            "model.source = {'_target_': 'os.getcwd'} is a mapping, but humanclap.backbones.from_pretrained takes a string "  # noqa: E501
            "there (a nested _target_ node is allowed only as the backbone of",
        ),
        (
            {"_target_": HEADS, "backbone": {"_target_": HEADS, "backbone": TINY}},
            "model.backbone._target_ = 'humanclap.backbones.aggregation.with_transformer_heads' wraps a backbone itself",  # noqa: E501
        ),
        (
            {"_target_": HEADS, "backbone": "tiny"},
            "model.backbone = 'tiny' is a str, but "
            "humanclap.backbones.aggregation.with_transformer_heads takes a model config",
        ),
        ("os.system", "model is a str, not a model config"),
        (
            {"_target_": ["os", "system"]},
            "model._target_ = ['os', 'system'] is not a humanclap model builder",
        ),
    ],
    ids=[
        "unknown-key",
        "withheld-argument",
        "_partial_",
        "_convert_",
        "_recursive_",
        "str-for-int",
        "bool-for-int",
        "list",
        "missing-required",
        "nested-target",
        "wrapper-in-wrapper",
        "backbone-not-a-node",
        "not-a-mapping",
        "target-not-a-string",
    ],
)
def test_a_stored_config_takes_only_plain_arguments_of_the_builder(model, message, tmp_path):
    path = lightning_checkpoint(tmp_path / "x.ckpt", model)
    with pytest.raises(UnsafeCheckpoint) as error:
        from_lightning_checkpoint(path)
    assert str(error.value).startswith(f"'{path}': hyper_parameters.config.{message}")


@pytest.mark.parametrize("name", model_config_names())
def test_every_model_recipe_is_an_allowed_stored_config(name):
    """What humanclap.train stores for each recipes/model/*.yaml (resolved, as in its checkpoints) passes."""
    stored = OmegaConf.to_container(
        OmegaConf.create({"seed": 0, "model": model_config(name)}), resolve=True
    )["model"]
    check_model_config(stored, f"{name}.ckpt")


def test_the_allow_list_names_each_builders_own_parameters():
    import importlib

    for target, builder in MODEL_BUILDERS.items():
        function = getattr(importlib.import_module(builder.module), builder.function)
        parameters = inspect.signature(function).parameters
        assert set(builder.arguments) <= set(parameters), target
        assert {name for name, p in parameters.items() if p.default is p.empty} == set(
            builder.required
        ), target
        module, name = target.rsplit(".", 1)  # the allowed name is the function that gets called
        assert getattr(importlib.import_module(module), name) is function, target


# -- legit checkpoints still load ---------------------------------------------------------------


def test_a_legit_stored_config_builds_and_gets_its_weights(tiny_backbone, tmp_path):
    trained = {
        f"backbone.{key}": value + 0.5 if value.is_floating_point() else value
        for key, value in tiny_backbone.state_dict().items()
    }
    path = lightning_checkpoint(tmp_path / "tiny.ckpt", TINY, state_dict=trained)
    loaded = from_lightning_checkpoint(path).state_dict()
    assert all(
        torch.equal(loaded[key.removeprefix("backbone.")], value) for key, value in trained.items()
    )


def test_a_legit_heads_config_builds_its_wrapped_backbone(tmp_path):
    heads = with_transformer_heads(tiny_clap(), seed=5)
    stored = {
        "_target_": HEADS,
        "backbone": TINY,
        "num_layers": 2,
        "num_heads": 2,
        "dropout": 0.1,
        "chunk_seconds": 1.0,
        "max_chunks": 10,
        "text_cls_token": False,
        "freeze_heads_with_towers": False,
        "seed": 0,
    }
    state = {f"backbone.{key}": value for key, value in heads.state_dict().items()}
    path = lightning_checkpoint(tmp_path / "heads.ckpt", stored, state_dict=state)
    loaded = from_lightning_checkpoint(path)
    assert torch.equal(loaded.audio_head.cls, heads.audio_head.cls)  # seed 5's head, not seed 0's


def test_weights_that_do_not_fit_the_stored_model_are_named(tmp_path):
    path = lightning_checkpoint(
        tmp_path / "x.ckpt", TINY, state_dict={"backbone.model.nope": torch.zeros(1)}
    )
    with pytest.raises(
        CheckpointError, match=f"'{path}': the backbone.\\* weights of its state_dict do not fit"
    ):
        from_lightning_checkpoint(path)


# -- pickled payloads: .ckpt, .pt, pytorch_model.bin ---------------------------------------------


@pytest.fixture
def pickled(marker, tmp_path, tiny_backbone):
    """One torch file of each kind, each carrying a payload that creates ``marker`` when unpickled."""
    payload = RunsWhenUnpickled(marker)
    ckpt = lightning_checkpoint(tmp_path / "run.ckpt", TINY, callbacks={"RandomState": payload})
    pt = tmp_path / "630k-audioset-best.pt"
    torch.save(
        {
            "state_dict": {"audio_branch.x": torch.zeros(1), "text_branch.x": torch.zeros(1)},
            "args": payload,
        },
        pt,
    )
    directory = tiny_backbone.save_pretrained(tmp_path / "hf-dir")
    (directory / "model.safetensors").unlink()
    torch.save(
        {**tiny_backbone.model.state_dict(), "payload": payload}, directory / "pytorch_model.bin"
    )
    return {"ckpt": ckpt, "pt": pt, "bin": directory / "pytorch_model.bin"}


def test_the_pickled_payloads_are_live(pickled, marker):
    for path in pickled.values():
        torch.load(
            path, weights_only=False
        )  # what `weights_only=False will likely succeed` would do
        assert marker.exists()
        marker.unlink()


def _refused_naming(path: Path, error: BaseException) -> None:
    message = str(error)
    assert isinstance(error, UnsafeCheckpoint), message
    assert (
        f"'{path}' was not loaded: besides tensors and plain data it names the Python object 'posix.system'"
        in message
    )
    _no_unsafe_advice(message)


def test_pickled_code_is_refused_by_every_loader(pickled, marker):
    directory = pickled["bin"].parent
    loaders = [
        (pickled["ckpt"], lambda: resolve_model(str(pickled["ckpt"]))),
        (pickled["ckpt"], lambda: from_lightning_checkpoint(pickled["ckpt"])),
        (pickled["pt"], lambda: resolve_model(str(pickled["pt"]))),
        (pickled["pt"], lambda: from_laion_checkpoint(pickled["pt"])),
        (pickled["bin"], lambda: from_pretrained(str(directory))),
        (pickled["bin"], lambda: resolve_model(str(directory))),
    ]
    for path, load in loaders:
        with pytest.raises(UnsafeCheckpoint) as error:
            load()
        _refused_naming(path, error.value)
    with pytest.raises(
        UnsafeCheckpoint, match=f"^CLAP model directory '{directory}' cannot be loaded: "
    ):
        from_pretrained(str(directory))
    assert not marker.exists()


def test_resume_refuses_pickled_code(pickled, marker, tmp_path, compose_train):
    from humanclap.train import train

    config = {"seed": 0, "model": TINY}
    with pytest.raises(UnsafeCheckpoint) as error:  # resume=<path>
        checkpoint_to_resume(str(pickled["ckpt"]), tmp_path / "run", config)
    _refused_naming(pickled["ckpt"], error.value)

    own = (
        tmp_path / "auto" / "checkpoints" / "last.ckpt"
    )  # resume=auto finds it in the run's own directory
    own.parent.mkdir(parents=True)
    shutil.copy(pickled["ckpt"], own)
    with pytest.raises(UnsafeCheckpoint) as error:
        checkpoint_to_resume("auto", tmp_path / "auto", config)
    _refused_naming(own, error.value)

    cfg = compose_train(
        f"resume={pickled['ckpt']}", "logger=csv"
    )  # the train entry point, before it builds anything
    with pytest.raises(UnsafeCheckpoint) as error:
        train(cfg)
    _refused_naming(pickled["ckpt"], error.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, reason",
    [
        (
            random.Random(0).randbytes(4096),
            "it is not a file written by torch.save (Unsupported operand",
        ),
        (b"", "the file is empty"),
        (
            "truncated",
            "it is not a complete torch.save file (PytorchStreamReader failed reading zip archive",
        ),
    ],
    ids=["random-bytes", "empty", "truncated"],
)
def test_unreadable_torch_files_are_named_without_torchs_advice(content, reason, tmp_path):
    if content == "truncated":
        torch.save({"state_dict": {"audio_branch.x": torch.zeros(1000)}}, tmp_path / "whole.pt")
        content = (tmp_path / "whole.pt").read_bytes()[:2000]
    for name, kind, load in [
        ("weights.pt", "a LAION-CLAP checkpoint (.pt)", lambda p: resolve_model(str(p))),
        (
            "run.ckpt",
            "a Lightning checkpoint (.ckpt) written by humanclap.train",
            lambda p: resolve_model(str(p)),
        ),
        (
            "resume.ckpt",
            "a Lightning checkpoint (.ckpt) written by humanclap.train",
            lambda p: checkpoint_to_resume(str(p), tmp_path / "run", {}),
        ),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError) as error:
            load(path)
        assert str(error.value).startswith(f"'{path}' cannot be read as {kind}: {reason}")
        _no_unsafe_advice(str(error.value))
        assert isinstance(error.value, HumanClapError) and not isinstance(
            error.value, UnsafeCheckpoint
        )
    with pytest.raises(UnknownModel):  # the Lightning loader's own error kind, as before
        from_lightning_checkpoint(tmp_path / "run.ckpt")


# -- transformers directories -------------------------------------------------------------------

EVIL_MODULE = "import pathlib\npathlib.Path({marker!r}).touch()\nfrom transformers import ClapConfig as EvilConfig\n"


@pytest.fixture
def hf_dir(tmp_path, tiny_backbone):
    return tiny_backbone.save_pretrained(tmp_path / "hf")


def _edit_json(path: Path, **entries) -> None:
    document = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**document, **entries}))


@pytest.mark.parametrize(
    "file, entry, value",
    [
        (
            "config.json",
            "auto_map",
            {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"},
        ),
        ("tokenizer_config.json", "auto_map", {"AutoTokenizer": ["evil.EvilTokenizer", None]}),
        ("processor_config.json", "auto_map", {"AutoProcessor": "evil.EvilProcessor"}),
        ("config.json", "attn_implementation", "kernels-community/evil"),
    ],
)
def test_a_directory_that_names_code_is_refused(file, entry, value, hf_dir, marker):
    (hf_dir / "evil.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    _edit_json(hf_dir / file, **{entry: value})
    for load in (lambda: from_pretrained(str(hf_dir)), lambda: resolve_model(str(hf_dir))):
        with pytest.raises(UnsafeCheckpoint) as error:
            load()
        assert str(error.value).startswith(f"'{hf_dir / file}': {entry} = ")
        assert "never runs code from a checkpoint" in str(error.value)
    assert not marker.exists()


@pytest.fixture
def hub_snapshot(hf_dir, tmp_path, monkeypatch):
    """``hf_dir`` as the cached snapshot of the hub repository humanclap-tests/cached (HF_HUB_OFFLINE is set)."""
    from huggingface_hub import constants

    revision = "0" * 40
    repository = tmp_path / "hub" / "models--humanclap-tests--cached"
    shutil.copytree(hf_dir, repository / "snapshots" / revision)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return repository / "snapshots" / revision


def test_a_hub_checkpoint_never_runs_its_code_even_if_the_user_says_yes(
    hub_snapshot, marker, monkeypatch
):
    """transformers asks on a terminal whether to run a hub repository's code; we never let it ask."""
    (hub_snapshot / "evil.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    # a model type transformers does not know, so only the repository's code could read this config
    _edit_json(
        hub_snapshot / "config.json", model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig"}
    )
    monkeypatch.setattr(builtins, "input", lambda *prompt: "y")

    backbone = from_pretrained("humanclap-tests/cached")  # transformers' own classes, no code
    assert backbone.featurizer.tokenizer.__class__.__module__.startswith("transformers.")
    assert not marker.exists()


def test_bad_weights_in_the_hub_cache_are_named(hub_snapshot, marker, tiny_backbone):
    weights = hub_snapshot / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as error:
        from_pretrained("humanclap-tests/cached")
    assert str(error.value).startswith(
        f"CLAP model 'humanclap-tests/cached' (Hugging Face cache) cannot be loaded: "
        f"'{weights}' is not a complete safetensors file"
    )
    weights.unlink()
    torch.save(
        {**tiny_backbone.model.state_dict(), "payload": RunsWhenUnpickled(marker)},
        hub_snapshot / "pytorch_model.bin",
    )
    with pytest.raises(UnsafeCheckpoint) as error:
        from_pretrained("humanclap-tests/cached")
    _refused_naming(hub_snapshot / "pytorch_model.bin", error.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda data: data[: len(data) // 2], "incomplete metadata"),
        (lambda data: random.Random(0).randbytes(5000), "header too large"),
    ],
    ids=["truncated", "garbage"],
)
def test_a_broken_safetensors_file_is_named_with_its_directory(damage, reason, hf_dir):
    weights = hf_dir / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(CheckpointError) as error:
        resolve_model(str(hf_dir))
    assert str(error.value).startswith(
        f"CLAP model directory '{hf_dir}' cannot be loaded: '{weights}' is not a "
        f"complete safetensors file ("
    )
    assert reason in str(error.value) and str(error.value).endswith("so copy or download it again.")


# -- Transformer-head files ---------------------------------------------------------------------


@pytest.fixture
def heads_dir(tmp_path):
    return with_transformer_heads(tiny_clap(), seed=1).save_pretrained(tmp_path / "heads")


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda c: c["audio_head"].update(_target_="os.system"),
            "audio_head._target_ is a Hydra instantiation option, which a checkpoint may not set; allowed there: input_dim",  # noqa: E501
        ),
        (
            lambda c: c["text_head"].update(num_layers="2"),
            "text_head.num_layers = '2' is a str, but TransformerAggregator takes an integer there",
        ),
        (
            lambda c: c["chunking"].update(command="touch"),
            "chunking.command is not an argument a checkpoint may give ChunkedClapFeaturizer",
        ),
        (
            lambda c: c.update(hooks=["os.system"]),
            "hooks is not an argument a checkpoint may give load_transformer_heads",
        ),
        (
            lambda c: c.update(audio_head=[1, 2]),
            "audio_head = [1, 2] is a list, but load_transformer_heads takes a mapping",
        ),
    ],
    ids=["hydra-target", "wrong-type", "unknown-chunking", "unknown-entry", "head-not-a-mapping"],
)
def test_a_heads_config_holds_only_plain_head_arguments(edit, message, heads_dir):
    config = json.loads((heads_dir / HEADS_CONFIG).read_text())
    edit(config)
    (heads_dir / HEADS_CONFIG).write_text(json.dumps(config))
    with pytest.raises(UnsafeCheckpoint) as error:
        resolve_model(str(heads_dir))
    assert str(error.value).startswith(f"'{heads_dir / HEADS_CONFIG}': {message}")


def test_broken_heads_weights_are_named(heads_dir):
    weights = heads_dir / HEADS_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=f"^'{weights}' is not a complete safetensors file"):
        from_pretrained(str(heads_dir))
    config = json.loads((heads_dir / HEADS_CONFIG).read_text())
    config["audio_head"]["input_dim"] += 1
    (heads_dir / HEADS_CONFIG).write_text(json.dumps(config))
    with_transformer_heads(tiny_clap(), seed=1).save_pretrained(heads_dir / "again")
    shutil.copy(heads_dir / "again" / HEADS_WEIGHTS, weights)
    with pytest.raises(
        CheckpointError,
        match=f"^'{weights}' and '{heads_dir / HEADS_CONFIG}' do not describe the same audio_head",
    ):
        from_pretrained(str(heads_dir))


# -- the command line, as a user runs it --------------------------------------------------------


@pytest.mark.slow
def test_evaluate_cli_refuses_hostile_checkpoints(marker, tmp_path, pickled):
    exec_target = {
        "_target_": HEADS,
        "backbone": {"_target_": "builtins.exec", "_args_": [f"open({str(marker)!r}, 'w')"]},
    }
    ckpt = lightning_checkpoint(tmp_path / "downloaded.ckpt", exec_target)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    expected = {
        ckpt: f"error: '{ckpt}': hyper_parameters.config.model.backbone._target_ = 'builtins.exec' is not a humanclap "
        f"model builder; allowed: humanclap.backbones.tiny_clap",
        pickled[
            "pt"
        ]: f"error: '{pickled['pt']}' was not loaded: besides tensors and plain data it names the Python "
        f"object 'posix.system'",
    }
    for path, message in expected.items():
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "humanclap.evaluate",
                f"model={path}",
                "probes=[relevance]",
                "data.pairs.n_sounds=20",
                "data.pairs.texts_per_sound=2",
                "progress=false",
                f"hydra.run.dir={tmp_path / 'out'}",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 1, run.stderr[-3000:]
        assert message in run.stderr and "Traceback" not in run.stderr, run.stderr[-3000:]
        _no_unsafe_advice(run.stderr)
    assert not marker.exists()
