"""Training plans (Lightning modules) shared by the supervised models."""

from __future__ import annotations

import torch
from scvi.train import TrainingPlan


class SupervisedTrainingPlan(TrainingPlan):
    """scvi-tools TrainingPlan for classifiers: logs ``<stage>_loss`` and ``<stage>_accuracy`` once per epoch.

    Per-step logging through Lightning costs more than a forward pass of a small model, so the plan sums
    the loss and the correct predictions over the epoch's minibatches and logs the means at the epoch end
    (averaged over processes under DDP). A minibatch's loss is its class-weighted mean cross-entropy, so it
    counts with the batch's total class weight: the epoch's loss is the class-weighted mean over all its rows
    (what early stopping and the kept epoch read), whatever the batch size. The module's ``loss`` must return a
    :class:`scvi.module.base.LossOutput` with ``logits`` and ``true_labels`` set. Both losses are shown in the
    progress bar.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._epoch_sums: dict[str, torch.Tensor] = {}

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        _, _, out = self.forward(batch, loss_kwargs=self.loss_kwargs)
        with torch.no_grad():
            labels = out.true_labels.view(-1).long()
            n = labels.shape[0]
            correct = (out.logits.argmax(-1) == labels).sum()
            weight = getattr(self.module, "class_weight", None)
            batch_weight = weight[labels].sum() if weight is not None else out.loss.new_tensor(float(n))
            sums = torch.stack([out.loss.detach() * batch_weight, correct.float(), out.loss.new_tensor(float(n)),
                                batch_weight.to(out.loss.dtype)])
            self._epoch_sums[stage] = self._epoch_sums.get(stage, 0) + sums
        return out.loss

    def _log_epoch(self, stage: str) -> None:
        sums = self._epoch_sums.pop(stage, None)
        if sums is None:
            return
        loss, accuracy = sums[0] / sums[3], sums[1] / sums[2]
        self.log(f"{stage}_loss", loss, sync_dist=self.use_sync_dist, prog_bar=True)
        self.log(f"{stage}_accuracy", accuracy, sync_dist=self.use_sync_dist)

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "validation")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("validation")
