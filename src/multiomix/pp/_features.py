"""Feature selection and per-modality normalisation for RNA, ATAC and protein (sparse-aware).

TF-IDF, binarisation and CLR are thin wrappers over muon; the ATAC variability score is episcanpy's.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from .._docs import fill_doc
from .._logging import logger
from .._utils import (
    added,
    check_finite,
    check_modalities,
    check_nonnegative,
    get_matrix,
    in_memory,
    keep_torch_threads,
)

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
        if not matrix.has_canonical_format:  # repeated (row, column) entries count once, with their sum
            matrix = matrix.tocsr() if matrix.format == "coo" else matrix.copy()
            matrix.sum_duplicates()
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
    sparse structure; a sparse matrix is never densified. episcanpy's ``pp.cal_var`` sums the matrix instead of
    counting positive entries, which is the same on binarised peaks and counts a cell once here on raw counts.
    It is reimplemented because episcanpy (0.4.0) cannot be imported with numpy 2 and anndata 0.12.

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
    if isinstance(matrix, AnnData | MuData) or len(getattr(matrix, "shape", ())) != 2:
        raise TypeError(f"variability_score takes a cells x features matrix (e.g. adata.X or a layer), got "
                        f"{type(matrix).__name__}; for a MuData, mx.pp.select_features(mdata, flavor=...) scores and "
                        "selects per modality.")
    matrix = in_memory(matrix)
    n_obs = matrix.shape[0]
    if n_obs == 0:
        raise ValueError("Cannot score features of an empty matrix (0 cells).")
    check_finite(matrix, "the matrix")
    check_nonnegative(matrix, "the matrix", needs="variability_score needs counts or binary accessibility")
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
    n_top: int | Mapping[str, int] | None = None,
    layer: str | Mapping[str, str | None] | None = "counts",
    flavor: Mapping[str, str] | None = None,
    subset: bool = False,
    copy: bool = False,
) -> MuData | None:
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
        Number of features per modality (``{"rna": 2000, "atac": 5000}``; only modalities named here are
        processed), or one number for every modality. If ``n`` exceeds a modality's width, all its features are
        kept. Default: 2500 for an RNA modality and 5000 for an ATAC one, recognised by name (``rna``, ``gex``,
        ``GEX``, ``atac``, ``peaks``, ...); other modalities are left alone (a CITE-seq object: RNA only).
    layer
        Layer with counts (one name for all, or a dict per modality; ``None`` = ``.X``).
    flavor
        Method per modality: ``"seurat_v3"`` or ``"variability"``. By default ``"variability"`` for modalities
        whose name looks like ATAC (``atac``, ``peaks``...) and ``"seurat_v3"`` otherwise.
    subset
        Subset each modality to its selected features and update the MuData.
    copy
        Work on a copy of ``mdata`` and return it; ``mdata`` is not changed.

    Returns
    -------
    The copy when ``copy=True``, else ``None``; writes ``mdata.mod[m].var['highly_variable']`` (and
    ``var['variability_score']`` for the variability flavor), and subsets when asked.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.bmmc_multiome()
    >>> mx.pp.select_features(mdata, n_top={"rna": 300, "atac": 400})
    >>> int(mdata["atac"].var["highly_variable"].sum())
    400
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"Expected a MuData object, got {type(mdata).__name__} (for one AnnData, "
                        "sc.pp.highly_variable_genes or mx.pp.variability_score).")
    if isinstance(n_top, int | np.integer) and not isinstance(n_top, bool):
        n_top = dict.fromkeys(mdata.mod, int(n_top))
    if n_top is None:
        n_top = {m: DEFAULT_N_TOP[kind] for m in mdata.mod if (kind := _default_kind(m)) is not None}
        if not n_top:
            raise ValueError(f"The default n_top={DEFAULT_N_TOP} names no modality of this MuData "
                             f"({list(mdata.mod)}); pass one, e.g. n_top={{{next(iter(mdata.mod))!r}: 2000}}.")
    if not isinstance(n_top, Mapping):
        raise TypeError(f"n_top must be a number or a dict {{modality: number}}, got {type(n_top).__name__}.")
    modalities = check_modalities(mdata, list(n_top))
    if subset and not copy and mdata.is_view:
        raise ValueError("subset=True cannot subset a view of a MuData in place; make it an object first: "
                         "`mdata = mdata[cells].copy()` (or pass copy=True).")
    if subset and (mdata.isbacked or any(mdata.mod[m].isbacked for m in modalities)):
        raise ValueError("subset=True cannot subset a backed MuData (read with backed=True); load it into memory "
                         "first: `mdata = mdata.to_memory()`, or select without subset=True.")
    mdata = mdata.copy() if copy else mdata
    flavor = dict(flavor or {})
    layers = {m: (layer.get(m) if isinstance(layer, Mapping) else layer) for m in modalities}
    if isinstance(layer, Mapping):
        missing = [m for m in modalities if m not in layer]
        if missing:
            raise ValueError(f"layer is a dict without an entry for {missing}; give every modality in n_top a layer "
                             f"(None for .X), e.g. layer={{{missing[0]!r}: None}}.")
    unused = [m for m in (flavor or {}) if m not in modalities]
    if unused:
        raise ValueError(f"flavor names {unused}, which n_top does not select from ({modalities}); add them to "
                         "n_top or drop them from flavor.")
    masks: dict[str, np.ndarray] = {}
    scores: dict[str, np.ndarray] = {}
    for m in modalities:  # compute everything first, so that a failure leaves mdata untouched
        n = n_top[m]
        if not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"n_top[{m!r}] must be a positive integer, got {n!r}.")
        adata = mdata.mod[m]
        method = flavor.get(m, "variability" if infer_modality_kind(m) == "atac" else "seurat_v3")
        if method not in SELECTION_NEEDS:
            raise ValueError(f"Unknown flavor {method!r} for modality {m!r}; expected 'seurat_v3' or 'variability'.")
        matrix = _counts(adata, layers[m], f"Modality {m!r} ({layers[m] or 'X'})", needs=SELECTION_NEEDS[method],
                         read_only=True)
        n = min(int(n), adata.n_vars)
        if method == "seurat_v3" and n < adata.n_vars and adata.n_obs < _SEURAT_MIN_CELLS:
            raise ValueError(f"Modality {m!r} has {adata.n_obs} cells: seurat_v3 fits a trend of variance on mean over "
                             f"the cells and needs at least {_SEURAT_MIN_CELLS} (with fewer, scanpy's loess fails or "
                             f"crashes the process). Use more cells, or flavor={{{m!r}: 'variability'}}.")
        if method == "variability":
            scores[m] = variability_score(matrix)
            masks[m] = _top_n(scores[m], n)
        elif n == adata.n_vars:
            masks[m] = np.ones(n, dtype=bool)
        else:
            masks[m] = _seurat_v3(matrix, n, name=m)
    for m in modalities:
        adata = mdata.mod[m]
        before = adata.var["highly_variable"].to_numpy(dtype=bool) if "highly_variable" in adata.var else None
        adata.var["highly_variable"] = masks[m]
        if m in scores:
            adata.var["variability_score"] = scores[m]
        if before is None:
            logger.info(f"added .mod[{m!r}].var['highly_variable'] ({int(masks[m].sum())} of {adata.n_vars})")
            continue
        # an earlier selection (e.g. scanpy's highly_variable_genes): say so, and which of its columns now disagree
        stale = [c for c in _SCANPY_SELECTION_COLUMNS if c in adata.var.columns]
        logger.warning(f"replaced .mod[{m!r}].var['highly_variable'] ({int(before.sum())} features before, "
                       f"{int(masks[m].sum())} of {adata.n_vars} now)"
                       + (f"; {stale} describe the earlier selection" if stale else ""))
    if subset:
        _subset_vars(mdata, masks)
    return mdata if copy else None


def _seurat_v3(matrix, n: int, *, name: str) -> np.ndarray:
    """Mask of the ``n`` top features of scanpy's ``seurat_v3``, with a clear error when its trend cannot be fitted.

    scanpy fits a loess curve of log variance on log mean; on small or degenerate data (few cells or features, many
    features with the same mean) that fit fails with the loess library's own message.
    """
    # positional names: scanpy marks its top genes by name, which picks every copy of a duplicated name
    tmp = AnnData(X=matrix, var=pd.DataFrame(index=np.arange(matrix.shape[1]).astype(str)))
    try:
        df = sc.pp.highly_variable_genes(tmp, n_top_genes=n, flavor="seurat_v3", inplace=False)
    except ValueError as err:
        detail = err.args[0].decode(errors="replace") if err.args and isinstance(err.args[0], bytes) else str(err)
        raise ValueError(
            f"Modality {name!r} ({matrix.shape[0]} cells x {matrix.shape[1]} features): seurat_v3 could not fit its "
            f"trend of variance on mean (scanpy's loess failed: {detail.strip()}). Use "
            f"flavor={{{name!r}: 'variability'}}, which fits no trend, or more cells / features."
        ) from err
    return df["highly_variable"].to_numpy(dtype=bool)


def _subset_vars(mdata: MuData, masks: Mapping[str, np.ndarray]) -> None:
    """Subset modalities to their masked features in place and update ``mdata``.

    Feature names shared by modalities (a gene and its protein, e.g. CD69) make mudata's update after a subset
    fail, as do names repeated within a modality, so the features are named by position (``<modality>:<i>``) for
    the subset and get their names back after it, also when the subset failed.
    """
    original = {m: a.var_names.copy() for m, a in mdata.mod.items()}
    # names shared across modalities or repeated within one (read from the modalities: the MuData's own may lag)
    shared = not (mdata.var_names.is_unique and pd.Index(np.concatenate([n.to_numpy() for n in original.values()]))
                  .is_unique)
    with warnings.catch_warnings():  # the shared names are the user's own; mudata warns on every update
        warnings.filterwarnings("ignore", message="var_names (is|are) not unique", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"From 0\.4 \.update\(\)", category=FutureWarning)
        try:
            if shared:  # positions, unique within and across modalities
                for m, a in mdata.mod.items():
                    a.var_names = [f"{m}:{i}" for i in range(a.n_vars)]
                mdata.update()
            for m, mask in masks.items():
                mdata.mod[m]._inplace_subset_var(mask)
            mdata.update()
        finally:  # the user's names come back, also when the update failed
            if shared:
                for m, a in mdata.mod.items():
                    subset = m in masks and a.n_vars != len(original[m])
                    a.var_names = original[m][masks[m]] if subset else original[m]
                # the MuData's names too, in its (modality) order: mudata cannot match repeated names itself
                names = np.concatenate([a.var_names.to_numpy() for a in mdata.mod.values()])
                if len(names) == mdata.n_vars:
                    mdata.var_names = pd.Index(names)
                mdata.update()


def _muon():
    """Import muon on first use: importing it compiles pynndescent's numba kernels, which takes seconds."""
    import warnings

    with warnings.catch_warnings():  # muon reads anndata's and scanpy's __version__, which both deprecate
        warnings.filterwarnings("ignore", message=".*__version__.* is deprecated", category=FutureWarning)
        import muon

    return muon


#: fewest cells select_features passes to scanpy's seurat_v3 (its loess fails, or crashes, on very few)
_SEURAT_MIN_CELLS = 10

#: ``var`` columns of scanpy's ``highly_variable_genes`` that describe its own selection
_SCANPY_SELECTION_COLUMNS = ("highly_variable_rank", "highly_variable_nbatches", "means", "variances",
                             "variances_norm", "dispersions", "dispersions_norm")

#: features kept by default per modality kind (RNA and ATAC modalities, recognised by name)
DEFAULT_N_TOP = {"rna": 2500, "atac": 5000}
_RNA_NAMES = ("rna", "gex", "gene", "genes", "expression", "transcriptome", "scrna", "mrna")


def _default_kind(name: str) -> str | None:
    """``"rna"`` or ``"atac"`` for a modality whose name says so (``GEX``, ``rna``, ``ATAC``, ...), else ``None``.

    Examples
    --------
    >>> _default_kind("GEX"), _default_kind("atac_peaks"), _default_kind("adt"), _default_kind("ephys")
    ('rna', 'atac', None, None)
    """
    if infer_modality_kind(name) == "atac":
        return "atac"
    low = name.lower()
    return "rna" if low in _RNA_NAMES or low.startswith(("rna", "gex")) else None

#: what each feature-selection flavor needs of its input (for the error on negative values)
SELECTION_NEEDS = {
    "seurat_v3": "seurat_v3 highly variable genes need counts (for continuous data such as log2 expression or "
                 "M values, rank the features by variance instead)",
    "variability": "the variability score counts the cells where a feature is non-zero, so it needs counts or "
                   "binary accessibility",
}


def _counts(adata: AnnData, layer: str | None, name: str | None = None, *, needs: str = "it needs counts",
            read_only: bool = False):
    """Return the in-memory input matrix (``.X`` or ``.layers[layer]``), checked to be finite and non-negative.

    A boolean matrix (binarised peaks) is returned as ``float32`` 0/1. A backed AnnData is refused unless the
    caller only reads it (``read_only``): a result cannot be written into the file's ``.X``.
    """
    if not isinstance(adata, AnnData):
        hint = " (one modality, e.g. mdata['atac'])" if isinstance(adata, MuData) else ""
        raise TypeError(f"Expected an AnnData{hint}, got {type(adata).__name__}.")
    if adata.isbacked and not read_only:
        raise ValueError("The AnnData is backed (read with backed='r'); load it into memory first: "
                         "`adata = adata.to_memory()`.")
    matrix = get_matrix(adata, layer)
    if matrix is None:
        raise ValueError(f"{name or '.X'} of this AnnData is empty (None); pass the layer with the data, e.g. "
                         "layer='counts'.")
    matrix = in_memory(matrix)
    if matrix.dtype == bool:
        matrix = matrix.astype(np.float32)
    name = name or (f"layer {layer!r}" if layer else ".X")
    check_finite(matrix, name)
    check_nonnegative(matrix, name, needs=needs)
    return matrix


def _write(adata: AnnData, out, key_added: str | None, what: str, *, copy: bool) -> AnnData | None:
    """Write a result to ``.X`` or ``.layers[key_added]`` (of a copy when ``copy``) and log it; return the copy.

    A view becomes its own object first (as in scanpy), so that its parent is never written through.
    """
    if copy:
        adata = adata.copy()
    elif adata.is_view:
        logger.info("received a view of an AnnData: making it a copy (its parent is not changed)")
        adata._init_as_actual(adata.copy())
    if key_added is None:
        adata.X = out
        logger.info(f"replaced .X with its {what} values")
    else:
        replaced = key_added in adata.layers
        if replaced:  # a layer of the user's, e.g. key_added="counts": say so louder than the usual log line
            logger.warning(f"{what}: layers[{key_added!r}] existed and is replaced by the {what} values")
        adata.layers[key_added] = out
        added("layers", key_added, replaced=replaced)
    return adata if copy else None


def _check_key_added(adata: AnnData, layer: str | None, key_added: str | None) -> None:
    """Refuse to overwrite the input layer: the counts a later step may need would be lost."""
    if key_added is not None and key_added == layer:
        raise ValueError(f"key_added={key_added!r} is the input layer: its counts would be overwritten. Pass "
                         "another name (e.g. key_added='normalized').")


def _warn_not_counts(matrix, name: str, what: str) -> None:
    """Warn when a matrix that should hold counts has non-whole values (already normalised?)."""
    values = matrix.data if sparse.issparse(matrix) else np.asarray(matrix)
    if values.size and not np.array_equal(values, np.round(values)):
        logger.warning(f"{what} expects counts, but {name} has non-whole values (normalised already?); pass the "
                       "counts layer, e.g. layer='counts'.")


@fill_doc
def tfidf(
    adata: AnnData,
    *,
    layer: str | None = None,
    scale_factor: float = 1e4,
    log_tf: bool = True,
    log_idf: bool = True,
    log_tfidf: bool = False,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """TF-IDF transform of peak counts with :func:`muon.atac.pp.tfidf`, kept sparse.

    muon's definition: ``tf = counts / total counts of the cell * scale_factor`` (``log1p`` when ``log_tf``),
    ``idf = n_cells / total counts of the peak`` (``log1p`` when ``log_idf``), result ``tf * idf``
    (``log1p`` of it when ``log_tfidf``). On binarised peaks the total counts of a peak is the number of cells
    where it is open. Cells or peaks without counts give 0. The input is passed to muon as a sparse matrix
    (muon builds a dense ``n_peaks x n_peaks`` diagonal for dense input); a dense input gets a dense result.

    Parameters
    ----------
    adata
        Cells x peaks with non-negative counts.
    layer
        Input layer (``None`` = ``.X``).
    scale_factor
        Multiplier of the term frequency.
    log_tf, log_idf
        Log-transform the term / inverse document frequency.
    log_tfidf
        Log-transform the product instead (only with ``log_tf=False`` and ``log_idf=False``).
    %(layer_key_added_copy)s

    Returns
    -------
    The copy when ``copy=True``, else ``None``; the result is ``float32``.

    Examples
    --------
    >>> import multiomix as mx
    >>> atac = mx.datasets.bmmc_multiome()["atac"].copy()
    >>> mx.pp.tfidf(atac, layer="counts", key_added="tfidf")
    """
    if log_tfidf and (log_tf or log_idf):
        raise ValueError("log_tfidf=True needs log_tf=False and log_idf=False.")
    _check_key_added(adata, layer, key_added)
    matrix = _counts(adata, layer, needs="TF-IDF needs counts or binary accessibility")
    is_sparse = sparse.issparse(matrix)
    counts = sparse.csr_matrix(matrix, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):  # empty cells or peaks; muon sets them to 0
        out = _muon().atac.pp.tfidf(
            AnnData(X=counts), log_tf=log_tf, log_idf=log_idf, log_tfidf=log_tfidf, scale_factor=scale_factor,
            inplace=False,
        )
    out = sparse.csr_matrix(out, dtype=np.float32)
    out.eliminate_zeros()
    return _write(adata, out if is_sparse else out.toarray(), key_added, "tfidf", copy=copy)


@fill_doc
def binarize(
    adata: AnnData,
    *,
    layer: str | None = None,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Binarise peak counts with :func:`muon.atac.pp.binarize`: every non-zero count becomes 1; sparse stays sparse.

    Parameters
    ----------
    adata
        Cells x features with non-negative counts.
    layer
        Input layer (``None`` = ``.X``); it is not modified.
    %(layer_key_added_copy)s

    Returns
    -------
    The copy when ``copy=True``, else ``None``; the result is ``float32`` 0/1.

    Examples
    --------
    >>> import multiomix as mx
    >>> atac = mx.datasets.bmmc_multiome()["atac"].copy()
    >>> mx.pp.binarize(atac, layer="counts", key_added="binary")
    """
    _check_key_added(adata, layer, key_added)
    matrix = _counts(adata, layer, needs="binarize needs counts")
    if sparse.issparse(matrix):
        work = sparse.csr_matrix(matrix, dtype=np.float32, copy=True)
    else:
        work = np.array(matrix, dtype=np.float32)
    tmp = AnnData(X=work)
    _muon().atac.pp.binarize(tmp)  # in place on the copy
    out = tmp.X
    if sparse.issparse(out):
        out.eliminate_zeros()
    return _write(adata, out, key_added, "binarized", copy=copy)


@fill_doc
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
    """Normalise RNA (``"log1p"``, with scanpy) or protein (``"clr"``, with muon) counts.

    ``"log1p"``: :func:`scanpy.pp.normalize_total` to ``target_sum`` then :func:`scanpy.pp.log1p`. ``"clr"``:
    :func:`muon.prot.pp.clr` (``flavor="seurat"``, ``axis=0``): centred log-ratio of each feature across cells,
    ``log1p(x / exp(mean over cells of log1p(x)))``, which keeps sparse data sparse.

    Parameters
    ----------
    adata
        Cells x features with non-negative counts.
    method
        ``"log1p"`` or ``"clr"``.
    layer
        Input layer (``None`` = ``.X``); it is not modified.
    target_sum
        Counts per cell after scaling (``"log1p"`` only; ``None`` = median library size).
    %(layer_key_added_copy)s

    Returns
    -------
    The copy when ``copy=True``, else ``None``; the result is ``float32``.

    Examples
    --------
    >>> import multiomix as mx
    >>> adt = mx.datasets.bmmc_cite()["adt"].copy()
    >>> mx.pp.normalize(adt, method="clr", layer="counts")
    """
    if method not in ("log1p", "clr"):
        raise ValueError(f"Unknown method {method!r}; expected 'log1p' or 'clr'.")
    if method == "log1p" and target_sum is not None and not (
        isinstance(target_sum, int | float | np.number) and not isinstance(target_sum, bool)
        and np.isfinite(target_sum) and target_sum > 0
    ):
        raise ValueError(f"target_sum must be a positive number (counts per cell after scaling) or None (the "
                         f"median library size), got {target_sum!r}.")
    _check_key_added(adata, layer, key_added)
    matrix = _counts(adata, layer, needs=f"normalize(method={method!r}) needs counts")
    _warn_not_counts(matrix, f"layer {layer!r}" if layer else ".X", f"normalize(method={method!r})")
    if method == "log1p" and key_added is None and layer is None and "log1p" in adata.uns:
        logger.warning(".uns['log1p'] is set: .X seems to be log-transformed already.")
    if method == "log1p":
        tmp = AnnData(X=matrix.copy().astype(np.float32))
        sc.pp.normalize_total(tmp, target_sum=target_sum)
        sc.pp.log1p(tmp)
        out = tmp.X
    else:
        is_sparse = sparse.issparse(matrix)
        # a float64 copy, in the CSC layout muon needs for a per-feature CLR (it works in place)
        if is_sparse:
            work = sparse.csc_matrix(matrix, dtype=np.float64, copy=True)
        else:
            work = np.array(matrix, dtype=np.float64)
        tmp = AnnData(X=work)
        _muon().prot.pp.clr(tmp, inplace=True, axis=0, flavor="seurat")
        out = sparse.csr_matrix(tmp.X, dtype=np.float32) if is_sparse else np.asarray(tmp.X, dtype=np.float32)
    result = _write(adata, out, key_added, method, copy=copy)
    if method == "log1p" and key_added is None:  # scanpy's record of a log-transformed .X
        (adata if result is None else result).uns["log1p"] = {"base": None}
    return result
