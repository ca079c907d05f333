"""Feature selection and per-modality normalisation for RNA, ATAC and protein (sparse-aware)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scanpy as sc
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from .._logging import logger
from .._utils import added, check_finite, check_modalities, check_nonnegative, get_matrix, keep_torch_threads

__all__ = ["binarize", "infer_modality_kind", "normalize", "select_features", "tfidf", "variability_score"]

_ATAC_NAMES = ("atac", "peak", "peaks", "accessibility", "chromatin", "mod2_atac")
_PROTEIN_NAMES = ("adt", "prot", "protein", "proteins", "cite")


def infer_modality_kind(name: str) -> str:
    """Guess the kind of a modality from its name: ``"atac"``, ``"protein"`` or ``"rna"`` (default).

    Examples
    --------
    >>> infer_modality_kind("atac"), infer_modality_kind("adt"), infer_modality_kind("rna")
    ('atac', 'protein', 'rna')
    """
    low = name.lower()
    if low in _ATAC_NAMES or low.startswith("atac"):
        return "atac"
    if low in _PROTEIN_NAMES or low.startswith("adt") or low.startswith("prot"):
        return "protein"
    return "rna"


def _column_nonzero_counts(matrix) -> np.ndarray:
    """Count rows with a positive value, per column, without densifying a sparse matrix."""
    if sparse.issparse(matrix):
        if matrix.format not in ("csr", "csc", "coo"):
            matrix = matrix.tocsr()
        if matrix.format == "csc":
            lengths = np.diff(matrix.indptr)
            cols = np.repeat(np.arange(matrix.shape[1]), lengths)
            return np.bincount(cols[matrix.data > 0], minlength=matrix.shape[1])
        cols = matrix.indices if matrix.format == "csr" else matrix.col
        return np.bincount(cols[matrix.data > 0], minlength=matrix.shape[1])
    return np.asarray((np.asarray(matrix) > 0).sum(axis=0)).ravel()


def variability_score(matrix) -> np.ndarray:
    """Variability of each feature: ``1 - |fraction of cells where it is > 0 - 0.5|`` (episcanpy's score).

    The score is 1 for a peak open in half the cells and 0.5 for one open in none or all. Computed on the
    sparse structure; a sparse matrix is never densified.

    Parameters
    ----------
    matrix
        Cells x features, dense or scipy sparse.

    Returns
    -------
    Array of length ``n_features``.

    Examples
    --------
    >>> import numpy as np
    >>> variability_score(np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]]))
    array([1. , 0.5, 0.5])
    """
    n_obs = matrix.shape[0]
    if n_obs == 0:
        raise ValueError("Cannot score features of an empty matrix (0 cells).")
    fraction = _column_nonzero_counts(matrix) / n_obs
    return 1.0 - np.abs(fraction - 0.5)


def _top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of exactly ``n`` highest scores (ties broken by feature order)."""
    order = np.argsort(-scores, kind="stable")
    mask = np.zeros(len(scores), dtype=bool)
    mask[order[:n]] = True
    return mask


@keep_torch_threads()
def select_features(
    mdata: MuData,
    *,
    n_top: Mapping[str, int] | None = None,
    layer: str | Mapping[str, str | None] | None = "counts",
    flavor: Mapping[str, str] | None = None,
    subset: bool = False,
) -> None:
    """Select the most variable features of each modality and write ``var['highly_variable']``.

    RNA (and protein, if asked) use scanpy's ``seurat_v3`` highly variable genes on counts; ATAC uses the
    episcanpy variability score ``1 - |fraction of cells where the peak is open - 0.5|``
    (:func:`~multiomix.pp.variability_score`), computed on the sparse structure. Exactly ``n`` features are selected
    (episcanpy's ``select_var_feature`` keeps ``n + 1``; ties are broken by feature order here).

    Parameters
    ----------
    mdata
        MuData with the modalities to select from.
    n_top
        Number of features per modality, e.g. ``{"rna": 2500, "atac": 5000}`` (the default). Only modalities
        named here are processed. If ``n`` exceeds a modality's width, all its features are kept.
    layer
        Layer with counts (one name for all, or a dict per modality; ``None`` = ``.X``).
    flavor
        Method per modality: ``"seurat_v3"`` or ``"variability"``. By default ``"variability"`` for modalities
        whose name looks like ATAC (``atac``, ``peaks``...) and ``"seurat_v3"`` otherwise.
    subset
        Subset each modality to its selected features (in place) and update the MuData.

    Returns
    -------
    Nothing; writes ``mdata.mod[m].var['highly_variable']`` (and ``var['variability_score']`` for the
    variability flavor), and subsets when asked.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.bmmc_multiome()
    >>> mx.pp.select_features(mdata, n_top={"rna": 300, "atac": 400})
    >>> int(mdata["atac"].var["highly_variable"].sum())
    400
    """
    n_top = {"rna": 2500, "atac": 5000} if n_top is None else dict(n_top)
    modalities = check_modalities(mdata, list(n_top))
    flavor = dict(flavor or {})
    layers = {m: (layer.get(m) if isinstance(layer, Mapping) else layer) for m in modalities}
    masks: dict[str, np.ndarray] = {}
    scores: dict[str, np.ndarray] = {}
    for m in modalities:  # compute everything first, so that a failure leaves mdata untouched
        n = n_top[m]
        if not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"n_top[{m!r}] must be a positive integer, got {n!r}.")
        adata = mdata.mod[m]
        matrix = get_matrix(adata, layers[m])
        method = flavor.get(m, "variability" if infer_modality_kind(m) == "atac" else "seurat_v3")
        n = min(int(n), adata.n_vars)
        if method == "variability":
            scores[m] = variability_score(matrix)
            masks[m] = _top_n(scores[m], n)
        elif method == "seurat_v3":
            check_nonnegative(matrix, f"Modality {m!r} ({layers[m] or 'X'})")
            if n == adata.n_vars:
                masks[m] = np.ones(n, dtype=bool)
                continue
            tmp = AnnData(X=matrix, obs=adata.obs[[]], var=adata.var[[]])
            df = sc.pp.highly_variable_genes(tmp, n_top_genes=n, flavor="seurat_v3", inplace=False)
            masks[m] = df["highly_variable"].to_numpy(dtype=bool)
        else:
            raise ValueError(f"Unknown flavor {method!r} for modality {m!r}; expected 'seurat_v3' or 'variability'.")
    for m in modalities:
        adata = mdata.mod[m]
        adata.var["highly_variable"] = masks[m]
        if m in scores:
            adata.var["variability_score"] = scores[m]
        logger.info(f"added .mod[{m!r}].var['highly_variable'] ({int(masks[m].sum())} of {adata.n_vars})")
        if subset:
            adata._inplace_subset_var(masks[m])
    if subset:
        mdata.update()


def tfidf(
    adata: AnnData,
    *,
    layer: str | None = None,
    scale_factor: float = 1e4,
    log_tf: bool = True,
    log_idf: bool = True,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """TF-IDF transform of peak counts (as in muon's ``atac.pp.tfidf``), kept sparse.

    ``tf = counts / total per cell`` (``log1p(tf * scale_factor)`` when ``log_tf``), ``idf = n_cells / cells
    per peak`` (``log1p`` when ``log_idf``), result ``tf * idf``.

    Parameters
    ----------
    adata
        Cells x peaks.
    layer
        Input layer (``None`` = ``.X``).
    scale_factor
        Multiplier inside the ``log1p`` of the term frequency.
    log_tf, log_idf
        Log-transform the term / inverse document frequency.
    key_added
        Layer to write to; ``None`` overwrites ``.X``.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    The copy when ``copy=True``, else ``None``.

    Examples
    --------
    >>> import multiomix as mx
    >>> atac = mx.datasets.bmmc_multiome()["atac"].copy()
    >>> mx.pp.tfidf(atac, layer="counts", key_added="tfidf")
    """
    adata = adata.copy() if copy else adata
    matrix = get_matrix(adata, layer)
    check_finite(matrix, f"{layer or 'X'}")
    check_nonnegative(matrix, f"{layer or 'X'}")
    is_sparse = sparse.issparse(matrix)
    x = sparse.csr_matrix(matrix, dtype=np.float32) if is_sparse else np.asarray(matrix, dtype=np.float32)
    n_cells = x.shape[0]
    row_sum = np.asarray(x.sum(axis=1)).ravel()
    col_nnz = np.asarray((x > 0).sum(axis=0)).ravel()
    inv_row = np.divide(1.0, row_sum, out=np.zeros_like(row_sum), where=row_sum > 0)
    idf = np.divide(n_cells, col_nnz, out=np.zeros(len(col_nnz), dtype=np.float64), where=col_nnz > 0)
    if log_idf:
        idf = np.log1p(idf)
    if is_sparse:
        tf = sparse.diags(inv_row) @ x
        if log_tf:
            tf.data = np.log1p(tf.data * scale_factor)
        out = sparse.csr_matrix(tf @ sparse.diags(idf), dtype=np.float32)
    else:
        tf = x * inv_row[:, None]
        if log_tf:
            tf = np.log1p(tf * scale_factor)
        out = (tf * idf[None, :]).astype(np.float32)
    if key_added is None:
        adata.X = out
        added("X", "tfidf")
    else:
        adata.layers[key_added] = out
        added("layers", key_added)
    return adata if copy else None


def binarize(
    adata: AnnData,
    *,
    layer: str | None = None,
    threshold: float = 0.0,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Binarise (peak) counts: ``1`` where the value exceeds ``threshold``, else ``0``; sparse stays sparse.

    Parameters
    ----------
    adata
        Cells x features.
    layer
        Input layer (``None`` = ``.X``).
    threshold
        Values strictly above it become 1.
    key_added
        Layer to write to; ``None`` overwrites ``.X``.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    The copy when ``copy=True``, else ``None``.

    Examples
    --------
    >>> import multiomix as mx
    >>> atac = mx.datasets.bmmc_multiome()["atac"].copy()
    >>> mx.pp.binarize(atac, layer="counts")
    """
    adata = adata.copy() if copy else adata
    matrix = get_matrix(adata, layer)
    check_finite(matrix, f"{layer or 'X'}")
    if sparse.issparse(matrix):
        out = sparse.csr_matrix(matrix > threshold, dtype=np.float32)
        out.eliminate_zeros()
    else:
        out = (np.asarray(matrix) > threshold).astype(np.float32)
    if key_added is None:
        adata.X = out
        added("X", "binarized")
    else:
        adata.layers[key_added] = out
        added("layers", key_added)
    return adata if copy else None


@keep_torch_threads()
def normalize(
    adata: AnnData,
    *,
    method: str = "log1p",
    layer: str | None = None,
    target_sum: float | None = 1e4,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Normalise RNA (``"log1p"``) or protein (``"clr"``) counts.

    ``"log1p"``: library-size scaling to ``target_sum`` then ``log1p``, as scanpy. ``"clr"``: centred log-ratio
    per feature across cells, as muon's ``prot.pp.clr``.

    Parameters
    ----------
    adata
        Cells x features with non-negative counts.
    method
        ``"log1p"`` or ``"clr"``.
    layer
        Input layer (``None`` = ``.X``).
    target_sum
        Counts per cell after scaling (``"log1p"`` only; ``None`` = median library size).
    key_added
        Layer to write to; ``None`` overwrites ``.X``.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    The copy when ``copy=True``, else ``None``.

    Examples
    --------
    >>> import multiomix as mx
    >>> adt = mx.datasets.bmmc_cite()["adt"].copy()
    >>> mx.pp.normalize(adt, method="clr", layer="counts")
    """
    if method not in ("log1p", "clr"):
        raise ValueError(f"Unknown method {method!r}; expected 'log1p' or 'clr'.")
    adata = adata.copy() if copy else adata
    matrix = get_matrix(adata, layer)
    check_finite(matrix, f"{layer or 'X'}")
    check_nonnegative(matrix, f"{layer or 'X'}")
    if method == "log1p":
        tmp = AnnData(X=matrix.copy().astype(np.float32))
        sc.pp.normalize_total(tmp, target_sum=target_sum)
        sc.pp.log1p(tmp)
        out = tmp.X
    else:
        n_cells = matrix.shape[0]
        if sparse.issparse(matrix):
            x = sparse.csc_matrix(matrix, dtype=np.float64)
            log_mean = np.asarray(x.log1p().sum(axis=0)).ravel() / n_cells
            out = sparse.csr_matrix(x @ sparse.diags(np.exp(-log_mean)))
            out.data = np.log1p(out.data)
            out = out.astype(np.float32)
        else:
            x = np.asarray(matrix, dtype=np.float64)
            log_mean = np.log1p(x).sum(axis=0) / n_cells
            out = np.log1p(x / np.exp(log_mean)).astype(np.float32)
    if key_added is None:
        adata.X = out
        added("X", method)
    else:
        adata.layers[key_added] = out
        added("layers", key_added)
    return adata if copy else None
