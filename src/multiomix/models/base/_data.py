"""Data registration and feature matching shared by every model class.

Every model registers **one scvi-tools field per modality** (registry key ``"X_<modality>"``), so a model can
be set up over any number of modalities of a MuData. New data given to a trained model (``predict``, ``load``)
are matched to the training features **by name, per modality** through :func:`matched_input`: a new MuData is
built around the user's matrices, so the user's object is never registered, reordered or otherwise touched.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch
from mudata import MuData
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import MuDataCategoricalObsField, MuDataLayerField

from ..._logging import logger
from ..._utils import (
    check_aligned,
    check_finite,
    check_has_obs,
    check_modalities,
    check_not_views,
    get_matrix,
    in_memory,
    label_text,
    modality_matrix,
    new_mudata,
    plain_array,
)


def modality_key(modality: str) -> str:
    """Registry key of a modality's data field (``"X_<modality>"``).

    Examples
    --------
    >>> modality_key("rna")
    'X_rna'
    """
    return f"X_{modality}"


def resolve_layers(modalities: Sequence[str], layer: str | Mapping[str, str | None] | None) -> dict[str, str | None]:
    """Expand ``layer`` (one name for all, or a dict per modality) to a dict over ``modalities``.

    Examples
    --------
    >>> resolve_layers(["rna", "atac"], {"atac": "counts"})
    {'rna': None, 'atac': 'counts'}
    """
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
    layer: str | Mapping[str, str | None] | None,
    label_key: str | None,
    setup_method_args: dict,
    extra_fields: Sequence[Any] = (),
    check_values: bool = True,
    **kwargs: Any,
) -> list[str]:
    """Validate ``mdata`` and register one layer field per modality (+ labels, + ``extra_fields``).

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
    extra_fields
        Further scvi-tools fields (e.g. an ``obsm`` field of tile bags).
    check_values
        Check for NaN/inf values (on the stored, possibly sparse, values; nothing is densified).
    **kwargs
        Passed to ``AnnDataManager.register_fields`` (e.g. ``source_registry`` on load).

    Returns
    -------
    The names of the modalities registered (``modalities``, or all of ``mdata.mod``).

    Examples
    --------
    >>> register_mudata_fields(CrossAttOmics, mdata, modalities=None, layer=None, label_key="subtype",
    ...                        setup_method_args={})  # doctest: +SKIP
    """
    modalities = check_modalities(mdata, modalities)
    check_has_obs(mdata, needs="there is nothing to set a model up on")
    check_aligned(mdata, modalities)
    check_not_views(mdata, modalities)
    layers = resolve_layers(modalities, layer)
    for mod in modalities:
        matrix = modality_matrix(mdata.mod[mod], layers[mod], modality=mod)
        if check_values and not getattr(mdata.mod[mod], "isbacked", False):
            check_finite(matrix, f"Modality {mod!r} ({'X' if layers[mod] is None else 'layer ' + layers[mod]})")
    if label_key is not None and label_key not in mdata.obs.columns:
        raise KeyError(f"Label key {label_key!r} not found in mdata.obs; columns: {list(mdata.obs.columns)}.")
    if label_key is not None and mdata.obs[label_key].isna().any():
        raise ValueError(f"mdata.obs[{label_key!r}] has {int(mdata.obs[label_key].isna().sum())} missing labels; "
                         f"{cls.__name__} trains on labelled rows: set up `mdata[mdata.obs[{label_key!r}].notna()]"
                         ".copy()` (mx.tl.fit_* does this itself and predicts the unlabelled rows too).")
    fields = [
        MuDataLayerField(modality_key(mod), layers[mod], mod_key=mod, is_count_data=False, mod_required=True)
        for mod in modalities
    ]
    if label_key is not None:
        fields.append(MuDataCategoricalObsField(REGISTRY_KEYS.LABELS_KEY, label_key, mod_key=None))
    fields.extend(extra_fields)
    manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
    with warnings.catch_warnings():
        # scvi-tools names label codes, not classes, and asks for CSR; the fits log small classes by name and
        # hand scvi-tools CSR matrices
        warnings.filterwarnings("ignore", message=r".*has fewer than 3 cells")
        warnings.filterwarnings("ignore", message=r"Training will be faster when sparse matrix is formatted as CSR")
        manager.register_fields(mdata, **kwargs)
    cls.register_manager(manager)
    return modalities


def feature_positions(names: pd.Index, expected: Sequence[str], *, modality: str) -> np.ndarray | None:
    """Column positions of ``expected`` features in ``names`` (``None`` when they are already in place).

    Missing features raise a ``KeyError`` naming the modality and the first missing names; extra features are
    ignored with one log line.

    Examples
    --------
    >>> feature_positions(pd.Index(["b", "a", "c"]), ["a", "b"], modality="rna")
    array([1, 0])
    """
    names = pd.Index(names).astype(str)
    expected = pd.Index(expected).astype(str)
    if names.equals(expected):
        return None
    if not names.is_unique:
        duplicated = list(names[names.duplicated()].unique()[:5])
        raise ValueError(f"Modality {modality!r} has duplicated feature names (e.g. {duplicated}); make them unique.")
    position = names.get_indexer(expected)
    missing = expected[position < 0]
    if len(missing):
        raise KeyError(
            f"Modality {modality!r} lacks {len(missing)} of the {len(expected)} features the model was trained on "
            f"(first missing: {list(missing[:5])}); features are matched by name."
        )
    if len(names) > len(expected):
        logger.info(f"modality {modality!r}: {len(names) - len(expected)} features the model does not use are ignored")
    return position


def take_columns(matrix, position: np.ndarray):
    """Columns ``position`` of ``matrix``, in that order; a backed (h5py) dense matrix is read in increasing order.

    Examples
    --------
    >>> take_columns(np.arange(6).reshape(2, 3), np.array([2, 0]))
    array([[2, 0],
           [5, 3]])
    """
    if isinstance(matrix, np.ndarray) or sparse.issparse(matrix):
        return matrix[:, position]
    order = np.argsort(position)  # h5py reads only increasing indices
    return np.asarray(matrix[:, position[order]])[:, np.argsort(order)]


def matched_input(
    data: MuData,
    *,
    features: Mapping[str, Sequence[str]],
    layers: Mapping[str, str | None],
    label_key: str | None = None,
    classes: Sequence[str] | None = None,
    obsm: Mapping[str, Sequence[str]] | None = None,
) -> MuData:
    """Build a MuData over ``data``'s matrices with each modality's columns in the training order.

    The user's object is not modified: the returned MuData holds new AnnData objects around the same (or
    column-reordered) matrices. When ``label_key`` is given and ``data.obs`` has no such column, a placeholder
    column with the first class is added to the new object so that the registry transfers (labels are never
    read at prediction).

    Parameters
    ----------
    data
        The new data.
    features
        Training feature names per modality.
    layers
        Layer read per modality (``None``: ``.X``).
    label_key, classes
        Registered label column and its categories.
    obsm
        Per modality, ``obsm`` keys to carry over (e.g. tile bags).

    Returns
    -------
    The aligned :class:`~mudata.MuData`.

    Examples
    --------
    >>> view = matched_input(new, features={"rna": genes}, layers={"rna": None})  # doctest: +SKIP
    """
    if not isinstance(data, MuData):
        raise TypeError(f"Expected a MuData, got {type(data).__name__}.")
    check_modalities(data, list(features))
    check_has_obs(data, needs="there is nothing to score")
    check_aligned(data, list(features))
    mods = {}
    for mod, expected in features.items():
        source = data.mod[mod]
        # a modality read only through obsm (tile bags) has no features and may have no X
        read = modality_matrix if len(expected) else get_matrix
        matrix = read(source, layers.get(mod), modality=mod)
        if hasattr(matrix, "to_memory"):  # a backed sparse matrix: scvi-tools' loaders read only in-memory ones
            matrix = in_memory(matrix)
        position = feature_positions(source.var_names, expected, modality=mod)
        if position is not None:
            matrix = take_columns(matrix, position)
        if matrix is not None and len(expected):  # a modality read only through obsm (tile bags) has no X
            check_finite(matrix, f"Modality {mod!r} ({layers.get(mod) or 'X'}), the features the model reads,")
        if sparse.issparse(matrix) and matrix.format != "csr":
            matrix = matrix.tocsr()  # minibatches are row slices (a sparse copy, never densified)
        var = pd.DataFrame(index=pd.Index(expected).astype(str))
        adata = ad.AnnData(X=matrix, obs=pd.DataFrame(index=data.obs_names), var=var)
        if layers.get(mod) is not None:
            adata.layers[layers[mod]] = matrix
        for key in (obsm or {}).get(mod, ()):
            if key not in source.obsm:
                raise KeyError(f"Modality {mod!r} has no obsm[{key!r}]; it has {list(source.obsm.keys())}.")
            adata.obsm[key] = plain_array(source.obsm[key])
        mods[mod] = adata
    view = new_mudata(mods)
    if label_key is not None:
        text = label_text(data.obs[label_key]) if label_key in data.obs.columns else None
        if text is not None and not data.obs[label_key].isna().any() and set(text) <= set(map(str, classes or [])):
            view.obs[label_key] = pd.Categorical(text.to_numpy(), categories=list(classes))
        else:
            view.obs[label_key] = pd.Categorical([classes[0]] * data.n_obs, categories=list(classes))
    return view


#: above this many entries (rows x features) the per-feature statistics of training rows are accumulated over
#: blocks of rows (a copy of the rows, and a float64 one of a dense matrix, is never made whole)
STATS_BLOCK_ENTRIES = 10_000_000


def row_blocks(rows: np.ndarray, n_features: int, *, max_entries: int | None = None) -> list[np.ndarray]:
    """Sorted ``rows`` in consecutive blocks of at most ``max_entries`` entries (``n_features`` per row).

    ``max_entries`` defaults to ``STATS_BLOCK_ENTRIES``.

    Examples
    --------
    >>> [b.tolist() for b in row_blocks(np.array([5, 1, 3]), 4, max_entries=8)]
    [[1, 3], [5]]
    """
    rows = np.sort(np.asarray(rows))
    max_entries = STATS_BLOCK_ENTRIES if max_entries is None else max_entries
    size = max(1, int(max_entries // max(int(n_features), 1)))
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def _block_mean_var(block) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.utils.sparsefuncs import mean_variance_axis

    if sparse.issparse(block):
        return mean_variance_axis(sparse.csr_matrix(block), axis=0)
    block = np.asarray(block, dtype=np.float64)
    return block.mean(0), block.var(0)


def feature_mean_std(matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation over ``rows`` (sparse-aware, nothing densified whole).

    Constant features get a standard deviation of 1. Beyond ``STATS_BLOCK_ENTRIES`` entries the statistics
    are combined over blocks of rows (Chan et al.'s pairwise update), so neither the rows nor a float64 copy of
    them is held whole.

    Examples
    --------
    >>> feature_mean_std(np.array([[0.0, 1.0], [2.0, 1.0]]), np.array([0, 1]))
    (array([1., 1.], dtype=float32), array([1., 1.], dtype=float32))
    """
    blocks = row_blocks(rows, matrix.shape[1])
    if len(blocks) == 1:
        mean, var = _block_mean_var(matrix[blocks[0]])
    else:
        count, mean, m2 = 0, np.zeros(matrix.shape[1]), np.zeros(matrix.shape[1])
        for block in blocks:
            block_mean, block_var = _block_mean_var(matrix[block])
            n, delta = len(block), block_mean - mean
            mean = mean + delta * n / (count + n)
            m2 = m2 + block_var * n + delta**2 * count * n / (count + n)
            count += n
        var = m2 / count
    std = np.sqrt(var)
    return np.asarray(mean).astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


def row_sums_and_feature_means(matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of each of ``rows`` (in sorted order) and the per-feature mean over them, a block of rows at a time.

    Examples
    --------
    >>> sums, means = row_sums_and_feature_means(np.array([[1.0, 0.0], [2.0, 4.0]]), np.array([1, 0]))
    >>> sums.tolist(), means.tolist()
    ([1.0, 6.0], [1.5, 2.0])
    """
    blocks = row_blocks(rows, matrix.shape[1])
    if len(blocks) == 1:
        part = matrix[blocks[0]]
        return (np.asarray(part.sum(axis=1)).ravel(),
                np.asarray(part.mean(axis=0), dtype=np.float64).ravel())
    sums, totals = [], np.zeros(matrix.shape[1])
    for block in blocks:
        part = matrix[block]
        sums.append(np.asarray(part.sum(axis=1), dtype=np.float64).ravel())
        totals += np.asarray(part.sum(axis=0), dtype=np.float64).ravel()
    return np.concatenate(sums) if sums else np.array([]), totals / max(len(rows), 1)


def class_weights(codes: np.ndarray, n_classes: int) -> torch.Tensor:
    """sklearn-style ``"balanced"`` class weights ``n / (k * count)``; absent classes get weight 0.

    Examples
    --------
    >>> class_weights(np.array([0, 0, 1]), 2)
    tensor([0.7500, 1.5000])
    """
    counts = np.bincount(codes.astype(int), minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
    return torch.as_tensor(weights, dtype=torch.float32)
