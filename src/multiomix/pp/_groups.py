"""Data-driven feature groups (co-variation modules) for grouped encoders such as CrossAttOmics' AttOmics encoders."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.utils.extmath import randomized_svd

from .._logging import logger
from .._utils import check_finite, check_modalities, get_matrix, keep_torch_threads
from ..models._crossattomics import default_n_groups

__all__ = ["group_features"]


def _sampled_rows(n_obs: int, max_rows: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_rows is None or n_obs <= max_rows:
        return np.arange(n_obs)
    return np.sort(rng.choice(n_obs, size=max_rows, replace=False))


def _feature_embedding(block: np.ndarray, n_components: int, random_state: int) -> np.ndarray:
    """Embed features as unit vectors whose inner products approximate their correlations (top components)."""
    centred = block - block.mean(0)
    scale = centred.std(0)
    centred /= np.where(scale > 0, scale, 1.0)
    k = max(1, min(n_components, min(centred.shape) - 1))
    _, singular, vt = randomized_svd(centred, n_components=k, random_state=random_state)
    embedding = (vt.T * singular).astype(np.float64)
    norm = np.linalg.norm(embedding, axis=1, keepdims=True)
    return embedding / np.where(norm > 0, norm, 1.0)


def _module_labels(embedding: np.ndarray, n_groups: int, random_state: int) -> np.ndarray:
    """KMeans modules, renumbered by size (``module0`` the largest)."""
    km = KMeans(n_clusters=n_groups, n_init=4, random_state=random_state).fit(embedding)
    sizes = np.bincount(km.labels_, minlength=n_groups)
    rank = np.empty(n_groups, dtype=int)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(n_groups)
    return rank[km.labels_]


def _group_one(adata: AnnData, name: str, *, layer: str | None, n_groups: int | None, n_components: int,
               max_rows: int | None, random_state: int) -> pd.Categorical:
    matrix = get_matrix(adata, layer, modality=name)
    n_groups = default_n_groups(adata.n_vars) if n_groups is None else n_groups
    if not 1 <= n_groups <= adata.n_vars:
        raise ValueError(f"n_groups must be between 1 and the {adata.n_vars} features of {name}, got {n_groups}.")
    if adata.n_obs < 3:
        raise ValueError(f"{name} has {adata.n_obs} rows; grouping features by co-variation needs at least 3.")
    rows = _sampled_rows(adata.n_obs, max_rows, np.random.default_rng(random_state))
    block = matrix[rows]  # only the sampled rows are read and densified
    block = block.toarray() if sparse.issparse(block) else np.asarray(block)
    check_finite(block, f"{name} ({layer or 'X'})")
    embedding = _feature_embedding(block.astype(np.float64), n_components, random_state) if n_groups > 1 else None
    if embedding is not None:
        distinct = len(np.unique(np.round(embedding, 6), axis=0))  # identical (or constant) features coincide
        if distinct < n_groups:
            logger.warning(f"{name}: {n_groups} modules asked for, but the features vary in only {distinct} distinct "
                           f"ways; making {distinct}")
            n_groups = distinct
    if n_groups == 1:
        labels = np.zeros(adata.n_vars, dtype=int)
    else:
        labels = _module_labels(embedding, n_groups, random_state)
    return pd.Categorical.from_codes(labels, categories=[f"module{i}" for i in range(n_groups)])


@keep_torch_threads()
def group_features(
    data: AnnData | MuData,
    modalities: str | Sequence[str] | None = None,
    *,
    n_groups: int | dict[str, int] | None = None,
    layer: str | None = None,
    n_components: int = 50,
    max_rows: int | None = 5000,
    random_state: int = 0,
    key_added: str = "feature_group",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Group each modality's features into modules that vary together and write ``var[key_added]``.

    The features are standardised over the rows, embedded by their loadings on the top ``n_components``
    principal components (unit length, so that inner products approximate correlations) and clustered with
    k-means. The modules are label-free and can be passed to a grouped encoder:
    ``mx.tl.fit_crossattomics(mdata, groups=key_added)`` makes one AttOmics group of each module instead of
    random groups. For knowledge-based groups (pathways, gene sets), give ``groups`` a ``{name: [features]}``
    dict instead (:func:`multiomix.io.read_gmt` reads a GMT file into one).

    No labels are read, but every row (up to ``max_rows``) is: to keep test rows out of the modules, run it on
    the training rows (``mdata[train].copy()``) and copy the column over.

    Parameters
    ----------
    data
        AnnData, or MuData (``modalities`` selects which; default all).
    modalities
        For a MuData: one modality or a list (``None``: every modality). Ignored for an AnnData.
    n_groups
        Modules per modality (a number, or ``{modality: number}``); default: about 20 features each, 2 to 20
        modules (the rule of CrossAttOmics' random groups).
    layer
        Layer to read (``None``: ``.X``); give normalised, log-transformed values.
    n_components
        Principal components the features are embedded in.
    max_rows
        Rows used at most (a random sample above it, the only rows read into memory); ``None``: all.
    random_state
        Seed of the row sample, the SVD and k-means.
    key_added
        ``var`` column written (categorical ``module0``, ``module1``... by decreasing size).
    copy
        Work on a copy and return it.

    Returns
    -------
    The copy when ``copy=True``, else ``None``; writes ``var[key_added]`` of each modality grouped.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.tcga("brca")
    >>> mx.pp.group_features(mdata, ["rna", "methylation"])
    >>> mdata["rna"].var["feature_group"].value_counts().head(3)
    """
    if not isinstance(data, AnnData | MuData):
        raise TypeError(f"Expected an AnnData or a MuData, got {type(data).__name__}.")
    if isinstance(data, MuData):
        names = list(data.mod) if modalities is None else [modalities] if isinstance(modalities, str) else list(
            modalities)
        check_modalities(data, names)
        targets = {m: data.mod[m] for m in names}
    else:
        targets = {"the AnnData": data}
    per_mod = n_groups if isinstance(n_groups, dict) else dict.fromkeys(targets, n_groups)
    unknown = sorted(set(per_mod) - set(targets))
    if unknown:
        raise ValueError(f"n_groups names {unknown}, which are not grouped here ({list(targets)}).")
    if n_components < 1:
        raise ValueError(f"n_components must be at least 1, got {n_components}.")
    if max_rows is not None and max_rows < 3:
        raise ValueError(f"max_rows must be at least 3 or None, got {max_rows}.")
    labels = {  # all computed first: an error leaves the object untouched
        m: _group_one(adata, m if isinstance(data, MuData) else "the AnnData", layer=layer, n_groups=per_mod.get(m),
                      n_components=n_components, max_rows=max_rows, random_state=random_state)
        for m, adata in targets.items()
    }
    data = data.copy() if copy else data
    for m, values in labels.items():
        adata = data.mod[m] if isinstance(data, MuData) else data
        replaced = key_added in adata.var.columns
        adata.var[key_added] = values
        where = f".mod[{m!r}].var" if isinstance(data, MuData) else ".var"
        logger.info(f"{'replaced' if replaced else 'added'} {where}[{key_added!r}] ({len(values.categories)} modules)")
    return data if copy else None
