"""Experiment loggers as ``recipes/logger/*.yaml`` builds them."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger`` with a ``quiet`` switch and without a spurious warning.

    ``quiet=True`` sets wandb's own ``quiet`` setting: the header still says where the run is saved
    (and, offline, how to sync it), the footer's sparkline history of every metric is left out.
    Lightning always hands ``anonymous=None`` to ``wandb.init``, for which wandb (0.31) warns "The
    anonymous setting has no effect and will be removed"; leaving the key out means the same without
    the warning (an explicit ``anonymous=True`` still goes to wandb).
    """

    def __init__(self, *args: Any, quiet: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        if quiet:
            settings = self._wandb_init.get("settings")
            if settings is None or isinstance(settings, dict):
                self._wandb_init["settings"] = {**(settings or {}), "quiet": True}
            else:  # a wandb.Settings
                settings.quiet = True
