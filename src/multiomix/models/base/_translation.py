"""What the models that predict one modality from another share: the loop of ``translate``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from ..._utils import get_matrix
from ._data import feature_positions


def translate_blocks(
    model,
    data: MuData | AnnData,
    *,
    source: str,
    target: str,
    batch_size: int,
    predict: Callable[[torch.Tensor], torch.Tensor],
) -> np.ndarray:
    """Run ``predict`` on ``source`` of ``data`` in blocks of ``batch_size`` rows, in eval mode (``translate``).

    The model must be trained and know both modalities. ``data`` is a MuData holding ``source`` or the source
    AnnData itself; its features are matched to the training features by name (any order; extra features are
    ignored), and sparse input is densified one block at a time. ``predict`` maps a block (a float32 tensor on
    the module's device) to the predicted ``target``; the blocks' predictions are stacked
    (``n_obs x n_target_vars``).

    Examples
    --------
    >>> translate_blocks(model, mdata, source="rna", target="atac", batch_size=256, predict=decode)  # doctest: +SKIP
    """
    model._check_if_trained(warn=False)
    for name, what in (("source", source), ("target", target)):
        if what not in model.modalities:
            raise KeyError(f"{name} modality {what!r} is not among the model's modalities {model.modalities}.")
    if isinstance(data, MuData):
        if source not in data.mod:
            raise KeyError(f"Source modality {source!r} not found in the MuData; it has {list(data.mod)}.")
        adata = data.mod[source]
    elif isinstance(data, AnnData):
        adata = data
    else:
        raise TypeError(f"Expected a MuData or AnnData, got {type(data).__name__}.")
    matrix = get_matrix(adata, model.layers[source], modality=source)
    position = feature_positions(adata.var_names, model.feature_names_[source], modality=source)
    model.module.eval()
    device = model.module.device
    out = np.empty((adata.n_obs, len(model.feature_names_[target])), dtype=np.float32)  # filled chunk by chunk
    for start in range(0, adata.n_obs, batch_size):
        chunk = matrix[start : start + batch_size]
        if position is not None:
            chunk = chunk[:, position]
        chunk = chunk.toarray() if sparse.issparse(chunk) else np.asarray(chunk)
        out[start : start + len(chunk)] = predict(torch.as_tensor(chunk, dtype=torch.float32, device=device)).cpu()
    return out
