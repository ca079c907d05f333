"""Consensus of several clusterings (evidence accumulation)."""

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from mudata import MuData
from sklearn.metrics import adjusted_rand_score

import multiomix as mx


def noisy_runs(n: int = 120, k: int = 4, runs: int = 5, noise: float = 0.3, seed: int = 0) -> AnnData:
    """``runs`` clusterings of ``k`` planted groups; each run relabels the groups and scrambles ``noise`` of cells."""
    rng = np.random.default_rng(seed)
    truth = np.arange(n) % k
    adata = AnnData(np.zeros((n, 1), np.float32), obs=pd.DataFrame(index=[f"c{i}" for i in range(n)]))
    adata.obs["truth"] = truth.astype(str)
    for r in range(runs):
        labels = rng.permutation(k)[truth]
        scrambled = rng.random(n) < noise
        labels[scrambled] = rng.integers(0, k, scrambled.sum())
        adata.obs[f"run{r}"] = pd.Categorical([f"r{r}_{c}" for c in labels])
    return adata


def test_consensus_beats_every_run_and_writes():
    adata = noisy_runs()
    keys = [f"run{r}" for r in range(5)]
    single = [adjusted_rand_score(adata.obs["truth"], adata.obs[k]) for k in keys]
    mx.tl.consensus_clusters(adata, keys, n_clusters=4)
    consensus = adjusted_rand_score(adata.obs["truth"], adata.obs["consensus_clusters"])
    assert consensus > max(single) + 0.2 and consensus > 0.8  # runs: ARI about 0.5-0.6
    assert list(adata.obs["consensus_clusters"].cat.categories) == ["0", "1", "2", "3"]
    sizes = adata.obs["consensus_clusters"].value_counts(sort=False).to_numpy()
    assert (np.diff(sizes) <= 0).all()  # named by size, largest '0'
    assert list(adata.uns["consensus_clusters"]["keys"]) == keys


def test_co_clustering_fractions():
    from multiomix.tl._consensus import co_clustering

    together = co_clustering([np.array(["a", "a", "b"]), np.array([3, 3, 3])])
    np.testing.assert_allclose(together, [[1, 1, 0.5], [1, 1, 0.5], [0.5, 0.5, 1]])


def test_consensus_on_mudata_obs():
    adata = noisy_runs(n=60, runs=3, noise=0.0)
    mdata = MuData({"rna": adata})
    for key in ("run0", "run1", "run2"):
        mdata.obs[key] = adata.obs[key].to_numpy()
    mx.tl.consensus_clusters(mdata, ["run0", "run1", "run2"], n_clusters=4, key_added="pooled")
    assert adjusted_rand_score(adata.obs["truth"], mdata.obs["pooled"]) == 1.0


def test_consensus_clear_errors_leave_data_untouched():
    adata = noisy_runs(n=40, runs=2)
    before = adata.obs.copy()
    with pytest.raises(KeyError, match=r"\['nope'\] not found"):
        mx.tl.consensus_clusters(adata, ["run0", "nope"], n_clusters=4)
    with pytest.raises(ValueError, match="at least two clusterings"):
        mx.tl.consensus_clusters(adata, ["run0"], n_clusters=4)
    with pytest.raises(ValueError, match="n_clusters must be between 2"):
        mx.tl.consensus_clusters(adata, ["run0", "run1"], n_clusters=1)
    with pytest.raises(ValueError, match="exceed max_cells=10"):
        mx.tl.consensus_clusters(adata, ["run0", "run1"], n_clusters=4, max_cells=10)
    with pytest.raises(ValueError, match="is one of the clusterings read"):
        mx.tl.consensus_clusters(adata, ["run0", "run1"], n_clusters=4, key_added="run0")
    adata.obs["cell_type"] = "the user's"
    with pytest.raises(ValueError, match=r"\['cell_type'\], which key_added='cell_type' would overwrite"):
        mx.tl.consensus_clusters(adata, ["run0", "run1"], n_clusters=4, key_added="cell_type")
    assert (adata.obs.pop("cell_type") == "the user's").all()
    adata.obs.loc["c0", "run1"] = np.nan
    with pytest.raises(ValueError, match="missing labels"):
        mx.tl.consensus_clusters(adata, ["run0", "run1"], n_clusters=4)
    assert "consensus_clusters" not in adata.obs and "consensus_clusters" not in adata.uns
    pd.testing.assert_frame_equal(adata.obs.drop(columns="run1"), before.drop(columns="run1"))


def test_consensus_warns_when_asked_for_more_groups_than_the_runs_separate():
    import logging

    adata = noisy_runs(n=40, runs=2, noise=0.0)  # both runs recover the 4 groups exactly: 4 separable groups
    messages = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("multiomix").addHandler(handler)
    try:
        mx.tl.consensus_clusters(adata, ["run0", "run1"], n_clusters=4, key_added="four")
        assert messages == []
        mx.tl.consensus_clusters(adata, ["run0", "run1"], n_clusters=6, key_added="six")
    finally:
        logging.getLogger("multiomix").removeHandler(handler)
    assert len(messages) == 1 and "at most 4 groups" in messages[0]
