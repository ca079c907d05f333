"""Transition module: the shared machinery now lives in :mod:`multiomix.models.base` and :mod:`multiomix.train`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..nn.losses import cross_entropy
from ..nn.standardizer import Standardizer
from ..train import BestStateCallback, SupervisedTrainingPlan, resolve_rows
from ..train import train_on_rows as _train_on_rows
from ..train._runner import adamw_foreach
from .base._data import (
    class_weights,
    feature_mean_std,
    modality_key,
    register_mudata_fields,
    resolve_layers,
)

__all__ = [
    "BestStateCallback",
    "ClassPredictionMixin",
    "Standardizer",
    "SupervisedTrainingPlan",
    "adamw_foreach",
    "class_weights",
    "cross_entropy",
    "feature_mean_std",
    "modality_key",
    "register_mudata_fields",
    "resolve_layers",
    "resolve_rows",
    "train_on_rows",
]


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


def train_on_rows(model, max_epochs, *, lr, weight_decay, plan_kwargs=None, **kwargs):
    """Old signature of :func:`multiomix.train.train_on_rows` (AdamW settings as arguments)."""
    plan = {"lr": lr, "weight_decay": weight_decay, "optimizer": "AdamW", **(plan_kwargs or {})}
    return _train_on_rows(model, max_epochs, plan_kwargs=plan, **kwargs)


def split_to_external_indexing(splits, *, n_obs: int, validation_size: float, random_state: int):
    """Turn ``obs['split']`` indices into scvi-tools' ``external_indexing`` (train, validation, test)."""
    if splits is None:
        return None
    train, val, test = splits["train"], splits["validation"], splits["test"]
    other = np.setdiff1d(np.arange(n_obs), np.concatenate([train, val, test]))
    if len(val) == 0 and validation_size > 0:
        rng = np.random.default_rng(random_state)
        n_val = max(1, int(round(validation_size * len(train))))
        perm = rng.permutation(train)
        val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return [train, val, np.sort(np.concatenate([test, other]))]
