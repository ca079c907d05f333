"""Training plan of the multimodal autoencoder."""

from __future__ import annotations

import torch
from scvi.train import TrainingPlan


class MultimodalAETrainingPlan(TrainingPlan):
    """Training plan of :class:`~multiomix.models.MultimodalAE`: logs the total and per-modality losses.

    Logs ``train_loss``/``validation_loss`` and ``train_loss_<modality>``/``validation_loss_<modality>`` per
    epoch, which go into ``model.history``. Optimiser options (``lr``, ``weight_decay``, ``optimizer``, ``eps``)
    are scvi-tools' own.
    """

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        _, _, out = self.forward(batch, loss_kwargs=self.loss_kwargs)
        n = out.n_obs_minibatch
        sync = self.use_sync_dist
        self.log(f"{stage}_loss", out.loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=sync,
                 prog_bar=True)
        for key, value in out.extra_metrics.items():
            self.log(f"{stage}_{key}", value, on_step=False, on_epoch=True, batch_size=n, sync_dist=sync)
        return out.loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "validation")
