"""Consensus of several clusterings of the same cells (e.g. one model fitted with several seeds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from sklearn.cluster import AgglomerativeClustering

from .._logging import logger
from .._utils import check_output_columns, check_whole, write_obs, write_uns
from ._results import check_replaceable


def co_clustering(labels: Sequence[np.ndarray]) -> np.ndarray:
    """Fraction of the clusterings in ``labels`` that put each pair of cells in the same cluster (cells x cells).

    Examples
    --------
    >>> co_clustering([np.array([0, 0, 1]), np.array([1, 1, 1])])[0]
    array([1. , 1. , 0.5])
    """
    together = np.zeros((len(labels[0]), len(labels[0])))
    for run in labels:
        codes = pd.factorize(np.asarray(run))[0]
        together += codes[:, None] == codes[None, :]
    return together / len(labels)


def consensus_clusters(
    data: AnnData | MuData,
    keys: Sequence[str],
    *,
    n_clusters: int,
    key_added: str = "consensus_clusters",
    max_cells: int = 20_000,
) -> None:
    """Combine several clusterings of the same cells into one (evidence accumulation).

    Cluster labels of different runs are arbitrary, so they are not matched: for every pair of cells the
    fraction of runs that put them together is a similarity, and average-linkage clustering of
    ``1 - similarity`` cuts it into ``n_clusters`` groups (Fred & Jain, 2005). Use it to pool runs of an
    unsupervised model with different seeds, which disagree on many cells. The similarity is a dense
    cells x cells matrix, so at most ``max_cells`` cells are accepted.

    Parameters
    ----------
    data
        AnnData or MuData whose ``obs`` holds the clusterings.
    keys
        Two or more ``obs`` columns, one clustering each (e.g. ``'unitednet_prediction'`` of several seeds).
    n_clusters
        Number of consensus clusters.
    key_added
        Writes ``obs[key_added]`` (categorical, ``'0'``, ``'1'``, ...) and ``uns[key_added]`` (the parameters).
    max_cells
        Largest number of cells accepted (memory grows with its square: 20,000 cells take 3.2 GB).

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.patchseq()
    >>> for seed in range(3):
    ...     mx.tl.fit_unitednet(mdata, mode="unsupervised", n_clusters=27, random_state=seed, key_added=f"run{seed}")
    >>> mx.tl.consensus_clusters(mdata, [f"run{seed}_prediction" for seed in range(3)], n_clusters=27)
    >>> mdata.obs["consensus_clusters"].value_counts()
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    missing = [k for k in keys if k not in data.obs]
    if missing:
        raise KeyError(f"Clusterings {missing} not found in .obs; available columns: {list(data.obs.columns)}.")
    if len(keys) < 2:
        raise ValueError(f"A consensus needs at least two clusterings, got {len(keys)}: {keys}.")
    if key_added in keys:
        raise ValueError(f"key_added={key_added!r} is one of the clusterings read; pass another key_added.")
    check_replaceable(data, key_added, "consensus")
    check_output_columns(data, key_added, [key_added])
    gaps = [k for k in keys if data.obs[k].isna().any()]
    if gaps:
        raise ValueError(f"Clusterings {gaps} have missing labels; every cell needs a cluster in every run.")
    n_clusters = check_whole("n_clusters", n_clusters, 1)  # below 2: the range error below
    if not 2 <= n_clusters <= data.n_obs:
        raise ValueError(f"n_clusters must be between 2 and the number of cells ({data.n_obs}), got {n_clusters}.")
    if data.n_obs > max_cells:
        raise ValueError(f"{data.n_obs} cells exceed max_cells={max_cells}: the co-clustering matrix is dense "
                         "(cells x cells). Raise max_cells if the memory allows, or cluster a subsample.")
    distinct = len(data.obs[list(keys)].astype(str).drop_duplicates())
    if n_clusters > distinct:
        logger.warning(f"the clusterings separate the cells into at most {distinct} groups (cells in the same cluster "
                       f"in every run); n_clusters={n_clusters} splits cells that no run tells apart arbitrarily")
    together = co_clustering([data.obs[k].to_numpy() for k in keys])
    clusters = AgglomerativeClustering(n_clusters, metric="precomputed", linkage="average").fit_predict(1 - together)
    order = pd.Series(clusters).value_counts().index  # name the clusters by size, largest '0'
    renamed = pd.Series(clusters).map({old: str(new) for new, old in enumerate(order)}).to_numpy()
    write_obs(data, key_added, pd.Categorical(renamed, categories=[str(i) for i in range(len(order))]))
    write_uns(data, key_added, {"keys": np.asarray(keys), "n_clusters": n_clusters,
                                "method": "evidence accumulation, average linkage"})


__all__ = ["co_clustering", "consensus_clusters"]
