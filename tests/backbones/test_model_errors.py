"""What a user sees when a model cannot be loaded: an unreachable hub, a mistyped path, a config key.

Every hint these errors print is run as printed: a download command is checked to parse, then its
result (a tiny random model saved by humanclap itself) is put where it says, and the next command
must work (or name the next missing piece, until it does).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli import _env
from hydra.utils import instantiate

from humanclap.backbones import from_laion_checkpoint, from_pretrained, tiny_clap
from humanclap.backbones.pretrained import (
    CheckpointNotAvailable,
    HubUnreachable,
    looks_like_hub_id,
    looks_like_path,
)
from humanclap.backbones.resolve import UnknownModel, resolve_model
from humanclap.cli import user_error
from humanclap.evaluate import check_model_arguments, command_using_download, evaluate
from humanclap.reports.provenance import weights_fingerprint
from humanclap.train import build_backbone

CLOSED_PORT = (
    "http://127.0.0.1:9"  # nothing listens there: a hub that cannot be reached, without any network
)
FAST = [
    "data.pairs.n_sounds=20",
    "data.pairs.texts_per_sound=2",
    "probes=[relevance]",
    "progress=false",
    "figures=false",
]
EVALUATE = "python -m humanclap.evaluate "


def hints(message: str) -> list[str]:
    """The commands of an error message: its indented lines."""
    return [line.strip() for line in message.splitlines() if line.startswith("    ")]


def save_tiny(directory: Path, weights_only: bool = False) -> Path:
    """A tiny random ClapModel saved by humanclap (``weights_only``: like a Human-CLAP release, no processor)."""
    saved = tiny_clap(seed=5).save_pretrained(directory)
    if weights_only:
        for path in directory.iterdir():
            if path.name not in ("config.json", "model.safetensors"):
                path.unlink()
    return saved


def evaluate_as_printed(compose_evaluate, command: str) -> dict:
    """``command`` (``python -m humanclap.evaluate ...``) as the CLI runs it, on a small data set."""
    assert command.startswith(EVALUATE), command
    argv = shlex.split(command.removeprefix(EVALUATE))
    check_model_arguments(argv)
    return evaluate(compose_evaluate(*argv, *FAST))


@pytest.fixture
def hub_unreachable(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE unset, the hub at a closed port (as on a machine without network), an empty cache."""
    from huggingface_hub import constants

    from humanclap.backbones import pretrained

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", CLOSED_PORT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    pretrained._unreachable.cache_clear()
    yield
    pretrained._unreachable.cache_clear()


# -- path or hub id ------------------------------------------------------------------------------


def test_what_is_a_path_and_what_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for hub_id in (
        "laion/clap-htsat-fused",
        "sarulab-speech/human-clap-wsce-mae",
        "checkpoints/nonexistent",
    ):
        assert looks_like_hub_id(hub_id) and not looks_like_path(hub_id)
    (tmp_path / "checkpoints").mkdir()  # now checkpoints/<x> is a path
    for path in (
        "checkpoints/nonexistent",
        "./clap",
        "/data/clap",
        "~/clap",
        "a/b/c",
        "630k-audioset-best.pt",
        "run.ckpt",
        "music.pth",
        "org/name.pt",
    ):
        assert looks_like_path(path) and not looks_like_hub_id(path), path
    assert not looks_like_path("tiny") and not looks_like_hub_id("tiny")


# -- a path that does not exist ------------------------------------------------------------------


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    """The working directory of a user who has trained once: checkpoints/run-a/ and checkpoints/old.ckpt."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints" / "run-a").mkdir(parents=True)
    (tmp_path / "checkpoints" / "old.ckpt").write_bytes(b"")
    return tmp_path / "checkpoints"


HOLDS = "does not exist locally; 'checkpoints/' holds: old.ckpt, run-a/."


def test_a_mistyped_model_path_is_a_missing_path_with_its_folder_listed(checkpoints):
    with pytest.raises(UnknownModel) as error:
        resolve_model("checkpoints/nonexistent")
    assert str(error.value).startswith(
        f"model 'checkpoints/nonexistent' {HOLDS} A model is one of: a config name"
    )
    assert "download" not in str(error.value) and "hub id 'org/name'." in str(error.value)
    with pytest.raises(CheckpointNotAvailable) as error:
        from_pretrained("checkpoints/nonexistent")
    assert str(error.value) == f"CLAP model 'checkpoints/nonexistent' {HOLDS}"
    with pytest.raises(CheckpointNotAvailable) as error:
        from_laion_checkpoint("checkpoints/630k-audioset-best.pt")
    assert str(error.value) == f"LAION-CLAP checkpoint 'checkpoints/630k-audioset-best.pt' {HOLDS}"
    with pytest.raises(CheckpointNotAvailable) as error:
        from_pretrained("runs/2024/best")
    assert (
        str(error.value)
        == "CLAP model 'runs/2024/best' does not exist locally, nor does its folder 'runs/2024/'."
    )


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            ["model=hf_dir", "model.source=checkpoints/nonexistent"],
            f"CLAP model 'checkpoints/nonexistent' {HOLDS}",
        ),
        (
            ["model=laion_ckpt", "model.path=checkpoints/630k-audioset-best.pt"],
            f"LAION-CLAP checkpoint 'checkpoints/630k-audioset-best.pt' {HOLDS}",
        ),
    ],
    ids=["hf_dir", "laion_ckpt"],
)
def test_training_model_configs_report_a_missing_path(
    checkpoints, compose_train, overrides, expected
):
    cfg = compose_train(*overrides)
    with pytest.raises(Exception) as error:
        instantiate(cfg.model)  # what humanclap.train does with it
    assert str(user_error(error.value)) == expected  # what the CLI prints after `error: `


# -- a hub id that cannot be reached -------------------------------------------------------------


def test_an_uncached_hub_id_fails_at_once_without_the_hub(tmp_path, monkeypatch, hub_unreachable):
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    with pytest.raises(HubUnreachable) as error:
        from_pretrained("laion/clap-htsat-fused")
    assert time.monotonic() - start < 10
    assert str(error.value) == (
        "CLAP model 'laion/clap-htsat-fused' is neither a local directory nor in the local Hugging Face cache, and "
        f"the Hugging Face hub ({CLOSED_PORT}) cannot be reached ([Errno 111] Connection refused). Download it once "
        "where the hub is reachable:\n"
        "    hf download laion/clap-htsat-fused --local-dir checkpoints/clap-htsat-fused\n"
        "then pass checkpoints/clap-htsat-fused in its place (in a model config: "
        "model.source=checkpoints/clap-htsat-fused)."
    )


def test_with_hf_hub_offline_the_message_says_so():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest
    with pytest.raises(
        HubUnreachable, match=r"cannot be reached \(HF_HUB_OFFLINE is set\)\. Download it once"
    ):
        from_pretrained("humanclap-tests/no-such-model")


def test_a_cached_hub_model_loads_without_the_hub(tmp_path, monkeypatch, hub_unreachable):
    """The hub is not asked again for files the repository does not have (each was ~30 s of retries)."""
    from huggingface_hub import constants

    revision = "0" * 40
    repository = tmp_path / "hub" / "models--humanclap-tests--cached"
    save_tiny(repository / "snapshots" / revision)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.monotonic()
    backbone = from_pretrained("humanclap-tests/cached")
    assert time.monotonic() - start < 10
    assert weights_fingerprint(backbone) == weights_fingerprint(tiny_clap(seed=5))


@pytest.mark.parametrize(
    "name, key",
    [
        ("laion_htsat_fused", "model.source"),
        ("laion_htsat_fused_transformer_head", "model.backbone.source"),
    ],
)
def test_the_training_hint_works_as_printed(name, key, tmp_path, monkeypatch, compose_train):
    """`python -m humanclap.train model=<name>` without the hub ends with the command that trains on the
    downloaded copy, naming the key that holds the hub id (nested for the Transformer-head wrapper)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HubUnreachable) as error:
        build_backbone(compose_train(f"model={name}"))
    command = str(error.value).splitlines()[-1].strip()
    assert str(error.value).splitlines()[-2] == "then train with it:"
    assert command == f"python -m humanclap.train model={name} {key}=checkpoints/clap-htsat-fused"
    save_tiny(tmp_path / "checkpoints" / "clap-htsat-fused")
    backbone = build_backbone(compose_train(*command.split()[3:]))
    saved, loaded = tiny_clap(seed=5).model.state_dict(), backbone.model.state_dict()
    shared = [key for key in saved if key.startswith(("text_model.", "audio_model."))]
    assert shared and all(
        torch.equal(saved[key], loaded[key]) for key in shared
    )  # the copy's weights


@pytest.mark.slow
def test_evaluate_without_the_hub_prints_commands_that_work(tmp_path):
    """The real CLI, HF_HUB_OFFLINE unset and the hub unreachable: one plain message within seconds, no
    retries; its download command parses, and its evaluate command runs once the directory is there."""
    env = {
        key: value
        for key, value in _env().items()
        if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env.update(HF_ENDPOINT=CLOSED_PORT, HF_HOME=str(tmp_path / "hf-home"))
    run = subprocess.run(
        [sys.executable, "-m", "humanclap.evaluate", "model=laion_htsat_fused"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1
    assert "Retrying" not in run.stdout + run.stderr
    assert run.stderr.strip() == (
        "error: CLAP model 'laion/clap-htsat-fused' is neither a local directory nor in the local Hugging Face cache, "
        f"and the Hugging Face hub ({CLOSED_PORT}) cannot be reached ([Errno 111] Connection refused). Download it "
        "once where the hub is reachable:\n"
        "    hf download laion/clap-htsat-fused --local-dir checkpoints/clap-htsat-fused\n"
        "then evaluate with it:\n"
        "    python -m humanclap.evaluate model=laion_htsat_fused model.source=checkpoints/clap-htsat-fused"
    )
    download, command = hints(run.stderr)
    # `hf` is the download command this huggingface_hub installs; offline, it gets as far as asking the hub.
    hf = shlex.split(download)
    offline = subprocess.run(
        [str(Path(sys.executable).parent / hf[0]), *hf[1:]],
        cwd=tmp_path,
        env={**env, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert offline.returncode == 1 and "offline mode is enabled" in offline.stdout + offline.stderr
    save_tiny(tmp_path / "checkpoints" / "clap-htsat-fused")  # what the download would have written
    python, *argv = shlex.split(command)
    assert python == "python"
    done = subprocess.run(
        [sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (metrics,) = (tmp_path / "outputs").glob("*/metrics.json")
    model = json.loads(metrics.read_text())["models"]["laion_htsat_fused"]
    assert model["weights_sha256"] == weights_fingerprint(tiny_clap(seed=5))


@pytest.mark.parametrize(
    "start, then",
    [
        (
            "model=sarulab-speech/human-clap-wsce",
            [
                "model=checkpoints/human-clap-wsce processor=laion/clap-htsat-fused",
                "model=checkpoints/human-clap-wsce processor=checkpoints/clap-htsat-fused",
            ],
        ),
        (
            "model=human_clap_wsce",
            [
                "model=human_clap_wsce model.source=checkpoints/human-clap-wsce",
                "model=human_clap_wsce model.source=checkpoints/human-clap-wsce model.processor=checkpoints/clap-htsat-fused",  # noqa: E501
            ],
        ),
    ],
    ids=["hub-id", "config"],
)
def test_evaluate_hints_for_a_weights_only_release_lead_to_a_run(
    start, then, tmp_path, monkeypatch, compose_evaluate
):
    """A Human-CLAP release ships weights only; its processor is laion/clap-htsat-fused. Each hint, run
    as printed after its download, either evaluates or names the next missing piece."""
    monkeypatch.chdir(tmp_path)
    downloads = {
        "sarulab-speech/human-clap-wsce": lambda d: save_tiny(d, weights_only=True),
        "laion/clap-htsat-fused": save_tiny,
    }
    command = EVALUATE + start
    for expected in then:
        with pytest.raises(HubUnreachable) as error:
            evaluate_as_printed(compose_evaluate, command)
        download, command = hints(str(error.value))
        assert command == EVALUATE + expected
        _, _, repository, _, directory = shlex.split(download)
        downloads[repository](tmp_path / directory)
    results = evaluate_as_printed(compose_evaluate, command)
    assert set(results) == {start.split("/")[-1].removeprefix("model=")}


def test_a_laion_tokenizer_hint_names_laion_tokenizer(tmp_path, compose_evaluate):
    error = HubUnreachable(
        "tokenizer", "FacebookAI/roberta-base", "tokenizer", "the hub cannot be reached"
    )
    cfg = compose_evaluate()
    assert command_using_download(error, "630k-audioset-best.pt", cfg) == (
        EVALUATE + "model=630k-audioset-best.pt laion_tokenizer=checkpoints/roberta-base"
    )


# -- model=<config name> model.<key>=<value> in evaluate ------------------------------------------


def test_evaluate_takes_a_model_config_with_its_keys_as_training_does(tmp_path, compose_evaluate):
    directory = save_tiny(tmp_path / "exported")
    results = evaluate_as_printed(
        compose_evaluate, f"{EVALUATE}model=hf_dir model.source={directory}"
    )
    assert list(results) == ["hf_dir"]
    document = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert document["models"]["hf_dir"]["weights_sha256"] == weights_fingerprint(tiny_clap(seed=5))
    # several models side by side keep working
    assert set(evaluate_as_printed(compose_evaluate, f"{EVALUATE}models=[tiny,{directory}]")) == {
        "tiny",
        "exported",
    }


def test_a_model_config_without_its_required_key_says_which(compose_evaluate):
    with pytest.raises(UnknownModel) as error:
        evaluate_as_printed(compose_evaluate, EVALUATE + "model=hf_dir")
    assert str(error.value) == (
        "model config 'hf_dir' needs a value for model.source (??? in the config): give it "
        "after the config name, as in model=hf_dir model.source=<value>"
    )


def test_model_keys_without_a_model_config_are_refused():
    with pytest.raises(SystemExit) as error:
        check_model_arguments(["prog", "models=[tiny]", "model.source=checkpoints/run"])
    assert str(error.value).startswith(
        "'model.source=checkpoints/run' sets a key of a model config, so name the "
        "config too: model=<name> model.source=checkpoints/run, with <name> one of "
        "clamp3, clamp3_tiny, clap_htsat_random, clap_htsat_unfused_random, hf_dir, human_clap, "
    )
    check_model_arguments(["prog", "model=hf_dir", "model.source=checkpoints/run"])
