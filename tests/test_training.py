"""The one training path: the restored weights are those of the best validation epoch."""

from __future__ import annotations

import numpy as np
import torch

import multiomix as mx
from multiomix.models.base import modality_key


def _validation_loss(model, rows) -> float:
    loader = model._make_data_loader(adata=model.adata, indices=rows, batch_size=len(rows))
    model.module.eval()
    with torch.no_grad():
        for tensors in loader:
            _, _, out = model.module(tensors)
            return float(out.loss)
    raise AssertionError("no rows")


def test_restored_weights_are_those_of_the_best_validation_epoch():
    mdata = mx.datasets.synthetic_interaction_mudata(300, n_features={"rna": 20, "methylation": 20, "mirna": 10})
    model = mx.tl.fit_crossattomics(mdata, max_epochs=25, early_stopping_patience=50, lr=1e-2, batch_size=300,
                                    validation_size=0.3, linear_path=None, progress_bar=False)
    history = mdata.uns["crossattomics"]["history"]["validation_loss"].to_numpy()
    assert np.argmin(history) < len(history) - 1, "the check needs a best epoch before the last"
    rows = model.validation_indices
    assert _validation_loss(model, rows) == np.float32(history.min()) or np.isclose(
        _validation_loss(model, rows), history.min(), rtol=1e-4)
    assert modality_key("rna") in model.adata_manager.data_registry


def test_the_weights_before_training_compete_when_the_model_starts_from_a_fitted_linear_model():
    mdata = mx.datasets.synthetic_interaction_mudata(300, n_features={"rna": 20, "methylation": 20, "mirna": 10})
    model = mx.tl.fit_crossattomics(mdata, max_epochs=25, early_stopping_patience=50, lr=1e-2, batch_size=300,
                                    validation_size=0.3, progress_bar=False)
    history = mdata.uns["crossattomics"]["history"]["validation_loss"].to_numpy()
    restored = _validation_loss(model, model.validation_indices)
    assert model.best_epoch_ == mdata.uns["crossattomics"]["best_epoch"]
    if model.best_epoch_ >= 0:
        assert np.isclose(restored, history[model.best_epoch_], rtol=1e-4)
    else:  # the logistic regression alone: its validation loss is below every epoch's
        assert restored <= history.min() + 1e-6
