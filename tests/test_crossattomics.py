"""CrossAttOmics: building blocks, model class, tl/pl functions, LRP, round trips and errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from mudata import MuData, read_h5mu

import multiomix as mx
from multiomix.explain import interaction_relevance
from multiomix.nn import AttOmicsEncoder, CrossAttOmicsNet, GroupedLinear, lrp_mode, random_groups, validate_graph
from multiomix.nn.attomics import group_index

FAST = {"max_epochs": 3, "enable_progress_bar": False, "batch_size": 128}


@pytest.fixture(scope="module")
def tcga() -> MuData:
    return mx.datasets.tcga_brca()


@pytest.fixture
def small() -> MuData:
    mdata = mx.datasets.synthetic_interaction_mudata(160, n_features={"rna": 20, "methylation": 20, "mirna": 10})
    mx.pp.split(mdata, label_key="label", test_size=0.25, random_state=0)
    return mdata


def _frozen(mdata: MuData) -> dict:
    return {
        "obs": mdata.obs.copy(),
        "obsm": set(mdata.obsm.keys()),
        "uns": set(mdata.uns.keys()),
        "mods": {k: (v.obs.columns.tolist(), v.X.copy()) for k, v in mdata.mod.items()},
    }


def _assert_unchanged(mdata: MuData, before: dict) -> None:
    pd.testing.assert_frame_equal(mdata.obs, before["obs"])
    assert set(mdata.obsm.keys()) == before["obsm"]
    assert set(mdata.uns.keys()) == before["uns"]
    for k, (cols, x) in before["mods"].items():
        assert mdata.mod[k].obs.columns.tolist() == cols
        np.testing.assert_array_equal(mdata.mod[k].X, x)


# ----------------------------------------------------------------------------- nn


def test_random_groups_partition_features():
    groups = random_groups(23, 5, generator=torch.Generator().manual_seed(1))
    assert sorted(sum(groups, [])) == list(range(23))
    assert sorted(len(g) for g in groups) == [4, 4, 5, 5, 5]


def test_grouped_linear_matches_per_group_linear_maps():
    layer = GroupedLinear(n_groups=3, in_dim=4, out_dim=2)
    x = torch.randn(5, 3, 4)
    expected = torch.stack([x[:, g] @ layer.weight[g] + layer.bias[g] for g in range(3)], dim=1)
    torch.testing.assert_close(layer(x), expected)


def test_encoder_uses_only_the_features_of_each_group():
    enc = AttOmicsEncoder(in_features=6, groups=[[0, 1], [2, 3, 4]], group_sizes=[4])
    x = torch.randn(2, 6, requires_grad=True)
    out = enc.projections[0](torch.cat([x, x.new_zeros(2, 1)], 1)[:, enc.index], enc.in_mask)
    out[:, 0].sum().backward()
    assert torch.all(x.grad[:, 2:] == 0) and torch.any(x.grad[:, :2] != 0)
    assert enc(torch.randn(2, 6)).shape == (2, 2, 4)


def test_fusion_shapes_and_part_names():
    net = CrossAttOmicsNet(
        in_features={"a": 12, "b": 9, "c": 6},
        groups={"a": random_groups(12, 3), "b": random_groups(9, 3), "c": random_groups(6, 2)},
        group_sizes={"a": [8, 4], "b": [6], "c": [4]},
        interaction_graph={"a": ["b", "c"]},
        hidden=[16],
        n_classes=3,
    )
    x = {"a": torch.randn(5, 12), "b": torch.randn(5, 9), "c": torch.randn(5, 6)}
    assert net(x).shape == (5, 3)
    assert net.part_names == ["b->a", "c->a", "a", "b", "c"]
    assert net.fuse(x).shape == (5, net.fused_dim) and net.fused_dim == 2 * 3 * 4 + 3 * 6 + 2 * 4


def test_lrp_relevance_is_conservative_and_forward_unchanged():
    torch.manual_seed(0)
    net = CrossAttOmicsNet(
        in_features={"a": 12, "b": 9},
        groups={"a": random_groups(12, 3), "b": random_groups(9, 3)},
        group_sizes={"a": [8], "b": [6]},
        interaction_graph={"a": ["b"]},
        hidden=[16, 8],
        n_classes=3,
    )
    x = {"a": torch.randn(32, 12), "b": torch.randn(32, 9)}
    net.train()
    net(x)  # update batch-norm statistics
    net.eval()
    reference = net(x)
    with lrp_mode(net):
        torch.testing.assert_close(net(x), reference)
    relevance, logit, bias = interaction_relevance(net, x, torch.full((32,), 2), return_bias=True)
    torch.testing.assert_close(logit, reference[:, 2])
    torch.testing.assert_close(relevance.sum(1) + bias, logit, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- data


def test_tcga_brca_loader(tcga):
    assert {k: v.shape for k, v in tcga.mod.items()} == {
        "rna": (769, 200),
        "methylation": (769, 400),
        "mirna": (769, 100),
    }
    counts = tcga.obs["subtype"].value_counts().to_dict()
    assert counts == {"LumA": 419, "LumB": 140, "Basal": 130, "Her2": 46, "Normal": 34}


def test_single_cell_loaders_read_local_files_with_checksum(data_dir):
    multiome = mx.datasets.bmmc_multiome(data_dir=data_dir)
    assert set(multiome.mod) == {"rna", "atac"} and multiome.n_obs == 500
    assert multiome.obs["cell_type"].nunique() == 21
    cite = mx.datasets.bmmc_cite(data_dir=data_dir)
    assert cite["adt"].shape == (600, 134)
    patch = mx.datasets.patchseq(data_dir=data_dir)
    assert [patch[m].n_vars for m in ("rna", "ephys", "morph")] == [1252, 68, 514]
    assert patch.obs["cell_type_TEM"].nunique() == 27


def test_loader_rejects_a_corrupted_file(tmp_path, data_dir):
    target = tmp_path / "unitednet_patchseq"
    target.mkdir()
    (target / "adata_RNA_TEM.h5ad").write_bytes(b"not the original")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        mx.datasets.patchseq(data_dir=tmp_path)


def test_split_is_stratified_and_reproducible(tcga):
    a = tcga.copy()
    mx.pp.split(a, label_key="subtype", test_size=0.2, validation_size=0.1, random_state=3)
    b = mx.pp.split(tcga, label_key="subtype", test_size=0.2, validation_size=0.1, random_state=3, copy=True)
    assert "split" not in tcga.obs
    pd.testing.assert_series_equal(a.obs["split"], b.obs["split"])
    counts = a.obs["split"].value_counts()
    assert counts["test"] == 154 and counts["validation"] == 77
    share = pd.crosstab(a.obs["subtype"], a.obs["split"], normalize="index")["test"]
    assert share.between(0.15, 0.25).all()


# ----------------------------------------------------------------------------- model


def test_fit_writes_results_and_learns_on_real_data(tcga):
    mdata = tcga.copy()
    mx.pp.split(mdata, label_key="subtype", test_size=0.2, random_state=0)
    model = mx.tl.fit_crossattomics(
        mdata, label_key="subtype", max_epochs=15, early_stopping_patience=50, enable_progress_bar=False
    )
    assert mdata.obs["crossattomics_prediction"].cat.categories.tolist() == list(mdata.obs["subtype"].cat.categories)
    assert mdata.obsm["crossattomics_proba"].shape == (769, 5)
    np.testing.assert_allclose(mdata.obsm["crossattomics_proba"].sum(1), 1, atol=1e-5)
    assert mdata.obsm["X_crossattomics"].shape == (769, model.module.net.fused_dim)
    info = mdata.uns["crossattomics"]
    history = info["history"]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    # only train rows are trained on: 615 train rows minus the internal 15 % validation (92 rows)
    assert len(model.train_indices) == 523 and len(model.validation_indices) == 92
    assert set(model.train_indices).isdisjoint(np.flatnonzero(mdata.obs["split"] == "test"))
    assert info["test_metrics"]["n"] == 154
    assert info["test_metrics"]["accuracy"] > 0.6  # majority class is 0.54


def test_predictions_are_deterministic_under_a_seed(small):
    a, b = small.copy(), small.copy()
    mx.tl.fit_crossattomics(a, label_key="label", random_state=7, **FAST)
    mx.tl.fit_crossattomics(b, label_key="label", random_state=7, **FAST)
    np.testing.assert_array_equal(a.obsm["crossattomics_proba"], b.obsm["crossattomics_proba"])


def test_save_load_and_h5mu_round_trips(small, tmp_path):
    model = mx.tl.fit_crossattomics(small, label_key="label", **FAST)
    before = model.predict_proba()
    model.save(tmp_path / "model", overwrite=True)
    small.write_h5mu(tmp_path / "data.h5mu")
    reread = read_h5mu(tmp_path / "data.h5mu")
    loaded = mx.models.CrossAttOmics.load(tmp_path / "model", adata=reread)
    pd.testing.assert_frame_equal(loaded.predict_proba(), before)
    np.testing.assert_array_equal(reread.obsm["crossattomics_proba"], small.obsm["crossattomics_proba"])
    assert reread.uns["crossattomics"]["history"].shape == small.uns["crossattomics"]["history"].shape
    pd.testing.assert_series_equal(
        reread.obs["crossattomics_prediction"], small.obs["crossattomics_prediction"], check_categorical=False
    )


def test_a_model_of_some_modalities_loads_onto_the_whole_object_quietly(small, tmp_path):
    """Set up on two of three modalities, saved, loaded with the full MuData: no var_names warning."""
    mx.models.CrossAttOmics.setup_mudata(small, label_key="label", modalities=["rna", "methylation"])
    model = mx.models.CrossAttOmics(small, interaction_graph={"rna": ["methylation"]})
    model.train(max_epochs=1, progress_bar=False)
    model.save(tmp_path / "model", overwrite=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = mx.models.CrossAttOmics.load(tmp_path / "model", adata=small)
    pd.testing.assert_frame_equal(loaded.predict_proba(), model.predict_proba())


def test_user_given_feature_groups(small):
    groups = {"group_a": ["rna_0", "rna_1", "rna_2"], "group_b": ["rna_3", "rna_4", "not_a_gene"]}
    model = mx.tl.fit_crossattomics(
        small, label_key="label", groups={"rna": groups, "methylation": 4, "mirna": 2}, **FAST
    )
    assert model.group_names_["rna"] == ["group_a", "group_b"]
    assert model.feature_groups_["rna"] == [[0, 1, 2], [3, 4]]
    assert len(model.feature_groups_["methylation"]) == 4


def test_interaction_importance_recovers_the_planted_interaction():
    mdata = mx.datasets.synthetic_interaction_mudata(800, n_features={"rna": 20, "methylation": 20, "mirna": 10})
    mx.pp.split(mdata, label_key="label", test_size=0.2, random_state=0)
    groups = {m: dict(g) for m, g in mdata.uns["feature_groups"].items()}
    # no unimodal branches: a source's information reaches the head only through its interaction
    model = mx.tl.fit_crossattomics(
        mdata,
        label_key="label",
        groups=groups,
        group_sizes=(8,),
        hidden=(16,),
        dropout=0.0,
        weight_decay=0.0,
        lr=3e-3,
        batch_size=64,
        max_epochs=40,
        early_stopping_patience=40,
        add_unimodal_branches=False,
        enable_progress_bar=False,
    )
    assert mdata.uns["crossattomics"]["test_metrics"]["accuracy"] > 0.75  # an XOR: chance is 0.5
    mx.tl.interaction_importance(mdata, model)
    result = mdata.uns["crossattomics_interactions"]
    assert result["conservation_error"] < 1e-3
    assert list(result["bias"].columns) == ["mean", "mean_abs"] and list(result["bias"].index) == ["neg", "pos"]
    totals = result["per_sample"].abs().sum(1)  # no sample's relevances blow up (a bias spread over ~0 inputs)
    assert totals.max() < 20 * totals.median()
    share = result["overall_share"]["share"]
    interactions = share[[name for name in share.index if "->" in name]]
    assert interactions.idxmax() == mdata.uns["planted"]["interaction"]
    assert interactions["methylation->rna"] > 3 * interactions["mirna->rna"]
    fig = mx.pl.interaction_importance(mdata)
    assert fig.axes[0].get_title() == "Interaction importance (LRP)"


def test_plots_read_what_tl_wrote(small, tmp_path, caplog):
    model = mx.tl.fit_crossattomics(small, label_key="label", **FAST)
    mx.tl.interaction_importance(small, model, target="prediction")
    with pytest.raises(ValueError, match="holds the results of a mx.tl.fit_"):  # the fit's record stays
        mx.tl.interaction_importance(small, model, key_added="crossattomics")
    assert "history" in small.uns["crossattomics"]
    mx.pl.interaction_importance(small, kind="bar", value="mean", save=tmp_path / "bars.png")
    mx.pl.interaction_importance(small, "crossattomics_interactions", show=False)  # the key by position, as in scanpy
    mx.pl.training_history(small, "crossattomics", save=tmp_path / "history.png")
    assert (tmp_path / "bars.png").stat().st_size > 0 and (tmp_path / "history.png").stat().st_size > 0
    with pytest.raises(KeyError, match="interaction_importance"):
        mx.pl.interaction_importance(small, key="missing")
    model.best_epoch_ = -1  # as when the deep part never lowered the validation loss: the linear path alone
    with caplog.at_level("WARNING", logger="multiomix"):
        mx.tl.interaction_importance(small, model, key_added="alone")
    assert "fitted linear path alone" in caplog.text and small.uns["alone"]["params"]["linear_path_only"]
    assert mx.pl.interaction_importance(small, "alone", show=False).axes[0].get_title().endswith(
        "the kept model is its fitted linear path alone")


def test_ddp_training_on_two_cpu_processes(small):
    mx.models.CrossAttOmics.setup_mudata(small, label_key="label")
    model = mx.models.CrossAttOmics(small)
    initial = {k: v.clone() for k, v in model.module.state_dict().items()}
    model.train(
        max_epochs=2,
        batch_size=32,
        accelerator="cpu",
        devices=2,
        strategy="ddp_notebook",
        enable_progress_bar=False,
        datasplitter_kwargs={"drop_dataset_tail": True},
    )
    assert model.is_trained
    weight = "net.head.out.weight"
    assert not torch.equal(model.module.state_dict()[weight], initial[weight])  # trained weights came back
    assert model.predict_proba().shape == (160, 2)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("mutate", "kwargs", "error", "match"),
    [
        (None, {"modalities": ["rna", "protein"]}, KeyError, "protein"),
        (None, {"interaction_graph": {"rna": ["cnv"]}}, KeyError, "cnv"),
        (None, {"label_key": "missing"}, KeyError, "missing"),
        ("nan", {}, ValueError, "NaN"),
        ("one_class", {}, ValueError, "single class"),
        ("unaligned", {}, ValueError, "another order"),
        ("bad_split", {}, ValueError, "expected only"),
    ],
)
def test_bad_input_raises_and_leaves_the_object_untouched(small, mutate, kwargs, error, match):
    if mutate == "nan":
        small.mod["methylation"].X[3, 2] = np.nan
    elif mutate == "one_class":
        small.obs["label"] = pd.Categorical(["pos"] * small.n_obs)
    elif mutate == "unaligned":
        mod = small.mod["mirna"]
        small.mod["mirna"] = mod[::-1].copy()
    elif mutate == "bad_split":
        small.obs["split"] = small.obs["split"].astype(str).replace("validation", "val")
        small.obs.loc[small.obs_names[0], "split"] = "val"
    before = _frozen(small)
    kwargs = {"label_key": "label", **kwargs}
    with pytest.raises(error, match=match):
        mx.tl.fit_crossattomics(small, **FAST, **kwargs)
    _assert_unchanged(small, before)


def test_failure_inside_training_rolls_back_registration(small):
    before = _frozen(small)
    with pytest.raises(Exception):  # noqa: B017 - any training failure
        mx.tl.fit_crossattomics(small, label_key="label", max_epochs=1, enable_progress_bar=False, lr="fast")
    _assert_unchanged(small, before)


def test_interaction_importance_explains_the_true_class_of_numeric_labels(small):
    """Integer labels are the model's classes as strings: ``target="label"`` must find them, not fall back."""
    small.obs["label"] = (small.obs["label"].astype(str) == small.obs["label"].astype(str).iloc[0]).astype(int)
    model = mx.tl.fit_crossattomics(small, label_key="label", **FAST)
    as_text = small.copy()
    as_text.obs["label"] = small.obs["label"].astype(str)
    mx.tl.interaction_importance(small, model, target="label", key_added="numeric")
    mx.tl.interaction_importance(as_text, model, target="label", key_added="text")
    mx.tl.interaction_importance(small, model, target="prediction", key_added="predicted")
    numeric = np.asarray(small.uns["numeric"]["per_sample"])
    np.testing.assert_allclose(numeric, np.asarray(as_text.uns["text"]["per_sample"]), rtol=1e-5, atol=1e-7)
    wrong = small.obs["crossattomics_prediction"].astype(str).to_numpy() != small.obs["label"].astype(str).to_numpy()
    assert wrong.any()
    assert not np.allclose(numeric[wrong], np.asarray(small.uns["predicted"]["per_sample"])[wrong])


def test_a_modality_with_one_feature_is_one_group():
    mdata = mx.datasets.synthetic_interaction_mudata(120, n_features={"rna": 20, "methylation": 20, "mirna": 5})
    mdata.mod["mirna"] = mdata.mod["mirna"][:, :1].copy()
    mdata.update()
    model = mx.tl.fit_crossattomics(mdata, **FAST)
    assert len(model.feature_groups_["mirna"]) == 1
    assert mdata.obsm["crossattomics_proba"].shape == (120, 2)


def test_a_label_category_without_rows_gets_no_probability_through_the_model_class():
    """The fitted linear path has no logit for a category no training row carries: it must not sit at 0."""
    mdata = mx.datasets.synthetic_interaction_mudata(200, n_features={"rna": 20, "methylation": 20, "mirna": 10})
    x = mdata.mod["rna"].X
    mdata.obs["label"] = pd.Categorical(np.where(x[:, 10] + 0.5 * x[:, 11] > 0, "pos", "neg"),
                                        categories=["neg", "pos", "unused"])
    mx.models.CrossAttOmics.setup_mudata(mdata, label_key="label")
    model = mx.models.CrossAttOmics(mdata, random_state=0)
    model.train(max_epochs=1, enable_progress_bar=False, accelerator="cpu")
    proba = model.predict_proba()
    assert list(proba.columns) == ["neg", "pos", "unused"]
    assert float(proba["unused"].max()) < 1e-6  # was 0.14 on average (its logit left at 0)
    assert float(proba[["neg", "pos"]].max(1).mean()) > 0.85


def test_fitted_linear_path_of_sparse_input_stays_sparse_and_matches_dense(small, monkeypatch):
    """The logistic regression copied into the linear path is fitted on the sparse rows (scaled without centring,
    which only moves the intercept) and gives the same linear model as on the same data dense."""
    from scipy import sparse

    import multiomix.models._crossattomics as cao

    dense = small.copy()
    for a in dense.mod.values():
        a.X = np.maximum(a.X, 0)  # counts-like: many zeros
    sparse_data = dense.copy()
    for a in sparse_data.mod.values():
        a.X = sparse.csr_matrix(a.X)
    linear = {}
    for name, data in (("dense", dense), ("sparse", sparse_data)):
        if name == "sparse":
            monkeypatch.setattr(cao, "_dense", lambda m: pytest.fail("a sparse training block was densified"))
        model = mx.tl.fit_crossattomics(data, label_key="label", random_state=0, baseline=False,
                                        accelerator="cpu", **FAST)
        rows = np.flatnonzero(data.obs["split"] == "test")
        x = model.module.standardizer({m: torch.as_tensor(np.asarray(dense.mod[m].X[rows]), dtype=torch.float32)
                                       for m in model.modalities})
        with torch.no_grad():
            linear[name] = (model.module.net.linear(model.module.net.wide_input(x)) + model.module.net.head.out.bias)
        assert model.linear_path_C_ > 0
    np.testing.assert_allclose(linear["sparse"].numpy(), linear["dense"].numpy(), atol=2e-2 * float(
        linear["dense"].abs().max()))


def test_importance_of_the_logistic_regression_alone_conserves_its_intercept():
    """best_epoch == -1 (the linear path alone): the relevances sum to the logits the model computes."""
    rng = np.random.default_rng(0)
    mdata = mx.datasets.synthetic_interaction_mudata(240, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    signal = mdata.mod["rna"].X[:, 0] + 0.5 * rng.normal(size=mdata.n_obs)
    mdata.obs["label"] = pd.Categorical(np.where(signal > 1.0, "high", np.where(signal > -0.3, "mid", "low")))
    model = mx.tl.fit_crossattomics(mdata, label_key="label", max_epochs=0, accelerator="cpu", progress_bar=False,
                                    baseline=False)
    assert model.best_epoch_ == -1 and float(model.module.net.head.out.bias.detach().abs().max()) > 0.1  # an intercept
    mx.tl.interaction_importance(mdata, model)
    result = mdata.uns["crossattomics_interactions"]
    assert result["conservation_error"] < 1e-4
    np.testing.assert_allclose(result["share"]["linear"], 1.0, atol=1e-5)
    # two classes: the decision function is split over both logits, so both classes are explained by it
    mdata.obs["label"] = pd.Categorical(np.where(signal > 0.5, "pos", "neg"))
    model = mx.tl.fit_crossattomics(mdata, label_key="label", max_epochs=0, accelerator="cpu", progress_bar=False,
                                    baseline=False)
    weight = model.module.net.linear.weight.detach()
    torch.testing.assert_close(weight[0], -weight[1])
    mx.tl.interaction_importance(mdata, model)
    np.testing.assert_allclose(mdata.uns["crossattomics_interactions"]["share"]["linear"], 1.0, atol=1e-5)


def test_graph_given_as_a_set_is_stored_in_one_order_and_groups_keys_checked(small, tmp_path):
    graph = validate_graph({"rna": {"mirna", "methylation"}}, ["rna", "methylation", "mirna"])
    assert graph == {"rna": ["methylation", "mirna"]}  # sorted: the stacked edge weights need one order
    mx.models.CrossAttOmics.setup_mudata(small, label_key="label")
    model = mx.models.CrossAttOmics(small, interaction_graph={"rna": {"mirna", "methylation"}})
    assert model.init_params_["non_kwargs"].get("interaction_graph", model.init_params_["kwargs"].get(
        "interaction_graph")) == {"rna": ["methylation", "mirna"]}
    with pytest.raises(ValueError, match="interaction graph is empty"):
        mx.models.CrossAttOmics(small, interaction_graph={})
    with pytest.raises(KeyError, match="also \\['mirn'\\]"):
        mx.models.CrossAttOmics(small, groups={"rna": 2, "mirn": 2})
    with pytest.raises(ValueError, match="outside \\[0, 4\\)"):
        group_index([[0, 1], [-1, 2]], 4)


def test_fitted_linear_path_stays_frozen_after_load(small, tmp_path):
    model = mx.tl.fit_crossattomics(small, label_key="label", baseline=False, **FAST)
    model.save(tmp_path / "m")
    loaded = mx.models.CrossAttOmics.load(tmp_path / "m", adata=small)
    assert not loaded.module.net.linear.weight.requires_grad
    before = loaded.module.net.linear.weight.detach().clone()
    loaded.train(max_epochs=1, validation_size=0.0, enable_progress_bar=False)
    torch.testing.assert_close(loaded.module.net.linear.weight.detach(), before)


def test_interaction_plot_labels_rows_by_what_tl_grouped_by(small):
    model = mx.tl.fit_crossattomics(small, label_key="label", baseline=False, **FAST)
    small.obs["batch"] = pd.Categorical(np.arange(small.n_obs) % 2).astype(str)
    mx.tl.interaction_importance(small, model, groupby="batch")
    fig = mx.pl.interaction_importance(small, show=False)
    assert fig.axes[0].get_ylabel() == "batch"


def test_interaction_importance_names_float_label_groups_as_the_model_names_classes(small, caplog):
    small.obs["grade"] = np.where(small.obs["label"].astype(str).to_numpy() == small.obs["label"].cat.categories[0],
                                  1.0, 2.0)
    model = mx.tl.fit_crossattomics(small, label_key="grade", baseline=False, **FAST)
    assert sorted(model.classes) == ["1", "2"]
    small.obs.loc[small.obs_names[:2], "grade"] = 3.0  # a label the model has no class for
    with caplog.at_level("INFO", logger="multiomix"):
        mx.tl.interaction_importance(small, model, groupby="grade")
    assert "2 rows have a label the model has no class for (e.g. ['3'])" in caplog.text
    assert list(small.uns["crossattomics_interactions"]["mean"].index) == ["1", "2", "3"]
    small.obs["dose"] = np.where(np.arange(small.n_obs) % 2, 10, 2)  # numbers: 2 before 10
    mx.tl.interaction_importance(small, model, groupby="dose", key_added="by_dose")
    assert list(small.uns["by_dose"]["mean"].index) == ["2", "10"]
