"""mx.pp.tfidf / binarize / normalize(method="clr") against the muon functions they wrap, on real data.

ATAC: the 10x PBMC Multiome subset of muon's own tests (1000 cells x 174 peaks, counts, with empty cells and
peaks). Protein: the NeurIPS 2021 CITE-seq starter (600 cells x 134 antibody-derived tags, raw counts).
"""

from __future__ import annotations

import tracemalloc
import warnings

import anndata as ad
import mudata as md
import muon as mu
import numpy as np
import pytest
from scipy import sparse

import multiomix as mx


@pytest.fixture(scope="module")
def atac(data_dir) -> ad.AnnData:
    with warnings.catch_warnings():  # the file was written by an older muon
        warnings.simplefilter("ignore", UserWarning)
        adata = md.read_h5mu(data_dir / "muon_tests_multiome" / "test_rna_atac.h5mu")["atac"].copy()
    assert sparse.issparse(adata.X) and adata.X.data.max() > 1  # real counts, not binary
    return adata


@pytest.fixture(scope="module")
def adt(data_dir) -> ad.AnnData:
    return ad.read_h5ad(
        data_dir / "openproblems_bmmc_starter" / "cite" / "openproblems_bmmc_cite_starter.output_mod2.h5ad"
    )


def _dense(x) -> np.ndarray:
    return x.toarray() if sparse.issparse(x) else np.asarray(x)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"log_tf": False, "log_idf": False},
        {"log_tf": False, "log_idf": False, "log_tfidf": True, "scale_factor": 1e3},
        {"log_idf": False, "scale_factor": 1},
    ],
)
def test_tfidf_equals_muon(atac, options):
    n_empty_cells = int((np.asarray(atac.X.sum(1)).ravel() == 0).sum())
    n_empty_peaks = int((np.asarray(atac.X.sum(0)).ravel() == 0).sum())
    assert n_empty_cells > 0 and n_empty_peaks > 0  # the edge cases muon maps to 0 are in the data
    expected = atac.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        mu.atac.pp.tfidf(expected, **options)
    ours = atac.copy()
    ours.layers["counts"] = ours.X.copy()
    mx.pp.tfidf(ours, layer="counts", key_added="tfidf", **options)
    assert sparse.issparse(ours.layers["tfidf"]) and ours.layers["tfidf"].dtype == np.float32
    np.testing.assert_allclose(_dense(ours.layers["tfidf"]), _dense(expected.X), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ours.X.toarray(), atac.X.toarray())  # input untouched
    assert np.isfinite(ours.layers["tfidf"].data).all()


def test_tfidf_dense_input_equals_muon_sparse_path(atac):
    expected = atac.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        mu.atac.pp.tfidf(expected)
    dense = ad.AnnData(X=atac.X.toarray())
    out = mx.pp.tfidf(dense, copy=True)
    assert isinstance(out.X, np.ndarray)
    np.testing.assert_allclose(out.X, _dense(expected.X), rtol=1e-5, atol=1e-6)
    assert isinstance(dense.X, np.ndarray) and dense.X.max() > 1  # copy=True leaves the input alone


def test_binarize_equals_muon(atac):
    expected = atac.copy()
    mu.atac.pp.binarize(expected)
    ours = mx.pp.binarize(atac, copy=True)
    assert sparse.issparse(ours.X) and ours.X.dtype == np.float32
    np.testing.assert_array_equal(ours.X.toarray(), _dense(expected.X))
    assert set(np.unique(ours.X.data)) == {1.0}  # no stored zeros
    dense = ad.AnnData(X=atac.X.toarray())
    mx.pp.binarize(dense, key_added="binary")
    np.testing.assert_array_equal(dense.layers["binary"], _dense(expected.X))
    assert dense.X.max() > 1  # key_added leaves .X alone


def test_clr_equals_muon(adt):
    counts = adt.layers["counts"]
    assert sparse.issparse(counts)
    expected = ad.AnnData(X=sparse.csc_matrix(counts, dtype=np.float64, copy=True))
    mu.prot.pp.clr(expected)
    ours = adt.copy()
    mx.pp.normalize(ours, method="clr", layer="counts", key_added="clr")
    assert sparse.issparse(ours.layers["clr"]) and ours.layers["clr"].dtype == np.float32
    np.testing.assert_allclose(_dense(ours.layers["clr"]), _dense(expected.X), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ours.layers["counts"].toarray(), counts.toarray())  # input untouched
    dense = ad.AnnData(X=counts.toarray())
    out = mx.pp.normalize(dense, method="clr", copy=True)
    assert isinstance(out.X, np.ndarray)
    np.testing.assert_allclose(out.X, _dense(expected.X), rtol=1e-5, atol=1e-6)


def test_wrappers_keep_large_sparse_input_sparse():
    n_obs, n_vars = 2000, 20000
    x = sparse.random(n_obs, n_vars, density=0.002, format="csr", random_state=0, dtype=np.float32)
    x.data = np.ceil(x.data * 4)
    dense_bytes = n_obs * n_vars * 4
    for call in (
        lambda a: mx.pp.tfidf(a, key_added="out"),
        lambda a: mx.pp.binarize(a, key_added="out"),
        lambda a: mx.pp.normalize(a, method="clr", key_added="out"),
    ):
        adata = ad.AnnData(X=x.copy())
        tracemalloc.start()
        call(adata)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert sparse.issparse(adata.layers["out"])
        assert peak < dense_bytes / 10, f"peak allocation {peak / 1e6:.1f} MB vs dense {dense_bytes / 1e6:.1f} MB"


def test_wrapper_errors(atac):
    negative = ad.AnnData(X=-atac.X)
    for call in (mx.pp.tfidf, mx.pp.binarize, lambda a: mx.pp.normalize(a, method="clr")):
        with pytest.raises(ValueError, match="negative"):
            call(negative)
    with pytest.raises(KeyError, match="spliced"):
        mx.pp.tfidf(atac, layer="spliced")
    with pytest.raises(ValueError, match="log_tfidf"):
        mx.pp.tfidf(atac, log_tfidf=True)
    nan = atac.copy()
    nan.X.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mx.pp.binarize(nan)
