"""What the models that predict one modality from another share: the input of ``translate``."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from ..._utils import get_matrix
from ._data import feature_positions


def source_blocks(model, data: MuData | AnnData, source: str, target: str, batch_size: int) -> Iterator[np.ndarray]:
    """Check a ``translate`` call and return its input: ``source`` of ``data`` in dense blocks of ``batch_size`` rows.

    The model must be trained and know both modalities. ``data`` is a MuData holding ``source`` or the source
    AnnData itself; its features are matched to the training features by name (any order; extra features are
    ignored), and sparse input is densified one block at a time. The checks run when this is called.

    Examples
    --------
    >>> blocks = source_blocks(model, mdata, "rna", "atac", 256)  # doctest: +SKIP
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
    matrix = get_matrix(adata, model.layers[source])
    position = feature_positions(adata.var_names, model.feature_names_[source], modality=source)
    return _blocks(matrix, position, adata.n_obs, batch_size)


def _blocks(matrix, position: np.ndarray | None, n_obs: int, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, n_obs, batch_size):
        chunk = matrix[start : start + batch_size]
        if position is not None:
            chunk = chunk[:, position]
        yield chunk.toarray() if sparse.issparse(chunk) else np.asarray(chunk)
