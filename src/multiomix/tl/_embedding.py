"""Joint-embedding baselines and metrics: concatenated per-modality PCA/LSI and a scIB-style benchmark."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from sklearn.decomposition import TruncatedSVD
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_samples, silhouette_score

from .._logging import logger
from .._utils import (
    check_aligned,
    check_finite,
    check_modalities,
    check_nonnegative,
    check_whole,
    get_matrix,
    in_memory,
    keep_torch_threads,
    label_text,
    quiet_logger,
    write_obsm,
    write_uns,
)
from ..pp._features import infer_modality_kind, normalize, tfidf
from ._results import check_replaceable

__all__ = ["benchmark_embeddings", "pca_concat"]

DEFAULT_RESOLUTIONS = tuple(np.round(np.arange(0.2, 2.01, 0.2), 1).tolist())


#: what each modality kind's reduction does first (named in errors)
_PREPROCESSING = {"rna": "library-size normalisation and log1p", "atac": "TF-IDF", "protein": "CLR"}


def _modality_components(
    adata: AnnData, *, name: str, kind: str, layer: str | None, n_comps: int, use_highly_variable: bool,
    random_state: int,
) -> np.ndarray:
    """Reduce one modality by its kind's preprocessing and PCA (LSI for ATAC, its first component dropped)."""
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"Modality {name!r} has no layer {layer!r} (its layers: {list(adata.layers.keys())}); pass "
                       f"`layer=` naming its raw counts, or `layer={{{name!r}: None}}` to read .X.")
    matrix = in_memory(get_matrix(adata, layer))  # a backed modality is read once (sparse stays sparse)
    if use_highly_variable and "highly_variable" in adata.var.columns:
        mask = adata.var["highly_variable"].fillna(False).to_numpy().astype(bool)  # missing: not selected
        if mask.sum() >= 2:
            matrix = matrix[:, mask]
        else:
            logger.warning(f"modality {name!r}: var['highly_variable'] marks {int(mask.sum())} feature(s), too few "
                           f"to reduce; all {adata.n_vars} features are used (pass use_highly_variable=False to "
                           "say so, or select features again).")
    where = f"Modality {name!r} ({'X' if layer is None else 'layer ' + repr(layer)})"
    if kind != "scaled":
        check_nonnegative(matrix, where, needs=f"pca_concat's {kind} reduction starts with {_PREPROCESSING[kind]}, "
                          "which needs non-negative counts (pass `layer=` naming raw counts, or, for normalised or "
                          f"continuous features, `layer=None, kinds={{{name!r}: 'scaled'}}`)")
    smallest = 3 if kind == "atac" else 2  # LSI drops its first component
    if min(matrix.shape) < smallest:
        raise ValueError(f"{where} has {matrix.shape[0]} cells x {matrix.shape[1]} features: too few for the {kind} "
                         f"reduction (at least {smallest} of each); leave it out with `modalities=`.")
    tmp = AnnData(X=matrix.copy().astype(np.float32))
    with quiet_logger("multiomix"):  # the "added .X[...]" lines would describe this internal copy, not the user's data
        return _reduce(tmp, kind=kind, n_comps=n_comps, random_state=random_state)


def modality_block(
    adata: AnnData, *, name: str, kind: str, layer: str | None, n_comps: int, use_highly_variable: bool,
    random_state: int,
) -> np.ndarray:
    """One modality's block of :func:`pca_concat`: its reduction, centred and scaled to unit total variance."""
    block = _modality_components(adata, name=name, kind=kind, layer=layer, n_comps=n_comps,
                                 use_highly_variable=use_highly_variable, random_state=random_state)
    block = block - block.mean(0)
    return (block / np.sqrt(max(block.var(0).sum(), 1e-12))).astype(np.float32)


def _reduce(tmp: AnnData, *, kind: str, n_comps: int, random_state: int) -> np.ndarray:
    if kind == "atac":
        tfidf(tmp)
        n = min(n_comps + 1, min(tmp.shape) - 1)
        svd = TruncatedSVD(n_components=n, algorithm="arpack", random_state=random_state)
        lsi = svd.fit_transform(tmp.X)
        return lsi[:, 1:]  # the first LSI component follows sequencing depth
    if kind == "scaled":  # z-scores (a sparse matrix is only divided by the standard deviation; PCA centres it)
        sc.pp.scale(tmp, zero_center=not sparse.issparse(tmp.X))
    else:
        normalize(tmp, method="clr" if kind == "protein" else "log1p")
    n = min(n_comps, min(tmp.shape) - 1)
    sc.pp.pca(tmp, n_comps=n, zero_center=True, svd_solver="arpack", random_state=random_state)
    return np.asarray(tmp.obsm["X_pca"])


@keep_torch_threads()
def pca_concat(
    mdata: MuData,
    *,
    n_comps: int = 20,
    modalities: Sequence[str] | None = None,
    layer: str | Mapping[str, str | None] | None = "counts",
    kinds: Mapping[str, str] | None = None,
    use_highly_variable: bool = True,
    random_state: int = 0,
    key_added: str = "X_pca_concat",
) -> None:
    """Concatenate per-modality reductions into one baseline joint embedding.

    RNA: library-size normalisation, ``log1p``, PCA. ATAC: TF-IDF, truncated SVD (LSI) with the first
    component dropped. Protein: CLR, PCA. Scaled (features already normalised, or continuous measurements such
    as electrophysiology or methylation M values): z-scores, PCA. Each block is scaled to unit total variance so
    every modality weighs the same, then the blocks are concatenated. Sparse matrices stay sparse (implicitly
    centred PCA).

    Parameters
    ----------
    mdata
        MuData.
    n_comps
        Components per modality.
    modalities
        Modalities to use (default all).
    layer
        Layer with raw counts (one name or a dict; ``None`` = ``.X``).
    kinds
        ``"rna"``, ``"atac"``, ``"protein"`` or ``"scaled"`` per modality; by default guessed from the modality
        name (never ``"scaled"``).
    use_highly_variable
        Restrict to ``var['highly_variable']`` when that column exists.
    random_state
        Seed of the SVD.
    key_added
        Key in ``mdata.obsm``.

    Returns
    -------
    Nothing; writes ``mdata.obsm[key_added]`` and its record (kinds and block widths) to ``mdata.uns`` under
    ``key_added`` without its ``X_`` prefix (``uns['pca_concat']`` by default).

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.bmmc_multiome()
    >>> mx.tl.pca_concat(mdata, n_comps=20)
    >>> mdata.obsm["X_pca_concat"].shape
    (500, 40)
    """
    modalities = check_modalities(mdata, modalities)
    check_aligned(mdata, modalities)  # each block is in its modality's row order
    record = key_added[2:] if key_added.startswith("X_") else key_added  # X_pca_concat -> uns['pca_concat']
    earlier = mdata.uns.get(record)
    if (key_added in mdata.obsm or earlier is not None) and not (
            isinstance(earlier, dict) and {"kinds", "widths"} <= set(earlier)):
        raise ValueError(f"obsm[{key_added!r}] or uns[{record!r}] holds something pca_concat did not write (e.g. "
                         f"scanpy's PCA), which key_added={key_added!r} would replace. Pass another key_added and "
                         "point scanpy at it: sc.pp.neighbors(mdata, use_rep=key_added).")
    n_comps = check_whole("n_comps", n_comps, 1)
    kinds = {m: (kinds or {}).get(m, infer_modality_kind(m)) for m in modalities}
    bad = {m: k for m, k in kinds.items() if k not in ("rna", "atac", "protein", "scaled")}
    if bad:
        raise ValueError(f"Unknown modality kinds {bad}; expected 'rna', 'atac', 'protein' or 'scaled'.")
    layers = {m: layer.get(m) if isinstance(layer, Mapping) else layer for m in modalities}
    blocks = [modality_block(mdata.mod[m], name=m, kind=kinds[m], layer=layers[m], n_comps=n_comps,
                             use_highly_variable=use_highly_variable, random_state=random_state) for m in modalities]
    write_obsm(mdata, key_added, np.concatenate(blocks, axis=1))
    write_uns(mdata, record, {"kinds": kinds, "widths": {m: int(b.shape[1]) for m, b in zip(modalities, blocks)}})


# The metrics below follow scIB (Luecken et al. 2022), as used by the NeurIPS 2021 joint-embedding task. They are
# not taken from scib-metrics: its label and batch ASW give the same values (checked) but its JAX silhouette is
# compiled again for every cell-type size (about 30 s for the 600-cell CITE-seq starter against 0.05 s here),
# and its graph connectivity uses the directed kNN graph with strongly connected components, a stricter variant
# than scIB's connectivities graph (0.72 vs 0.84 on the same data).


def _batch_asw(rep: np.ndarray, labels: np.ndarray, batches: np.ndarray) -> float:
    """ScIB batch ASW: per cell type, ``1 - |silhouette of batch|`` averaged over cells, then over types.

    As scIB, a cell type is skipped when it has a single batch or one batch per cell (silhouette undefined);
    ``nan`` when no cell type is left.
    """
    scores = []
    for label in np.unique(labels):
        idx = labels == label
        n_batches = len(np.unique(batches[idx]))
        if n_batches < 2 or n_batches == idx.sum():
            continue
        s = silhouette_samples(rep[idx], batches[idx])
        scores.append(float(np.mean(1.0 - np.abs(s))))
    return float(np.mean(scores)) if scores else float("nan")


def _graph_connectivity(graph: sparse.spmatrix, labels: np.ndarray) -> float:
    """ScIB graph connectivity: mean over cell types of the largest connected component's share of that type.

    ``graph`` is the kNN connectivity graph; edges are read as undirected (scIB: strongly connected components of
    the symmetric ``obsp['connectivities']``).
    """
    scores = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        _, comp = connected_components(graph[idx][:, idx], directed=False)
        scores.append(np.bincount(comp).max() / len(idx))
    return float(np.mean(scores))


def _check_umap_keys(mdata: MuData | AnnData, keys: Sequence[str]) -> None:
    """Refuse to replace ``obsm['<key>_umap']`` entries that no embedding benchmark wrote (the user's own UMAPs)."""
    from ._results import record_kind

    ours = any(record_kind(v) == "embedding_benchmark" for v in mdata.uns.values())
    taken = [f"{k}_umap" for k in keys if f"{k}_umap" in mdata.obsm]
    if taken and not ours:
        raise ValueError(f".obsm already has {taken}, which umap=True would replace, and no embedding benchmark "
                         "wrote them. Pass umap=False, or drop those entries first.")


@keep_torch_threads()
def benchmark_embeddings(
    mdata: MuData | AnnData,
    *,
    keys: Sequence[str],
    label_key: str,
    batch_key: str | None = None,
    resolutions: Sequence[float] = DEFAULT_RESOLUTIONS,
    n_neighbors: int = 15,
    neighbors_method: str = "umap",
    umap: bool = False,
    random_state: int = 0,
    key_added: str = "embedding_benchmark",
) -> pd.DataFrame:
    """Score embeddings with the joint-embedding metrics of the NeurIPS 2021 multimodal challenge (scIB).

    For each key a k-nearest-neighbour graph is built on ``obsm[key]`` and Leiden clusterings are computed at
    each resolution. ``nmi`` is the best NMI over resolutions, ``ari`` the ARI of that same clustering (scIB's
    ``opt_louvain`` convention) and ``ari_best`` the best ARI over resolutions. ``asw_label`` is the cell-type
    silhouette rescaled to ``[0, 1]``. With ``batch_key``: ``asw_batch`` (``1 - |batch silhouette|`` within
    cell types) and ``graph_connectivity`` (largest connected share of each cell type in the kNN graph).

    Parameters
    ----------
    mdata
        MuData or AnnData with the embeddings in ``obsm``.
    keys
        ``obsm`` keys to compare, e.g. ``["X_mmae", "X_pca_concat"]``.
    label_key
        Column of ``obs`` with cell types. Cells without a label are clustered with the others but not scored.
    batch_key
        Column of ``obs`` with batches (optional).
    resolutions
        Leiden resolutions to try.
    n_neighbors
        Neighbours of the kNN graph.
    neighbors_method
        Edge weights of the kNN graph, as :func:`scanpy.pp.neighbors` ``method`` (``"umap"``, scanpy's default,
        or ``"gauss"``).
    umap
        Also write a 2-D UMAP of each embedding to ``obsm['<key>_umap']`` (read by
        :func:`multiomix.pl.embedding`); entries of that name that no benchmark wrote are refused.
    random_state
        Seed of the neighbour search, Leiden and UMAP.
    key_added
        Key in ``uns`` for the table.

    Returns
    -------
    The table (one row per key), also written to ``uns[key_added]``: the metrics, then the settings that
    produced them (``label_key``, ``batch_key``, ``n_neighbors``, ``neighbors_method``, ``resolutions``,
    ``random_state``).

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.bmmc_multiome()
    >>> mx.tl.pca_concat(mdata)
    >>> model = mx.tl.fit_multimodal_ae(mdata, max_epochs=100)
    >>> mx.tl.benchmark_embeddings(mdata, keys=["X_mmae", "X_pca_concat"], label_key="cell_type", batch_key="batch")
    """
    check_replaceable(mdata, key_added, "embedding_benchmark")
    keys = [keys] if isinstance(keys, str) else list(keys)
    if not keys:
        raise ValueError("`keys` is empty; name at least one .obsm key.")
    missing = [k for k in keys if k not in mdata.obsm]
    if missing:
        raise KeyError(f"Embeddings {missing} not found in .obsm; available: {list(mdata.obsm.keys())}.")
    for key, column in (("label_key", label_key), ("batch_key", batch_key)):
        if column is not None and column not in mdata.obs.columns:
            raise KeyError(f"{key} {column!r} not found in .obs; available columns: {list(mdata.obs.columns)}.")
    scored = mdata.obs[label_key].notna().to_numpy()  # cells without a label are clustered, not scored
    if not scored.any():
        raise ValueError(f".obs[{label_key!r}] has no labelled cell to score against.")
    if not scored.all():
        logger.info(f"{int((~scored).sum())} cells without a label in .obs[{label_key!r}] are clustered with the "
                    f"others but not scored ({int(scored.sum())} are)")
    labels = label_text(mdata.obs[label_key][scored]).to_numpy()
    if len(np.unique(labels)) < 2:
        raise ValueError(f".obs[{label_key!r}] has a single class; the metrics need at least two.")
    if batch_key is not None and mdata.obs[batch_key].isna().any():
        raise ValueError(f".obs[{batch_key!r}] has {int(mdata.obs[batch_key].isna().sum())} missing batches; the batch "
                         "metrics need every cell's batch.")
    if len(resolutions) == 0:
        raise ValueError("`resolutions` is empty; give at least one Leiden resolution.")
    if not all(isinstance(r, int | float | np.number) and not isinstance(r, bool) and r > 0 for r in resolutions):
        raise ValueError(f"Leiden resolutions must be positive numbers, got {list(resolutions)}.")
    check_whole("n_neighbors", n_neighbors, 2)
    if n_neighbors >= mdata.n_obs:
        raise ValueError(f"n_neighbors={n_neighbors} needs more than {n_neighbors} cells; there are {mdata.n_obs}.")
    batches = None if batch_key is None else label_text(mdata.obs[batch_key][scored]).to_numpy()
    if umap:
        _check_umap_keys(mdata, keys)
    rows, umaps = {}, {}
    for key in keys:
        rep = np.asarray(mdata.obsm[key], dtype=np.float32)
        if rep.ndim != 2 or rep.shape[0] != mdata.n_obs:
            raise ValueError(f".obsm[{key!r}] must be a 2-D array with one row per observation, got {rep.shape}.")
        check_finite(rep, f".obsm[{key!r}]")
        if not (rep.std(0) > 0).any():
            raise ValueError(f".obsm[{key!r}] is the same for every cell; it cannot be scored (a failed fit?).")
        tmp = AnnData(X=np.zeros((rep.shape[0], 1), dtype=np.float32), obsm={"rep": rep})
        sc.pp.neighbors(
            tmp, use_rep="rep", n_neighbors=n_neighbors, method=neighbors_method, random_state=random_state
        )
        best = {"nmi": -1.0}
        ari_best = -1.0
        for res in resolutions:
            sc.tl.leiden(
                tmp, resolution=res, key_added="leiden", flavor="igraph", n_iterations=2, directed=False,
                random_state=random_state,
            )
            clusters = tmp.obs["leiden"].to_numpy()[scored]
            nmi = normalized_mutual_info_score(labels, clusters)
            ari = adjusted_rand_score(labels, clusters)
            ari_best = max(ari_best, ari)
            if nmi > best["nmi"]:
                best = {"nmi": nmi, "ari": ari, "resolution": res, "n_clusters": len(np.unique(clusters))}
        row = {
            "nmi": float(best["nmi"]),
            "ari": float(best["ari"]),
            "ari_best": float(ari_best),
            "resolution": float(best["resolution"]),
            "n_clusters": int(best["n_clusters"]),
            "asw_label": float((silhouette_score(rep[scored], labels) + 1) / 2),
        }
        if batches is not None:
            row["asw_batch"] = _batch_asw(rep[scored], labels, batches)
            row["graph_connectivity"] = _graph_connectivity(tmp.obsp["connectivities"][scored][:, scored], labels)
        rows[key] = row
        if umap:
            sc.tl.umap(tmp, random_state=random_state)
            umaps[f"{key}_umap"] = np.asarray(tmp.obsm["X_umap"], dtype=np.float32)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "embedding"
    settings = {"label_key": label_key, "batch_key": batch_key or "", "n_neighbors": int(n_neighbors),
                "neighbors_method": neighbors_method, "resolutions": ", ".join(f"{float(r):g}" for r in resolutions),
                "random_state": int(random_state)}
    for name, value in settings.items():  # the settings travel with the table (and through write_h5mu)
        table[name] = value
    for key, coords in umaps.items():
        write_obsm(mdata, key, coords)
    write_uns(mdata, key_added, table)
    return table
