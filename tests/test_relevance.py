"""Feature relevance: planted truth, estimator checks, storage round trip, plots and errors."""

from __future__ import annotations

import logging

import anndata as ad
import matplotlib.pyplot as plt
import mudata as md
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse
from torch import nn

import multiomix as mx
from multiomix.explain import FunctionModule, RelevanceAdapter, deep_supported
from multiomix.tl import feature_relevance, rank_relevant_features

S_DRIVERS = [f"S{i}" for i in range(10, 15)]
F_MARKERS = [f"F{i}" for i in range(1, 6)]


def planted_mudata(n_per_type: int = 150, seed: int = 0) -> md.MuData:
    """Cell types A, B, C; source ``src`` (S0-S24, F1-F5) and target ``tgt`` (T0-T7).

    * C differs from A and B only by F1-F5 (+3).
    * B is marked in the source by S0-S2 (+3), so the source alone tells whether a cell is B.
    * T3 = 0.6 * (S10 + ... + S14) in B and noise elsewhere; every other target T_k follows S_{15+k} in all
      cell types.
    """
    rng = np.random.default_rng(seed)
    types = np.repeat(["A", "B", "C"], n_per_type)
    n = len(types)
    src = rng.normal(size=(n, 30)).astype(np.float32)
    is_b, is_c = types == "B", types == "C"
    src[is_b, 0:3] += 3.0
    src[is_c, 25:30] += 3.0
    tgt = (0.3 * rng.normal(size=(n, 8))).astype(np.float32)
    for k in range(8):
        if k != 3:
            tgt[:, k] += 0.8 * src[:, 15 + k]
    tgt[is_b, 3] += 0.6 * src[is_b, 10:15].sum(1)
    obs = pd.DataFrame({"cell_type": pd.Categorical(types)}, index=[f"cell{i}" for i in range(n)])
    mdata = md.MuData({
        "src": ad.AnnData(src, obs=obs.copy(), var=pd.DataFrame(index=[f"S{i}" for i in range(25)] + F_MARKERS)),
        "tgt": ad.AnnData(tgt, obs=obs.copy(), var=pd.DataFrame(index=[f"T{i}" for i in range(8)])),
    })
    mdata.obs["cell_type"] = obs["cell_type"]
    return mdata


def precision_at_5(frame: pd.DataFrame, truth: list[str]) -> float:
    return len(set(frame["feature"].head(5)) & set(truth)) / 5


@pytest.fixture(scope="module")
def fitted():
    mdata = planted_mudata()
    # no linear skip path: one global linear map cannot be type-specific, and the planted T3 <- S10-S14 link is
    # specific to type B (with the skip path the model itself spreads it over all types, which relevance shows)
    model = mx.tl.fit_unitednet(mdata, label_key="cell_type", max_epochs=60, lr=3e-3, latent_dim=32, hidden=(128,),
                                n_heads=1, loss_weights={"contrastive": 0.1}, linear_skip=False,
                                progress_bar=False)
    feature_relevance(mdata, model, groupby="cell_type")
    feature_relevance(mdata, model, groupby="cell_type", kind="cross_modal", source="src", target="tgt")
    return mdata, model


def test_planted_truth_recovered(fitted):
    mdata, _ = fitted
    # group-to-feature: C is defined only by F1-F5
    top_c = rank_relevant_features(mdata, "relevance", "C", n_top=5)
    assert precision_at_5(top_c, F_MARKERS) == 1.0
    # cross-modal: T3 is driven by S10-S14 only in B
    key = "relevance_src_to_tgt"
    top_b = rank_relevant_features(mdata, key, "B", n_top=5, target_feature="T3")
    assert precision_at_5(top_b, S_DRIVERS) == 1.0
    mats = mdata.uns[key]["matrices"]
    strength = {g: float(mats[g].loc["T3", S_DRIVERS].mean()) for g in "ABC"}
    for other in ("A", "C"):  # outside B, S10-S14 hardly move T3 (T3 is noise there)
        assert strength[other] < 0.25 * strength["B"]
    # another target keeps its own driver in every type (T5 <- S20)
    for g in "ABC":
        assert rank_relevant_features(mdata, key, g, 1, target_feature="T5")["feature"].iloc[0] == "S20"
    # the method used and its additivity error are recorded; shap has no rule for LayerNorm
    params = mdata.uns["relevance"]["params"]
    assert params["method"] == "expected_gradients"
    assert "LayerNorm" in params["deep_unsupported_modules"]
    assert np.isfinite(params["additivity_error"])
    summary = mdata.uns["relevance"]["summary"]
    assert list(summary.index) == ["A", "B", "C"] and summary["n_cells"].tolist() == [150, 150, 150]


def test_h5mu_round_trip_and_plots(fitted, tmp_path):
    mdata, _ = fitted
    path = tmp_path / "relevance.h5mu"
    mdata.write_h5mu(path)
    back = md.read_h5mu(path)
    for key in ("relevance", "relevance_src_to_tgt"):
        for g in "ABC":
            pd.testing.assert_frame_equal(back.uns[key]["groups"][g], mdata.uns[key]["groups"][g],
                                          check_categorical=False)
        assert str(back.uns[key]["params"]["method"]) == "expected_gradients"
    pd.testing.assert_frame_equal(back.uns["relevance_src_to_tgt"]["matrices"]["B"],
                                  mdata.uns["relevance_src_to_tgt"]["matrices"]["B"])
    pd.testing.assert_frame_equal(rank_relevant_features(back, "relevance", "C", 5),
                                  rank_relevant_features(mdata, "relevance", "C", 5))
    # plots read the stored results (after the round trip too)
    for name, call in {
        "heatmap": lambda: mx.pl.relevance_heatmap(back, "relevance", n_top=5),
        "matrix": lambda: mx.pl.relevance_heatmap(back, "relevance_src_to_tgt", group="B", n_top=8),
        "dotplot": lambda: mx.pl.relevance_dotplot(back, "relevance", n_top=5),
        "network": lambda: mx.pl.relevance_network(back, "relevance_src_to_tgt", "B", n_top=12),
    }.items():
        ax = call()
        ax.figure.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
        plt.close(ax.figure)


class _TinyModel:
    """A model that is not a multiomix class but exposes ``relevance_adapter()``."""

    def __init__(self, n_features: int, classes: list[str], seed: int = 0):
        torch.manual_seed(seed)
        self.classes = classes
        self.net = nn.Sequential(nn.Linear(n_features, 16), nn.ReLU(), nn.Linear(16, len(classes)), nn.Sigmoid())
        self.n_features = n_features

    def relevance_adapter(self) -> RelevanceAdapter:
        return RelevanceAdapter(
            modalities=["rna"], feature_names={"rna": pd.Index([f"g{i}" for i in range(self.n_features)])},
            layers={"rna": None}, class_names=self.classes,
            classifier=FunctionModule(lambda x: self.net(x), {"net": self.net}), name="Tiny",
        )


def _tiny_mudata(sparse_x: bool = False, n: int = 90, p: int = 12) -> md.MuData:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, p)).astype(np.float32)
    labels = np.repeat(["a", "b", "c"], n // 3)
    x[labels == "b", :3] += 2
    x = np.abs(x) if sparse_x else x
    obs = pd.DataFrame({"group": pd.Categorical(labels)}, index=[f"c{i}" for i in range(n)])
    adata = ad.AnnData(sparse.csr_matrix(x) if sparse_x else x, obs=obs,
                       var=pd.DataFrame(index=[f"g{i}" for i in range(p)]))
    mdata = md.MuData({"rna": adata})
    mdata.obs["group"] = obs["group"]
    return mdata


def test_deep_explainer_where_supported_and_estimators_agree():
    mdata, model = _tiny_mudata(), _TinyModel(12, ["a", "b", "c"])
    assert deep_supported(model.net) == (True, [])
    feature_relevance(mdata, model, groupby="group", key_added="deep")
    params = mdata.uns["deep"]["params"]
    assert params["method"] == "deep" and params["additivity_relative"] < 1e-3
    feature_relevance(mdata, model, groupby="group", method="expected_gradients", n_samples=200, key_added="eg")
    for g in "abc":
        deep, eg = (mdata.uns[k]["groups"][g]["mean"].to_numpy() for k in ("deep", "eg"))
        assert np.corrcoef(deep, eg)[0, 1] > 0.95
    # deep is deterministic: batches and sparse storage do not change it
    sparse_data = _tiny_mudata(sparse_x=True)
    feature_relevance(sparse_data, model, groupby="group", batch_size=7, key_added="a")
    feature_relevance(sparse_data, model, groupby="group", batch_size=1000, key_added="b")
    sparse_data.mod["rna"].X = sparse_data.mod["rna"].X.toarray()
    feature_relevance(sparse_data, model, groupby="group", key_added="c")
    for k in ("b", "c"):
        np.testing.assert_allclose(sparse_data.uns["a"]["groups"]["b"]["mean"],
                                   sparse_data.uns[k]["groups"]["b"]["mean"], rtol=1e-4, atol=1e-7)


def test_expected_gradients_agree_with_shap_gradient_explainer():
    """Our batched expected-gradients estimator and shap.GradientExplainer estimate the same attributions.

    Two inputs (modalities) with a joint background (one background row per draw for both) and one output
    column; and a cross-modal map with several outputs (our estimator takes the full Jacobian in one pass).
    """
    import shap

    from multiomix.explain import cross_modal_relevance, group_relevance
    from multiomix.explain._relevance import _Select

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    a, b = nn.Linear(6, 8), nn.Linear(4, 8)
    head = nn.Sequential(nn.Tanh(), nn.Linear(8, 3), nn.Softmax(-1))
    clf = FunctionModule(lambda x1, x2: head(a(x1) + b(x2)), {"a": a, "b": b, "head": head}).eval()
    x1, x2 = rng.normal(size=(20, 6)).astype(np.float32), rng.normal(size=(20, 4)).astype(np.float32)
    bg1, bg2 = rng.normal(size=(5, 6)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    n = 500

    def close(ours: np.ndarray, theirs: np.ndarray) -> float:
        return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))

    res = group_relevance(clf, [x1, x2], np.arange(20), 1, [bg1, bg2], method="expected_gradients", n_samples=n)
    explainer = shap.GradientExplainer(_Select(clf, 1), [torch.as_tensor(bg1), torch.as_tensor(bg2)], batch_size=n)
    values = explainer.shap_values([torch.as_tensor(x1), torch.as_tensor(x2)], nsamples=n, rseed=0)
    phi = np.concatenate([np.asarray(v).reshape(20, -1) for v in values], 1)
    assert close(np.concatenate(res.mean), phi.mean(0)) < 0.1
    assert close(np.concatenate(res.mean_abs), np.abs(phi).mean(0)) < 0.1

    translator = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    res = cross_modal_relevance(translator, x1, np.arange(20), bg1, method="expected_gradients", n_samples=n)
    values = shap.GradientExplainer(translator, torch.as_tensor(bg1), batch_size=n).shap_values(
        torch.as_tensor(x1), nsamples=n, rseed=0)
    phi = np.moveaxis(np.asarray(values), -1, 1)  # (cells, source, target) -> (cells, target, source)
    assert close(res.mean, phi.mean(0)) < 0.1
    assert close(res.mean_abs, np.abs(phi).mean(0)) < 0.1


def test_expected_gradients_reproducible_and_complete():
    mdata, model = _tiny_mudata(), _TinyModel(12, ["a", "b", "c"], seed=3)
    kwargs = {"groupby": "group", "method": "expected_gradients", "n_samples": 64}
    for key, seed in (("r0", 0), ("r0_again", 0), ("r1", 1)):
        feature_relevance(mdata, model, random_state=seed, key_added=key, **kwargs)
    a, b, c = (mdata.uns[k]["groups"]["b"]["mean_abs"].to_numpy() for k in ("r0", "r0_again", "r1"))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and np.corrcoef(a, c)[0, 1] > 0.9
    # completeness: attributions sum to f(x) - E f(background) up to Monte-Carlo error
    assert mdata.uns["r0"]["params"]["additivity_relative"] < 0.2
    feature_relevance(mdata, model, output="log_proba", key_added="log", **kwargs)
    assert mdata.uns["log"]["params"]["output"] == "log_proba"
    assert mdata.uns["log"]["params"]["additivity_relative"] < 0.2
    with pytest.raises(ValueError, match="output"):
        feature_relevance(mdata, model, output="logit", **kwargs)


def test_other_models_plug_in():
    mdata = mx.datasets.synthetic_interaction_mudata(120, n_features={"rna": 15, "methylation": 10, "mirna": 5})
    cao = mx.tl.fit_crossattomics(mdata, label_key="label", max_epochs=2, batch_size=64, enable_progress_bar=False)
    feature_relevance(mdata, cao, groupby="label", n_samples=8)
    frame = mdata.uns["relevance"]["groups"]["pos"]
    assert len(frame) == 30 and set(frame["modality"]) == {"rna", "methylation", "mirna"}
    with pytest.raises(ValueError, match="does not predict one modality"):
        feature_relevance(mdata, cao, groupby="label", kind="cross_modal", source="rna", target="mirna")
    if not hasattr(mx.models, "MultimodalAE"):
        return
    mx.models.MultimodalAE.setup_mudata(mdata, modalities=["rna", "methylation"])
    ae = mx.models.MultimodalAE(mdata, latent_dim=4, hidden_dim=16)
    ae.train(max_epochs=2, batch_size=64, train_size=0.8, validation_size=0.2)
    feature_relevance(mdata, ae, groupby="label", kind="cross_modal", source="rna", target="methylation",
                      n_samples=4)
    assert mdata.uns["relevance_rna_to_methylation"]["matrices"]["neg"].shape == (10, 15)
    with pytest.raises(ValueError, match="does not predict classes"):
        feature_relevance(mdata, ae, groupby="label")


def test_clear_errors_leave_data_untouched(fitted):
    mdata, model = fitted
    before = set(mdata.uns.keys())
    with pytest.raises(KeyError, match="nope"):
        feature_relevance(mdata, model, groupby="nope")
    with pytest.raises(ValueError, match="needs both"):
        feature_relevance(mdata, model, groupby="cell_type", kind="cross_modal", source="src")
    with pytest.raises(KeyError, match="protein"):
        feature_relevance(mdata, model, groupby="cell_type", kind="cross_modal", source="src", target="protein")
    with pytest.raises(ValueError, match="method"):
        feature_relevance(mdata, model, groupby="cell_type", method="lime")
    with pytest.raises(ValueError, match="kind"):
        feature_relevance(mdata, model, groupby="cell_type", kind="pairs")
    relabelled = mdata.copy()
    relabelled.obs["other"] = pd.Categorical(np.where(relabelled.obs["cell_type"] == "A", "X", "Y"))
    with pytest.raises(ValueError, match="not classes of the model"):
        feature_relevance(relabelled, model, groupby="other")
    relabelled.obs["other"] = pd.Categorical(np.where(relabelled.obs["cell_type"] == "A", "X", "B"))
    with pytest.raises(ValueError, match="not classes of the model"):  # named explicitly: an error
        feature_relevance(relabelled, model, groupby="other", groups=["X", "B"])
    missing = md.MuData({"src": mdata.mod["src"][:, :20].copy(), "tgt": mdata.mod["tgt"].copy()})
    missing.obs["cell_type"] = mdata.obs["cell_type"]
    with pytest.raises(KeyError, match="lacks 10"):
        feature_relevance(missing, model, groupby="cell_type")
    nan = mdata.copy()
    nan.mod["src"].X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        feature_relevance(nan, model, groupby="cell_type")
    with pytest.raises(TypeError, match="No relevance adapter"):
        feature_relevance(mdata, object(), groupby="cell_type")
    with pytest.raises(KeyError, match="run mx.tl.feature_relevance"):
        rank_relevant_features(mdata, "absent", "A")
    with pytest.raises(KeyError, match="Group 'Z'"):
        rank_relevant_features(mdata, "relevance", "Z")
    with pytest.raises(ValueError, match="cross-modal"):
        mx.pl.relevance_network(mdata, "relevance", "A")
    with pytest.raises(ValueError, match="max_cells_per_group"):
        feature_relevance(mdata, model, groupby="cell_type", max_cells_per_group=0)
    fit_record = dict(mdata.uns["unitednet"])
    with pytest.raises(ValueError, match="holds the results of a mx.tl.fit_"):  # before any work is done
        feature_relevance(mdata, model, groupby="cell_type", key_added="unitednet")
    assert set(mdata.uns["unitednet"]) == set(fit_record)
    assert set(mdata.uns.keys()) == before


def test_group_names_that_differ_only_by_a_slash_are_kept_apart(tmp_path, caplog):
    """'/' cannot be stored in .h5mu, so 'L2/3 IT' is stored under another key than its neighbour 'L2_3 IT'."""
    import logging

    mdata = planted_mudata(n_per_type=40)
    names = {"A": "L2/3 IT", "B": "L2_3 IT", "C": "Pvalb"}
    mdata.obs["cell_type"] = mdata.obs["cell_type"].cat.rename_categories(names)
    model = mx.tl.fit_unitednet(mdata, label_key="cell_type", max_epochs=3, latent_dim=8, hidden=(16,), n_heads=1,
                                progress_bar=False)
    few = mdata[np.flatnonzero(mdata.obs["cell_type"] != "L2/3 IT").tolist()
                + np.flatnonzero(mdata.obs["cell_type"] == "L2/3 IT")[:5].tolist()].copy()
    with caplog.at_level(logging.WARNING, logger="multiomix"):  # a group of 5 cells: named as the user names it
        feature_relevance(few, model, groupby="cell_type", max_cells_per_group=10, n_samples=5)
    warned = [r.getMessage() for r in caplog.records if "unreliable" in r.getMessage()]
    assert len(warned) == 1 and warned[0].endswith("['L2/3 IT']")
    feature_relevance(mdata, model, groupby="cell_type", max_cells_per_group=10, n_samples=20)
    stored = mdata.uns["relevance"]
    assert len(stored["groups"]) == 3 and len(set(stored["summary"].index)) == 3
    slash, underscore = (rank_relevant_features(mdata, "relevance", g, 5) for g in ("L2/3 IT", "L2_3 IT"))
    assert not slash.equals(underscore)
    pd.testing.assert_frame_equal(underscore, rank_relevant_features(mdata, "relevance", "L2_3 IT", 5))
    mdata.write_h5mu(tmp_path / "slash.h5mu")
    back = md.read_h5mu(tmp_path / "slash.h5mu")
    pd.testing.assert_frame_equal(rank_relevant_features(back, "relevance", "L2/3 IT", 5), slash,
                                  check_categorical=False)
    mx.pl.relevance_dotplot(back, "relevance", show=False)
    plt.close("all")


def test_groups_of_a_float_label_column_are_found_by_their_own_values():
    """A NaN makes an integer label column float: its groups are stored as '1', '2' and found as 1.0 and 2."""
    mdata = planted_mudata(n_per_type=30)
    codes = mdata.obs["cell_type"].cat.codes.to_numpy().astype(float) + 1.0
    codes[:3] = np.nan
    mdata.obs["level"] = codes
    model = mx.tl.fit_unitednet(mdata, label_key="level", max_epochs=2, latent_dim=8, hidden=(16,), n_heads=1,
                                progress_bar=False)
    feature_relevance(mdata, model, groupby="level", groups=1.0, max_cells_per_group=10, n_samples=5)
    assert list(mdata.uns["relevance"]["params"]["groups"]) == ["1"]
    by_float, by_text = (rank_relevant_features(mdata, "relevance", g, 5) for g in (np.float64(1.0), "1"))
    pd.testing.assert_frame_equal(by_float, by_text)
    with pytest.raises(KeyError, match="groups: \\['1'\\]"):
        rank_relevant_features(mdata, "relevance", 2.0, 5)
    # in a column of fractions the groups read '0.5', '1.0', ...: 1.0 finds '1.0'
    mdata.obs["dose"] = mdata.obs["level"] / 2
    dosed = mx.tl.fit_unitednet(mdata, label_key="dose", max_epochs=2, latent_dim=8, hidden=(16,), n_heads=1,
                                progress_bar=False, key_added="dosed")
    assert "1.0" in dosed.classes and "0.5" in dosed.classes
    feature_relevance(mdata, dosed, groupby="dose", groups=[1.0, 0.5], max_cells_per_group=10, n_samples=5,
                      key_added="dose_relevance")
    assert sorted(mdata.uns["dose_relevance"]["params"]["groups"]) == ["0.5", "1.0"]
    assert rank_relevant_features(mdata, "dose_relevance", 1.0, 3)["group"].tolist() == ["1.0"] * 3
    # the plots take the groups as the tl functions do: a number, or a list of numbers
    for groups in (1.0, [1.0, 0.5], 0.5):
        ax = mx.pl.relevance_dotplot(mdata, "dose_relevance", groups=groups, n_top=3)
        plt.close(ax.figure)
    ax = mx.pl.relevance_heatmap(mdata, "dose_relevance", groups=[0.5], n_top=3)
    plt.close(ax.figure)
    feature_relevance(mdata, model, groupby="level", groups=1.0, kind="cross_modal", source="src", target="tgt",
                      max_cells_per_group=10, n_samples=5, key_added="cross_level")
    for call in (mx.pl.relevance_heatmap, mx.pl.relevance_network):
        ax = call(mdata, "cross_level", group=np.float64(1.0), n_top=4)
        plt.close(ax.figure)


def test_ensemble_log_odds_and_signed_ranking():
    from multiomix.explain._relevance import _transform_output

    mdata = _tiny_mudata()
    models = [_TinyModel(12, ["a", "b", "c"], seed=s) for s in (0, 1)]
    for key, model in (("m0", models[0]), ("m1", models[1]), ("ens", models)):
        feature_relevance(mdata, model, groupby="group", key_added=key)  # deep: deterministic
    assert mdata.uns["ens"]["params"]["n_models"] == 2 and mdata.uns["m0"]["params"]["n_models"] == 1
    for col in ("mean", "mean_abs"):
        single = [mdata.uns[k]["groups"]["b"][col].to_numpy() for k in ("m0", "m1")]
        np.testing.assert_allclose(mdata.uns["ens"]["groups"]["b"][col], np.mean(single, 0), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="ensemble"):
        feature_relevance(mdata, [models[0], _TinyModel(12, ["a", "b", "z"])], groupby="group")
    with pytest.raises(ValueError, match="empty"):
        feature_relevance(mdata, [], groupby="group")
    # ranking by signed mean: largest first, differs from mean_abs order in general
    top = rank_relevant_features(mdata, "ens", "b", n_top=12, rank_by="mean")
    assert np.all(np.diff(top["mean"].to_numpy()) <= 0)
    with pytest.raises(ValueError, match="rank_by"):
        rank_relevant_features(mdata, "ens", "b", rank_by="median")
    # one-vs-rest log-odds: log(p / (1 - p)) of a softmax classifier, accurate for confident predictions
    net = nn.Sequential(nn.Linear(4, 3), nn.Softmax(-1))
    x = torch.randn(5, 4) * 30
    p = net(x).double()
    expected = torch.log(p) - torch.log1p(-p)
    got = _transform_output(net, "log_odds")(x).double()
    finite = p < 1 - 1e-6
    torch.testing.assert_close(got[finite], expected[finite], rtol=1e-3, atol=1e-3)
    assert torch.isfinite(got).all()
    feature_relevance(mdata, models[0], groupby="group", output="log_odds", method="expected_gradients",
                      n_samples=64, key_added="lo")
    assert mdata.uns["lo"]["params"]["additivity_relative"] < 0.2


def test_translator_is_the_models_prediction():
    # with UnitedNet's default linear skip path: the explained translator is what model.translate predicts
    mdata = planted_mudata(40)
    model = mx.tl.fit_unitednet(mdata, label_key="cell_type", max_epochs=3, latent_dim=8, hidden=(16,), n_heads=1,
                                progress_bar=False)
    assert model.module.net.linear_skip
    translator = mx.explain.get_adapter(model).get_translator("src", "tgt")
    with torch.no_grad():
        pred = translator(torch.as_tensor(np.asarray(mdata.mod["src"].X, dtype=np.float32))).numpy()
    np.testing.assert_allclose(pred, model.translate(mdata, source="src", target="tgt"), rtol=1e-4, atol=1e-4)


def test_cross_modal_relevance_stays_type_specific_at_the_defaults():
    """With UnitedNet's default linear skip path, a link present in one cell type stays specific to it.

    One protein (P0) of 30 is expressed in type B only and follows five genes there; the other 29 are noise, so
    over the whole modality the linear map predicts best. The blend is chosen per protein, so P0 keeps the
    decoder path, and the genes' relevance for P0 is much larger in B than in A or C (with one blend for the
    whole modality it was pure ridge, and the relevance the same in every type).
    """
    rng = np.random.default_rng(0)
    types = np.repeat(["A", "B", "C"], 100)
    rna = rng.normal(size=(300, 20)).astype(np.float32)
    rna[types == "B", 0:3] += 3.0  # markers of B and C
    rna[types == "C", 3:6] += 3.0
    adt = rng.normal(size=(300, 30)).astype(np.float32)
    b = types == "B"
    adt[:, 0] = 0.3 * rng.normal(size=300)
    adt[b, 0] += 0.6 * rna[b, 10:15].sum(1)
    obs = pd.DataFrame({"cell_type": pd.Categorical(types)}, index=[f"c{i}" for i in range(300)])
    mdata = md.MuData({
        "rna": ad.AnnData(rna, obs=obs.copy(), var=pd.DataFrame(index=[f"G{i}" for i in range(20)])),
        "adt": ad.AnnData(adt, obs=obs.copy(), var=pd.DataFrame(index=[f"P{i}" for i in range(30)])),
    })
    mdata.obs["cell_type"] = obs["cell_type"]
    model = mx.tl.fit_unitednet(mdata, label_key="cell_type", progress_bar=False)  # the defaults, linear skip on
    feature_relevance(mdata, model, groupby="cell_type", kind="cross_modal", source="rna", target="adt")
    entry = mdata.uns["relevance_rna_to_adt"]
    drivers = [f"G{i}" for i in range(10, 15)]
    strength = {g: float(entry["matrices"][g].loc["P0", drivers].mean()) for g in "ABC"}
    assert strength["B"] > 2 * max(strength["A"], strength["C"]), strength
    # the health block reports the model's blend per target feature
    blend = model.module.net.skip_blend("rna", "adt").numpy()
    health = entry["health"]
    assert health["linear_path"] is False
    np.testing.assert_allclose(health["path_blend"]["nonlinear_weight"].to_numpy(), blend, atol=1e-6)
    p0 = health["path_blend"].loc["P0"]
    assert p0["nonlinear_weight"] > 0.5 and not p0["linear_only"]
    assert health["path_blend"]["linear_only"].tolist() == (blend <= 0).tolist()
    assert health["n_linear_features"] == int((blend <= 0).sum())


def test_relevance_stores_its_health_and_warns(caplog):
    import logging

    mdata = mx.datasets.synthetic_interaction_mudata(160, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    models = [mx.tl.fit_crossattomics(mdata, max_epochs=2, random_state=s, progress_bar=False,
                                      key_added=f"m{s}") for s in range(2)]
    with caplog.at_level(logging.WARNING, logger="multiomix"):
        mx.tl.feature_relevance(mdata, models, groupby="label", key_added="rel", n_samples=8, top_k_stability=5)
    health = mdata.uns["rel"]["health"]
    assert 0 <= health["topk_stability"] <= 1 and health["topk"] == 5
    assert health["linear_path"] is False
    assert health["n_cells"]["n_cells"].sum() == mdata.n_obs
    assert health["additivity_error"] >= 0


def test_groups_that_are_not_classes_are_skipped_by_default(fitted):
    """E.g. a rare type whose cells all fell into the fit's validation or test rows: named in a warning, skipped."""
    mdata, model = fitted
    data = mdata.copy()
    data.obs["cell_type"] = pd.Categorical(np.where(data.obs["cell_type"] == "A", "never trained on",
                                                    data.obs["cell_type"].astype(str)))
    messages = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("multiomix").addHandler(handler)
    try:
        feature_relevance(data, model, groupby="cell_type", key_added="skipped", n_samples=4,
                          max_cells_per_group=10)
    finally:
        logging.getLogger("multiomix").removeHandler(handler)
    explained = set(data.uns["skipped"]["groups"])
    assert "never trained on" not in explained and explained == set(data.obs["cell_type"].cat.categories) - {
        "never trained on"}
    assert any("never trained on" in m and "not explained" in m for m in messages)


def test_an_ensemble_of_fits_with_other_classes_is_refused_with_the_difference():
    mdata = planted_mudata(n_per_type=30)
    options = {"label_key": "cell_type", "max_epochs": 1, "latent_dim": 8, "hidden": (16,), "n_heads": 1,
               "progress_bar": False, "baseline": False}
    full = mx.tl.fit_unitednet(mdata.copy(), **options)
    fewer = mdata[(mdata.obs["cell_type"] != "C").to_numpy()].copy()
    fewer.obs["cell_type"] = fewer.obs["cell_type"].cat.remove_unused_categories()
    partial = mx.tl.fit_unitednet(fewer, **options)
    with pytest.raises(ValueError, match=r"Classes only model 0 has: \['C'\]; only model 1: \[\].*n_models=k"):
        feature_relevance(mdata, [full, partial], groupby="cell_type", n_samples=5)


def test_a_progress_bar_over_groups_follows_the_setting(capsys):
    mdata = mx.datasets.synthetic_interaction_mudata(120, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    model = mx.tl.fit_crossattomics(mdata, max_epochs=1, progress_bar=False)
    mx.tl.feature_relevance(mdata, model, groupby="label", n_samples=4, max_cells_per_group=5, progress_bar=True)
    assert "feature relevance" in capsys.readouterr().err
    before = mx.settings.progress_bar
    try:
        mx.settings.progress_bar = False
        mx.tl.feature_relevance(mdata, model, groupby="label", n_samples=4, max_cells_per_group=5, key_added="r2")
        assert "feature relevance:" not in capsys.readouterr().err
    finally:
        mx.settings.progress_bar = before


def test_auto_does_not_use_deep_explainer_through_a_softmax_module():
    """shap's rule for nn.Softmax is element-wise (p_k credited through logit k only): wrong, though additive."""
    mdata, model = _tiny_mudata(), _TinyModel(12, ["a", "b", "c"])
    model.net[-1] = nn.Softmax(dim=-1)
    assert deep_supported(model.net) == (False, ["Softmax"])
    feature_relevance(mdata, model, groupby="group", n_samples=20, key_added="auto")
    assert mdata.uns["auto"]["params"]["method"] == "expected_gradients"


def test_a_groups_values_do_not_depend_on_the_other_groups_asked_for(fitted):
    mdata, model = fitted
    data = mdata.copy()
    options = {"groupby": "cell_type", "n_samples": 10, "max_cells_per_group": 20, "background": "own_group"}
    feature_relevance(data, model, groups=["B"], key_added="alone", **options)
    feature_relevance(data, model, key_added="all", **options)
    pd.testing.assert_frame_equal(data.uns["alone"]["groups"]["B"], data.uns["all"]["groups"]["B"])


def test_backed_sparse_input_gives_the_in_memory_result(fitted, tmp_path):
    mdata, model = fitted
    data = md.MuData({m: ad.AnnData(sparse.csr_matrix(a.X), obs=a.obs.copy(), var=a.var.copy())
                      for m, a in mdata.mod.items()})
    data.obs["cell_type"] = mdata.obs["cell_type"].to_numpy()
    data.write(tmp_path / "sparse.h5mu")
    backed = md.read_h5mu(tmp_path / "sparse.h5mu", backed="r")
    assert not sparse.issparse(backed.mod["src"].X)  # anndata's on-disk sparse dataset
    options = {"groupby": "cell_type", "n_samples": 5, "max_cells_per_group": 20}
    feature_relevance(data, model, **options)
    feature_relevance(backed, model, **options)
    for group in ("A", "B", "C"):
        pd.testing.assert_frame_equal(backed.uns["relevance"]["groups"][group], data.uns["relevance"]["groups"][group],
                                      check_exact=False, rtol=1e-5, atol=1e-7)


def test_cross_modal_relevance_refuses_a_target_with_other_cells_up_front(fitted):
    mdata, model = fitted
    data = md.MuData({"src": mdata["src"].copy(), "tgt": mdata["tgt"][:100].copy()})
    data.obs["cell_type"] = mdata.obs["cell_type"]
    with pytest.raises(ValueError, match="'tgt' has 100 observations that are not aligned"):
        feature_relevance(data, model, groupby="cell_type", kind="cross_modal", source="src", target="tgt")
    assert "relevance_src_to_tgt" not in data.uns


def test_groupby_defaults_to_the_label_column_the_model_was_trained_on(fitted):
    mdata, model = fitted
    data = mdata.copy()
    options = {"n_samples": 5, "max_cells_per_group": 10}
    feature_relevance(data, model, key_added="default", **options)
    feature_relevance(data, model, groupby="cell_type", key_added="named", **options)
    assert data.uns["default"]["params"]["groupby"] == "cell_type"
    pd.testing.assert_frame_equal(data.uns["default"]["groups"]["B"], data.uns["named"]["groups"]["B"])
    with pytest.raises(ValueError, match="groupby= is needed"):
        feature_relevance(data, _TinyModel(30, ["A", "B", "C"]), **options)


def test_ensemble_members_must_read_the_same_layers():
    mdata = _tiny_mudata()
    mdata.mod["rna"].layers["counts"] = np.abs(mdata.mod["rna"].X)
    first, other = _TinyModel(12, ["a", "b", "c"]), _TinyModel(12, ["a", "b", "c"], seed=1)
    counts = other.relevance_adapter()
    counts.layers = {"rna": "counts"}
    other.relevance_adapter = lambda: counts
    with pytest.raises(ValueError, match="features, layers or classes"):
        feature_relevance(mdata, [first, other], groupby="group")


def test_dense_reads_backed_rows_in_any_order(tmp_path):
    import h5py

    from multiomix.explain._relevance import _dense

    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = x
    with h5py.File(tmp_path / "x.h5", "r") as f:
        np.testing.assert_array_equal(_dense(f["x"], np.array([7, 3, 7, 0])), x[[7, 3, 7, 0]])
        np.testing.assert_array_equal(_dense(f["x"], np.array([9, 1]), np.array([2, 0])), x[[9, 1]][:, [2, 0]])


def test_explaining_leaves_the_modules_training_mode_as_it_was_and_output_checked():
    from multiomix.explain._relevance import cross_modal_relevance, group_relevance

    rng = np.random.default_rng(0)
    clf = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 3), nn.Softmax(-1)).train()
    x, bg = rng.normal(size=(10, 6)).astype(np.float32), rng.normal(size=(4, 6)).astype(np.float32)
    group_relevance(clf, [x], np.arange(10), 1, [bg], method="expected_gradients", n_samples=20)
    assert clf.training and clf[1].training
    translator = nn.Sequential(nn.Linear(6, 3), nn.Dropout(0.5)).train()
    cross_modal_relevance(translator, x, np.arange(10), bg, method="expected_gradients", n_samples=20)
    assert translator.training
    clf.eval()
    group_relevance(clf, [x], np.arange(10), 1, [bg], method="expected_gradients", n_samples=20)
    assert not clf.training
    mdata = planted_mudata(n_per_type=20)
    model = mx.tl.fit_unitednet(mdata, label_key="cell_type", max_epochs=1, latent_dim=8, hidden=(16,), n_heads=1,
                                progress_bar=False)
    with pytest.raises(ValueError, match="kind='cross_modal' explains the predicted target features"):
        feature_relevance(mdata, model, groupby="cell_type", kind="cross_modal", source="src", target="tgt",
                          output="log_odds")
