"""Write one evaluation (one or several models, the same probes and data) to disk.

``metrics.json``  every metric of every model and probe, plus model sources and weight hashes,
                  data fingerprints, package versions and the configuration;
``report.md``     the papers' tables with one row per model, then each model's figures;
``figures/``      ``<model>/<probe>-<figure>.png`` (matplotlib, no display needed).

Every number in ``report.md`` comes from a table over the metrics, so it is in ``metrics.json``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from humanclap.probes.base import ProbeResult


@dataclass
class ModelReport:
    """What one model scored on every probe, and where the model came from."""

    name: str
    kind: str
    source: str
    weights_sha256: str
    results: dict[str, ProbeResult]
    embedded: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def write_evaluation(
    output_dir: str | Path,
    models: list[ModelReport],
    data: Mapping[str, Any],
    provenance: Mapping[str, Any],
    figures: bool = True,
) -> dict[str, Path]:
    """Write metrics.json, report.md and (if ``figures``) the PNGs; return their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pngs = save_figures(output_dir, models) if figures else {}
    metrics_path = output_dir / "metrics.json"
    metrics_path.write_text(
        json.dumps(
            metrics_document(models, data, provenance), indent=2, default=_jsonable, allow_nan=False
        )
    )
    report_path = output_dir / "report.md"
    report_path.write_text(markdown_report(models, data, pngs, output_dir))
    return {
        "metrics": metrics_path,
        "report": report_path,
        **{
            f"{model}/{name}": path for model, paths in pngs.items() for name, path in paths.items()
        },
    }


def metrics_document(
    models: list[ModelReport], data: Mapping[str, Any], provenance: Mapping[str, Any]
) -> dict:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "models": {
            m.name: {
                "kind": m.kind,
                "source": m.source,
                "weights_sha256": m.weights_sha256,
                "embedded": m.embedded,
                "seconds": round(m.seconds, 3),
                # NaN (an undefined correlation) is written as null: strict JSON has no NaN.
                "metrics": {
                    probe: {k: finite_or_none(v) for k, v in result.metrics.items()}
                    for probe, result in m.results.items()
                },
            }
            for m in models
        },
        "data": dict(data),
        **provenance,
    }


def save_figures(output_dir: Path, models: list[ModelReport]) -> dict[str, dict[str, Path]]:
    saved: dict[str, dict[str, Path]] = {}
    for model in models:
        for probe, result in model.results.items():
            for name, make in result.figures.items():
                path = output_dir / "figures" / _slug(model.name) / f"{probe}-{name}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                figure = make()
                figure.savefig(path, dpi=120)
                saved.setdefault(model.name, {})[f"{probe}-{name}"] = path
    return saved


def markdown_report(
    models: list[ModelReport],
    data: Mapping[str, Any],
    pngs: Mapping[str, Mapping[str, Path]],
    output_dir: Path,
) -> str:
    lines = [
        "# humanclap evaluation",
        "",
        "## Models",
        "",
        "| model | kind | source | weights sha256 |",
        "|---|---|---|---|",
    ]
    lines += [f"| {m.name} | {m.kind} | `{m.source}` | `{m.weights_sha256[:12]}` |" for m in models]
    lines += [
        "",
        "## Data",
        "",
        "| probe | data | pairs | clips | texts | table sha256 |",
        "|---|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {probe} | {d['name']} | {d.get('pairs', '–')} | {d['clips']} | "
        f"{d.get('texts', '–')} | `{d['table_sha256'][:12]}` |"
        for probe, d in data.items()
    ]
    for probe in models[0].results:
        lines += ["", f"## {probe}"]
        for title, table in models[0].results[probe].tables.items():
            rows = {m.name: m.results[probe].metrics for m in models}
            lines += ["", f"### {title}", "", table.render(rows)]
    if pngs:
        lines += ["", "## Figures"]
        for model, paths in pngs.items():
            lines += ["", f"### {model}", ""]
            lines += [
                f"![{name}]({path.relative_to(output_dir).as_posix()})"
                for name, path in paths.items()
            ]
    return "\n".join(lines) + "\n"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else float(value)
