"""trainer=ddp_spawn returns any number of logged metrics to the main process.

Lightning's own spawn launcher pipes them back and reads the pipe only after the ranks exit; past
~240 metrics (64 KiB) rank 0 blocks forever. humanclap.lit.spawn sends them through a file.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from humanclap.lit.spawn import METRICS_FILE, FileResultsLauncher, SpawnDDPStrategy

N_METRICS = 3000  # ~800 KB through Lightning's pipe: far past its 64 KiB


class ManyMetrics(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def on_train_epoch_end(self) -> None:
        self.log_dict({f"probe/metric_{i:04d}": float(i) for i in range(N_METRICS)}, sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_spawned_ranks_return_thousands_of_metrics(tmp_path):
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=SpawnDDPStrategy(),
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    assert isinstance(trainer.strategy.launcher, FileResultsLauncher)
    trainer.fit(ManyMetrics())
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("probe/")}
    assert len(metrics) == N_METRICS and metrics["probe/metric_2999"] == 2999.0


def test_the_metrics_travel_in_a_file_not_the_pipe(tmp_path):
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path)
    trainer.callback_metrics.update({f"m{i}": torch.tensor(float(i)) for i in range(N_METRICS)})
    launcher = FileResultsLauncher(SpawnDDPStrategy())
    extra = launcher.get_extra_results(trainer)
    assert set(extra) == {METRICS_FILE} and len(extra[METRICS_FILE]) < 200  # only a path is pickled
    path = extra[METRICS_FILE]
    trainer.callback_metrics.clear()
    launcher.update_main_process_results(trainer, extra)
    assert (
        float(trainer.callback_metrics["m2999"]) == 2999.0
        and len(trainer.callback_metrics) == N_METRICS
    )
    assert not __import__("os").path.exists(path)  # cleaned up
