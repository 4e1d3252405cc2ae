"""CLAPScore of unrated (clip, prompt) pairs: ``python -m humanclap.score data.path=prompts.csv model=<model>``.

CLAPScore(a, t) = max(cos(E_a(a), E_t(t)), 0)                                 (human-clap eq. 1)

for every pair of ``data`` (default ``data=prompts``: a CSV/JSONL table, or a folder of clips and a
table of their prompts, :mod:`humanclap.data.readers.prompts`; any data config of rated pairs works
too, its human score written next to the CLAPScore), for one model (``model=``) or several side by side
(``models=[a,b]``), named and loaded as :mod:`humanclap.evaluate` names and loads them. Every unique
clip and text is embedded once per model through the evaluation's :class:`EmbeddingCache` (feature
cache, loader processes; under ``torchrun`` sharded over the processes). Rank 0 writes to the run
directory (``outputs/score-<time>/``):

``scores.csv``    one row per (pair, model): id, audio, text, model, clap_score, cosine[, human_score];
``summary.json``  per model n, mean, std (ddof 1), a 95 % bootstrap interval of the mean, the weights'
                  sha256; the data's sha256, package versions, the command and the configuration.

See docs/scoring.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from humanclap.backbones.embedder import Embedder
from humanclap.cli import report_user_errors
from humanclap.console import prepare_console
from humanclap.data.audio import FileAudioStore, audio_fingerprint, missing_files
from humanclap.data.pairs import DataError, RatedPairs, unique_in_order
from humanclap.data.readers.prompts import PromptedClips, prompted_from_pairs
from humanclap.distributed import rank_and_world
from humanclap.errors import HumanClapError
from humanclap.evaluate import (
    check_model_arguments,
    embedded_counts,
    evaluation_pairs,
    in_process_group,
    load_model,
    model_choice,
    model_specs,
    unique_names,
)
from humanclap.features.disk import configured_root
from humanclap.features.workers import resolve_num_workers
from humanclap.probes.base import ProbeResult, Table
from humanclap.probes.cache import AudioRef, EmbeddingCache, ProbeInputs, as_cache
from humanclap.probes.relevance.probe import clap_scores, cosines
from humanclap.recipe_files import RECIPES
from humanclap.reports.provenance import versions, weights_fingerprint

log = logging.getLogger(__name__)

EQUATION = "CLAPScore(a, t) = max(cos(E_a(a), E_t(t)), 0) (human-clap eq. 1)"
CONFIDENCE_LEVEL = 0.95
METHODS = ("BCa", "percentile", "basic")
STD_DDOF = 1
BOOTSTRAP_MEMORY = 4_000_000
"""Resampled values held at once (``batch`` x n); ``batch`` is recorded in summary.json."""


class ScoreSettingError(HumanClapError, ValueError):
    """An option of ``humanclap.score`` that cannot work: an unset ``???`` data key, a bad bootstrap
    setting, ``names`` that do not match the models."""


# -- what is scored ----------------------------------------------------------------------------------


def scoring_pairs(data_cfg: DictConfig, split: str | None = None) -> PromptedClips:
    """The pairs ``data`` names: prompts (``data=prompts``) or rated pairs (``data=manifest``, ...,
    their ``split``; None: all), as :class:`PromptedClips`."""
    missing = sorted(OmegaConf.missing_keys(data_cfg))  # full keys: data.path, data.pairs.path, ...
    if missing:
        key = missing[0]
        example = {"data.path": "<prompts.csv | folder of clips>"}.get(key, "<value>")
        raise ScoreSettingError(
            f"{key} is not set (??? in the data config): pass {key}={example}"
            + (f"; also unset: {', '.join(missing[1:])}" if missing[1:] else "")
        )
    found = evaluation_pairs(data_cfg, None)  # instantiates data.pairs, or the bare config
    if isinstance(found, PromptedClips):
        if split is not None:
            raise DataError(
                f"split={split}: {found.name} holds prompts, which have no splits; "
                f"pass split=null (the default) to score every pair"
            )
        return found
    if not isinstance(found, RatedPairs):
        raise DataError(
            f"the data config gives {type(found).__name__}, not pairs to score: use data=prompts "
            f"(data.path=<table or folder>) or a data config of rated pairs (manifest, captions, ...)"
        )
    if split is not None:
        if split not in found.splits():
            raise DataError(
                f"{found.name} has no split '{split}'; splits present: {found.splits()} "
                f"(choose one with split=<name>, or split=null for all pairs)"
            )
        found = found.select(split)
    missing = missing_files(found.audio_store, unique_in_order(p.audio for p in found))
    if missing:  # rated pairs read without their audio (e.g. data.pairs.check_audio=false)
        first = next(p for p in found if p.audio == missing[0])
        raise DataError(
            f"{first.source or found.name}: {missing[0]}: audio file not found. {len(missing)} audio "
            f"file(s) of {found.name} are missing; scoring needs every clip"
        )
    return prompted_from_pairs(found)


class PromptScorer:
    """CLAPScore (eq. 1) and cosine of every pair. A probe (``inputs`` / ``run``) like the others:
    its clips and texts go through the evaluation's :class:`EmbeddingCache`, and
    :func:`humanclap.probes.base.run_probes` can run it next to other probes."""

    name = "score"

    def __init__(self, pairs: PromptedClips, batch_size: int = 32) -> None:
        self.pairs = pairs
        self.batch_size = batch_size

    def inputs(self) -> ProbeInputs:
        """Every clip and text of the pairs, once each."""
        return ProbeInputs(
            audio=[
                AudioRef(self.pairs.audio_store, key)
                for key in unique_in_order(p.key for p in self.pairs)
            ],
            texts=unique_in_order(p.text for p in self.pairs),
        )

    def scores(self, source: EmbeddingCache | Embedder) -> tuple[torch.Tensor, torch.Tensor]:
        """(cosine, CLAPScore) of every pair, in order: human-clap eq. (3) and eq. (1) of the
        relevance probe; each unique clip and text is embedded once."""
        cache = as_cache(source, self.batch_size)
        audio = cache.audio([AudioRef(self.pairs.audio_store, p.key) for p in self.pairs])
        text = cache.text([p.text for p in self.pairs])
        return cosines(audio, text), clap_scores(audio, text)

    def run(self, source: EmbeddingCache | Embedder) -> ProbeResult:
        cosine, score = (values.double() for values in self.scores(source))
        return ProbeResult(
            {
                "n": float(len(score)),
                "mean": float(score.mean()),
                "cosine_mean": float(cosine.mean()),
                "zero_fraction": float((score == 0).double().mean()),
            }
        )


# -- the mean and its interval -----------------------------------------------------------------------


def summarize(
    values: np.ndarray | list[float],
    seed: int = 0,
    n_resamples: int = 9999,
    method: str = "BCa",
) -> dict[str, Any]:
    """n, mean, std (ddof 1) and a 95 % bootstrap confidence interval of the mean of ``values``.

    The interval is :func:`scipy.stats.bootstrap` of ``np.mean`` over the values (resampled with
    replacement, ``n_resamples`` times, with ``numpy.random.default_rng(seed)``, ``batch`` resamples at
    a time) by ``method`` (BCa, percentile or basic). Degenerate samples get a stated result, never NaN:

    * one value: ``std`` and ``ci95`` are None (no spread to measure or resample);
    * all values equal (e.g. every CLAPScore clamped to 0): ``std`` 0 and ``ci95`` [mean, mean], since
      every resample has that mean;
    * a BCa interval that scipy cannot compute (NaN) falls back to the percentile interval.

    ``ci95_method`` is the method used and ``ci95_note`` says why it is not ``method`` or why there is no
    interval (None otherwise).
    """
    check_bootstrap(n_resamples, method)
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        raise ValueError("no scores to summarize")
    mean = float(x.mean())
    out: dict[str, Any] = {
        "n": n,
        "mean": mean,
        "std": float(x.std(ddof=STD_DDOF)) if n > 1 else None,
        "ci95": None,
        "ci95_method": None,
        "ci95_note": None,
    }
    if n == 1:
        out["ci95_note"] = "one pair: no spread to resample, so no interval"
        return out
    if np.all(x == x[0]):
        out.update(
            ci95=[mean, mean],
            ci95_note=f"all {n} scores equal {mean:g}: every resample has this mean",
        )
        return out
    low, high = _bootstrap(x, seed, n_resamples, method)
    used, note = method, None
    if not (math.isfinite(low) and math.isfinite(high)):
        used = "percentile"
        note = (
            f"scipy gives no {method} interval for these scores (NaN); percentile interval instead"
        )
        low, high = _bootstrap(x, seed, n_resamples, used)
    out.update(ci95=[low, high], ci95_method=used, ci95_note=note)
    return out


def bootstrap_batch(n: int, n_resamples: int) -> int:
    """Resamples drawn at once for n values (the draws, so the interval, depend on it)."""
    return max(1, min(n_resamples, BOOTSTRAP_MEMORY // max(n, 1)))


def _bootstrap(x: np.ndarray, seed: int, n_resamples: int, method: str) -> tuple[float, float]:
    from scipy.stats import bootstrap

    with warnings.catch_warnings():  # degenerate BCa: NaN, handled by the caller
        warnings.simplefilter("ignore")
        result = bootstrap(
            (x,),
            np.mean,
            n_resamples=n_resamples,
            batch=bootstrap_batch(len(x), n_resamples),
            vectorized=True,
            confidence_level=CONFIDENCE_LEVEL,
            method=method,
            rng=np.random.default_rng(seed),
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


# -- provenance --------------------------------------------------------------------------------------


def pairs_digest(pairs: PromptedClips) -> dict[str, Any]:
    """sha256 of the pairs (id, audio as given, text, human score) and of their clips.

    Clip files are hashed by their name as given and their content, in order of first use, so the
    digest does not change when the folder moves; other stores use
    :func:`humanclap.data.audio.audio_fingerprint`.
    """
    rows = [
        [p.id, p.audio, p.text, None if p.human_score is None else repr(p.human_score)]
        for p in pairs
    ]
    table = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
    clips = {p.key: p.audio for p in reversed(pairs.items)}  # key -> the first name given for it
    keys = unique_in_order(p.key for p in pairs)
    if isinstance(pairs.audio_store, FileAudioStore):
        digest = hashlib.sha256()
        for key in keys:
            digest.update(clips[key].encode() + b"\0")
            with open(key, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        audio = digest.hexdigest()
    else:
        audio = audio_fingerprint(pairs.audio_store, keys)
    return {
        "name": pairs.name,
        "pairs": len(pairs),
        "clips": len(keys),
        "texts": len({p.text for p in pairs}),
        "rated": pairs.rated,
        "table_sha256": table,
        "audio_sha256": audio,
    }


def command_line() -> str | None:
    """``python -m humanclap.score <overrides>`` as given (None outside a Hydra run)."""
    if not HydraConfig.initialized():
        return None
    return "python -m humanclap.score " + shlex.join(list(HydraConfig.get().overrides.task))


# -- the command -------------------------------------------------------------------------------------


@dataclass
class ModelScores:
    """One model's scores of every pair (in the data's order) and their summary."""

    name: str
    kind: str
    source: str
    weights_sha256: str
    cosine: np.ndarray
    clap_score: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)
    embedded: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def score(cfg: DictConfig) -> dict[str, ModelScores]:
    """Score every pair with every model; returns {model name: ModelScores} on every rank."""
    _bootstrap_settings(cfg)  # a bad setting fails before any process group or model exists
    return in_process_group(cfg, _score)


def _bootstrap_settings(cfg: DictConfig) -> tuple[int, str]:
    settings = cfg.get("bootstrap") or {}
    n_resamples, method = settings.get("n_resamples", 9999), settings.get("method", "BCa")
    check_bootstrap(n_resamples, method)
    return n_resamples, method


def check_bootstrap(n_resamples: Any, method: Any) -> None:
    if method not in METHODS:
        raise ScoreSettingError(
            f"bootstrap.method={method!r} is not one of {', '.join(METHODS)} (scipy.stats.bootstrap)"
        )
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ScoreSettingError(
            f"bootstrap.n_resamples={n_resamples!r}: give a positive whole number (default 9999)"
        )


def _score(cfg: DictConfig, device: torch.device) -> dict[str, ModelScores]:
    rank, world = rank_and_world()
    feature_cache = configured_root(cfg.get("cache", True), cfg.get("cache_dir"))
    num_workers = resolve_num_workers(cfg.get("num_workers", "auto"), option="num_workers")
    n_resamples, method = _bootstrap_settings(cfg)
    specs = model_specs(cfg)
    pairs = scoring_pairs(cfg.data, cfg.get("split"))
    scorer = PromptScorer(pairs, batch_size=cfg.batch_size)
    labels = list(cfg.get("names") or [None] * len(specs))
    if len(labels) != len(specs):
        raise ScoreSettingError(
            f"names has {len(labels)} entries for {len(specs)} models: give one label per model"
        )
    composed = model_choice() if OmegaConf.is_dict(cfg.get("model")) else None
    log.info("%s: %d pairs, %d clips, %d texts", pairs.name, len(pairs), *map(len, _unique(pairs)))
    results: list[ModelScores] = []
    for spec, name in zip(specs, labels):
        resolved, backbone = load_model(spec, name, cfg, composed, device, "score")
        start = time.perf_counter()
        cache = EmbeddingCache(
            backbone,
            batch_size=cfg.batch_size,
            progress=cfg.progress and rank == 0,
            feature_cache=feature_cache,
            num_workers=num_workers,
        )
        cache.prefetch([scorer.inputs()])
        cosine, clap_score = (values.double().cpu().numpy() for values in scorer.scores(cache))
        if rank == 0 and cache.clips is not None:
            log.info("[%s] %s", resolved.name, cache.clips.usage())
        seconds = time.perf_counter() - start
        embedded = embedded_counts(cache, device)
        results.append(
            ModelScores(
                resolved.name,
                resolved.kind,
                resolved.source,
                weights_fingerprint(backbone) if rank == 0 else "",
                cosine,
                clap_score,
                summarize(clap_score, seed=cfg.seed, n_resamples=n_resamples, method=method),
                embedded=embedded,
                seconds=seconds,
            )
        )
        del backbone, resolved, cache
    for result, unique in zip(results, unique_names([r.name for r in results])):
        result.name = unique
    if rank == 0:
        output_dir = Path(cfg.paths.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        scores_path = write_scores(output_dir / "scores.csv", pairs, results)
        document = summary_document(
            pairs,
            results,
            bootstrap={
                "statistic": "mean",
                "confidence_level": CONFIDENCE_LEVEL,
                "method": method,
                "n_resamples": n_resamples,
                "seed": cfg.seed,
                "batch": bootstrap_batch(len(pairs), n_resamples),
            },
            provenance={
                "command": command_line(),
                "versions": versions(),
                "world_size": world,
                "config": OmegaConf.to_container(cfg, resolve=True),
            },
        )
        summary_path = output_dir / "summary.json"
        summary_path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
        log.info("%s", console_table(pairs, results, method, n_resamples))
        log.info("wrote %s and %s", scores_path, summary_path)
    return {r.name: r for r in results}


def _unique(pairs: PromptedClips) -> tuple[set[str], set[str]]:
    return {p.key for p in pairs}, {p.text for p in pairs}


# -- writing -----------------------------------------------------------------------------------------


def write_scores(path: Path, pairs: PromptedClips, results: list[ModelScores]) -> Path:
    """scores.csv: one row per (pair, model), the models one after the other, pairs in input order;
    numbers as Python writes a float64 (``repr``: read back exactly)."""
    columns = ["id", "audio", "text", "model", "clap_score", "cosine"]
    if pairs.rated:
        columns.append("human_score")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for result in results:
            for pair, value, cosine in zip(pairs, result.clap_score, result.cosine):
                row = [pair.id, pair.audio, pair.text, result.name, repr(float(value))]
                row.append(repr(float(cosine)))
                if pairs.rated:
                    row.append(repr(float(pair.human_score)))
                writer.writerow(row)
    return path


def summary_document(
    pairs: PromptedClips,
    results: list[ModelScores],
    bootstrap: dict[str, Any],
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """summary.json: see docs/scoring.md#outputs."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "score": EQUATION,
        "command": provenance.get("command"),
        "models": {
            r.name: {
                **r.summary,
                "std_ddof": STD_DDOF,
                "cosine_mean": float(np.mean(r.cosine)),
                "zero_fraction": float(np.mean(r.clap_score == 0)),
                "kind": r.kind,
                "source": r.source,
                "weights_sha256": r.weights_sha256,
                "embedded": r.embedded,
                "seconds": round(r.seconds, 3),
            }
            for r in results
        },
        "bootstrap": bootstrap,
        "data": pairs_digest(pairs),
        **{key: value for key, value in provenance.items() if key != "command"},
    }


def console_table(
    pairs: PromptedClips, results: list[ModelScores], method: str, n_resamples: int
) -> str:
    """The console's summary: one row per model, n, mean, std and the 95 % interval."""
    table = Table(
        [
            ("n", "n"),
            ("mean", "mean"),
            ("std", "std"),
            ("95% CI low", "ci_low"),
            ("95% CI high", "ci_high"),
        ],
        note=f"95% CI: bootstrap of the mean ({method}, {n_resamples} resamples).",
    )
    rows = {}
    for r in results:
        interval = r.summary["ci95"] or [None, None]
        rows[r.name] = {
            key: value
            for key, value in {
                "n": float(r.summary["n"]),
                "mean": r.summary["mean"],
                "std": r.summary["std"],
                "ci_low": interval[0],
                "ci_high": interval[1],
            }.items()
            if value is not None
        }
    return (
        f"CLAPScore (human-clap eq. 1) of the {len(pairs)} pairs of {pairs.name}\n"
        + table.render(rows)
    )


@hydra.main(version_base="1.3", config_path=str(RECIPES), config_name="score")
@report_user_errors
def main(cfg: DictConfig) -> None:
    prepare_console()
    score(cfg)


if __name__ == "__main__":
    check_model_arguments(sys.argv)
    main()
