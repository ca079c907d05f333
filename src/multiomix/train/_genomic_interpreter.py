"""Training plan of the Genomic Interpreter: reverse-complement augmentation, warm-up, clipping, track metrics."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
import torch
from scvi.dataloaders import DataSplitter
from scvi.train import TrainingPlan

from .._metrics import track_metrics
from ..module._genomic_interpreter import DNA_KEY, TARGET_KEY, GenomicInterpreterModule
from ._runner import single_row_last_batch


def lr_factor(step: int, *, warmup: int, total: int, decay: str = "constant") -> float:
    """Learning-rate multiplier at optimiser ``step``: linear warm-up, then constant or half-cosine to 0.

    Examples
    --------
    >>> [round(lr_factor(s, warmup=2, total=6, decay="cosine"), 2) for s in range(6)]
    [0.5, 1.0, 1.0, 0.85, 0.5, 0.15]
    """
    if decay not in ("constant", "cosine"):
        raise ValueError(f"decay must be 'constant' or 'cosine', got {decay!r}.")
    if step < warmup:
        return (step + 1) / warmup
    if decay == "constant":
        return 1.0
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class SequenceDataSplitter(DataSplitter):
    """scvi-tools' data splitter that drops a last training minibatch of a single region.

    A one-region minibatch gives a noisy step and breaks BatchNorm where a backbone pools to one token;
    an explicit ``drop_last`` in ``datasplitter_kwargs`` wins.
    """

    def __init__(self, *args: Any, external_indexing=None, **kwargs: Any):
        if external_indexing is not None and "drop_last" not in kwargs:
            n_train, batch_size = len(external_indexing[0]), int(kwargs.get("batch_size") or 128)
            kwargs["drop_last"] = single_row_last_batch(n_train, batch_size)
        super().__init__(*args, external_indexing=external_indexing, **kwargs)


class GenomicInterpreterTrainingPlan(TrainingPlan):
    """Training plan: reverse-complement augmentation, loss logging, validation Pearson (and AUROC for BCE).

    Logs ``train_loss``, ``validation_loss``, ``validation_pearson`` (mean over tracks, one strand) and, for
    binary targets, ``validation_auroc`` once per epoch.

    Parameters
    ----------
    module
        The module to train.
    warmup_epochs
        Linear learning-rate warm-up over this many epochs' worth of steps (0: none). Without it the
        attention backbones could drift, in the first steps at the full rate, into adding one large
        sample-independent vector to every token, which the final LayerNorm then leaves as a constant
        prediction (observed on planted motif counts at lr 2e-3).
    lr_decay
        Learning rate after the warm-up: ``"constant"`` or ``"cosine"`` (half-cosine from the full rate to 0
        over the remaining steps of ``max_epochs``).
    gradient_clip_val
        Clip the gradient norm to this value (``None``: no clipping); a ``gradient_clip_val`` given to the
        Lightning trainer wins.
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan`.
    """

    def __init__(self, module: GenomicInterpreterModule, *, warmup_epochs: float = 1.0,
                 lr_decay: str = "constant", gradient_clip_val: float | None = 1.0, **kwargs: Any):
        super().__init__(module, **kwargs)
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be non-negative, got {warmup_epochs}.")
        if lr_decay not in ("constant", "cosine"):
            raise ValueError(f"lr_decay must be 'constant' or 'cosine', got {lr_decay!r}.")
        self.warmup_epochs = warmup_epochs
        self.lr_decay = lr_decay
        self.gradient_clip_val = gradient_clip_val
        self._val_pred: list[torch.Tensor] = []
        self._val_obs: list[torch.Tensor] = []

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Clip the gradient norm (the trainer's setting if given, else the plan's ``gradient_clip_val``)."""
        value = gradient_clip_val if gradient_clip_val is not None else self.gradient_clip_val
        if value:
            self.clip_gradients(optimizer, gradient_clip_val=value, gradient_clip_algorithm=gradient_clip_algorithm
                                or "norm")

    def configure_optimizers(self):
        """Return the base optimiser (and plateau scheduler, if asked for) with a per-step warm-up and decay."""
        config = super().configure_optimizers()
        if (self.warmup_epochs <= 0 and self.lr_decay == "constant") or "lr_scheduler" in config:
            return config
        try:
            total = float(self.trainer.estimated_stepping_batches)
        except (AttributeError, RuntimeError):
            total = float("inf")
        if not np.isfinite(total):
            total = 100.0 * max(self.trainer.max_epochs or 1, 1)
        warmup = int(round(self.warmup_epochs * total / max(self.trainer.max_epochs or 1, 1)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            config["optimizer"], partial(lr_factor, warmup=warmup, total=int(total), decay=self.lr_decay)
        )
        config["lr_scheduler"] = {"scheduler": scheduler, "interval": "step"}
        return config

    def _augment(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.module.reverse_complement:
            return batch
        x = batch[DNA_KEY]
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        batch = dict(batch)
        batch[DNA_KEY] = torch.where(flip[:, None, None], x.flip(-2).flip(-1), x)
        y = batch[TARGET_KEY]
        flipped = self.module.reverse_strand_tracks(y)  # stranded tracks swap (e.g. plus and minus)
        if y.dim() == 3:  # profiles follow the strand
            batch[TARGET_KEY] = torch.where(flip[:, None, None], flipped.flip(1), y)
        else:
            batch[TARGET_KEY] = torch.where(flip[:, None], flipped, y)
        return batch

    def training_step(self, batch, batch_idx):
        _, _, out = self.forward(self._augment(batch), loss_kwargs=self.loss_kwargs)
        self.log("train_loss", out.loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=out.n_obs_minibatch, sync_dist=self.use_sync_dist)
        return out.loss

    def validation_step(self, batch, batch_idx):
        inference_outputs, _, out = self.forward(batch, loss_kwargs=self.loss_kwargs)
        self.log("validation_loss", out.loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=out.n_obs_minibatch, sync_dist=self.use_sync_dist)
        self._val_pred.append(self.module.mean(inference_outputs["output"]).detach().float().cpu())
        self._val_obs.append(batch[TARGET_KEY].detach().float().cpu())

    def on_validation_epoch_end(self):
        if not self._val_pred:
            return
        pred = torch.cat(self._val_pred).numpy()
        obs = torch.cat(self._val_obs).numpy().reshape(pred.shape)
        self._val_pred, self._val_obs = [], []
        names = [str(i) for i in range(pred.shape[-1])]
        table = track_metrics(pred, obs, binary=self.module.loss_name == "bce", track_names=names)
        self.log("validation_pearson", float(np.nanmean(table["pearson"])) if table["pearson"].notna().any()
                 else 0.0, sync_dist=self.use_sync_dist)
        if "auroc" in table and table["auroc"].notna().any():
            self.log("validation_auroc", float(np.nanmean(table["auroc"])), sync_dist=self.use_sync_dist)
