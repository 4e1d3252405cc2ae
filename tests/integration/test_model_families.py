"""Every model family fine-tunes, exports and loads back through the commands a user runs:
``python -m humanclap.train model=<family>_tiny`` writes ``checkpoints/<run>/`` in the family's own
format, ``python -m humanclap.evaluate model=checkpoints/<run>`` loads it as that family, and the
export holds the trained weights (the epoch the run selected), not the ones it started from.

The probe suite side by side (all families with the tiny ClapModel, every probe of the embedded data)
is the README's Models command, run verbatim by tests/integration/test_readme.py.
"""

from __future__ import annotations

import json

import pytest
import torch
from cli import run_module

from humanclap.backbones.resolve import from_lightning_checkpoint, resolve_model

FAMILIES = {
    "msclap_tiny": ("MsClapBackbone", "msclap_config.json"),
    "muq_mulan_tiny": ("MuqMulanBackbone", "muq_mulan_config.json"),
    "clamp3_tiny": ("Clamp3Backbone", "clamp3_config.json"),
}
SMALL_RUN = [
    "trainer.max_epochs=1",
    "data.pairs.n_sounds=12",
    "data.pairs.texts_per_sound=2",
    "data.batch_size=4",
    "probes=relevance",
    "logger=csv",
]


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(FAMILIES))
def test_fine_tuning_exports_a_folder_the_family_loads_back(model, tmp_path):
    family, record = FAMILIES[model]
    run_module(tmp_path, "humanclap.train", f"model={model}", *SMALL_RUN)
    (export,) = (tmp_path / "checkpoints").iterdir()
    assert (export / record).is_file()

    run_module(tmp_path, "humanclap.evaluate", f"model=checkpoints/{export.name}",
               "probes=relevance", "hydra.run.dir=evaluation")  # fmt: skip
    document = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    (entry,) = document["models"].values()
    assert entry["kind"].endswith("_dir") and "relevance" in entry["metrics"]

    exported = resolve_model(str(export)).backbone
    assert type(exported).__name__ == family
    (checkpoint,) = (tmp_path / "outputs").glob("*/checkpoints/epoch000.ckpt")
    trained = from_lightning_checkpoint(checkpoint)
    untrained = resolve_model(model).backbone
    exported_state, trained_state = exported.state_dict(), trained.state_dict()
    assert exported_state.keys() == trained_state.keys()
    for key, value in trained_state.items():
        torch.testing.assert_close(exported_state[key], value, atol=0, rtol=0, msg=key)
    moved = [
        key
        for key, value in untrained.state_dict().items()
        if value.is_floating_point() and not torch.equal(value, trained_state[key])
    ]
    assert any("proj" in key for key in moved), moved[:5]  # the projections trained
