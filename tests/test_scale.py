"""Neighbour graph, Leiden and the embedding benchmark at a realistic number of cells.

Below 8,192 cells (euclidean metric) scanpy computes exact neighbours with scikit-learn; from there on it uses
pynndescent, whose sparse output type changed across releases (pynndescent 0.7 returns ``csr_array``, which
scanpy 1.11 cannot read). Small test datasets never reach that code path, so this test uses a synthetic
10,000-cell embedding. Most of its run time is pynndescent's one-off numba compilation (about 30 s per process).

The metric functions of the benchmark are also checked here against hand-computed values, scanpy and scikit-learn.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import multiomix as mx

N_CELLS = 10_000


@pytest.fixture(scope="module")
def blobs() -> ad.AnnData:
    rng = np.random.default_rng(0)
    n_types, dim = 6, 10
    centres = rng.normal(scale=6.0, size=(n_types, dim))
    labels = rng.integers(n_types, size=N_CELLS)
    batches = rng.integers(2, size=N_CELLS)
    rep = centres[labels] + rng.normal(size=(N_CELLS, dim)) + 0.3 * batches[:, None]
    obs = pd.DataFrame(
        {"cell_type": [f"t{i}" for i in labels], "batch": [f"b{i}" for i in batches]},
        index=[f"c{i}" for i in range(N_CELLS)],
    )
    return ad.AnnData(X=np.zeros((N_CELLS, 1), dtype=np.float32), obs=obs, obsm={"X_emb": rep.astype(np.float32)})


def test_neighbors_and_leiden_above_the_exact_search_size(blobs):
    adata = blobs.copy()
    sc.pp.neighbors(adata, use_rep="X_emb", n_neighbors=15, random_state=0)
    distances = adata.obsp["distances"]
    assert distances.shape == (N_CELLS, N_CELLS)
    assert (np.diff(distances.indptr) >= 14).all()  # at least k - 1 neighbours besides the cell itself
    sc.tl.leiden(adata, resolution=0.3, flavor="igraph", n_iterations=2, directed=False, random_state=0)
    clusters = adata.obs["leiden"].astype(str)
    # well separated blobs: each cluster is (almost) one cell type
    purity = pd.crosstab(clusters, adata.obs["cell_type"]).max(1).sum() / N_CELLS
    assert purity > 0.95


def test_benchmark_embeddings_at_scale(blobs):
    adata = blobs.copy()
    table = mx.tl.benchmark_embeddings(
        adata, keys=["X_emb"], label_key="cell_type", batch_key="batch", resolutions=(0.2, 0.5)
    )
    row = table.loc["X_emb"]
    assert row["nmi"] > 0.9
    assert row["ari"] > 0.9
    assert row["graph_connectivity"] > 0.95
    assert 0.5 < row["asw_label"] <= 1.0
    assert 0.0 <= row["asw_batch"] <= 1.0


def test_batch_asw_matches_hand_computed_silhouettes():
    from multiomix.tl._embedding import _batch_asw

    # type "a": batches apart on a line (A at 0, 1; B at 10, 11). Silhouettes: a = 1 for every cell,
    # b = 10.5, 9.5, 9.5, 10.5 -> s = 9.5/10.5, 8.5/9.5, 8.5/9.5, 9.5/10.5.
    # type "b": batches interleaved (A at 0, 2; B at 1, 3): s = 0, -0.5, -0.5, 0.
    # type "c": one batch (skipped); type "d": one batch per cell (skipped, silhouette undefined).
    x = np.array([0, 1, 10, 11, 100, 102, 101, 103, 200, 201, 300, 301, 302], dtype=float)
    rep = np.c_[x, np.zeros_like(x)]
    labels = np.array(list("aaaabbbbccddd"))
    batches = np.array(["A", "A", "B", "B", "A", "A", "B", "B", "A", "A", "A", "B", "C"])
    s_a = np.array([9.5 / 10.5, 8.5 / 9.5, 8.5 / 9.5, 9.5 / 10.5])
    s_b = np.array([0.0, -0.5, -0.5, 0.0])
    expected = np.mean([np.mean(1 - np.abs(s_a)), np.mean(1 - np.abs(s_b))])
    assert _batch_asw(rep, labels, batches) == pytest.approx(expected)
    assert np.isnan(_batch_asw(rep[8:10], labels[8:10], batches[8:10]))


def test_graph_connectivity_matches_hand_computed_components():
    from scipy import sparse

    from multiomix.tl._embedding import _graph_connectivity

    # cells 0-2 of type a form one component; type b: 3-4 linked, 5 alone -> 2/3; the 2-3 edge crosses types.
    # Edges are stored in one direction only: they count as undirected, as in scIB's symmetric graph.
    rows, cols = [0, 1, 3, 2], [1, 2, 4, 3]
    graph = sparse.csr_matrix((np.ones(4), (rows, cols)), shape=(6, 6))
    labels = np.array(list("aaabbb"))
    assert _graph_connectivity(graph, labels) == pytest.approx((1.0 + 2 / 3) / 2)


def test_benchmark_table_matches_scanpy_and_sklearn():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    rng = np.random.default_rng(1)
    labels = rng.integers(4, size=300)
    rep = (rng.normal(scale=3.0, size=(4, 5))[labels] + rng.normal(size=(300, 5))).astype(np.float32)
    obs = pd.DataFrame({"cell_type": [f"t{i}" for i in labels]}, index=[f"c{i}" for i in range(300)])
    adata = ad.AnnData(X=np.zeros((300, 1), dtype=np.float32), obs=obs, obsm={"X_emb": rep})
    resolutions = (0.3, 1.0, 2.0)
    row = mx.tl.benchmark_embeddings(adata, keys=["X_emb"], label_key="cell_type", resolutions=resolutions).loc["X_emb"]
    truth = obs["cell_type"].to_numpy()
    assert row["asw_label"] == pytest.approx((silhouette_score(rep, truth) + 1) / 2, rel=1e-5)
    ref = ad.AnnData(X=np.zeros((300, 1), dtype=np.float32), obsm={"rep": rep})
    sc.pp.neighbors(ref, use_rep="rep", n_neighbors=15, random_state=0)
    scores = []
    for res in resolutions:
        sc.tl.leiden(ref, resolution=res, flavor="igraph", n_iterations=2, directed=False, random_state=0)
        clusters = ref.obs["leiden"].to_numpy()
        scores.append((normalized_mutual_info_score(truth, clusters), adjusted_rand_score(truth, clusters), res))
    best = max(scores, key=lambda t: t[0])
    assert row["nmi"] == pytest.approx(best[0])
    assert row["ari"] == pytest.approx(best[1])
    assert row["resolution"] == best[2]
    assert row["ari_best"] == pytest.approx(max(t[1] for t in scores))


def test_benchmark_embeddings_refuses_what_it_cannot_score():
    import anndata as ad

    rng = np.random.default_rng(0)
    adata = ad.AnnData(np.zeros((60, 1), dtype=np.float32),
                       obs=pd.DataFrame({"type": rng.choice(["a", "b"], 60), "batch": rng.choice(["x", "y"], 60)},
                                        index=[f"c{i}" for i in range(60)]),
                       obsm={"X_rand": rng.normal(size=(60, 5)), "X_zero": np.zeros((60, 1))})
    with pytest.raises(ValueError, match=r"obsm\['X_zero'\] is the same for every cell"):
        mx.tl.benchmark_embeddings(adata, keys=["X_rand", "X_zero"], label_key="type")
    with pytest.raises(ValueError, match="`resolutions` is empty"):
        mx.tl.benchmark_embeddings(adata, keys=["X_rand"], label_key="type", resolutions=[])
    adata.obs.loc["c3", "batch"] = np.nan
    with pytest.raises(ValueError, match="1 missing batches"):
        mx.tl.benchmark_embeddings(adata, keys=["X_rand"], label_key="type", batch_key="batch")
    assert "embedding_benchmark" not in adata.uns


def test_training_row_statistics_over_blocks_match_the_whole_and_copy_no_more_than_a_block(monkeypatch):
    """Standardisation and the autoencoder's depth/bias statistics are accumulated over blocks of rows above
    ``STATS_BLOCK_ENTRIES``: the same numbers as on all the rows at once, from copies of one block at a time."""
    from scipy import sparse

    from multiomix.models.base import _data

    rng = np.random.default_rng(0)
    dense = rng.gamma(1.0, 2.0, (503, 40)) * (rng.random((503, 40)) < 0.3)
    rows = rng.choice(503, 400, replace=False)
    for matrix in (dense, dense.astype(np.float32), sparse.csr_matrix(dense)):
        whole = [*_data.feature_mean_std(matrix, rows), *_data.row_sums_and_feature_means(matrix, rows)]
        copied = []

        class Spy:  # records the number of rows each indexing copies
            def __init__(self, inner, log):
                self.inner, self.log, self.shape = inner, log, inner.shape

            def __getitem__(self, key):
                self.log.append(len(key))
                return self.inner[key]

        monkeypatch.setattr(_data, "STATS_BLOCK_ENTRIES", 40 * 64)  # 64 rows a block
        spy = Spy(matrix, copied)
        blocks = [*_data.feature_mean_std(spy, rows), *_data.row_sums_and_feature_means(spy, rows)]
        monkeypatch.undo()
        for a, b in zip(whole, blocks, strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5)
        assert max(copied) == 64 and sum(copied) == 2 * len(rows)
