"""Med-CrossViT: tile-bag reader, torch network, scvi-tools model, tl entry point and plot."""

from __future__ import annotations

import anndata as ad
import h5py
import matplotlib
import mudata
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

import multiomix as mx
from multiomix.nn.crossvit import MedCrossViT as MedCrossViTNet
from multiomix.nn.crossvit import sample_bag_indices

matplotlib.use("Agg")


def _write_slide(path, n_tiles, dim, *, seed, features="features", coords="coords"):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n_tiles, dim)).astype(np.float32)
    xy = rng.integers(0, 10_000, size=(n_tiles, 2))
    with h5py.File(path, "w") as f:
        if features:
            f.create_dataset(features, data=feats)
        if coords:
            f.create_dataset(coords, data=xy)
    return feats, xy


# ---------------------------------------------------------------- reader


def test_read_tile_bags_folder_layout(tmp_path):
    sizes = {"slideA": 7, "slideB": 3, "slideC": 5}
    written = {name: _write_slide(tmp_path / f"{name}.h5", n, 6, seed=i) for i, (name, n) in enumerate(sizes.items())}
    (tmp_path / "notes.txt").write_text("not a slide")
    adata = mx.io.read_tile_bags(tmp_path)
    assert list(adata.obs_names) == ["slideA", "slideB", "slideC"]
    assert adata.obsm["tiles"].shape == (3, 7, 6)
    assert adata.obsm["tile_mask"].dtype == bool
    assert adata.obsm["tile_mask"].sum(1).tolist() == [7, 3, 5]
    assert adata.obs["n_tiles"].tolist() == [7, 3, 5]
    for i, (feats, xy) in enumerate(written.values()):
        n = len(feats)
        np.testing.assert_allclose(adata.obsm["tiles"][i, :n], feats)
        assert not adata.obsm["tiles"][i, n:].any()  # zero padding
        np.testing.assert_allclose(adata.obsm["coords"][i, :n], xy)
        np.testing.assert_allclose(adata.X[i], feats.mean(0), rtol=1e-5)
    # a list of files, and subsampling to max_tiles (reproducible)
    files = [tmp_path / "slideA.h5", tmp_path / "slideC.h5"]
    sub = mx.io.read_tile_bags(files, max_tiles=4, random_state=1)
    assert sub.obsm["tiles"].shape == (2, 4, 6) and sub.obsm["tile_mask"].all()
    again = mx.io.read_tile_bags(files, max_tiles=4, random_state=1)
    np.testing.assert_array_equal(sub.obsm["tiles"], again.obsm["tiles"])
    rows = {tuple(r) for r in written["slideA"][0]}
    assert all(tuple(r) in rows for r in sub.obsm["tiles"][0])
    # without coordinates
    assert "coords" not in mx.io.read_tile_bags(files, coords_dataset=None).obsm


def test_tile_bags_from_a_table_match_the_h5_reader(tmp_path, caplog):
    """A table with one row per tile (integer patient ids, interleaved) gives the bags read from one h5 per slide."""
    sizes = {7: 4, 3: 5, 12: 1}
    written = {pid: _write_slide(tmp_path / f"{pid}.h5", n, 6, seed=i) for i, (pid, n) in enumerate(sizes.items())}
    table = pd.concat([pd.DataFrame(feats, columns=[f"f{j}" for j in range(6)]).assign(
        patient=pid, x=xy[:, 0], y=xy[:, 1], tile=np.arange(len(feats))) for pid, (feats, xy) in written.items()])
    table = table.sort_values("tile", kind="stable")  # patients interleaved, each one's tiles still in order
    before = table.copy()
    wsi = mx.io.tile_bags_from_table(table, patient_key="patient", feature_columns=[f"f{j}" for j in range(6)],
                                     coords_columns=["x", "y"])
    pd.testing.assert_frame_equal(table, before)  # the user's table is kept as given
    h5 = mx.io.read_tile_bags(tmp_path)[["7", "3", "12"]]
    assert wsi.obs_names.tolist() == ["7", "3", "12"] and wsi.obs["n_tiles"].tolist() == [4, 5, 1]
    for key in ("tiles", "tile_mask", "coords"):
        np.testing.assert_allclose(wsi.obsm[key], h5.obsm[key])
    np.testing.assert_allclose(wsi.X, h5.X, rtol=1e-6)
    # default features: every numeric column but the patient, the coordinates and a tile-number column (warned)
    with caplog.at_level("WARNING", logger="multiomix"):
        default = mx.io.tile_bags_from_table(table, patient_key="patient", coords_columns=["x", "y"])
    assert list(default.var_names) == [f"f{j}" for j in range(6)]
    assert "['tile'] look like tile ids" in caplog.text
    assert mx.io.tile_bags_from_table(table, patient_key="patient").n_vars == 6  # x, y left out by name too
    sub = mx.io.tile_bags_from_table(table, patient_key="patient", feature_columns=["f0"], max_tiles=2)
    assert sub.obs["n_tiles"].tolist() == [2, 2, 1]
    bad = table.assign(f0=np.where(np.arange(len(table)) == 2, np.nan, table["f0"]))
    with pytest.raises(ValueError, match="Column 'f0' must hold finite numbers"):
        mx.io.tile_bags_from_table(bad, patient_key="patient", feature_columns=["f0"])
    floats = mx.io.tile_bags_from_table(table.assign(patient=table["patient"].astype(float)), patient_key="patient")
    assert floats.obs_names.tolist() == ["7", "3", "12"]  # whole-number float ids read as integers
    with pytest.raises(ValueError, match="read as the same id"):
        mx.io.tile_bags_from_table(table.assign(patient=table["patient"].astype(object).where(
            table["tile"] > 0, table["patient"].astype(str))), patient_key="patient")
    with pytest.raises(ValueError, match="no rows"):
        mx.io.tile_bags_from_table(table.iloc[:0], patient_key="patient")
    with pytest.raises(KeyError, match="patient_key 'slide'"):
        mx.io.tile_bags_from_table(table, patient_key="slide")
    with pytest.raises(ValueError, match="tiles have no 'patient'"):
        mx.io.tile_bags_from_table(table.assign(patient=table["patient"].where(table["tile"] > 0)),
                                   patient_key="patient")


def test_read_tile_bags_errors(tmp_path):
    _write_slide(tmp_path / "ok.h5", 4, 8, seed=0)
    _write_slide(tmp_path / "uni.h5", 4, 8, seed=1, features="uni_features")
    with pytest.raises(KeyError, match="'features' not found in 'uni.h5'"):
        mx.io.read_tile_bags(tmp_path)
    assert mx.io.read_tile_bags(tmp_path / "uni.h5", dataset="uni_features").n_obs == 1
    (tmp_path / "uni.h5").unlink()
    _write_slide(tmp_path / "wide.h5", 4, 10, seed=2)
    with pytest.raises(ValueError, match="10 wide but 'ok.h5' has 8"):
        mx.io.read_tile_bags(tmp_path)
    _write_slide(tmp_path / "nocoords.h5", 4, 8, seed=3, coords=None)
    with pytest.raises(KeyError, match="'coords' not found in 'nocoords.h5'"):
        mx.io.read_tile_bags([tmp_path / "ok.h5", tmp_path / "nocoords.h5"])
    with h5py.File(tmp_path / "xyz.h5", "w") as f:  # 3-D coordinates: named, not a broadcast error
        f.create_dataset("features", data=np.zeros((4, 8), np.float32))
        f.create_dataset("coords", data=np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"'xyz.h5': dataset 'coords' has shape \(4, 3\); expected \(4, 2\)"):
        mx.io.read_tile_bags([tmp_path / "ok.h5", tmp_path / "xyz.h5"])
    with pytest.raises(FileNotFoundError):
        mx.io.read_tile_bags(tmp_path / "empty_dir_that_is_missing.h5")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="No .h5"):
        mx.io.read_tile_bags(empty)


def test_read_tile_bags_skips_slides_without_tiles_on_request(tmp_path, caplog):
    feats, _ = _write_slide(tmp_path / "a.h5", 4, 8, seed=0)
    _write_slide(tmp_path / "b.h5", 0, 8, seed=1)
    _write_slide(tmp_path / "c.h5", 3, 8, seed=2)
    with pytest.raises(ValueError, match="'b.h5': dataset 'features' has no tiles; pass empty='skip'"):
        mx.io.read_tile_bags(tmp_path)
    with caplog.at_level("WARNING", logger="multiomix"):
        wsi = mx.io.read_tile_bags(tmp_path, empty="skip")
    assert list(wsi.obs_names) == ["a", "c"] and wsi.obs["n_tiles"].tolist() == [4, 3]
    assert wsi.obs["path"].str.endswith(("a.h5", "c.h5")).all()
    np.testing.assert_allclose(wsi.X[0], feats.mean(0), rtol=1e-5)
    assert "left out 1 slide(s) without tiles: ['b']" in caplog.text
    with pytest.raises(ValueError, match="No slide has tiles"):
        mx.io.read_tile_bags(tmp_path / "b.h5", empty="skip")
    with pytest.raises(ValueError, match="empty must be 'raise' or 'skip'"):
        mx.io.read_tile_bags(tmp_path, empty="drop")


def test_sample_tile_bags_fixed_size():
    mdata, truth = mx.datasets.synthetic_tile_bags(12, n_tiles=(5, 12), random_state=3)
    wsi = mdata.mod["wsi"]
    before = wsi.obsm["tiles"].copy()
    small = mx.io.sample_tile_bags(wsi, bag_size=6, random_state=0)
    np.testing.assert_array_equal(wsi.obsm["tiles"], before)
    assert small.obsm["tiles"].shape == (12, 6, wsi.obsm["tiles"].shape[2])
    assert small.obsm["coords"].shape == (12, 6, 2)
    np.testing.assert_array_equal(small.obsm["tile_mask"].sum(1), np.minimum(wsi.obsm["tile_mask"].sum(1), 6))
    for i in range(12):  # every kept tile is one of the slide's real tiles
        real = {tuple(r) for r in wsi.obsm["tiles"][i][wsi.obsm["tile_mask"][i]]}
        kept = small.obsm["tiles"][i][small.obsm["tile_mask"][i]]
        assert all(tuple(r) in real for r in kept)
        np.testing.assert_allclose(small.X[i], kept.mean(0), rtol=1e-5)


def test_synthetic_tile_bags_interaction_needs_both_modalities():
    n, k = 400, 3
    mdata, truth = mx.datasets.synthetic_tile_bags(n, interaction=True, n_signal_tiles=k, random_state=1)
    assert mdata.mod["wsi"].obsm["tiles"].shape[:1] == (n,) and mdata.mod["rna"].shape == (n, 40)
    y = mdata.obs["label"].cat.codes.to_numpy()
    a, b = truth["tile_state"], truth["gene_state"]
    np.testing.assert_array_equal(y, a ^ b)
    counts = pd.crosstab(a, b).to_numpy()  # the four (tile, expression) cells are balanced, so are the labels
    assert counts.min() == counts.max() == n // 4 and np.bincount(y).tolist() == [n // 2, n // 2]
    # the planted tiles point along the tile state's direction, not the label's
    tiles, planted, u = mdata.mod["wsi"].obsm["tiles"], truth["signal_tiles"], truth["tile_directions"]
    proj = np.array([tiles[i][planted[i]] @ u[a[i]] for i in range(n)])
    assert proj.shape == (n, k) and proj.mean() > 3.0
    # the class means of the mean tile and of the planted genes coincide (no linear signal); the states differ
    genes = mdata.mod["rna"][:, truth["signal_genes"]].X
    tile_axis, gene_axis = mdata.mod["wsi"].X @ (u[0] - u[1]), genes @ truth["gene_patterns"][0]
    for X, state in ((tile_axis, a), (gene_axis, b)):
        assert abs(X[y == 0].mean() - X[y == 1].mean()) < 0.25 * X.std()
        assert abs(X[state == 0].mean() - X[state == 1].mean()) > 0.5 * X.std()
    plain, plain_truth = mx.datasets.synthetic_tile_bags(n, random_state=1)  # default: both states are the label
    np.testing.assert_array_equal(plain_truth["tile_state"], plain.obs["label"].cat.codes.to_numpy())
    with pytest.raises(ValueError, match="n_classes=2"):
        mx.datasets.synthetic_tile_bags(20, n_classes=3, interaction=True)


# ---------------------------------------------------------------- network


def _net(**kwargs):
    torch.manual_seed(0)
    defaults = {"num_classes": 3, "tile_dim": 48, "n_genes": 20, "wsi_dim": 32, "rna_dim": 16, "enc_heads": 2,
                "cross_heads": 2}
    return MedCrossViTNet(**{**defaults, **kwargs}).eval()


def test_network_masks_padding_and_ignores_tile_order():
    net = _net()
    tiles, genes = torch.randn(3, 9, 48), torch.randn(3, 20)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[0, 5:] = False
    logits, attn = net(tiles, genes, tile_mask=mask, return_attention=True)
    assert logits.shape == (3, 3)
    assert attn["tiles_self"].shape == (3, 9) and attn["genes_cross"].shape == (3, 20)
    assert torch.all(attn["tiles_self"][0, 5:] == 0) and torch.all(attn["tiles_cross"][0, 5:] == 0)
    total = attn["tiles_self"].sum(1)  # the CLS's weight on itself is left out
    assert torch.all((total > 0) & (total < 1))
    # garbage in padded slots changes nothing
    noisy = tiles.clone()
    noisy[0, 5:] = 1e3
    torch.testing.assert_close(net(noisy, genes, tile_mask=mask), logits)
    noisy[0, 5:] = float("nan")  # NaN too (0 x NaN would make every logit NaN)
    torch.testing.assert_close(net(noisy, genes, tile_mask=mask), logits)
    for depth in ("depth", "enc_depth", "cross_depth"):
        with pytest.raises(ValueError, match=f"{depth} must be at least 1"):
            MedCrossViTNet(num_classes=2, tile_dim=8, n_genes=4, **{depth: 0})
    # padded bag == the unpadded bag alone
    torch.testing.assert_close(net(tiles[:1, :5], genes[:1]), logits[:1], atol=1e-5, rtol=1e-5)
    # bags are sets: permuting tiles leaves the logits unchanged
    perm = torch.randperm(9)
    torch.testing.assert_close(net(tiles[:, perm], genes, tile_mask=mask[:, perm]), logits, atol=1e-5, rtol=1e-5)


def test_network_separate_heads_widths_and_tokenizers():
    net = _net()
    assert net.wsi_head[1].weight.shape == (3, 32) and net.rna_head[1].weight.shape == (3, 16)
    wsi, rna, _ = net.encode(torch.randn(2, 4, 48), torch.randn(2, 20))
    logits = net(torch.randn(2, 4, 48), torch.randn(2, 20))
    assert wsi.shape == (2, 32) and rna.shape == (2, 16) and logits.shape == (2, 3)
    # the gene head is used: zeroing it changes the logits
    tiles, genes = torch.randn(2, 4, 48), torch.randn(2, 20)
    before = net(tiles, genes)
    with torch.no_grad():
        net.rna_head[1].weight.zero_()
        net.rna_head[1].bias.zero_()
    assert not torch.allclose(before, net(tiles, genes))
    dense = _net(gene_tokenizer="dense", pool="mean")
    assert dense.gene_tokens.dense.weight.shape == (20 * 16, 20)
    assert dense(torch.randn(2, 4, 48), torch.randn(2, 20)).shape == (2, 3)
    with pytest.raises(ValueError, match="gene_tokenizer"):
        _net(gene_tokenizer="conv")
    with pytest.raises(ValueError, match="max_tiles"):
        _net(tile_positions=True)


def test_sample_bag_indices_draws_real_tiles():
    mask = torch.zeros(4, 10, dtype=torch.bool)
    mask[0, :10] = True
    mask[1, :3] = True
    mask[2, [1, 4, 7, 8]] = True
    mask[3, :6] = True
    idx, new_mask = sample_bag_indices(mask, 5, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (4, 5)
    assert new_mask.sum(1).tolist() == [5, 3, 4, 5]
    assert torch.gather(mask, 1, idx)[new_mask].all()
    for row in range(4):
        kept = idx[row][new_mask[row]]
        assert len(set(kept.tolist())) == len(kept)


# ---------------------------------------------------------------- model + tl


def _data(n=160, random_state=0, **kwargs):
    params = {"tile_dim": 16, "n_tiles": (12, 24), "n_genes": 20, "tile_signal": 4.0, "gene_signal": 0.8}
    mdata, truth = mx.datasets.synthetic_tile_bags(n, random_state=random_state, **{**params, **kwargs})
    rng = np.random.default_rng(random_state)
    split = np.array(["train"] * n, dtype=object)
    perm = rng.permutation(n)
    split[perm[: n // 4]] = "test"
    split[perm[n // 4 : n // 4 + n // 8]] = "validation"
    mdata.obs["split"] = pd.Categorical(split)
    return mdata, truth


FIT = {"max_epochs": 30, "batch_size": 16, "wsi_dim": 32, "rna_dim": 32, "heads": 2, "mlp_dim": 64,
       "dropout": 0.0, "emb_dropout": 0.0, "accelerator": "cpu", "progress_bar": False}


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    mdata, truth = _data()
    model = mx.tl.fit_med_crossvit(mdata, label_key="label", random_state=0, **FIT)
    return mdata, truth, model


@pytest.fixture(scope="module")
def fitted_no_wide():
    torch.set_num_threads(1)
    mdata, truth = _data()
    model = mx.tl.fit_med_crossvit(mdata, label_key="label", random_state=0, wide_path=None, **FIT)
    return mdata, truth, model


def test_default_fit_starts_from_the_wide_path(fitted):
    mdata, truth, model = fitted
    test = (mdata.obs["split"] == "test").to_numpy()
    y = mdata.obs["label"].astype(str).to_numpy()
    assert (mdata.obs["medcrossvit_prediction"].astype(str).to_numpy()[test] == y[test]).mean() >= 0.9
    assert set(model.wide_path_choice_) >= {"penalty", "product", "epochs", "cv_loss", "cv_loss_linear"}
    assert not any(p.requires_grad for p in model.module.net.wide.parameters())


def test_fit_learns_planted_signal_and_attends_to_it(fitted_no_wide):
    mdata, truth, model = fitted_no_wide
    test = (mdata.obs["split"] == "test").to_numpy()
    y = mdata.obs["label"].astype(str).to_numpy()
    pred = mdata.obs["medcrossvit_prediction"]
    assert list(pred.cat.categories) == ["class0", "class1"]
    accuracy = (pred.astype(str).to_numpy()[test] == y[test]).mean()
    assert accuracy >= 0.9, accuracy
    assert mdata.obsm["medcrossvit_proba"].shape == (mdata.n_obs, 2)
    np.testing.assert_allclose(mdata.obsm["medcrossvit_proba"].sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(mdata.obs["medcrossvit_confidence"], mdata.obsm["medcrossvit_proba"].max(1))
    assert mdata.obsm["X_medcrossvit"].shape == (mdata.n_obs, 64)
    uns = mdata.uns["medcrossvit"]
    assert {"train_loss", "validation_loss"} <= set(uns["history"].columns)
    attn = uns["attention"]
    mask = mdata.mod["wsi"].obsm["tile_mask"]
    assert attn["tiles"].shape == mask.shape and not attn["tiles"][~mask].any()
    # planted tiles are ranked first far more often than chance
    planted = truth["signal_tiles"]
    k = planted.sum(1)
    order = np.argsort(-attn["tiles"], axis=1)
    hit = np.mean([planted[i, order[i, : k[i]]].mean() for i in np.flatnonzero(test)])
    chance = np.mean(k[test] / mask[test].sum(1))
    assert hit > 3 * chance, (hit, chance)  # about 4x chance with the best-validation-epoch weights
    genes = attn["genes"]
    assert list(genes.columns) == list(mdata.mod["rna"].var_names)
    top = genes.mean(0).sort_values(ascending=False).index[: len(truth["signal_genes"])]
    assert len(set(top) & set(truth["signal_genes"])) >= len(truth["signal_genes"]) // 2


def test_write_h5mu_and_save_load_round_trip(fitted, tmp_path):
    mdata, _, model = fitted
    path = tmp_path / "fit.h5mu"
    mdata.write_h5mu(path)
    back = mudata.read_h5mu(path)
    saved, original = back.uns["medcrossvit"]["attention"], mdata.uns["medcrossvit"]["attention"]
    np.testing.assert_allclose(saved["tiles"], original["tiles"])
    pd.testing.assert_frame_equal(
        back.uns["medcrossvit"]["attention"]["genes"], mdata.uns["medcrossvit"]["attention"]["genes"],
        check_dtype=False, check_names=False,
    )
    assert back.uns["medcrossvit"]["params"]["gene_tokenizer"] == "per_gene"
    np.testing.assert_allclose(back.obsm["X_medcrossvit"], mdata.obsm["X_medcrossvit"])
    model.save(tmp_path / "model", overwrite=True)
    loaded = mx.models.MedCrossViT.load(tmp_path / "model", adata=mdata)
    pd.testing.assert_frame_equal(loaded.predict_proba(), model.predict_proba())
    model.save(tmp_path / "prefixed", prefix="run1_")
    prefixed = mx.models.MedCrossViT.load(tmp_path / "prefixed", adata=mdata, prefix="run1_")
    pd.testing.assert_frame_equal(prefixed.predict_proba(), model.predict_proba())
    # new patients with other bag sizes are read; a different tile width is refused
    new, _ = _data(40, random_state=5, signal_random_state=0, n_tiles=(30, 40))
    proba = loaded.predict_proba(new)
    assert proba.shape == (40, 2)
    assert (loaded.predict(new).astype(str) == new.obs["label"].astype(str)).mean() >= 0.8
    wide, _ = _data(20, random_state=6, signal_random_state=0, tile_dim=24)
    with pytest.raises(ValueError, match="16 wide"):
        loaded.predict(wide)


def _unlabelled_reordered(mdata):
    """A new MuData without the label column, genes in reverse order, tiles modality without its .X."""
    rna = mdata.mod["rna"]
    wsi = mdata.mod["wsi"]
    bags = ad.AnnData(obs=pd.DataFrame(index=wsi.obs_names), obsm={k: wsi.obsm[k] for k in ("tiles", "tile_mask")})
    return mudata.MuData({"wsi": bags, "rna": rna[:, rna.var_names[::-1]].copy()})


def test_new_unlabelled_data_with_reordered_genes_and_load(fitted, tmp_path):
    mdata, _, model = fitted
    expected = model.predict_proba()
    new = _unlabelled_reordered(mdata)
    assert "label" not in new.obs.columns
    before = new.mod["rna"].X.copy()
    proba = model.predict_proba(new)
    np.testing.assert_allclose(proba.to_numpy(), expected.to_numpy(), rtol=1e-5, atol=1e-6)
    assert list(proba.index) == list(mdata.obs_names)
    np.testing.assert_array_equal(model.get_latent_representation(new), model.get_latent_representation())
    np.testing.assert_array_equal(model.get_attention(new)["genes"], model.get_attention()["genes"])
    np.testing.assert_array_equal(new.mod["rna"].X, before)  # the user's object is not touched
    assert "label" not in new.obs.columns and not new.mod["rna"].uns and not new.mod["wsi"].uns
    # save / load onto the new data (reordered genes, no labels): identical predictions
    model.save(tmp_path / "model", overwrite=True)
    loaded = mx.models.MedCrossViT.load(tmp_path / "model", adata=new)
    np.testing.assert_allclose(loaded.predict_proba().to_numpy(), expected.to_numpy(), rtol=1e-5, atol=1e-6)
    assert loaded.classes == model.classes and loaded.gene_names == model.gene_names
    missing = new.copy()
    missing.mod["rna"] = missing.mod["rna"][:, 1:].copy()
    with pytest.raises(KeyError, match="lacks 1 of the 20 features"):
        model.predict(missing)
    no_bags = new.copy()
    del no_bags.mod["wsi"].obsm["tiles"]
    with pytest.raises(KeyError, match="obsm\\['tiles'\\]"):
        model.predict(no_bags)
    mask_key = model.setup_args["mask_key"]
    assert mask_key is not None
    empty = new.copy()  # a slide with no usable tile is refused, as in the fit, not scored
    empty.mod["wsi"].obsm[mask_key][3] = False
    with pytest.raises(ValueError, match="1 bags have no tiles"):
        model.predict_proba(empty)


def test_fit_contract_outputs_and_adapter(fitted):
    mdata, _, model = fitted
    uns = mdata.uns["medcrossvit"]
    assert {"test_metrics", "baseline", "seconds_per_epoch", "n_train", "n_validation", "n_test"} <= set(uns)
    assert uns["n_test"] == (mdata.obs["split"] == "test").sum() and uns["n_validation"] > 0
    assert uns["baseline"]["name"] == "logistic_regression" and 0 <= uns["test_metrics"]["accuracy"] <= 1
    assert model.modalities == ["rna"] and model.tiles_modality == "wsi"
    adapter = model.relevance_adapter()
    assert adapter.classifier is None and adapter.modalities == ["rna"]
    assert list(adapter.feature_names["rna"]) == list(mdata.mod["rna"].var_names)
    assert adapter.class_names == ["class0", "class1"]
    with pytest.raises(TypeError, match="setup_mudata"):
        mx.models.MedCrossViT.setup_anndata(mdata.mod["rna"])


def test_fit_without_split_infers_labels_and_writes_a_stratified_split():
    mdata, _ = _data(60, random_state=4)
    del mdata.obs["split"]
    mdata.obs.loc[mdata.obs_names[:3], "label"] = np.nan  # unlabelled rows: predicted, not trained on
    mdata.mod["rna"].layers["expr"] = mdata.mod["rna"].X.copy()
    mdata.mod["rna"].X = np.zeros_like(mdata.mod["rna"].X)  # the layer is what is read
    model = mx.tl.fit_med_crossvit(mdata, rna_layer="expr", **{**FIT, "max_epochs": 2})
    split = mdata.obs["split"]
    assert split.iloc[:3].isna().all() and (split == "test").sum() == round(0.2 * 57)
    assert mdata.obs["medcrossvit_prediction"].notna().all()
    assert model.label_key == "label" and model.layers == {"rna": "expr"}
    new = _unlabelled_reordered(mdata)
    reversed_genes = mdata.mod["rna"].var_names[::-1]
    new.mod["rna"].layers["expr"] = mdata.mod["rna"][:, reversed_genes].layers["expr"].copy()
    np.testing.assert_allclose(model.predict_proba(new).to_numpy(), mdata.obsm["medcrossvit_proba"], rtol=1e-5,
                               atol=1e-6)


def test_fit_is_deterministic_and_options_run():
    mdata, _ = _data(48, random_state=1)
    opts = {**FIT, "max_epochs": 2}
    a = mdata.copy()
    mx.tl.fit_med_crossvit(a, label_key="label", random_state=3, bag_size=8, **opts)
    b = mdata.copy()
    mx.tl.fit_med_crossvit(b, label_key="label", random_state=3, bag_size=8, **opts)
    np.testing.assert_array_equal(a.obsm["medcrossvit_proba"], b.obsm["medcrossvit_proba"])
    c = mdata.copy()
    c.mod["rna"].X = sparse.csr_matrix(c.mod["rna"].X)  # sparse expression is densified per minibatch
    mx.tl.fit_med_crossvit(c, label_key="label", random_state=3, bag_size=8, key_added="sparse", **opts)
    np.testing.assert_allclose(c.obsm["sparse_proba"], a.obsm["medcrossvit_proba"], rtol=1e-4, atol=1e-5)
    assert sparse.issparse(c.mod["rna"].X)
    mx.tl.fit_med_crossvit(c, label_key="label", random_state=3, gene_tokenizer="dense", pool="mean",
                           key_added="dense", **opts)
    assert c.obsm["X_dense"].shape == (48, 64) and "dense" in c.uns


def test_bad_input_raises_and_leaves_object_untouched():
    mdata, _ = _data(40, random_state=2)
    snapshot = (set(mdata.uns), list(mdata.obs.columns), set(mdata.obsm), set(mdata.mod["wsi"].uns))
    opts = {**FIT, "max_epochs": 1}

    def unchanged():
        return (set(mdata.uns), list(mdata.obs.columns), set(mdata.obsm), set(mdata.mod["wsi"].uns)) == snapshot

    with pytest.raises(KeyError, match="obsm\\['bags'\\] not found in modality 'wsi'"):
        mx.tl.fit_med_crossvit(mdata, label_key="label", tiles_key="bags", **opts)
    assert unchanged()
    with pytest.raises(KeyError, match="tile mask"):
        mx.tl.fit_med_crossvit(mdata, label_key="label", mask_key="mask", **opts)
    with pytest.raises(KeyError, match="'histology'"):
        mx.tl.fit_med_crossvit(mdata, label_key="label", tiles_modality="histology", **opts)
    with pytest.raises(KeyError, match="'subtype'"):
        mx.tl.fit_med_crossvit(mdata, label_key="subtype", **opts)
    assert unchanged()
    one_class = mdata.copy()
    one_class.obs["label"] = "class0"
    with pytest.raises(ValueError, match="single class"):
        mx.tl.fit_med_crossvit(one_class, label_key="label", **opts)
    bad = mdata.copy()
    bad.mod["wsi"].obsm["tiles"][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mx.tl.fit_med_crossvit(bad, label_key="label", **opts)
    empty = mdata.copy()
    empty.mod["wsi"].obsm["tile_mask"][3] = False
    with pytest.raises(ValueError, match="no tiles"):
        mx.tl.fit_med_crossvit(empty, label_key="label", **opts)
    with pytest.raises(Exception, match="strategy"):
        mx.tl.fit_med_crossvit(mdata, label_key="label", strategy="not_a_strategy", **opts)
    assert unchanged()
    flat = mdata.copy()
    flat.mod["wsi"].obsm["tiles"] = flat.mod["wsi"].X.copy()
    with pytest.raises(ValueError, match="n_tiles, dim"):
        mx.tl.fit_med_crossvit(flat, label_key="label", mask_key=None, **opts)
    assert unchanged()


def test_tile_attention_plot(fitted, tmp_path):
    mdata, _, _ = fitted
    fig = mx.pl.tile_attention(mdata, n_top=5, show=False)
    assert len(fig.axes) >= 4
    fig.savefig(tmp_path / "tile_attention.png")
    # many classes wrap onto further rows: the figure stays laptop-wide
    many = mdata.copy()
    many.obs["eight"] = pd.Categorical(np.arange(many.n_obs) % 8)
    fig = mx.pl.tile_attention(many, groupby="eight", n_top=3, show=False)
    assert fig.get_size_inches()[0] <= mx.pl.LAPTOP_WIDTH + 1e-9
    assert sum(ax.get_visible() and ax.get_title() != "" for ax in fig.axes) == 16  # 8 classes x 2 panels
    with pytest.raises(KeyError, match="fit_med_crossvit"):
        mx.pl.tile_attention(mdata, key="missing", show=False)
    # new patients scored with tl.predict get the attention too, so the plot works on them
    _, _, model = fitted
    new = _unlabelled_reordered(mdata)
    mx.tl.predict(new, model)
    np.testing.assert_array_equal(new.uns["medcrossvit"]["attention"]["tiles"], model.get_attention()["tiles"])
    assert len(mx.pl.tile_attention(new, n_top=5, show=False).axes) >= 4
    # a MuData whose expression is in another order than its bags: the error names the expression
    shuffled = mudata.MuData({"wsi": new.mod["wsi"].copy(), "rna": new.mod["rna"][::-1].copy()})
    with pytest.raises(ValueError, match="Modality 'rna' holds the MuData's"):
        mx.tl.predict(shuffled, model)


def test_wide_path_learns_a_planted_tile_by_expression_interaction_where_the_baseline_cannot():
    # label = tile state XOR expression state: a logistic regression of the mean tile and the expression is at
    # chance, the default fit's tile x expression product is not
    torch.set_num_threads(1)
    mdata, _ = _data(n=320, interaction=True, tile_signal=6.0, gene_signal=1.5, n_signal_genes=4)
    model = mx.tl.fit_med_crossvit(mdata, label_key="label", random_state=0, **{**FIT, "max_epochs": 5})
    uns = mdata.uns["medcrossvit"]
    assert model.wide_path_choice_["product"]
    assert uns["baseline"]["test_metrics"]["accuracy"] < 0.65
    assert uns["test_metrics"]["accuracy"] >= uns["baseline"]["test_metrics"]["accuracy"] + 0.15, uns["test_metrics"]


def test_wide_path_stays_frozen_after_load(fitted, tmp_path):
    mdata, _, model = fitted
    model.save(tmp_path / "m", overwrite=True)
    loaded = mx.models.MedCrossViT.load(tmp_path / "m", adata=mdata)
    before = {k: v.clone() for k, v in loaded.module.net.wide.state_dict().items()}
    loaded.train(max_epochs=1, validation_size=0.0, accelerator="cpu", enable_progress_bar=False)
    for k, v in loaded.module.net.wide.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_tile_attention_on_a_subset_draws_each_patients_own_weights(fitted):
    mdata, _, _ = fitted
    sub = mdata[mdata.obs["split"] == "test"].copy()[::-1].copy()  # fewer patients, other order
    fig = mx.pl.tile_attention(sub, n_top=3, show=False)
    stored = sub.uns["medcrossvit"]["attention"]
    own = pd.DataFrame(stored["tiles"], index=stored["genes"].index).loc[sub.obs_names]
    drawn = [ax for ax in fig.axes if ax.collections and ax.get_title()]
    assert drawn
    mask = sub.mod["wsi"].obsm["tile_mask"]
    for ax in drawn:
        weights = np.asarray(ax.collections[0].get_array())
        candidates = [own.iloc[i].to_numpy()[mask[i]] for i in range(sub.n_obs)]
        assert any(len(c) == len(weights) and np.allclose(weights, c) for c in candidates)
    renamed = sub.copy()
    renamed.obs_names = [f"other{i}" for i in range(renamed.n_obs)]
    with pytest.raises(ValueError, match="have no attention"):
        mx.pl.tile_attention(renamed, show=False)


def test_synthetic_tile_bags_give_each_class_its_own_gene_pattern():
    for seed in range(6):
        _, truth = mx.datasets.synthetic_tile_bags(12, n_classes=4, random_state=seed)
        assert len(np.unique(truth["gene_patterns"], axis=0)) == 4
    with pytest.raises(ValueError, match="distinct"):
        mx.datasets.synthetic_tile_bags(12, n_classes=5, n_signal_genes=2)


def test_weights_saved_without_a_wide_path_load_into_a_network_without_one():
    from multiomix.module import MedCrossViTModule

    kwargs = {"rna_key": "X_rna", "has_mask": True, "num_classes": 2, "tile_dim": 8, "n_genes": 6, "wsi_dim": 16,
              "rna_dim": 16, "enc_heads": 2, "cross_heads": 2}
    old = MedCrossViTModule(**kwargs, wide_path=False).eval()
    new = MedCrossViTModule(**kwargs, wide_path=True).eval()
    new.load_state_dict(old.state_dict())
    assert new.net.wide is None
    tiles, genes, mask = torch.randn(3, 5, 8), torch.randn(3, 6), torch.ones(3, 5)
    torch.testing.assert_close(new.inference(tiles, genes, mask)["logits"], old.inference(tiles, genes, mask)["logits"])


def test_a_bag_whose_mask_holds_only_small_fractions_is_refused():
    mdata, _ = _data(n=40)
    mask = mdata.mod["wsi"].obsm["tile_mask"].astype(float)
    mask[3] = np.where(mask[3] > 0, 0.3, 0.0)  # read as no real tile by the network
    mdata.mod["wsi"].obsm["tile_mask"] = mask
    with pytest.raises(ValueError, match="1 bags have no tiles"):
        mx.tl.fit_med_crossvit(mdata, label_key="label", **{**FIT, "max_epochs": 1})


def test_a_fit_that_keeps_the_wide_path_alone_says_its_attention_does_not_explain_it(caplog):
    mdata, _ = _data(n=80)
    with caplog.at_level("WARNING", logger="multiomix"):  # lr=0: the transformer cannot improve on the wide path
        model = mx.tl.fit_med_crossvit(mdata, label_key="label", **{**FIT, "max_epochs": 2}, lr=0.0)
    params = mdata.uns["medcrossvit"]["params"]
    assert model.best_epoch_ == -1 and params["wide_path_only"] and params["best_epoch"] == -1
    assert "wide path alone" in caplog.text
    fig = mx.pl.tile_attention(mdata, show=False)
    assert "do not explain" in fig._suptitle.get_text()
    new, _ = _data(n=80)  # the same patients, unscored: tl.predict writes the same warning for the plot
    mx.tl.predict(new, model)
    assert new.uns["medcrossvit"]["params"]["wide_path_only"]
    assert "do not explain" in mx.pl.tile_attention(new, show=False)._suptitle.get_text()


def test_with_bag_sampling_the_wide_path_still_reads_the_whole_bag():
    from multiomix.module import MedCrossViTModule
    from multiomix.nn.crossvit import masked_mean

    module = MedCrossViTModule(rna_key="X_rna", has_mask=True, num_classes=2, tile_dim=8, n_genes=6, wsi_dim=16,
                               rna_dim=16, enc_heads=2, cross_heads=2, bag_size=2, wide_path=True)
    with torch.no_grad():
        module.net.wide.linear.weight.normal_()
        for head in (module.net.wsi_head, module.net.rna_head):
            head[-1].weight.zero_(), head[-1].bias.zero_()
    tiles, genes, mask = torch.randn(3, 5, 8), torch.randn(3, 6), torch.ones(3, 5)
    module.train()  # samples 2 of the 5 tiles for the transformer
    logits = module.inference(tiles, genes, mask)["logits"]
    with torch.no_grad():
        whole = module.net.wide(masked_mean(tiles, mask.bool()), genes)
    torch.testing.assert_close(logits, whole)
