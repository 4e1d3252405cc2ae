"""docs/reliability.md is what the code does: every bad input in it is provoked here, through the
function a user's command calls, and the table is compared with what came out.

Rewrite the table after a deliberate change of a message:
``HUMANCLAP_WRITE_RELIABILITY=1 python -m pytest tests/probes/test_reliability_table.py``.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from fakes import RunsWhenUnpickled, lightning_checkpoint, write_csv, write_wav

from humanclap.errors import HumanClapError

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BEGIN, END = "<!-- reliability-table: begin -->", "<!-- reliability-table: end -->"
MANIFEST = ("audio", "text", "score", "split")
OUTCOMES = {
    "refused": "stopped before anything named in the file is imported or run; the error names file and entry",
    "error": "stopped with one sentence naming the input (the command line: `error: ...`, exit status 1)",
    "skip": "left out on purpose, counted per reason in one warning",
    "warning": "used as given, reported once with a count",
    "handled": "nothing to report: the run does the right thing",
}


@dataclass
class Case:
    what: str
    outcome: str
    provoke: Callable[[Path], str]
    """Runs the bad input under a temporary directory; returns the message the user sees."""


def _error(action: Callable[[], object]) -> str:
    with pytest.raises(HumanClapError) as error:
        action()
    return str(error.value)


def _warning(logger: str, action: Callable[[], object]) -> str:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    target = logging.getLogger(logger)
    target.addHandler(handler)
    try:
        action()
    finally:
        target.removeHandler(handler)
    (record,) = records
    return record.getMessage()


# -- the inputs ---------------------------------------------------------------------------------


def _clips(tmp: Path) -> Path:
    for name in "abcd":
        write_wav(tmp / f"{name}.wav")
    return tmp


def _manifest(tmp: Path, rows) -> Path:
    return write_csv(_clips(tmp) / "ratings.csv", MANIFEST, rows)


def _read(path: Path, **options):
    from humanclap.data.readers.manifest import read_manifest

    return read_manifest(path, **options)


def _datamodule(tmp: Path, rows, **options):
    from humanclap.backbones import tiny_clap
    from humanclap.lit.datamodule import RatedPairDataModule

    return RatedPairDataModule(_read(_manifest(tmp, rows)), tiny_clap().featurizer, **options)


GOOD = [
    ("a.wav", "a dog barks", "4", "train"),
    ("b.wav", "rain", "6", "train"),
    ("c.wav", "wind", "7", "validation"),
]


def zero_one_scores(tmp):
    return _error(
        lambda: _read(
            _manifest(tmp, [("a.wav", "a dog", "0.2", "train"), ("b.wav", "rain", "0.9", "train")])
        )
    )


def zero_ten_scores_declared_zero_one(tmp):
    rows = [
        ("a.wav", "a dog", "3", "train"),
        ("b.wav", "rain", "9", "train"),
        ("c.wav", "x", "0.5", "train"),
    ]
    return _error(lambda: _read(_manifest(tmp, rows), score_range=(0, 1)))


def unknown_split(tmp):
    return _error(
        lambda: _read(
            _manifest(tmp, [("a.wav", "a dog", "3", "train"), ("b.wav", "rain", "9", "val")])
        )
    )


def nan_score(tmp):
    return _error(lambda: _read(_manifest(tmp, [("a.wav", "a dog", "nan", "train")])))


def missing_column(tmp):
    return _error(
        lambda: _read(
            write_csv(_clips(tmp) / "ratings.csv", ("audio", "text"), [("a.wav", "a dog")])
        )
    )


def hf_missing_column(tmp):
    import datasets

    from humanclap.data.readers.hf import read_hf_pairs

    wav = str(write_wav(_clips(tmp) / "a.wav"))
    table = datasets.Dataset.from_dict({"audio": [wav], "text": ["a dog"], "rating": [7.0]})
    table.cast_column("audio", datasets.Audio()).save_to_disk(str(tmp / "ratings"))
    return _error(lambda: read_hf_pairs(tmp / "ratings"))


def hf_hub_offline(tmp):
    from humanclap.data.readers.hf import read_hf_pairs

    return _error(lambda: read_hf_pairs("someone/rated-clips"))


def missing_audio_file(tmp):
    return _error(lambda: _read(_manifest(tmp, [("gone.wav", "a dog", "3", "train")])))


def one_sample_wav(tmp):
    from humanclap.data.audio import load_audio

    return _error(
        lambda: load_audio(write_wav(tmp / "click.wav", frames=1, sample_rate=48_000), 48_000)
    )


def corrupt_clip(tmp):
    (_clips(tmp) / "bad.wav").write_bytes(random.Random(0).randbytes(2000))
    return _error(lambda: _datamodule(tmp, [*GOOD, ("bad.wav", "noise", "5", "train")]))


def corrupt_clip_skipped(tmp):
    (_clips(tmp) / "bad.wav").write_bytes(random.Random(0).randbytes(2000))
    rows = [*GOOD, ("bad.wav", "noise", "5", "train")]
    return _warning(
        "humanclap.data.audio_check", lambda: _datamodule(tmp, rows, skip_bad_audio=True)
    )


_REL = (
    "wavname",
    "text",
    "score",
    "listener_id",
    "audio type",
    "anchor label",
    "in RELATE dataset",
    "in AudioCaps",
)
_REL_ROWS = [
    ("/audiocaps/test/1.wav", "A dog barks", "8", "0050", "natural", "False", "test", "test"),
    ("/tango/test/2.wav", "Rain falls", "3", "0050", "tango", "False", "test", "test"),
]


def relate_audio_missing(tmp):
    from humanclap.data.readers.relate import read_relate

    return _error(
        lambda: read_relate(write_csv(tmp / "REL.csv", _REL, _REL_ROWS), tmp / "RELATE_wave")
    )


def relate_audio_probe(tmp):
    from humanclap.data.readers.relate import read_relate
    from humanclap.probes.build import build_probes

    pairs = read_relate(
        write_csv(tmp / "REL.csv", _REL, _REL_ROWS), tmp / "RELATE_wave", check_audio=False
    )
    spec = {"_target_": "humanclap.probes.relevance.probe.RelevanceProbe"}
    return _error(lambda: build_probes({"relevance": spec}, pairs))


def long_text(tmp):
    rows = [*GOOD, ("d.wav", "Thunder rolls over the hills while " + "rain " * 994, "5", "train")]
    return _warning("humanclap.lit.dataset", lambda: _datamodule(tmp, rows))


def _score_folder(tmp: Path, prompts) -> None:
    from humanclap.data.readers.prompts import read_prompts

    read_prompts(_clips(tmp), prompts=write_csv(tmp / "prompts.csv", ("file", "text"), prompts))


def prompt_without_audio(tmp):
    rows = [("a.wav", "a dog"), ("b", "rain"), ("c.wav", "a bell"), ("d.wav", "wind")]
    return _error(lambda: _score_folder(tmp, [*rows, ("e.wav", "a cat")]))


def audio_without_prompt(tmp):
    return _error(lambda: _score_folder(tmp, [("a.wav", "a dog"), ("b.wav", "rain")]))


def msclap_missing(tmp):
    from humanclap.backbones.msclap import from_msclap

    return _error(
        lambda: from_msclap(str(tmp / "msclap" / "CLAP_weights_2023.pth"), version="2023")
    )


def msclap_extra_tensor(tmp):
    from humanclap.backbones.msclap import build_random_msclap, from_msclap

    export = build_random_msclap(tmp / "export", "2023", "small")
    weights = export / "CLAP_weights_2023.pth"
    state = torch.load(weights, weights_only=True)["model"]
    state["audio_encoder.base.htsat.extra.weight"] = torch.zeros(2)
    torch.save({"model": state}, weights)
    return _error(lambda: from_msclap(str(export)))


def muq_mulan_missing(tmp):
    from humanclap.backbones.muq import from_muq_mulan

    return _error(lambda: from_muq_mulan(str(tmp / "muq_mulan")))


def clamp3_mert_cqt(tmp):
    import json

    from humanclap.backbones.clamp3 import build_random_clamp3, from_clamp3

    export = build_random_clamp3(tmp / "export", "small")
    config = export / "mert" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "feature_extractor_cqt": True}))
    return _error(lambda: from_clamp3(str(export)))


def ckpt_target_torch_load(tmp):
    from humanclap.backbones.resolve import resolve_model

    path = lightning_checkpoint(
        tmp / "downloaded.ckpt",
        {"_target_": "torch.load", "f": "payload.pt", "weights_only": False},
    )
    return _error(lambda: resolve_model(str(path)))


def ckpt_target_nested(tmp):
    from humanclap.backbones.resolve import resolve_model

    touch = {"_target_": "builtins.open", "file": "payload-ran", "mode": "w"}
    path = lightning_checkpoint(
        tmp / "downloaded.ckpt",
        {"_target_": "humanclap.backbones.from_pretrained", "source": touch},
    )
    message = _error(lambda: resolve_model(str(path)))
    assert not Path("payload-ran").exists()
    return message


def ckpt_pickle(tmp):
    from humanclap.backbones.resolve import resolve_model

    path = lightning_checkpoint(
        tmp / "downloaded.ckpt",
        {"_target_": "humanclap.backbones.tiny_clap"},
        callbacks={"x": RunsWhenUnpickled(tmp / "marker")},
    )
    message = _error(lambda: resolve_model(str(path)))
    assert not (tmp / "marker").exists()
    return message


def pt_pickle(tmp):
    from humanclap.backbones import from_laion_checkpoint

    path = tmp / "630k-audioset-best.pt"
    torch.save(
        {
            "state_dict": {"audio_branch.x": torch.zeros(1)},
            "args": RunsWhenUnpickled(tmp / "marker"),
        },
        path,
    )
    message = _error(lambda: from_laion_checkpoint(path))
    assert not (tmp / "marker").exists()
    return message


def pt_random_bytes(tmp):
    from humanclap.backbones.resolve import resolve_model

    path = tmp / "630k-audioset-best.pt"
    path.write_bytes(random.Random(0).randbytes(4096))
    return _error(lambda: resolve_model(str(path)))


def _hf_dir(tmp: Path) -> Path:
    from humanclap.backbones import tiny_clap

    return tiny_clap().save_pretrained(tmp / "clap-dir")


def bin_pickle(tmp):
    from humanclap.backbones import from_pretrained, tiny_clap

    directory = _hf_dir(tmp)
    (directory / "model.safetensors").unlink()
    torch.save(
        {**tiny_clap().model.state_dict(), "x": RunsWhenUnpickled(tmp / "marker")},
        directory / "pytorch_model.bin",
    )
    message = _error(lambda: from_pretrained(str(directory)))
    assert not (tmp / "marker").exists()
    return message


def truncated_safetensors(tmp):
    from humanclap.backbones import from_pretrained

    weights = _hf_dir(tmp) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return _error(lambda: from_pretrained(str(weights.parent)))


def auto_map(tmp):
    import json

    from humanclap.backbones import from_pretrained

    directory = _hf_dir(tmp)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(
        json.dumps({**config, "auto_map": {"AutoModel": "evil.EvilModel"}})
    )
    return _error(lambda: from_pretrained(str(directory)))


def resume_other_config(tmp):
    from humanclap.runs.resume import checkpoint_to_resume

    path = lightning_checkpoint(tmp / "last.ckpt", {"_target_": "humanclap.backbones.tiny_clap"})
    stored = torch.load(path, weights_only=True)
    stored["hyper_parameters"]["config"]["optimizer"] = {"lr": 0.1}
    torch.save(stored, path)
    now = {
        "seed": 0,
        "model": {"_target_": "humanclap.backbones.tiny_clap"},
        "optimizer": {"lr": 0.001},
    }
    return _error(lambda: checkpoint_to_resume(str(path), tmp / "run", now))


def resume_pickle(tmp):
    from humanclap.runs.resume import checkpoint_to_resume

    path = lightning_checkpoint(
        tmp / "last.ckpt", {}, callbacks={"x": RunsWhenUnpickled(tmp / "marker")}
    )
    message = _error(lambda: checkpoint_to_resume(str(path), tmp / "run", {}))
    assert not (tmp / "marker").exists()
    return message


def live_run_name(tmp):
    from humanclap.runs.run_lock import claim_run_directories

    first = claim_run_directories(tmp / "outputs/run", tmp / "checkpoints/run", False, False)
    try:
        return _error(
            lambda: claim_run_directories(
                tmp / "outputs/run", tmp / "checkpoints/run", False, False
            )
        )
    finally:
        first.release()


def existing_export(tmp):
    from humanclap.runs.run_lock import claim_run_directories

    (tmp / "checkpoints/run").mkdir(parents=True)
    (tmp / "checkpoints/run/model.safetensors").write_bytes(b"earlier run")
    return _error(
        lambda: claim_run_directories(tmp / "outputs/run", tmp / "checkpoints/run", False, False)
    )


def unwritable_export(tmp):
    from humanclap.runs.run_lock import claim_run_directories

    (tmp / "file").write_text("")
    return _error(
        lambda: claim_run_directories(tmp / "outputs/run", tmp / "file/run", False, False)
    )


def unknown_model(tmp):
    from humanclap.backbones.resolve import resolve_model

    return _error(lambda: resolve_model(str(tmp / "checkpoints/nonexistent")))


def mistyped_model_path(tmp):
    from humanclap.backbones.resolve import resolve_model

    (tmp / "checkpoints" / "run-a").mkdir(parents=True)
    here = os.getcwd()
    os.chdir(tmp)
    try:
        return _error(lambda: resolve_model("checkpoints/nonexistent"))
    finally:
        os.chdir(here)


def uncached_hub_id(tmp):
    from humanclap.backbones import from_pretrained

    return _error(
        lambda: from_pretrained("humanclap-tests/no-such-model")
    )  # HF_HUB_OFFLINE=1 (conftest)


def model_config_unset(tmp):
    from humanclap.backbones.resolve import resolve_model

    return _error(lambda: resolve_model("hf_dir"))


def _tiny_module(**options):
    from humanclap.backbones import tiny_clap
    from humanclap.lit.module import HumanClapModule
    from humanclap.losses import HumanClapLoss

    return HumanClapModule(
        tiny_clap(),
        HumanClapLoss({"wsce": 0.1, "mae": 1.0}),
        lambda p: torch.optim.AdamW(p, lr=1e-3),
        **options,
    )


def diverging_run(tmp):
    """``python -m humanclap.train optimizer.lr=1e6 'probes=[relevance]'`` on a small synthetic set."""
    from conftest import _composer
    from hydra.core.global_hydra import GlobalHydra

    from humanclap.train import train

    cfg = _composer("train", tmp, {"output_dir": "run", "export_dir": "export"})(
        "optimizer.lr=1e6",
        "probes=[relevance]",
        "logger=csv",
        "trainer.max_epochs=1",
        "data.pairs.n_sounds=16",
        "data.pairs.texts_per_sound=2",
        "data.batch_size=4",
        "++trainer.enable_progress_bar=false",
    )
    GlobalHydra.instance().clear()
    message = _error(lambda: train(cfg))
    assert not (tmp / "export" / "model.safetensors").exists()
    return message


def nonfinite_export(tmp):
    from types import SimpleNamespace

    from humanclap.runs.export import export_best

    module = _tiny_module()
    state = {
        name: torch.full_like(value, float("nan")) if value.is_floating_point() else value
        for name, value in module.state_dict().items()
    }
    torch.save({"epoch": 0, "state_dict": state}, tmp / "epoch000.ckpt")
    best = SimpleNamespace(best_model_path=str(tmp / "epoch000.ckpt"), last_model_path="")
    message = _error(lambda: export_best(best, module, tmp / "export"))
    assert not (tmp / "export").exists()
    return message


def nonfinite_embeddings(tmp):
    from humanclap.backbones import tiny_clap
    from humanclap.probes.cache import EmbeddingCache

    backbone = tiny_clap()
    with torch.no_grad():
        backbone.model.text_projection.linear1.weight.fill_(float("nan"))
    return _error(lambda: EmbeddingCache(backbone).text(["a dog barks", "rain"]))


def both_towers_frozen(tmp):
    return _error(lambda: _tiny_module(freeze_audio=True, freeze_text=True))


def frozen_tower_statistics(tmp):
    module = _tiny_module(freeze_audio=True)
    module.train()
    audio = [module.backbone.model.audio_model, module.backbone.model.audio_projection]
    assert not any(layer.training for tower in audio for layer in tower.modules())
    assert module.backbone.model.text_model.training
    return ""


def _stage(epochs, **parts):
    return {
        "epochs": epochs,
        "audio": True,
        "text": True,
        "projections": True,
        "temperature": True,
    } | parts


def stages_length(tmp):
    """``stages=`` whose epochs do not fill ``trainer.max_epochs`` (as humanclap.train checks them)."""
    from humanclap.lit.stages import parse_stages

    return _error(lambda: parse_stages([_stage(4, text=False), _stage(2)], max_epochs=8))


def stages_unknown_part(tmp):
    from humanclap.lit.stages import parse_stages

    return _error(lambda: parse_stages([_stage(2, projection=False)], max_epochs=2))


def resume_with_workers(tmp):
    from torch.utils.data import DataLoader

    from humanclap.data.sampling import loader_generator, training_sampler

    data = list(range(12))
    uninterrupted = training_sampler(data, seed=0, epoch=0)
    uninterrupted.set_epoch(2)
    resumed = DataLoader(
        data,
        batch_size=4,
        sampler=training_sampler(data, seed=0, epoch=2),
        num_workers=2,
        persistent_workers=True,
        generator=loader_generator(0),
    )
    assert [int(i) for batch in resumed for i in batch] == list(uninterrupted)
    return ""


CASES: dict[str, Case] = {
    # data
    "score-range-0-1": Case(
        "0-1 ratings in a manifest under the default 0-10 `score_range`", "error", zero_one_scores
    ),
    "score-range-0-10": Case(
        "0-10 ratings declared `score_range=[0,1]`", "error", zero_ten_scores_declared_zero_one
    ),
    "split-unknown": Case("a manifest split value `val`", "error", unknown_split),
    "score-nan": Case("a score `nan`", "error", nan_score),
    "column-missing": Case("a manifest without a `score` column", "error", missing_column),
    "audio-missing": Case(
        "a manifest row whose audio file does not exist", "error", missing_audio_file
    ),
    "audio-one-sample": Case("a 1-sample wav", "error", one_sample_wav),
    "audio-corrupt": Case(
        "a corrupt clip among the training pairs (checked before the first step)",
        "error",
        corrupt_clip,
    ),
    "audio-corrupt-skipped": Case(
        "the same with `data.skip_bad_audio=true`", "skip", corrupt_clip_skipped
    ),
    "relate-audio-missing": Case(
        "RELATE ratings whose audio is not under `data.pairs.audio_root`",
        "error",
        relate_audio_missing,
    ),
    "relate-audio-probe": Case(
        "a probe that reads audio on RELATE ratings read with "
        "`data.pairs.check_audio=false` (`text_sensitivity` runs)",
        "error",
        relate_audio_probe,
    ),
    "text-long": Case(
        "a 5,000-character text (the text tower reads 77 tokens)", "warning", long_text
    ),
    "hf-column-missing": Case(
        "a Hugging Face dataset (`data=hf`) without a `score` column", "error", hf_missing_column
    ),
    "hf-hub-offline": Case(
        "`data=hf` naming a hub dataset while the hub cannot be reached", "error", hf_hub_offline
    ),
    "score-prompt-no-audio": Case(
        "`humanclap.score`: a prompt naming no clip of the folder", "error", prompt_without_audio
    ),
    "score-audio-no-prompt": Case(
        "`humanclap.score`: clips of the folder without a prompt", "error", audio_without_prompt
    ),
    # checkpoints
    "ckpt-target": Case(
        "a Lightning `.ckpt` whose stored model `_target_` is `torch.load`",
        "refused",
        ckpt_target_torch_load,
    ),
    "ckpt-target-nested": Case(
        "a `.ckpt` with a `_target_` (`builtins.open`) nested in an argument",
        "refused",
        ckpt_target_nested,
    ),
    "ckpt-pickle": Case("a `.ckpt` with a pickled `os.system` call", "refused", ckpt_pickle),
    "pt-pickle": Case("a LAION `.pt` with a pickled `os.system` call", "refused", pt_pickle),
    "bin-pickle": Case(
        "a transformers directory whose `pytorch_model.bin` has a pickled call",
        "refused",
        bin_pickle,
    ),
    "hf-auto-map": Case(
        "a transformers directory whose `config.json` has `auto_map` (custom code)",
        "refused",
        auto_map,
    ),
    "pt-random-bytes": Case("a random-bytes `.pt`", "error", pt_random_bytes),
    "safetensors-truncated": Case(
        "a truncated `model.safetensors`", "error", truncated_safetensors
    ),
    "model-unknown": Case("a model path that does not exist", "error", unknown_model),
    "model-path-mistyped": Case(
        "`model=checkpoints/nonexistent` where `./checkpoints` exists (a path, not a hub id)",
        "error",
        mistyped_model_path,
    ),
    "model-hub-unreachable": Case(
        "a hub id that is not in the Hugging Face cache, the hub unreachable "
        "(`HF_HUB_OFFLINE=1`, or no network: one 3 s check, no retries)",
        "error",
        uncached_hub_id,
    ),
    "model-config-unset": Case(
        "`model=hf_dir` without `model.source`", "error", model_config_unset
    ),
    "msclap-missing": Case(
        "`model=msclap_2023` before its release file is fetched", "error", msclap_missing
    ),
    "msclap-extra-tensor": Case(
        "an MS-CLAP release file with a tensor the model does not have",
        "error",
        msclap_extra_tensor,
    ),
    "muq-mulan-missing": Case(
        "`model=muq_mulan` before its release folder is fetched", "error", muq_mulan_missing
    ),
    "clamp3-mert-cqt": Case(
        "a MERT `config.json` asking for the CQT branch HubertModel lacks", "error", clamp3_mert_cqt
    ),
    # runs
    "resume-pickle": Case(
        "`resume=<path>` of a `.ckpt` with a pickled call", "refused", resume_pickle
    ),
    "resume-other-config": Case(
        "`resume=<path>` of a run with another learning rate", "error", resume_other_config
    ),
    "run-name-live": Case("a second live run with the same `run_name`", "error", live_run_name),
    "export-exists": Case(
        "an export directory that already holds a model", "error", existing_export
    ),
    "export-unwritable": Case(
        "an export directory that cannot be written", "error", unwritable_export
    ),
    "resume-workers": Case(
        "`resume=auto` after SIGKILL with `num_workers=2` (was: other weights, max abs diff 22); "
        "the end-to-end check is in tests/runs/test_resume.py",
        "handled",
        resume_with_workers,
    ),
    # training
    "lr-diverges": Case("`optimizer.lr=1e6` (the run diverges)", "error", diverging_run),
    "export-nonfinite": Case(
        "a best checkpoint holding NaN weights at export", "error", nonfinite_export
    ),
    "probe-nonfinite": Case(
        "a model whose embeddings are NaN, in a probe", "error", nonfinite_embeddings
    ),
    "freeze-both": Case("`freeze_audio=true freeze_text=true`", "error", both_towers_frozen),
    "freeze-statistics": Case(
        "`freeze_audio=true`: BatchNorm statistics and dropout of the frozen tower",
        "handled",
        frozen_tower_statistics,
    ),
    "stages-length": Case(
        "`stages=` of 4 + 2 epochs with `trainer.max_epochs=8`", "error", stages_length
    ),
    "stages-unknown-part": Case(
        "a stage with a misspelt part (`projection`)", "error", stages_unknown_part
    ),
}


# -- the table ----------------------------------------------------------------------------------


def _normalise(message: str, tmp: Path) -> str:
    message = message.replace(str(tmp), "<dir>")
    message = re.sub(r"pid \d+ on \S+\)", "pid <pid> on <host>)", message)
    message = " ".join(message.split())
    return message if len(message) <= 300 else message[:299] + "…"


def _table(messages: dict[str, str]) -> str:
    rows = ["| id | bad input | outcome | what the user sees |", "|---|---|---|---|"]
    for key, case in CASES.items():
        shown = messages[key].replace("|", "\\|").replace("`", "'")
        rows.append(
            f"| `{key}` | {case.what} | {case.outcome} | {f'`{shown}`' if shown else '—'} |"
        )
    counts = {
        outcome: sum(case.outcome == outcome for case in CASES.values()) for outcome in OUTCOMES
    }
    summary = ["", "| outcome | meaning | inputs |", "|---|---|---:|"]
    summary += [
        f"| {outcome} | {meaning} | {counts[outcome]} |" for outcome, meaning in OUTCOMES.items()
    ]
    return "\n".join(rows + summary)


@pytest.fixture(scope="module")
def messages(tmp_path_factory) -> dict[str, str]:
    out = {}
    for key, case in CASES.items():
        tmp = tmp_path_factory.mktemp(key)
        out[key] = _normalise(case.provoke(tmp), tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def test_every_case_has_a_known_outcome():
    assert {case.outcome for case in CASES.values()} <= set(OUTCOMES)


@pytest.mark.slow  # one short training run (lr-diverges)
def test_the_documented_table_is_what_the_code_does(messages):
    text = DOC.read_text()
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    table = _table(messages)
    if os.environ.get("HUMANCLAP_WRITE_RELIABILITY"):
        DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
        rest = f"{table}{END}"
    documented = rest.split(END)[0].strip()
    assert documented == table, "docs/reliability.md is out of date; see this module's docstring"
