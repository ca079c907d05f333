from __future__ import annotations

import tracemalloc

import anndata as ad
import matplotlib.pyplot as plt
import mudata as md
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

import multiomix as mx
from multiomix.nn.autoencoder import MultimodalAutoencoder

SMALL = {"latent_dim": 4, "hidden_dim": 32, "batch_size": 64, "accelerator": "cpu", "n_models": 1}


def planted_multiome(n_obs: int = 160, n_genes: int = 40, n_peaks: int = 60, seed: int = 0) -> md.MuData:
    """Two planted clusters: cluster-specific genes are up in RNA, cluster-specific peaks are open in ATAC."""
    rng = np.random.default_rng(seed)
    cluster = np.repeat([0, 1], n_obs // 2)
    rng.shuffle(cluster)
    mean = np.full((2, n_genes), 1.0)
    mean[0, :10] = 3.0
    mean[1, 10:20] = 3.0
    counts = rng.poisson(mean[cluster]).astype(np.float32)
    p_open = np.full((2, n_peaks), 0.1)
    p_open[0, :15] = 0.8
    p_open[1, 15:30] = 0.8
    peaks = (rng.random((n_obs, n_peaks)) < p_open[cluster]).astype(np.float32)
    names = [f"c{i}" for i in range(n_obs)]
    obs = pd.DataFrame({"cluster": pd.Categorical(np.array(["A", "B"])[cluster])}, index=names)
    rna = ad.AnnData(X=sparse.csr_matrix(np.log1p(counts)), obs=obs.copy())
    rna.layers["counts"] = sparse.csr_matrix(counts)
    rna.var_names = [f"g{i}" for i in range(n_genes)]
    atac = ad.AnnData(X=sparse.csr_matrix(peaks), obs=obs.copy())
    atac.var_names = [f"p{i}" for i in range(n_peaks)]
    mdata = md.MuData({"rna": rna, "atac": atac})
    mdata.obs["cluster"] = obs["cluster"]
    return mdata


def separation(z: np.ndarray, labels) -> float:
    pred = KMeans(2, n_init=10, random_state=0).fit_predict(z)
    return adjusted_rand_score(np.asarray(labels), pred)


@pytest.fixture(scope="module")
def fitted():
    mdata = planted_multiome()
    params = {**SMALL, "batch_size": 32}
    model = mx.tl.fit_multimodal_ae(mdata, max_epochs=60, lr=1e-2, modality_dropout=0.4, random_state=0, **params)
    return mdata, model


def test_decoders_read_the_joint_latent():
    torch.manual_seed(0)
    net = MultimodalAutoencoder(dims={"rna": 8, "atac": 6}, likelihoods={"rna": "mse", "atac": "bce"}, dim_latent=3,
                                dim_hidden=16).eval()
    x = {"rna": torch.randn(5, 8, requires_grad=True), "atac": torch.randint(0, 2, (5, 6)).float()}
    _, out = net(x)
    # the ATAC reconstruction depends on the RNA input (it would not if each decoder read its own half)
    grad = torch.autograd.grad(out["atac"]["logits"].sum(), x["rna"])[0]
    assert grad.abs().sum() > 0
    # one modality alone is encoded into the same latent space
    assert net.encode({"atac": x["atac"]}).shape == (5, 3)
    with pytest.raises(ValueError, match="Unknown modalities"):
        net.encode({"protein": torch.randn(5, 4)})


def test_learns_planted_clusters_and_writes_results(fitted):
    mdata, model = fitted
    z = mdata.obsm["X_mmae"]
    assert z.shape == (mdata.n_obs, 4)
    assert separation(z, mdata.obs["cluster"]) > 0.95
    history = mdata.uns["mmae"]["history"]
    assert history["train_loss"].iloc[-1] < 0.8 * history["train_loss"].iloc[0]
    assert {"train_loss_rna", "train_loss_atac"} <= set(history.columns)
    assert mdata.uns["mmae"]["params"]["losses"] == {"rna": "mse", "atac": "bce"}
    # with modality dropout one modality alone places the cells
    z_atac = model.get_latent_representation(modalities=["atac"])
    assert separation(z_atac, mdata.obs["cluster"]) > 0.9


def test_translate_recovers_planted_peaks_from_rna_alone(fitted):
    mdata, model = fitted
    rna_only = md.MuData({"rna": mdata["rna"].copy()})
    pred = model.translate(rna_only, source="rna", target="atac", batch_size=50)
    assert pred.shape == (mdata.n_obs, mdata["atac"].n_vars)
    is_a = (mdata.obs["cluster"] == "A").to_numpy()
    # peaks 0-14 are open in cluster A, 15-29 in cluster B, the rest are background
    assert pred[is_a, :15].mean() > pred[~is_a, :15].mean() + 0.4
    assert pred[~is_a, 15:30].mean() > pred[is_a, 15:30].mean() + 0.4
    assert pred[:, 30:].mean() < 0.25
    var = model.modality_var("atac")
    assert list(var.index) == list(mdata["atac"].var_names)
    with pytest.raises(KeyError, match="features"):
        model.translate(md.MuData({"rna": mdata["rna"][:, :10].copy()}), source="rna", target="atac")
    # features are matched by name: reordered source features translate identically
    reordered = mdata["rna"][:, mdata["rna"].var_names[::-1]].copy()
    np.testing.assert_allclose(model.translate(reordered, source="rna", target="atac", batch_size=50), pred,
                               atol=1e-6)
    with pytest.raises(KeyError, match="protein"):
        model.translate(rna_only, source="protein", target="atac")
    with pytest.raises(KeyError, match="modality_var|not among"):
        model.modality_var("protein")


def test_save_load_and_h5mu_round_trip(fitted, tmp_path):
    mdata, model = fitted
    z = model.get_latent_representation()
    model.save(tmp_path / "model", overwrite=True)
    loaded = mx.models.MultimodalAE.load(tmp_path / "model", mdata)
    np.testing.assert_allclose(loaded.get_latent_representation(), z, atol=1e-6)
    np.testing.assert_allclose(
        loaded.translate(mdata, source="rna", target="atac"), model.translate(mdata, source="rna", target="atac"),
        atol=1e-6,
    )
    assert loaded.modality_var("atac").index.equals(mdata["atac"].var_names)
    path = tmp_path / "out.h5mu"
    mdata.write_h5mu(path)
    back = md.read_h5mu(path)
    np.testing.assert_array_equal(back.obsm["X_mmae"], mdata.obsm["X_mmae"])
    assert back.uns["mmae"]["params"]["latent_dim"] == 4
    pd.testing.assert_frame_equal(pd.DataFrame(back.uns["mmae"]["history"]), mdata.uns["mmae"]["history"],
                                  check_names=False)


def test_new_data_matched_by_name_and_no_classes(fitted, tmp_path):
    mdata, model = fitted
    obs_before, mod_obs_before = list(mdata.obs.columns), {m: list(a.obs.columns) for m, a in mdata.mod.items()}
    cells = mdata.obs_names[::3]
    mods = {m: mdata[m][cells, mdata[m].var_names[::-1]].copy() for m in ("atac", "rna")}  # reversed features
    for adata in mods.values():
        adata.obs = pd.DataFrame(index=adata.obs_names)  # no labels
    new = md.MuData(mods)
    z_fit = pd.DataFrame(mdata.obsm["X_mmae"], index=mdata.obs_names).loc[cells].to_numpy()
    np.testing.assert_allclose(model.get_latent_representation(new), z_fit, atol=1e-6)
    with pytest.raises(ValueError, match="does not predict classes"):
        model.predict_proba(new)
    with pytest.raises(ValueError, match="does not predict classes"):
        model.predict()
    model.save(tmp_path / "model", overwrite=True)
    loaded = mx.models.MultimodalAE.load(tmp_path / "model", adata=new)
    np.testing.assert_allclose(loaded.get_latent_representation(), z_fit, atol=1e-6)
    np.testing.assert_allclose(loaded.get_latent_representation(new, modalities=["atac"]),
                               model.get_latent_representation(new, modalities=["atac"]), atol=1e-6)
    # the user's object was never registered (no scvi-tools columns) and the fit added no split column
    assert list(mdata.obs.columns) == obs_before and "split" not in mdata.obs
    assert {m: list(a.obs.columns) for m, a in mdata.mod.items()} == mod_obs_before
    assert "_scvi_uuid" not in mdata.uns


def test_use_highly_variable_subsets_features():
    mdata = planted_multiome(n_obs=80)
    hv = np.zeros(mdata["rna"].n_vars, dtype=bool)
    hv[:25] = True
    mdata["rna"].var["highly_variable"] = hv
    before = mdata["rna"].X.copy()
    model = mx.tl.fit_multimodal_ae(mdata, max_epochs=2, random_state=0, label_key="cluster", **SMALL)
    assert model.feature_names_["rna"] == [f"g{i}" for i in range(25)]
    assert model.feature_names_["atac"] == list(mdata["atac"].var_names)
    assert model.modality_var("rna").shape[0] == 25
    assert mdata.uns["mmae"]["params"]["use_highly_variable"] == {"rna": True, "atac": False}
    assert list(mdata.uns["mmae"]["features"]["rna"]) == [f"g{i}" for i in range(25)]
    assert set(mdata.uns["mmae"]["embedding_metrics"]["kmeans"]) >= {"ari", "nmi"}
    assert mdata["rna"].n_vars == 40 and (mdata["rna"].X != before).nnz == 0  # the user's object is untouched
    # the full data are matched to the subset by name; translation reads the selected features
    np.testing.assert_allclose(model.get_latent_representation(mdata), mdata.obsm["X_mmae"], atol=1e-6)
    assert model.translate(mdata, source="atac", target="rna").shape == (80, 25)
    assert model.translate(mdata, source="rna", target="atac").shape == (80, 60)
    # all features; validation_size=0 trains on every row (no validation, last epoch kept)
    all_features = mx.tl.fit_multimodal_ae(mdata, use_highly_variable=False, validation_size=0, max_epochs=2,
                                           random_state=0, **SMALL)
    assert len(all_features.feature_names_["rna"]) == 40
    assert mdata.uns["mmae"]["n_train"] == 80 and mdata.uns["mmae"]["n_validation"] == 0
    assert "validation_loss" not in mdata.uns["mmae"]["history"] and len(mdata.uns["mmae"]["history"]) == 2


def test_deterministic_given_random_state():
    a, b = planted_multiome(n_obs=80), planted_multiome(n_obs=80)
    mx.tl.fit_multimodal_ae(a, max_epochs=3, modality_dropout=0.3, random_state=7, **SMALL)
    mx.tl.fit_multimodal_ae(b, max_epochs=3, modality_dropout=0.3, random_state=7, **SMALL)
    np.testing.assert_array_equal(a.obsm["X_mmae"], b.obsm["X_mmae"])
    c = planted_multiome(n_obs=80)
    mx.tl.fit_multimodal_ae(c, max_epochs=3, modality_dropout=0.3, random_state=8, **SMALL)
    assert not np.allclose(a.obsm["X_mmae"], c.obsm["X_mmae"])


def test_nb_loss_on_counts_and_split_honoured():
    mdata = planted_multiome(n_obs=120, seed=3)
    split = np.array(["train"] * 80 + ["validation"] * 20 + ["test"] * 20)
    mdata.obs["split"] = split
    model = mx.tl.fit_multimodal_ae(
        mdata, layer={"rna": "counts"}, losses={"rna": "nb"}, loss_weights={"atac": 2.0}, max_epochs=40,
        random_state=0, **SMALL
    )
    history = mdata.uns["mmae"]["history"]
    assert "validation_loss" in history.columns
    assert history["validation_loss"].iloc[-1] < history["validation_loss"].iloc[0]
    assert model.module.loss_weights == {"rna": 1.0, "atac": 2.0}
    assert mdata.uns["mmae"]["n_train"] == 80 and mdata.uns["mmae"]["n_validation"] == 20
    # nb translation is on the count scale (median library size of the training rows)
    counts = model.translate(mdata, source="atac", target="rna")
    lib = np.median(np.asarray(mdata["rna"].layers["counts"][:80].sum(1)).ravel())
    np.testing.assert_allclose(counts.sum(1), lib, rtol=1e-3)
    assert separation(mdata.obsm["X_mmae"], mdata.obs["cluster"]) > 0.9
    # new data without the layer the model reads: the error names the modality
    query = md.MuData({"rna": ad.AnnData(X=mdata["rna"].layers["counts"], obs=mdata["rna"].obs, var=mdata["rna"].var),
                       "atac": mdata["atac"].copy()})
    with pytest.raises(KeyError, match="Modality 'rna': layer 'counts' not found"):
        model.get_latent_representation(query)
    with pytest.raises(KeyError, match="Modality 'rna': layer 'counts' not found"):
        mx.tl.predict(query, model)
    # cells measured in ATAC only are embedded from it, although the model reads RNA from a layer
    atac_only = md.MuData({"atac": mdata["atac"].copy()})
    np.testing.assert_allclose(model.get_latent_representation(atac_only, modalities=["atac"]),
                               model.get_latent_representation(mdata, modalities=["atac"]), atol=1e-5)


def test_clear_errors_leave_object_untouched():
    mdata = planted_multiome(n_obs=40)
    uns_before = set(mdata.uns.keys())
    with pytest.raises(KeyError, match="protein"):
        mx.tl.fit_multimodal_ae(mdata, modalities=["rna", "protein"], max_epochs=1, n_models=1)
    with pytest.raises(ValueError, match="non-binary"):
        mx.tl.fit_multimodal_ae(mdata, losses={"rna": "bce"}, max_epochs=1, **SMALL)
    with pytest.raises(ValueError, match="Unknown loss"):
        mx.tl.fit_multimodal_ae(mdata, losses={"rna": "poisson"}, max_epochs=1, **SMALL)
    with pytest.raises(KeyError, match="loss_weights"):
        mx.tl.fit_multimodal_ae(mdata, loss_weights={"adt": 1.0}, max_epochs=1, **SMALL)
    with pytest.raises(ValueError, match=r"`loss_weights` must be >= 0"):
        mx.tl.fit_multimodal_ae(mdata, loss_weights={"atac": -1.0}, max_epochs=1, **SMALL)
    with pytest.raises(ValueError, match=r"`hidden_dim` must be an integer >= 1, got 0"):
        mx.tl.fit_multimodal_ae(mdata, max_epochs=1, **{**SMALL, "hidden_dim": 0})
    bad = planted_multiome(n_obs=40)
    bad["rna"].X = bad["rna"].X.toarray()
    bad["rna"].X[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mx.tl.fit_multimodal_ae(bad, max_epochs=1, **SMALL)
    assert "X_mmae" not in mdata.obsm
    assert set(mdata.uns.keys()) == uns_before
    with pytest.raises(TypeError, match="setup_mudata"):
        mx.models.MultimodalAE.setup_anndata(mdata["rna"])
    with pytest.raises(KeyError, match="celltype"):
        mx.tl.fit_multimodal_ae(mdata, label_key="celltype", max_epochs=1, **SMALL)
    with pytest.raises(KeyError, match="highly_variable"):
        mx.tl.fit_multimodal_ae(mdata, use_highly_variable=True, max_epochs=1, **SMALL)
    assert "X_mmae" not in mdata.obsm and set(mdata.uns.keys()) == uns_before


def test_sparse_input_is_densified_per_minibatch_only():
    rng = np.random.default_rng(0)
    n_obs, n_peaks, n_genes = 4000, 5000, 200
    atac = sparse.random(n_obs, n_peaks, density=0.01, format="csr", random_state=rng, dtype=np.float32)
    atac.data[:] = 1.0
    rna = sparse.random(n_obs, n_genes, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    names = [f"c{i}" for i in range(n_obs)]
    mdata = md.MuData({"rna": ad.AnnData(X=rna, obs=pd.DataFrame(index=names)),
                       "atac": ad.AnnData(X=atac, obs=pd.DataFrame(index=names))})
    dense_bytes = n_obs * n_peaks * 4
    tracemalloc.start()
    model = mx.tl.fit_multimodal_ae(mdata, max_epochs=1, random_state=0, **SMALL)  # training + embedding
    model.translate(mdata, source="atac", target="rna")  # the (small) dense output is the only full array
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < dense_bytes / 4, f"peak numpy allocation {peak / 1e6:.1f} MB vs dense {dense_bytes / 1e6:.1f} MB"


def test_pca_concat_and_benchmark_metrics():
    mdata = planted_multiome(n_obs=120)
    mdata["atac"].layers["counts"] = mdata["atac"].X.copy()
    mx.tl.pca_concat(mdata, n_comps=5)
    assert mdata.obsm["X_pca_concat"].shape == (120, 10)
    assert mdata.uns["pca_concat"]["kinds"] == {"rna": "rna", "atac": "atac"}
    labels = mdata.obs["cluster"].cat.codes.to_numpy()
    rng = np.random.default_rng(0)
    mdata.obsm["X_perfect"] = np.c_[labels * 10.0, np.zeros(120)] + rng.normal(0, 0.1, (120, 2))
    mdata.obsm["X_noise"] = rng.normal(size=(120, 5))
    mdata.obs["batch"] = np.tile(["b1", "b2"], 60)
    table = mx.tl.benchmark_embeddings(
        mdata, keys=["X_pca_concat", "X_perfect", "X_noise"], label_key="cluster", batch_key="batch",
        resolutions=(0.1, 0.5), neighbors_method="gauss",
    )
    assert table.loc["X_perfect", "nmi"] > 0.99 and table.loc["X_perfect", "ari"] > 0.99
    assert table.loc["X_pca_concat", "nmi"] > 0.8
    assert table.loc["X_noise", "nmi"] < 0.3
    assert table.loc["X_perfect", "asw_label"] > table.loc["X_noise", "asw_label"]
    assert table.loc["X_perfect", "graph_connectivity"] == pytest.approx(1.0)
    assert mdata.uns["embedding_benchmark"] is table
    assert "X_perfect_umap" not in mdata.obsm
    mdata.obsm["X_pca_concat_umap"] = mdata.obsm["X_pca_concat"][:, :2]  # UMAP itself is exercised in the benchmark
    mdata.obsm["X_perfect_umap"] = mdata.obsm["X_perfect"]
    ax = mx.pl.benchmark(mdata)
    fig = mx.pl.embedding(mdata, keys=["X_pca_concat", "X_perfect"], color="cluster")
    assert ax.figure is not None and len(fig.axes) >= 2
    plt.close("all")
    with pytest.raises(KeyError, match="X_missing"):
        mx.tl.benchmark_embeddings(mdata, keys=["X_missing"], label_key="cluster", neighbors_method="gauss")
    with pytest.raises(KeyError, match="celltype"):
        mx.tl.benchmark_embeddings(mdata, keys=["X_perfect"], label_key="celltype", neighbors_method="gauss")
    with pytest.raises(KeyError, match="umap"):
        mx.pl.embedding(mdata, keys=["X_noise_2"], color="cluster")
    # the settings travel with the table, through write_h5mu
    assert table.loc["X_perfect", ["label_key", "batch_key", "neighbors_method", "resolutions"]].tolist() == [
        "cluster", "batch", "gauss", "0.1, 0.5"]
    assert table["n_neighbors"].eq(15).all()
    for bad, match in (({"n_neighbors": 0}, "n_neighbors must be a whole number >= 2"),
                       ({"n_neighbors": 500}, "needs more than 500 cells"),
                       ({"resolutions": (0.5, -1)}, "positive")):
        with pytest.raises(ValueError, match=match):
            mx.tl.benchmark_embeddings(mdata, keys=["X_perfect"], label_key="cluster", **bad)


def test_benchmark_table_round_trips_and_a_replaced_embedding_drops_its_old_umap_and_scores(
        tmp_path, caplog, neighbors_reset_threads):
    mdata = planted_multiome(n_obs=60)
    labels = mdata.obs["cluster"].cat.codes.to_numpy()
    noise = np.random.default_rng(0).normal(size=(60, 2))
    mdata.obsm["X_a"] = np.c_[labels, noise[:, 0]].astype(np.float32)
    mdata.obsm["X_b"] = noise.astype(np.float32)
    mx.tl.benchmark_embeddings(mdata, keys=["X_a", "X_b"], label_key="cluster", resolutions=(0.5,), umap=True)
    assert torch.get_num_threads() == 1  # the fixture's graph set 2: the user's count is kept
    assert "X_a_umap" in mdata.obsm
    mdata.write_h5mu(tmp_path / "b.h5mu")
    back = md.read_h5mu(tmp_path / "b.h5mu")
    pd.testing.assert_frame_equal(back.uns["embedding_benchmark"], mdata.uns["embedding_benchmark"],
                                  check_dtype=False, check_index_type=False)
    mx.pl.benchmark(back)
    plt.close("all")
    from multiomix._utils import write_obsm

    with caplog.at_level("INFO", logger="multiomix"):
        write_obsm(mdata, "X_a", np.zeros((60, 2), dtype=np.float32))  # what a refit or tl.predict does
    assert "X_a_umap" not in mdata.obsm and "removed .obsm['X_a_umap']" in caplog.text
    # the scores of the replaced embedding go too (pl.benchmark would draw them for the new one)
    assert list(mdata.uns["embedding_benchmark"].index) == ["X_b"]
    assert "removed the row of 'X_a' from .uns['embedding_benchmark']" in caplog.text
    with caplog.at_level("INFO", logger="multiomix"):
        write_obsm(mdata, "X_b", np.zeros((60, 2), dtype=np.float32))
    assert "embedding_benchmark" not in mdata.uns and "removed .uns['embedding_benchmark']" in caplog.text
    write_obsm(mdata, "X_c", np.zeros((60, 2), dtype=np.float32))  # a new entry removes nothing


def test_keep_torch_threads_restores_the_count():
    from multiomix._utils import keep_torch_threads

    torch.set_num_threads(1)
    with keep_torch_threads():
        torch.set_num_threads(2)  # what scanpy's numba kernels do to the process the first time they run
    assert torch.get_num_threads() == 1
    with pytest.raises(RuntimeError), keep_torch_threads():
        torch.set_num_threads(2)
        raise RuntimeError("fails inside")
    assert torch.get_num_threads() == 1


def planted_depth_atac(n_obs: int = 240, n_peaks: int = 80, seed: int = 0) -> md.MuData:
    """Binary peaks: two planted cell types (peaks 0-19 vs 20-39 more open) under a strong, type-independent depth."""
    rng = np.random.default_rng(seed)
    cell_type = rng.integers(0, 2, n_obs)
    rate = np.full((2, n_peaks), 0.08)
    rate[0, :20] = rate[1, 20:40] = 0.3
    depth = np.exp(rng.uniform(np.log(0.4), np.log(2.5), n_obs))  # open-peak odds scale with depth
    p_open = np.clip(rate[cell_type] * depth[:, None], 0.0, 0.95)
    peaks = (rng.random((n_obs, n_peaks)) < p_open).astype(np.float32)
    obs = pd.DataFrame({"cell_type": pd.Categorical(np.array(["A", "B"])[cell_type])},
                       index=[f"c{i}" for i in range(n_obs)])
    atac = ad.AnnData(X=sparse.csr_matrix(peaks), obs=obs.copy())
    atac.var_names = [f"p{i}" for i in range(n_peaks)]
    mdata = md.MuData({"atac": atac})
    mdata.obs["cell_type"] = obs["cell_type"]
    return mdata


def test_binary_decoder_offsets_keep_depth_out_of_the_latent(monkeypatch):
    from sklearn.linear_model import LinearRegression

    from multiomix.module import MultimodalAEModule

    mdata = planted_depth_atac()
    log_depth = np.log(np.asarray(mdata["atac"].X.sum(1)).ravel() + 1)

    def fit() -> tuple[float, float]:
        model = mx.tl.fit_multimodal_ae(mdata, latent_dim=2, hidden_dim=32, max_epochs=80, lr=1e-2,
                                        validation_size=0.0, random_state=0, accelerator="cpu", progress_bar=False)
        z = model.get_latent_representation()
        return LinearRegression().fit(z, log_depth).score(z, log_depth), separation(z, mdata.obs["cell_type"])

    depth_r2, ari = fit()
    assert mdata.uns["mmae"]["params"]["losses"] == {"atac": "bce"}
    assert depth_r2 < 0.05 and ari > 0.5  # the latent holds the cell types, not the depth
    # the same model without the offsets spends its latent on depth
    monkeypatch.setattr(MultimodalAEModule, "depth_offsets", lambda self, tensors: {})
    depth_r2_without, _ = fit()
    assert depth_r2_without > 0.3


def test_decoder_offsets_shift_binary_logits_only():
    torch.manual_seed(0)
    net = MultimodalAutoencoder(dims={"rna": 8, "atac": 6}, likelihoods={"rna": "mse", "atac": "bce"}, dim_latent=3,
                                dim_hidden=16).eval()
    z = torch.randn(4, 3)
    offset = torch.tensor([[0.0], [1.0], [-2.0], [0.5]])
    plain, shifted = net.decode(z), net.decode(z, offsets={"atac": offset})
    torch.testing.assert_close(shifted["atac"]["logits"], plain["atac"]["logits"] + offset)
    torch.testing.assert_close(shifted["rna"]["mean"], plain["rna"]["mean"])


def test_pca_concat_names_the_modality_it_cannot_reduce():
    rng = np.random.default_rng(0)
    counts = {"rna": rng.poisson(2.0, (40, 30)).astype(np.float32), "atac": rng.binomial(1, 0.3, (40, 25))}
    good = md.MuData({m: ad.AnnData(x.astype(np.float32)) for m, x in counts.items()})
    scaled = good.copy()
    scaled.mod["rna"].X = scaled.mod["rna"].X - scaled.mod["rna"].X.mean(0)
    with pytest.raises(ValueError, match=r"Modality 'rna' \(X\) has negative values, but pca_concat's rna reduction"):
        mx.tl.pca_concat(scaled, layer=None)
    one_peak = md.MuData({"rna": good.mod["rna"].copy(), "atac": good.mod["atac"][:, :1].copy()})
    with pytest.raises(ValueError, match="Modality 'atac' .* too few for the atac reduction"):
        mx.tl.pca_concat(one_peak, layer=None)
    assert "X_pca_concat" not in scaled.obsm and "X_pca_concat" not in one_peak.obsm
    mx.tl.pca_concat(good, layer=None, n_comps=3)
    assert good.obsm["X_pca_concat"].shape == (40, 6)


def test_pca_concat_scaled_kind_embeds_continuous_modalities():
    """Normalised or continuous features (negative values allowed): z-scores and PCA, one block per modality."""
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], 30)
    ephys = rng.normal(size=(60, 12)) + 3.0 * groups[:, None] * (np.arange(12) < 3)
    counts = rng.poisson(2.0, (60, 30)).astype(np.float32)
    mdata = md.MuData({"rna": ad.AnnData(counts), "ephys": ad.AnnData(ephys.astype(np.float32) * 100)})
    with pytest.raises(ValueError, match=r"kinds=\{'ephys': 'scaled'\}"):
        mx.tl.pca_concat(mdata, layer=None)
    mx.tl.pca_concat(mdata, layer=None, kinds={"ephys": "scaled"}, n_comps=4)
    block = mdata.obsm["X_pca_concat"][:, 4:]
    assert mdata.uns["pca_concat"]["kinds"]["ephys"] == "scaled" and block.shape == (60, 4)
    # the planted group difference is the first scaled component, whatever the features' units
    assert abs(np.corrcoef(block[:, 0], groups)[0, 1]) > 0.8


def test_embedding_baseline_is_pca_concat_of_the_same_inputs(caplog):
    import logging

    from multiomix.tl._multimodal_ae import _embedding_metrics

    mdata = planted_multiome()
    with caplog.at_level(logging.INFO, logger="multiomix"):
        mx.tl.fit_multimodal_ae(mdata, label_key="cluster", max_epochs=3, random_state=0, **SMALL)
    entry = mdata.uns["mmae"]
    assert entry["baseline"]["kinds"] == {"rna": "scaled", "atac": "atac"}  # mse on log values, bce on peaks
    # the baseline is pca_concat of what the model read (.X), scored as the model is
    mx.tl.pca_concat(mdata, layer=None, kinds={"rna": "scaled", "atac": "atac"}, use_highly_variable=False)
    expected = _embedding_metrics(mdata.obsm["X_pca_concat"], mdata.obs["cluster"], random_state=0)["kmeans"]
    assert entry["baseline"]["kmeans"] == pytest.approx(expected)
    assert entry["baseline"]["kmeans"]["nmi"] > 0.9  # the planted clusters are linear: PCA finds them
    line = [r.getMessage() for r in caplog.records if "mmae vs baseline" in r.getMessage()]
    assert len(line) == 1 and f"vs {expected['nmi']:.3f}" in line[0]
    mx.tl.fit_multimodal_ae(mdata, label_key="cluster", max_epochs=1, baseline=False, **SMALL)
    assert "baseline" not in mdata.uns["mmae"] and "embedding_metrics" in mdata.uns["mmae"]
    assert mdata.uns["mmae"]["embedding_metrics"]["n_scored"] == mdata.n_obs


def test_embedding_scores_are_bounded_to_a_stratified_subset_on_large_data(monkeypatch, caplog):
    import logging

    import multiomix.tl._multimodal_ae as module

    monkeypatch.setattr(module, "MAX_ROWS", 100)  # stands in for 5,000 of a large data set
    mdata = planted_multiome(n_obs=240)
    with caplog.at_level(logging.INFO, logger="multiomix"):
        mx.tl.fit_multimodal_ae(mdata, label_key="cluster", max_epochs=3, random_state=0, **SMALL)
    entry = mdata.uns["mmae"]
    assert entry["embedding_metrics"]["n_scored"] == 100 and "on a stratified random 100 of the 240" in caplog.text
    assert mdata.obsm["X_mmae"].shape[0] == 240  # every cell is still embedded
    assert entry["baseline"]["kmeans"]["nmi"] > 0.9  # the baseline, on the same 100 cells, still finds the clusters


def test_pca_concat_refuses_modalities_in_another_order():
    mdata = planted_multiome()
    shuffled = md.MuData({"rna": mdata["rna"].copy(), "atac": mdata["atac"][::-1].copy()})
    with pytest.raises(ValueError, match="'atac' holds the MuData's 160 observations in another order"):
        mx.tl.pca_concat(shuffled, layer=None)
    assert "X_pca_concat" not in shuffled.obsm
    with pytest.raises(KeyError, match="Modality 'atac' has no layer 'counts'"):
        mx.tl.pca_concat(mdata)


def test_pca_concat_keeps_scanpy_s_pca():
    mdata = planted_multiome()
    mdata.obsm["X_pca"] = np.zeros((mdata.n_obs, 3))
    mdata.uns["pca"] = {"params": {}, "variance_ratio": np.ones(3) / 3}
    with pytest.raises(ValueError, match="holds something pca_concat did not write"):
        mx.tl.pca_concat(mdata, layer=None, key_added="X_pca")
    assert set(mdata.uns["pca"]) == {"params", "variance_ratio"} and not mdata.obsm["X_pca"].any()
    mx.tl.pca_concat(mdata, layer=None)
    mx.tl.pca_concat(mdata, layer=None)  # its own results are replaced


def test_pca_concat_reads_a_backed_object_and_says_when_it_ignores_a_tiny_selection(tmp_path, caplog):
    mdata = planted_multiome(n_obs=60)
    mdata["atac"].layers["counts"] = mdata["atac"].X.copy()
    mx.tl.pca_concat(mdata, n_comps=3)
    mdata.write_h5mu(tmp_path / "m.h5mu")
    backed = md.read_h5mu(tmp_path / "m.h5mu", backed=True)
    mx.tl.pca_concat(backed, n_comps=3, key_added="again")
    np.testing.assert_allclose(np.abs(backed.obsm["again"]), np.abs(mdata.obsm["X_pca_concat"]), atol=1e-4)
    mdata.mod["rna"].var["highly_variable"] = np.arange(mdata.mod["rna"].n_vars) == 0
    with caplog.at_level("WARNING", logger="multiomix"):
        mx.tl.pca_concat(mdata, n_comps=3, key_added="one_hvg")
    assert "var['highly_variable'] marks 1 feature(s), too few" in caplog.text


def test_embeddings_of_others_and_of_the_user_are_kept(caplog):
    """A fit never replaces pca_concat's record or the user's own obsm entry; a benchmark scores the labelled
    cells only and keeps the user's UMAP."""
    mdata = planted_multiome(n_obs=80)
    mx.tl.pca_concat(mdata, n_comps=5, layer={"rna": "counts", "atac": None})
    with pytest.raises(ValueError, match="holds the results of mx.tl.pca_concat"):
        mx.tl.fit_multimodal_ae(mdata, key_added="pca_concat", max_epochs=1, **SMALL)
    mdata.obsm["X_mine"] = np.ones((80, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"\.obsm already has \['X_mine'\]"):
        mx.tl.fit_multimodal_ae(mdata, key_added="mine", max_epochs=1, **SMALL)
    np.testing.assert_array_equal(mdata.obsm["X_mine"], 1.0)
    labels = mdata.obs["cluster"].astype(object).copy()
    labels.iloc[:20] = np.nan
    mdata.obs["partial"] = labels
    with caplog.at_level("INFO", logger="multiomix"):
        mx.tl.benchmark_embeddings(mdata, keys=["X_pca_concat"], label_key="partial", resolutions=(0.5,))
    assert "20 cells without a label" in caplog.text
    assert 0 <= mdata.uns["embedding_benchmark"].loc["X_pca_concat", "asw_label"] <= 1
    fresh = planted_multiome(n_obs=60)
    fresh.obsm["X_a"] = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    fresh.obsm["X_a_umap"] = np.zeros((60, 2), dtype=np.float32)  # the user's own
    with pytest.raises(ValueError, match="no embedding benchmark wrote them"):
        mx.tl.benchmark_embeddings(fresh, keys=["X_a"], label_key="cluster", resolutions=(0.5,), umap=True)
    np.testing.assert_array_equal(fresh.obsm["X_a_umap"], 0.0)


def test_a_cell_measured_in_one_modality_is_embedded_from_it(fitted, caplog, tmp_path):
    mdata, model = fitted
    rna_only = md.MuData({"rna": mdata["rna"][:30].copy()})
    z = model.get_latent_representation(rna_only, modalities=["rna"])
    np.testing.assert_allclose(z, model.get_latent_representation(mdata, modalities=["rna"])[:30], atol=1e-5)
    assert list(rna_only.mod) == ["rna"]
    with pytest.raises(KeyError, match="atac"):
        model.get_latent_representation(rna_only)  # all modalities asked for: the missing one is named
    counts = planted_multiome(n_obs=60)
    counts.mod["rna"].X = counts.mod["rna"].layers["counts"].copy()
    with caplog.at_level("WARNING", logger="multiomix"):
        on_counts = mx.tl.fit_multimodal_ae(counts, max_epochs=1, **SMALL)
    assert "holds whole numbers (raw counts?)" in caplog.text
    # a loaded model rebuilds the losses it was fitted with: no second warning, and no loss re-inferred from new data
    on_counts.save(str(tmp_path / "counts_model"))
    caplog.clear()
    with caplog.at_level("WARNING", logger="multiomix"):
        loaded = mx.models.MultimodalAE.load(str(tmp_path / "counts_model"), adata=counts)
    assert "whole numbers" not in caplog.text and loaded.likelihoods_ == on_counts.likelihoods_
    not_binary = counts.copy()
    not_binary.mod["atac"].X = not_binary.mod["atac"].X * 2.0  # the model decodes ATAC as binary ('bce')
    with pytest.raises(ValueError, match="loss 'bce' needs 0/1"):
        mx.models.MultimodalAE.load(str(tmp_path / "counts_model"), adata=not_binary)


# seed ensembles (the default: n_models=5) ----------------------------------------------------------------------
def test_default_fit_is_a_seed_ensemble_whose_embedding_joins_the_scaled_members(tmp_path):
    mdata = planted_multiome(n_obs=120, seed=5)
    ensemble = mx.tl.fit_multimodal_ae(mdata, max_epochs=15, lr=1e-2, random_state=3, label_key="cluster",
                                       **{**SMALL, "n_models": 3})
    assert isinstance(ensemble, mx.models.SeedEnsemble) and ensemble.embeds and len(ensemble) == 3
    assert [m.random_state for m in ensemble] == [3, 4, 5]
    z = mdata.obsm["X_mmae"]
    assert z.shape == (mdata.n_obs, 3 * SMALL["latent_dim"]) and z.dtype == np.float32
    train = mdata.uns["mmae"]["n_train"]
    for i, member in enumerate(ensemble):
        own = member.get_latent_representation()
        assert member.latent_scale_ > 0
        np.testing.assert_allclose(z[:, 4 * i: 4 * i + 4], own / member.latent_scale_, rtol=1e-5, atol=1e-6)
        assert 0.5 < np.std(z[:, 4 * i: 4 * i + 4]) < 2  # each member weighs alike (std 1 over the training rows)
    assert train > 0 and mdata.uns["mmae"]["params"]["n_models"] == 3
    np.testing.assert_array_equal(ensemble.get_latent_representation(members="first"),
                                  ensemble[0].get_latent_representation())
    with pytest.raises(ValueError, match="members must be"):
        ensemble.get_latent_representation(members="mean")
    with pytest.raises(ValueError, match="predicts no classes"):
        ensemble.predict_proba()
    assert separation(z, mdata.obs["cluster"]) > 0.9  # the joined embedding keeps the planted clusters apart
    # save / load: the members and their scales come back, the embedding is the same
    ensemble.save(str(tmp_path / "ens"))
    loaded = mx.models.SeedEnsemble.load(str(tmp_path / "ens"), adata=mdata)
    np.testing.assert_allclose(loaded.get_latent_representation(), z, atol=1e-5)
    # new data (features reordered) are embedded as the fit embedded them; translation averages the members
    new = md.MuData({m: mdata[m][:, mdata[m].var_names[::-1]].copy() for m in ("rna", "atac")})
    mx.tl.predict(new, ensemble)
    np.testing.assert_allclose(new.obsm["X_mmae"], z, atol=1e-5)
    mx.tl.predict_modality(new, ensemble, source="rna", target="atac", key_added="atac_hat")
    members_mean = np.mean([m.translate(mdata, source="rna", target="atac") for m in ensemble], axis=0)
    np.testing.assert_allclose(np.asarray(new["atac_hat"].X), members_mean, atol=1e-5)
    np.testing.assert_allclose(ensemble.translate(new, source="rna", target="atac"), members_mean, atol=1e-5)
    assert ensemble.modality_var("atac").index.equals(mdata["atac"].var_names)
    assert new["atac_hat"].uns["predict_modality"]["n_models"] == 3


def test_ensemble_fit_is_deterministic_and_checks_n_models():
    a, b = planted_multiome(n_obs=80), planted_multiome(n_obs=80)
    for data in (a, b):
        mx.tl.fit_multimodal_ae(data, max_epochs=2, random_state=1, **{**SMALL, "n_models": 2})
    np.testing.assert_array_equal(a.obsm["X_mmae"], b.obsm["X_mmae"])
    # without validation rows of the user's, each member holds out its own; with them, all members share them
    ensemble = mx.tl.fit_multimodal_ae(a, max_epochs=1, random_state=1, **{**SMALL, "n_models": 3})
    held = [set(m.validation_indices) for m in ensemble]
    assert all(len(h) == 12 for h in held) and len({frozenset(h) for h in held}) == 3
    single = mx.tl.fit_multimodal_ae(a.copy(), max_epochs=1, random_state=1, **SMALL)
    assert set(single.validation_indices) == held[0]  # the first member's rows are those of one model
    a.obs["split"] = np.where(np.arange(a.n_obs) < 60, "train", "validation")
    ensemble = mx.tl.fit_multimodal_ae(a, max_epochs=1, random_state=1, **{**SMALL, "n_models": 3})
    assert all(set(m.validation_indices) == set(range(60, 80)) for m in ensemble)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="n_models must be a positive integer"):
            mx.tl.fit_multimodal_ae(a, max_epochs=1, **{**SMALL, "n_models": bad}, key_added="bad")
    assert "bad" not in a.uns


def test_a_backed_object_gets_the_losses_an_in_memory_one_gets(tmp_path):
    mdata = planted_multiome(n_obs=60)
    mdata.write_h5mu(tmp_path / "m.h5mu")
    backed = md.read_h5mu(tmp_path / "m.h5mu", backed="r")
    for data in (mdata, backed):
        mx.models.MultimodalAE.setup_mudata(data, modalities=["rna", "atac"])
    in_memory = mx.models.MultimodalAE(mdata, latent_dim=2, hidden_dim=8)
    on_disk = mx.models.MultimodalAE(backed, latent_dim=2, hidden_dim=8)
    assert on_disk.likelihoods_ == in_memory.likelihoods_ == {"rna": "mse", "atac": "bce"}
    explicit = mx.models.MultimodalAE(backed, losses={"atac": "bce"}, latent_dim=2, hidden_dim=8)
    assert explicit.likelihoods_["atac"] == "bce"
    # every row is checked, block by block: a non-binary value past the first block (2,000 rows) is seen
    big = planted_multiome(n_obs=2100, n_genes=10, n_peaks=12)
    peaks = big["atac"].X.toarray()
    peaks[2050, 0] = 3.0
    big["atac"].X = sparse.csr_matrix(peaks)
    big.write_h5mu(tmp_path / "big.h5mu")
    on_disk = md.read_h5mu(tmp_path / "big.h5mu", backed="r")
    mx.models.MultimodalAE.setup_mudata(on_disk, modalities=["rna", "atac"])
    assert mx.models.MultimodalAE(on_disk, latent_dim=2, hidden_dim=8).likelihoods_["atac"] == "mse"
    with pytest.raises(ValueError, match="non-binary values"):
        mx.models.MultimodalAE(on_disk, losses={"atac": "bce"}, latent_dim=2, hidden_dim=8)
    with pytest.raises(ValueError, match="`n_layers` must be an integer >= 1"):
        mx.models.MultimodalAE(mdata, n_layers=0)


def test_embedding_scores_count_the_labelled_rows_and_pca_concat_skips_unmarked_features():
    mdata = planted_multiome(n_obs=80)
    labels = mdata.obs["cluster"].astype(object)
    labels.iloc[:20] = None
    mdata.obs["partly"] = labels
    mx.tl.fit_multimodal_ae(mdata, label_key="partly", max_epochs=1, baseline=False, **SMALL)
    assert mdata.uns["mmae"]["embedding_metrics"]["n_scored"] == 60
    # a feature whose var['highly_variable'] is missing (an outer concatenation) is not selected
    hv = pd.array([True] * 10 + [None] * (mdata["rna"].n_vars - 10), dtype="boolean")
    mdata["rna"].var["highly_variable"] = hv
    mx.tl.pca_concat(mdata, n_comps=3, modalities=["rna"], key_added="X_hv")
    ten = mdata.copy()
    ten.mod["rna"] = ten["rna"][:, :10].copy()
    del ten["rna"].var["highly_variable"]
    mx.tl.pca_concat(ten, n_comps=3, modalities=["rna"], key_added="X_ten")
    np.testing.assert_allclose(np.abs(mdata.obsm["X_hv"]), np.abs(ten.obsm["X_ten"]), atol=1e-4)
