"""Shared machinery for multiomix model classes built on scvi-tools.

Every model in :mod:`multiomix.models` registers **one scvi-tools field per modality** (registry key
``"X_<modality>"``), so a model can be set up over any number of modalities of a MuData. Training goes
through scvi-tools' ``TrainRunner``/Lightning ``Trainer``: accelerators, ``devices``, ``strategy="ddp*"``,
progress bars, early stopping and ``history`` come from the engine. Minibatches are sliced from the
(possibly sparse or backed) matrices by scvi-tools' ``AnnDataLoader`` and densified per minibatch only.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import MuDataCategoricalObsField, MuDataLayerField
from scvi.train import TrainingPlan

from .._utils import check_aligned, check_finite, check_modalities, get_matrix

__all__ = [
    "BestStateCallback",
    "ClassPredictionMixin",
    "resolve_rows",
    "train_on_rows",
    "Standardizer",
    "feature_mean_std",
    "SupervisedTrainingPlan",
    "modality_key",
    "register_mudata_fields",
    "resolve_layers",
    "split_to_external_indexing",
]


def modality_key(modality: str) -> str:
    """Registry key of a modality's data field (``"X_<modality>"``)."""
    return f"X_{modality}"


def resolve_layers(modalities: Sequence[str], layer: str | dict[str, str | None] | None) -> dict[str, str | None]:
    """Expand ``layer`` (one name for all, or a dict per modality) to a dict over ``modalities``."""
    if layer is None or isinstance(layer, str):
        return dict.fromkeys(modalities, layer)
    unknown = sorted(set(layer) - set(modalities))
    if unknown:
        raise KeyError(f"`layer` names modalities {unknown} that are not among the model's modalities {modalities}.")
    return {m: layer.get(m) for m in modalities}


def register_mudata_fields(
    cls,
    mdata: MuData,
    *,
    modalities: Sequence[str] | None,
    layer: str | dict[str, str | None] | None,
    label_key: str | None,
    setup_method_args: dict,
    check_values: bool = True,
    **kwargs: Any,
) -> list[str]:
    """Validate ``mdata`` and register one layer field per modality (+ labels) with scvi-tools.

    Parameters
    ----------
    cls
        The model class (its ``register_manager`` is called).
    mdata
        Paired MuData.
    modalities
        Modalities to use (default: all).
    layer
        Layer to read for every modality, or a dict modality -> layer (``None`` = ``.X``).
    label_key
        Column of ``mdata.obs`` with class labels, or ``None``.
    setup_method_args
        Output of ``cls._get_setup_method_args(**locals())``.
    check_values
        Check for NaN/inf values (on the stored, possibly sparse, values; nothing is densified).
    **kwargs
        Passed to ``AnnDataManager.register_fields`` (e.g. ``source_registry`` on load).

    Returns
    -------
    The list of modalities registered.
    """
    modalities = check_modalities(mdata, modalities)
    check_aligned(mdata, modalities)
    layers = resolve_layers(modalities, layer)
    for mod in modalities:
        matrix = get_matrix(mdata.mod[mod], layers[mod])
        if check_values and not getattr(mdata.mod[mod], "isbacked", False):
            check_finite(matrix, f"Modality {mod!r} ({'X' if layers[mod] is None else 'layer ' + layers[mod]})")
    if label_key is not None and label_key not in mdata.obs.columns:
        raise KeyError(f"Label key {label_key!r} not found in mdata.obs; columns: {list(mdata.obs.columns)}.")
    fields = [
        MuDataLayerField(modality_key(mod), layers[mod], mod_key=mod, is_count_data=False, mod_required=True)
        for mod in modalities
    ]
    if label_key is not None:
        fields.append(MuDataCategoricalObsField(REGISTRY_KEYS.LABELS_KEY, label_key, mod_key=None))
    manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
    manager.register_fields(mdata, **kwargs)
    cls.register_manager(manager)
    return modalities


def split_to_external_indexing(
    splits: dict[str, np.ndarray] | None, *, n_obs: int, validation_size: float, random_state: int
) -> list[np.ndarray] | None:
    """Turn ``obs['split']`` indices into scvi-tools' ``external_indexing`` (train, validation, test).

    When no validation rows are given, ``validation_size`` of the train rows are held out internally.
    """
    if splits is None:
        return None
    train, val, test = splits["train"], splits["validation"], splits["test"]
    other = np.setdiff1d(np.arange(n_obs), np.concatenate([train, val, test]))
    if len(val) == 0 and validation_size > 0:
        rng = np.random.default_rng(random_state)
        n_val = max(1, int(round(validation_size * len(train))))
        perm = rng.permutation(train)
        val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    # rows outside train/validation are never trained on; scvi-tools wants every row assigned
    return [train, val, np.sort(np.concatenate([test, other]))]


def resolve_rows(
    n_obs: int,
    train_indices: Sequence[int] | None,
    validation_indices: Sequence[int] | None,
    *,
    validation_size: float,
    random_state: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and unused rows; a random ``validation_size`` split of all rows when none are given."""
    if train_indices is None:
        perm = np.random.default_rng(random_state).permutation(n_obs)
        n_val = int(round(validation_size * n_obs))
        validation_indices, train_indices = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    train = np.asarray(train_indices, dtype=int)
    validation = np.asarray(validation_indices if validation_indices is not None else [], dtype=int)
    if len(train) == 0:
        raise ValueError("No training rows: `train_indices` is empty.")
    rest = np.setdiff1d(np.arange(n_obs), np.concatenate([train, validation]))
    return train, validation, rest


def adamw_foreach(params, *, lr: float, weight_decay: float, eps: float) -> torch.optim.Optimizer:
    """AdamW with the multi-tensor (``foreach``) update, which PyTorch only enables by default on CUDA."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, eps=eps, foreach=True)


def train_on_rows(
    model,
    max_epochs: int,
    *,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    lr: float,
    weight_decay: float,
    batch_size: int,
    early_stopping: bool,
    early_stopping_patience: int,
    accelerator: str,
    devices: int | list[int] | str,
    random_state: int,
    plan_kwargs: dict | None = None,
    datasplitter_kwargs: dict | None = None,
    **trainer_kwargs: Any,
):
    """Train ``model`` through scvi-tools on given rows, early-stopping on and restoring the best validation epoch.

    Shared body of the ``train`` methods of the supervised models: the rows go to scvi-tools' data splitter as
    ``external_indexing``, AdamW (multi-tensor update) is the optimiser, validation runs every epoch, and the
    module weights of the epoch with the lowest validation loss are restored at the end
    (:class:`BestStateCallback`).
    """
    from scvi.model.base import UnsupervisedTrainingMixin

    train, validation, rest = rows
    datasplitter_kwargs = {"external_indexing": [train, validation, rest], **(datasplitter_kwargs or {})}
    plan_kwargs = {"lr": lr, "weight_decay": weight_decay, "optimizer": "AdamW", **(plan_kwargs or {})}
    if plan_kwargs["optimizer"] == "AdamW" and "optimizer_creator" not in plan_kwargs:
        # same optimiser and settings as scvi-tools' "AdamW" (its eps default is 0.01), vectorised update
        creator = functools.partial(
            adamw_foreach,
            lr=plan_kwargs["lr"],
            weight_decay=plan_kwargs["weight_decay"],
            eps=plan_kwargs.get("eps", 0.01),
        )
        plan_kwargs.update(optimizer="Custom", optimizer_creator=creator)
    has_validation = len(validation) > 0
    callbacks = list(trainer_kwargs.pop("callbacks", []))
    if has_validation:
        callbacks.append(BestStateCallback("validation_loss", "min"))
    trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
    trainer_kwargs.setdefault("enable_model_summary", False)
    torch.manual_seed(random_state)
    np.random.seed(random_state)
    return UnsupervisedTrainingMixin.train(
        model,
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=devices,
        batch_size=batch_size,
        early_stopping=early_stopping and has_validation,
        early_stopping_monitor="validation_loss",
        early_stopping_patience=early_stopping_patience,
        early_stopping_mode="min",
        plan_kwargs=plan_kwargs,
        datasplitter_kwargs=datasplitter_kwargs,
        callbacks=callbacks,
        **trainer_kwargs,
    )


class ClassPredictionMixin:
    """``predict`` for models with a ``predict_proba`` returning an observations x classes DataFrame."""

    def predict(self, mdata=None, *, indices: Sequence[int] | None = None, batch_size: int | None = None):
        """Most probable class of each observation, as a categorical with the model's classes.

        Parameters
        ----------
        mdata
            Data set up like the training data (default: the training data).
        indices
            Rows to predict (default: all).
        batch_size
            Observations per batch (default: the model's ``predict_proba`` default).

        Returns
        -------
        :class:`pandas.Series` indexed by observation name.

        Examples
        --------
        >>> model.predict().value_counts()
        """
        import pandas as pd

        kwargs = {} if batch_size is None else {"batch_size": batch_size}
        proba = self.predict_proba(mdata, indices=indices, **kwargs)
        codes = proba.to_numpy().argmax(1)
        return pd.Series(pd.Categorical.from_codes(codes, categories=list(proba.columns)), index=proba.index)


class SupervisedTrainingPlan(TrainingPlan):
    """scvi-tools TrainingPlan for classifiers: logs ``<stage>_loss`` and ``<stage>_accuracy`` once per epoch.

    Per-step logging through Lightning costs more than a forward pass of a small model, so the plan sums
    the loss and the correct predictions over the epoch's minibatches and logs the means at the epoch end
    (averaged over processes under DDP). The module's ``loss`` must return a
    :class:`scvi.module.base.LossOutput` with ``logits`` and ``true_labels`` set.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._epoch_sums: dict[str, torch.Tensor] = {}

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        _, _, out = self.forward(batch, loss_kwargs=self.loss_kwargs)
        with torch.no_grad():
            n = out.true_labels.shape[0]
            correct = (out.logits.argmax(-1) == out.true_labels.view(-1).long()).sum()
            sums = torch.stack([out.loss.detach() * n, correct.float(), out.loss.new_tensor(float(n))])
            self._epoch_sums[stage] = self._epoch_sums.get(stage, 0) + sums
        return out.loss

    def _log_epoch(self, stage: str) -> None:
        sums = self._epoch_sums.pop(stage, None)
        if sums is None:
            return
        loss, accuracy = sums[0] / sums[2], sums[1] / sums[2]
        self.log(f"{stage}_loss", loss, sync_dist=self.use_sync_dist, prog_bar=stage == "train")
        self.log(f"{stage}_accuracy", accuracy, sync_dist=self.use_sync_dist)

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "validation")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("validation")


class BestStateCallback(pl.Callback):
    """Keep the module weights of the epoch with the best monitored metric and restore them at the end.

    Parameters
    ----------
    monitor
        Logged metric to watch (e.g. ``"validation_loss"``).
    mode
        ``"min"`` or ``"max"``.
    """

    def __init__(self, monitor: str = "validation_loss", mode: str = "min"):
        super().__init__()
        self.monitor, self.mode = monitor, mode
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        better = self.best_score is None or (score < self.best_score if self.mode == "min" else score > self.best_score)
        if better:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self._best_state = copy.deepcopy(pl_module.module.state_dict())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._best_state is not None:
            pl_module.module.load_state_dict(self._best_state)


def feature_mean_std(matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation over ``rows`` (sparse-aware, nothing densified whole).

    Constant features get a standard deviation of 1.
    """
    from scipy import sparse
    from sklearn.utils.sparsefuncs import mean_variance_axis

    subset = matrix[np.sort(rows)]
    if sparse.issparse(subset):
        mean, var = mean_variance_axis(sparse.csr_matrix(subset), axis=0)
    else:
        subset = np.asarray(subset, dtype=np.float64)
        mean, var = subset.mean(0), subset.var(0)
    std = np.sqrt(var)
    return mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


class Standardizer(torch.nn.Module):
    """Per-modality feature standardisation with statistics held as buffers (saved with the model)."""

    def __init__(self, in_features: dict[str, int]):
        super().__init__()
        self.names = list(in_features)
        for i, n in enumerate(in_features.values()):
            self.register_buffer(f"mean{i}", torch.zeros(n))
            self.register_buffer(f"std{i}", torch.ones(n))

    def set(self, name: str, mean: np.ndarray, std: np.ndarray) -> None:
        """Store the statistics of modality ``name``."""
        i = self.names.index(name)
        getattr(self, f"mean{i}").copy_(torch.as_tensor(mean))
        getattr(self, f"std{i}").copy_(torch.as_tensor(std))

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Standardise every modality of ``x``."""
        return {n: (x[n] - getattr(self, f"mean{i}")) / getattr(self, f"std{i}") for i, n in enumerate(self.names)}


def class_weights(codes: np.ndarray, n_classes: int) -> torch.Tensor:
    """sklearn-style ``"balanced"`` class weights ``n / (k * count)``; absent classes get weight 0."""
    counts = np.bincount(codes.astype(int), minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
    return torch.as_tensor(weights, dtype=torch.float32)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy with optional class weights, labels given as float column (scvi-tools style)."""
    return F.cross_entropy(logits, labels.view(-1).long(), weight=weight)
