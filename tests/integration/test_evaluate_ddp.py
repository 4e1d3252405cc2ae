"""A 2-process (gloo) evaluation gives the same metrics as a 1-process one, and only rank 0 writes;
for each model family (the tiny ClapModel, MS-CLAP, MuQ-MuLan and CLaMP 3)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch.multiprocessing as mp
from omegaconf import OmegaConf

OVERRIDES = [
    "models=[tiny,msclap_tiny,muq_mulan_tiny,clamp3_tiny]",
    "data.pairs.n_sounds=25",
    "data.pairs.texts_per_sound=3",
    "batch_size=2",
    "progress=false",
    "figures=false",
    # float32 results depend on how the clips are batched (~1e-7 per embedding, ~1e-5 on the
    # near-constant scores of the random tiny model); in float64 only the sharding is tested.
    "dtype=float64",
]


def _rank(rank: int, world: int, port: int, config: dict, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        HF_HUB_OFFLINE="1",
    )
    from humanclap.evaluate import evaluate

    results = evaluate(OmegaConf.create(config))
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(compose_evaluate, tmp_path):
    from humanclap.evaluate import evaluate

    single_cfg = compose_evaluate(*OVERRIDES)
    single = evaluate(single_cfg)
    single_doc = json.loads((Path(single_cfg.paths.output_dir) / "metrics.json").read_text())

    config = OmegaConf.to_container(compose_evaluate(*OVERRIDES), resolve=True)
    config["paths"]["output_dir"] = str(tmp_path / "ddp")
    mp.spawn(_rank, args=(2, _free_port(), config, str(tmp_path)), nprocs=2, join=True)

    document = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert document["world_size"] == 2
    for rank in (0, 1):
        results = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert (
            results.keys()
            == single.keys()
            == {"tiny", "msclap_tiny", "muq_mulan_tiny", "clamp3_tiny"}
        )
        for model, probes in single.items():
            for probe, metrics in probes.items():
                assert results[model][probe].keys() == metrics.keys()
                for key, value in metrics.items():
                    assert results[model][probe][key] == pytest.approx(
                        value, abs=1e-6, nan_ok=True
                    ), (rank, model, probe, key)
    # Every unique input was embedded once across both ranks together, as in one process.
    for model in single:
        assert document["models"][model]["embedded"] == single_doc["models"][model]["embedded"]
        assert single_doc["models"][model]["embedded"]["audio"] == 5
    assert document["data"] == single_doc["data"]
