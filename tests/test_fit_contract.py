"""The fit contract (docs/conventions.md), checked for every fit: keys written, bad input leaves the object
identical, h5mu round trip, save/load into reordered features, unlabelled new cohorts, label inference and
determinism under a seed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import anndata as ad
import matplotlib
import mudata as md
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import multiomix as mx

matplotlib.use("Agg")
md.set_options(pull_on_update=False)


@dataclass
class Case:
    """One fit under the contract."""

    name: str
    make: Callable[[], md.MuData]
    fit: Callable[..., object]
    label_key: str | None
    key: str
    classifier: bool = True
    fit_kwargs: dict = field(default_factory=dict)


def _interaction(n: int = 160) -> md.MuData:
    mdata = mx.datasets.synthetic_interaction_mudata(n, n_features={"rna": 20, "methylation": 20, "mirna": 10})
    for m in mdata.mod.values():
        m.uns.clear()
    mdata.uns.clear()
    return mdata


def _tiles(n: int = 120) -> md.MuData:
    mdata, _ = mx.datasets.synthetic_tile_bags(n, n_tiles=(6, 10), tile_dim=8, n_genes=12)
    return mdata


CASES = [
    Case("crossattomics", _interaction, mx.tl.fit_crossattomics, "label", "crossattomics",
         fit_kwargs={"max_epochs": 2, "progress_bar": False}),
    Case("med_crossvit", _tiles, mx.tl.fit_med_crossvit, "label", "medcrossvit",
         fit_kwargs={"max_epochs": 2, "progress_bar": False}),
    Case("unitednet", _interaction, mx.tl.fit_unitednet, "label", "unitednet",
         fit_kwargs={"max_epochs": 2, "progress_bar": False, "latent_dim": 8, "hidden": (16,), "n_heads": 2}),
    Case("multimodal_ae", _interaction, mx.tl.fit_multimodal_ae, None, "mmae", classifier=False,
         fit_kwargs={"max_epochs": 2, "progress_bar": False}),
]


def _featured(mdata: md.MuData) -> str:
    """The first modality with at least two features."""
    return next(m for m, a in mdata.mod.items() if a.n_vars > 1)


def _snapshot(mdata: md.MuData) -> dict:
    def adata_state(a):
        x = a.X.toarray() if sparse.issparse(a.X) else np.asarray(a.X)
        return {"obs": a.obs.copy(), "var": a.var.copy(), "X": x.copy(), "obsm": {k: np.asarray(v).copy()
                for k, v in a.obsm.items()}, "uns": sorted(a.uns.keys()), "layers": sorted(a.layers.keys())}

    return {"obs": mdata.obs.copy(), "obsm": {k: np.asarray(v).copy() for k, v in mdata.obsm.items()},
            "uns": sorted(mdata.uns.keys()), "mods": {k: adata_state(a) for k, a in mdata.mod.items()},
            "order": list(mdata.mod.keys())}


def _assert_unchanged(before: dict, mdata: md.MuData) -> None:
    after = _snapshot(mdata)
    pd.testing.assert_frame_equal(before["obs"], after["obs"])
    assert before["uns"] == after["uns"] and before["order"] == after["order"]
    assert before["obsm"].keys() == after["obsm"].keys()
    for name, state in before["mods"].items():
        other = after["mods"][name]
        pd.testing.assert_frame_equal(state["obs"], other["obs"])
        pd.testing.assert_frame_equal(state["var"], other["var"])
        np.testing.assert_array_equal(state["X"], other["X"])
        assert state["obsm"].keys() == other["obsm"].keys()
        assert state["uns"] == other["uns"] and state["layers"] == other["layers"]


def _reordered(mdata: md.MuData, drop_label: str | None) -> md.MuData:
    """The same cells with every modality's features reversed (plus one extra feature) and no label column."""
    mods = {}
    for name, a in mdata.mod.items():
        b = a[:, a.var_names[::-1]].copy()
        mods[name] = b
    new = md.MuData(mods)
    if drop_label is None:
        return new
    return new


@pytest.fixture(params=CASES, ids=lambda c: c.name)
def case(request) -> Case:
    return request.param


@pytest.fixture
def fitted(case, tmp_path):
    mdata = case.make()
    model = case.fit(mdata, label_key=case.label_key, random_state=0, **case.fit_kwargs)
    return case, mdata, model


def test_keys_written_match_the_conventions(fitted):
    case, mdata, _ = fitted
    key = case.key
    assert f"X_{key}" in mdata.obsm and mdata.obsm[f"X_{key}"].dtype == np.float32
    info = mdata.uns[key]
    assert {"params", "history", "n_train", "n_validation", "n_test"} <= set(info)
    if case.classifier:
        assert isinstance(mdata.obs[f"{key}_prediction"].dtype, pd.CategoricalDtype)
        assert mdata.obs[f"{key}_confidence"].between(0, 1).all()
        assert mdata.obsm[f"{key}_proba"].shape == (mdata.n_obs, len(info["classes"]))
        assert {"accuracy", "macro_f1", "n"} <= set(info["test_metrics"])
        assert {"accuracy", "macro_f1"} <= set(info["baseline"]["test_metrics"])
        # no split existed: a stratified 20 % test split was written, and the validation rows it held out
        counts = mdata.obs["split"].value_counts()
        assert counts["test"] == pytest.approx(0.2 * mdata.n_obs, abs=1)
        assert (counts["train"], counts["validation"]) == (info["n_train"], info["n_validation"])


def test_h5mu_round_trip(fitted, tmp_path):
    case, mdata, _ = fitted
    path = tmp_path / "fit.h5mu"
    mdata.write_h5mu(path)
    back = md.read_h5mu(path)
    np.testing.assert_allclose(back.obsm[f"X_{case.key}"], mdata.obsm[f"X_{case.key}"])
    assert set(back.uns[case.key]) >= {"params", "history"}
    if case.classifier:
        assert back.obs[f"{case.key}_prediction"].astype(str).tolist() == \
            mdata.obs[f"{case.key}_prediction"].astype(str).tolist()


def test_new_unlabelled_cohort_with_reordered_features_is_scored_identically(fitted, tmp_path):
    case, mdata, model = fitted
    new = _reordered(mdata, case.label_key)
    assert case.label_key is None or case.label_key not in new.obs.columns
    if case.classifier:
        expected = model.predict_proba(mdata)
        got = model.predict_proba(new)
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-6)
        mx.tl.predict(new, model, key_added=case.key)
        assert new.obs[f"{case.key}_prediction"].astype(str).tolist() == \
            mdata.obs[f"{case.key}_prediction"].astype(str).tolist()
    np.testing.assert_allclose(model.get_latent_representation(new), mdata.obsm[f"X_{case.key}"], atol=1e-5)
    # save, then load into reordered features: identical predictions
    model.save(tmp_path / "model", overwrite=True)
    loaded = type(model).load(tmp_path / "model", adata=new)
    np.testing.assert_allclose(loaded.get_latent_representation(), mdata.obsm[f"X_{case.key}"], atol=1e-5)
    # a missing feature names the modality
    first = next(m for m, names in model.feature_names_.items() if len(names) > 1)
    lacking = md.MuData({k: (a[:, 1:].copy() if k == first else a) for k, a in new.mod.items()})
    with pytest.raises(KeyError, match=first):
        model.get_latent_representation(lacking)


def test_label_column_is_inferred(case):
    if case.label_key is None:
        pytest.skip("unsupervised fit")
    mdata = case.make()
    case.fit(mdata, random_state=0, **case.fit_kwargs)
    assert mdata.uns[case.key]["params"]["label_key"] == case.label_key
    mdata.obs["other"] = pd.Categorical(np.where(np.arange(mdata.n_obs) % 2, "x", "y"))
    before = _snapshot(mdata)
    with pytest.raises(ValueError, match="candidates"):
        case.fit(mdata, random_state=0, split_key="other_split", **case.fit_kwargs)
    _assert_unchanged(before, mdata)


def test_rows_without_label_are_predicted_not_trained_on(case):
    if case.label_key is None:
        pytest.skip("unsupervised fit")
    mdata = case.make()
    labels = mdata.obs[case.label_key].astype(object)
    labels.iloc[:10] = np.nan
    mdata.obs[case.label_key] = labels
    case.fit(mdata, label_key=case.label_key, random_state=0, **case.fit_kwargs)
    assert mdata.obs[f"{case.key}_prediction"].iloc[:10].notna().all()
    assert mdata.obs["split"].iloc[:10].isna().all()


def test_deterministic_under_random_state(case):
    a, b = case.make(), case.make()
    case.fit(a, label_key=case.label_key, random_state=3, **case.fit_kwargs)
    case.fit(b, label_key=case.label_key, random_state=3, **case.fit_kwargs)
    np.testing.assert_array_equal(a.obsm[f"X_{case.key}"], b.obsm[f"X_{case.key}"])


def _duplicate_names(mdata):
    names = list(mdata.obs_names)
    names[1] = names[0]
    for a in mdata.mod.values():
        a.obs_names = names
    mdata.update()


def _unaligned(mdata):
    first = list(mdata.mod)[0]
    a = mdata.mod[first]
    a.obs_names = list(a.obs_names[1:]) + [a.obs_names[0]]


def _nan(mdata):
    first = _featured(mdata)
    x = np.asarray(mdata.mod[first].X, dtype=np.float32).copy()
    x[0, 0] = np.nan
    mdata.mod[first].X = x


def _single_class(mdata, label_key):
    mdata.obs[label_key] = pd.Categorical(["only"] * mdata.n_obs)


def _too_few_rows(mdata, label_key):
    keep = mdata.obs_names[:2]
    return mdata[keep].copy()


@pytest.mark.parametrize("breakage", ["duplicate_names", "unaligned", "nan", "single_class", "too_few_rows"])
def test_bad_input_raises_before_training_and_leaves_the_object_identical(case, breakage):
    mdata = case.make()
    if breakage == "duplicate_names":
        _duplicate_names(mdata)
    elif breakage == "unaligned":
        _unaligned(mdata)
    elif breakage == "nan":
        _nan(mdata)
    elif breakage == "single_class":
        if case.label_key is None:
            pytest.skip("unsupervised fit")
        _single_class(mdata, case.label_key)
    elif breakage == "too_few_rows":
        mdata = _too_few_rows(mdata, case.label_key)
    before = _snapshot(mdata)
    with pytest.raises((ValueError, KeyError)):
        case.fit(mdata, label_key=case.label_key, random_state=0, **case.fit_kwargs)
    _assert_unchanged(before, mdata)


# ----------------------------------------------------------------------------- Genomic Interpreter (AnnData)

GI_FAST = {"max_epochs": 1, "progress_bar": False, "backbone": "cnn_maxpool", "batch_size": 32}


def _regions(n: int = 80):
    adata = mx.datasets.planted_motif_pairs(n, length=64, distance=12, n_bins=4, random_state=1)
    del adata.obs["split"]  # the fit makes its own
    return adata


def _adata_snapshot(adata) -> dict:
    return {"obs": adata.obs.copy(), "X": np.asarray(adata.X).copy(), "obsm": sorted(adata.obsm.keys()),
            "uns": sorted(adata.uns.keys()), "var": adata.var.copy()}


def _assert_adata_unchanged(before: dict, adata) -> None:
    after = _adata_snapshot(adata)
    pd.testing.assert_frame_equal(before["obs"], after["obs"])
    pd.testing.assert_frame_equal(before["var"], after["var"])
    np.testing.assert_array_equal(before["X"], after["X"])
    assert before["obsm"] == after["obsm"] and before["uns"] == after["uns"]


def test_genomic_interpreter_keys_round_trip_and_determinism(tmp_path):
    a, b = _regions(), _regions()
    model = mx.tl.fit_genomic_interpreter(a, random_state=2, **GI_FAST)
    mx.tl.fit_genomic_interpreter(b, random_state=2, **GI_FAST)
    key = "genomic_interpreter"
    assert f"{key}_prediction" in a.obsm and "test_metrics" in a.uns[key]
    assert a.obs["split"].value_counts()["test"] == 16
    np.testing.assert_array_equal(a.obsm[f"{key}_prediction"], b.obsm[f"{key}_prediction"])
    np.testing.assert_allclose(model.predict(a), a.obsm[f"{key}_prediction"], rtol=1e-5)
    new = _regions()
    mx.tl.predict(new, model)
    np.testing.assert_allclose(new.obsm[f"{key}_prediction"], a.obsm[f"{key}_prediction"], rtol=1e-5)
    a.write_h5ad(tmp_path / "regions.h5ad")
    back = ad.read_h5ad(tmp_path / "regions.h5ad")
    np.testing.assert_allclose(back.obsm[f"{key}_prediction"], a.obsm[f"{key}_prediction"])


@pytest.mark.parametrize("breakage", ["duplicate_names", "nan", "too_few_rows"])
def test_genomic_interpreter_bad_input_leaves_the_object_identical(breakage):
    adata = _regions()
    if breakage == "duplicate_names":
        names = list(adata.obs_names)
        names[1] = names[0]
        adata.obs_names = names
    elif breakage == "nan":
        x = np.asarray(adata.X, dtype=np.float32).copy()
        x[0, 0] = np.nan
        adata.X = x
    else:
        adata = adata[:2].copy()
    before = _adata_snapshot(adata)
    with pytest.raises((ValueError, KeyError)):
        mx.tl.fit_genomic_interpreter(adata, **GI_FAST)
    _assert_adata_unchanged(before, adata)


# ----------------------------------------------------------------------------- transfer_labels, feature_relevance

UNITEDNET_FAST = {"max_epochs": 2, "progress_bar": False, "latent_dim": 8, "hidden": (16,), "n_heads": 2}


def _reference_query():
    mdata = _interaction(200)
    reference = mdata[:120].copy()
    query = mdata[120:].copy()
    del query.obs["label"]
    # the query's features come in another order
    query = md.MuData({k: a[:, a.var_names[::-1]].copy() for k, a in query.mod.items()})
    return reference, query


def test_transfer_labels_writes_only_under_key_added_and_round_trips(tmp_path):
    reference, query = _reference_query()
    before = _snapshot(reference)
    mx.tl.transfer_labels(reference, query, adapt_epochs=1, key_added="lt", **UNITEDNET_FAST)
    _assert_unchanged(before, reference)
    assert {"lt", "lt_confidence"} <= set(query.obs.columns)
    assert {"X_lt", "lt_proba"} <= set(query.obsm) and "lt" in query.uns
    assert query.obsm["lt_proba"].shape == (query.n_obs, len(query.uns["lt"]["classes"]))
    query.write_h5mu(tmp_path / "query.h5mu")
    back = md.read_h5mu(tmp_path / "query.h5mu")
    assert back.obs["lt"].astype(str).tolist() == query.obs["lt"].astype(str).tolist()


def test_transfer_labels_bad_query_leaves_both_objects_identical():
    reference, query = _reference_query()
    first = list(query.mod)[0]
    renamed = query.mod[first].copy()
    renamed.var_names = [f"other_{name}" for name in renamed.var_names]  # no feature shared by name
    query = md.MuData({k: (renamed if k == first else a) for k, a in query.mod.items()})
    before_ref, before_query = _snapshot(reference), _snapshot(query)
    with pytest.raises(KeyError, match=f"Modality '{first}': the query has none of the reference's"):
        mx.tl.transfer_labels(reference, query, adapt_epochs=1, **UNITEDNET_FAST)
    _assert_unchanged(before_ref, reference)
    _assert_unchanged(before_query, query)


def test_feature_relevance_keys_round_trip_and_bad_input(tmp_path):
    mdata = _interaction(160)
    model = mx.tl.fit_crossattomics(mdata, max_epochs=2, progress_bar=False)
    mx.tl.feature_relevance(mdata, model, groupby="label", key_added="rel", n_samples=8)
    entry = mx.tl.get_result(mdata, "rel")
    assert {"groups", "params"} <= set(entry)
    mdata.write_h5mu(tmp_path / "rel.h5mu")
    assert "rel" in md.read_h5mu(tmp_path / "rel.h5mu").uns
    before = _snapshot(mdata)
    with pytest.raises(KeyError):
        mx.tl.feature_relevance(mdata, model, groupby="no_such_column", key_added="rel2")
    _assert_unchanged(before, mdata)


def test_a_view_is_fitted_and_scored_like_its_copy(case):
    """``mdata[rows]`` (an AnnData view with dense X) gives what ``mdata[rows].copy()`` gives."""
    mdata = case.make()
    rows = mdata.obs_names[10:]
    view, copy = mdata[rows], mdata[rows].copy()
    assert view.is_view and not sparse.issparse(view.mod[_featured(view)].X)
    model = case.fit(view, label_key=case.label_key, random_state=0, **case.fit_kwargs)
    case.fit(copy, label_key=case.label_key, random_state=0, **case.fit_kwargs)
    np.testing.assert_allclose(view.obsm[f"X_{case.key}"], copy.obsm[f"X_{case.key}"], atol=1e-6)
    np.testing.assert_allclose(model.get_latent_representation(mdata[:20]),
                               model.get_latent_representation(mdata[:20].copy()), atol=1e-6)


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_a_boolean_modality_is_fitted_as_zeros_and_ones(case, layout):
    """A boolean matrix (e.g. peaks present / absent) is read as 0/1, as ``mx.pp`` reads it, not refused."""
    mdata = case.make()
    name = _featured(mdata)
    x = np.asarray(mdata[name].X)
    present = x > np.median(x, axis=0)
    as_bool, as_float = mdata.copy(), mdata.copy()
    as_bool[name].X = present if layout == "dense" else sparse.csr_matrix(present)
    as_float[name].X = present.astype(np.float32) if layout == "dense" else sparse.csr_matrix(present, dtype=np.float32)
    model = case.fit(as_bool, label_key=case.label_key, random_state=0, **case.fit_kwargs)
    case.fit(as_float, label_key=case.label_key, random_state=0, **case.fit_kwargs)
    assert as_bool[name].X.dtype == bool  # the user's matrix is kept as given
    np.testing.assert_allclose(as_bool.obsm[f"X_{case.key}"], as_float.obsm[f"X_{case.key}"], atol=1e-5)
    np.testing.assert_allclose(model.get_latent_representation(as_bool[:20].copy()),
                               as_float.obsm[f"X_{case.key}"][:20], atol=1e-5)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_predict_writes_under_the_fits_key_and_warns_before_replacing_a_fit_record(fitted):
    case, mdata, model = fitted
    new = _reordered(mdata, case.label_key)
    mx.tl.predict(new, model)  # no key_added: the key the fit wrote (e.g. "mmae" for the autoencoder)
    np.testing.assert_allclose(new.obsm[f"X_{case.key}"], mdata.obsm[f"X_{case.key}"], atol=1e-5)
    records = _Records()
    logging.getLogger("multiomix").addHandler(records)
    try:
        mx.tl.predict(new, model)
        assert records.messages == []
        mx.tl.predict(mdata, model)
    finally:
        logging.getLogger("multiomix").removeHandler(records)
    assert any("record of a fit" in m for m in records.messages)


def test_metrics_and_scoring_print_no_engine_warnings():
    """A predicted class absent from the test rows, and CSC input scored after the fit: nothing printed."""
    import warnings

    from multiomix._metrics import classification_metrics

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert classification_metrics(["a", "a", "b"], ["a", "c", "b"])["accuracy"] == pytest.approx(2 / 3)
    mdata = _interaction(80)
    for a in mdata.mod.values():
        a.X = sparse.csc_matrix(a.X)
    model = mx.tl.fit_multimodal_ae(mdata, max_epochs=1, progress_bar=False, n_models=1)
    new = mdata.copy()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*sparse matrix is formatted as CSR")
        latent = model.get_latent_representation(new)
    np.testing.assert_allclose(latent, mdata.obsm["X_mmae"], atol=1e-5)


def test_a_backed_object_is_fitted_like_the_same_object_in_memory(case, tmp_path):
    """``read_h5mu(path, backed=True)``, dense and sparse: the fit reads the modalities into memory first."""
    mdata = case.make()
    sparse_mod = _featured(mdata)
    mdata.mod[sparse_mod].X = sparse.csr_matrix(mdata.mod[sparse_mod].X)
    mdata.write_h5mu(tmp_path / "data.h5mu")
    backed = md.read_h5mu(tmp_path / "data.h5mu", backed=True)
    in_memory = md.read_h5mu(tmp_path / "data.h5mu")
    assert backed.isbacked
    model = case.fit(backed, label_key=case.label_key, random_state=0, **case.fit_kwargs)
    case.fit(in_memory, label_key=case.label_key, random_state=0, **case.fit_kwargs)
    np.testing.assert_allclose(backed.obsm[f"X_{case.key}"], in_memory.obsm[f"X_{case.key}"], atol=1e-6)
    np.testing.assert_allclose(model.get_latent_representation(backed), in_memory.obsm[f"X_{case.key}"], atol=1e-5)
    backed.file.close()


def test_saved_with_its_data_loads_without_adata_and_scores_backed_reordered_features(fitted, tmp_path):
    """``save(save_anndata=True)`` then ``load(dir)``; a backed file with features in another order scores the same."""
    case, mdata, model = fitted
    model.save(tmp_path / "with_data", overwrite=True, save_anndata=True)
    loaded = type(model).load(tmp_path / "with_data")
    np.testing.assert_allclose(loaded.get_latent_representation(), mdata.obsm[f"X_{case.key}"], atol=1e-5)
    model.save(tmp_path / "prefixed", prefix="run1_")  # save's prefix, read back with adata given
    prefixed = type(model).load(tmp_path / "prefixed", adata=mdata, prefix="run1_")
    np.testing.assert_allclose(prefixed.get_latent_representation(), mdata.obsm[f"X_{case.key}"], atol=1e-5)
    _reordered(mdata, case.label_key).write_h5mu(tmp_path / "reordered.h5mu")
    backed = md.read_h5mu(tmp_path / "reordered.h5mu", backed=True)
    np.testing.assert_allclose(model.get_latent_representation(backed), mdata.obsm[f"X_{case.key}"], atol=1e-5)
    backed.file.close()


def test_a_single_row_last_minibatch_trains(case):
    """Training rows one more than a multiple of the batch size (BatchNorm cannot take a one-row batch)."""
    mdata = case.make(96)
    mdata.obs["split"] = pd.Categorical(["train"] * 65 + ["test"] * 31, categories=["train", "validation", "test"])
    case.fit(mdata, label_key=case.label_key, random_state=0, batch_size=64, validation_size=0.0, **case.fit_kwargs)
    assert (mdata.obs["split"] == "train").sum() == 65


def test_an_obs_column_of_the_user_is_never_overwritten(case, monkeypatch):
    """``key_added`` whose output column the user already has: a clear error before training, the object as it was."""
    if not case.classifier:
        pytest.skip("writes no obs column")
    mdata = case.make()
    mdata.obs["mine_prediction"] = "the user's"
    before = _snapshot(mdata)
    with monkeypatch.context() as patched:
        patched.setattr("multiomix.models.base._model.train_on_rows",
                        lambda *a, **k: pytest.fail("trained before refusing the key"))
        with pytest.raises(ValueError, match=r"mine_prediction.*key_added='mine'"):
            case.fit(mdata, label_key=case.label_key, key_added="mine", random_state=0, **case.fit_kwargs)
    _assert_unchanged(before, mdata)
    case.fit(mdata, label_key=case.label_key, random_state=0, **case.fit_kwargs)
    case.fit(mdata, label_key=case.label_key, random_state=1, **case.fit_kwargs)  # its own columns: replaced


def test_integer_labels_with_missing_values_keep_integer_class_names(case):
    """pandas stores integer labels with gaps as floats; the classes read '0', '1', not '0.0', '1.0'."""
    if case.label_key is None:
        pytest.skip("unsupervised fit")
    mdata = case.make()
    codes = pd.Categorical(mdata.obs[case.label_key]).codes.astype(float)
    codes[:4] = np.nan
    mdata.obs["code"] = codes
    model = case.fit(mdata, label_key="code", random_state=0, **case.fit_kwargs)
    expected = sorted({str(int(c)) for c in codes[4:]})
    assert sorted(map(str, model.classes)) == expected
    assert sorted(mdata.uns[case.key]["classes"]) == expected and mdata.uns[case.key]["test_metrics"]["n"] > 0
    assert set(mdata.obs[f"{case.key}_prediction"]) <= set(codes[4:])  # the column's own values


def test_predictions_carry_the_label_columns_categories(case):
    """In its order, with an unused category: ``labels == prediction`` works, as DESIGN.md asks."""
    if not case.classifier or case.label_key is None:
        pytest.skip("no label column")
    mdata = case.make()
    labels = mdata.obs[case.label_key].astype("category")
    order = [*reversed(labels.cat.categories), "never seen"]
    mdata.obs[case.label_key] = labels.cat.set_categories(order)
    case.fit(mdata, label_key=case.label_key, random_state=0, **case.fit_kwargs)
    prediction = mdata.obs[f"{case.key}_prediction"]
    assert list(prediction.cat.categories) == order
    assert 0 <= (mdata.obs[case.label_key] == prediction).mean() <= 1


@pytest.mark.parametrize("kind", ["int", "bool"])
def test_integer_or_boolean_labels_come_back_as_their_own_values(case, kind, tmp_path):
    """The model reads labels as text; the prediction column holds the label column's own values again."""
    if not case.classifier or case.label_key is None:
        pytest.skip("no label column")
    mdata = case.make()
    codes = pd.Categorical(mdata.obs[case.label_key]).codes
    mdata.obs["code"] = codes.astype(np.int64) * 3 if kind == "int" else codes == 0
    case.fit(mdata, label_key="code", random_state=0, **case.fit_kwargs)
    prediction = mdata.obs[f"{case.key}_prediction"]
    expected = sorted(set(mdata.obs["code"].tolist()))
    assert list(prediction.cat.categories) == expected
    assert all(type(c) is (int if kind == "int" else bool) for c in prediction.cat.categories)
    agreement = (mdata.obs["code"] == prediction).to_numpy()
    by_text = (mdata.obs["code"].astype(str) == prediction.astype(str)).to_numpy()
    np.testing.assert_array_equal(agreement, by_text)
    assert agreement.any()
    mdata.write_h5mu(tmp_path / "labels.h5mu")
    back = md.read_h5mu(tmp_path / "labels.h5mu")
    assert back.obs[f"{case.key}_prediction"].tolist() == prediction.tolist()


def test_a_modality_in_another_order_gets_a_recipe_that_works():
    """The same cells in another order in one modality: the error gives the one line that aligns it."""
    mdata = _interaction(80)
    shuffled = md.MuData({m: (a[::-1].copy() if m == "mirna" else a.copy()) for m, a in mdata.mod.items()})
    shuffled.obs["label"] = mdata.obs["label"].reindex(shuffled.obs_names)
    with pytest.raises(ValueError, match=r"another order.*mdata.mod\['mirna'\] = mdata\['mirna'\]\[mdata.obs_names\]"):
        mx.tl.fit_crossattomics(shuffled, max_epochs=1, baseline=False, progress_bar=False)
    shuffled.mod["mirna"] = shuffled["mirna"][shuffled.obs_names].copy()
    shuffled.update()
    mx.tl.fit_crossattomics(shuffled, max_epochs=1, baseline=False, progress_bar=False)
    assert "crossattomics" in shuffled.uns


def test_setup_mudata_refuses_a_view_modality_with_the_fix():
    """scvi-tools registers only actual objects: a modality built as ``rna[cells]`` is named, with the one-line fix."""
    mdata = _interaction(60)
    mods = {m: (a[mdata.obs_names] if m == "rna" else a.copy()) for m, a in mdata.mod.items()}
    built = md.MuData(mods)
    built.obs["label"] = mdata.obs["label"].to_numpy()
    assert built.mod["rna"].is_view
    with pytest.raises(ValueError, match=r"\['rna'\] are views.*mdata.mod\['rna'\] = mdata\['rna'\].copy\(\)"):
        mx.models.CrossAttOmics.setup_mudata(built, label_key="label")
    built.mod["rna"] = built["rna"].copy()
    mx.models.CrossAttOmics.setup_mudata(built, label_key="label")
    mx.models.CrossAttOmics(built).train(max_epochs=1, progress_bar=False)


def test_a_label_kept_only_in_a_modality_gets_the_pulled_name_suggested():
    from multiomix.tl._fit import resolve_label_key

    obs = pd.DataFrame({"rna:cell_type": ["a", "b"], "batch": ["x", "y"]})
    with pytest.raises(KeyError, match=r"pass label_key='rna:cell_type', or copy it to the MuData"):
        resolve_label_key(obs, "cell_type")
    with pytest.raises(KeyError, match=r"available columns: \['rna:cell_type', 'batch'\]\.\"$"):
        resolve_label_key(obs, "donor")  # no such column anywhere: no hint


def test_a_pulled_copy_of_the_label_is_not_a_second_candidate():
    from multiomix.tl._fit import label_candidates

    obs = pd.DataFrame({"rna:subtype": ["a", "a", "b", None], "subtype": ["a", "a", "b", "b"]})
    assert label_candidates(obs) == ["subtype"]
    obs["rna:subtype"] = ["a", "b", "a", "b"]  # other labels: both stay candidates
    assert label_candidates(obs) == ["rna:subtype", "subtype"]


def test_test_rows_of_classes_never_trained_on_are_named(caplog):
    import logging

    mdata = mx.datasets.synthetic_interaction_mudata(120, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    labels = mdata.obs["label"].astype(str).to_numpy().copy()
    labels[:2] = "rare"
    mdata.obs["label"] = pd.Categorical(labels)
    split = np.where(np.arange(mdata.n_obs) % 5 == 0, "test", "train").astype(object)
    split[:2] = "test"  # every 'rare' row is a test row
    mdata.obs["split"] = pd.Categorical(split)
    with caplog.at_level(logging.INFO, logger="multiomix"):
        mx.tl.fit_crossattomics(mdata, label_key="label", max_epochs=1, accelerator="cpu", progress_bar=False,
                                baseline=False)
    assert any("2 test rows of classes absent from training (['rare'])" in r.getMessage() for r in caplog.records)


def test_labels_all_missing_after_index_alignment_are_named(case):
    """Labels indexed by integer ids assigned to string obs_names become all NaN: said so, object unchanged."""
    if not case.classifier:
        pytest.skip("no label column")
    mdata = case.make()
    mdata.obs["subtype"] = pd.Series(np.resize(["A", "B"], mdata.n_obs), index=np.arange(mdata.n_obs) + 10_000)
    before = _snapshot(mdata)
    with pytest.raises(ValueError, match=r"Every one of the \d+ rows of \.obs\['subtype'\] is missing.*index"):
        case.fit(mdata, label_key="subtype", random_state=0, **case.fit_kwargs)
    _assert_unchanged(before, mdata)


def test_label_values_of_two_types_that_read_alike_are_merged_with_a_warning(caplog):
    """``1`` and ``'1'`` in one object column read as one class (labels are compared as text): said, not silent."""
    import logging

    mdata = mx.datasets.synthetic_interaction_mudata(120, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    labels = np.where(mdata.obs["label"].astype(str) == mdata.obs["label"].astype(str).iloc[0], "b", "a")
    mixed = labels.astype(object)
    mixed[(labels == "b") & (np.arange(mdata.n_obs) % 2 == 0)] = 1
    mixed[(labels == "b") & (np.arange(mdata.n_obs) % 2 == 1)] = "1"
    mdata.obs["mixed"], mdata.obs["plain"] = mixed, np.where(labels == "b", "1", "a")
    quiet = {"max_epochs": 1, "accelerator": "cpu", "progress_bar": False, "baseline": False}
    with caplog.at_level(logging.WARNING, logger="multiomix"):
        mx.tl.fit_crossattomics(mdata, label_key="plain", key_added="plain", **quiet)
    assert not [r for r in caplog.records if "read as the same class" in r.getMessage()]
    with caplog.at_level(logging.WARNING, logger="multiomix"):
        mx.tl.fit_crossattomics(mdata, label_key="mixed", key_added="mixed", **quiet)
    warned = [r.getMessage() for r in caplog.records if "read as the same class" in r.getMessage()]
    assert len(warned) == 1 and ("'1' and 1 -> '1'" in warned[0] or "1 and '1' -> '1'" in warned[0])
    assert sorted(mdata.uns["mixed"]["classes"]) == ["1", "a"]
    caplog.clear()
    mdata.obs["mixed_categorical"] = pd.Categorical(mixed)
    with caplog.at_level(logging.WARNING, logger="multiomix"):
        mx.tl.fit_crossattomics(mdata, label_key="mixed_categorical", key_added="mixed_categorical", **quiet)
    assert [r for r in caplog.records if "read as the same class" in r.getMessage()]


def test_one_function_never_replaces_another_function_s_record():
    mdata = mx.datasets.synthetic_interaction_mudata(120, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    quiet = {"accelerator": "cpu", "progress_bar": False}
    mx.tl.fit_crossattomics(mdata, label_key="label", max_epochs=1, key_added="ca", baseline=False, **quiet)
    mdata.obs["run1"], mdata.obs["run2"] = mdata.obs["label"], mdata.obs["label"]
    with pytest.raises(ValueError, match=r"\.uns\['ca'\] holds the results of a mx.tl.fit_\* function"):
        mx.tl.consensus_clusters(mdata, keys=["run1", "run2"], n_clusters=2, key_added="ca")
    mdata.obsm["X_emb"] = np.random.default_rng(0).normal(size=(mdata.n_obs, 4))
    with pytest.raises(ValueError, match=r"holds the results of a mx.tl.fit_\* function"):
        mx.tl.benchmark_embeddings(mdata, keys=["X_emb"], label_key="label", key_added="ca")
    mx.tl.consensus_clusters(mdata, keys=["run1", "run2"], n_clusters=2, key_added="cons")
    with pytest.raises(ValueError, match=r"holds the results of mx.tl.consensus_clusters"):
        mx.tl.fit_crossattomics(mdata, label_key="label", max_epochs=1, key_added="cons", **quiet)
    assert set(mdata.uns["ca"]) >= {"params", "history", "classes"}  # untouched
    # an embedding fit under a classifier's key: the classifier's outputs go, with the record they belonged to
    mx.tl.fit_multimodal_ae(mdata, max_epochs=1, latent_dim=4, hidden_dim=8, key_added="ca", n_models=1,
                            **quiet)
    assert "ca_prediction" not in mdata.obs and "ca_proba" not in mdata.obsm and "classes" not in mdata.uns["ca"]


def test_common_mistakes_get_clear_errors_and_leave_the_object_alone():
    mdata = mx.datasets.synthetic_interaction_mudata(80, n_features={"rna": 10, "methylation": 10, "mirna": 5})
    quiet = {"accelerator": "cpu", "progress_bar": False}
    model = mx.tl.fit_crossattomics(mdata, label_key="label", max_epochs=1, baseline=False, **quiet)
    with pytest.raises(ValueError, match=r"\.obs\['label'\] holds the user's own values"):
        mx.pp.split(mdata, label_key="label", key_added="label")
    assert set(mdata.obs["label"].astype(str)) == {"pos", "neg"}
    mx.pp.split(mdata, key_added="split")  # its own earlier split is replaced
    with pytest.raises(TypeError, match="expects a fitted multiomix model .* got NoneType"):
        mx.tl.predict(mdata, None)
    broken = mdata.copy()
    broken.mod["rna"].X[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"Modality 'rna' \(X\), the features the model reads, contains 1 NaN"):
        mx.tl.predict(broken, model, key_added="scored")
    assert "scored" not in broken.uns
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1, got 0"):
        mx.tl.predict(mdata, model, key_added="scored", batch_size=0)
    assert "scored" not in mdata.uns
    with pytest.raises(ValueError, match="target_sum must be a positive number"):
        mx.pp.normalize(mdata["rna"].copy(), target_sum=0)
    with pytest.raises(TypeError, match="wrap one sequence in a list"):
        mx.pp.one_hot_encode("ACGT")
    with pytest.raises(TypeError, match="explains a fitted CrossAttOmics .* got str"):
        mx.tl.interaction_importance(mdata, "crossattomics")
    with pytest.raises(TypeError, match="takes a cells x features matrix"):
        mx.pp.variability_score(mdata)
    one_cell = mx.datasets.bmmc_cite()[:1].copy()
    with pytest.raises(ValueError, match="seurat_v3 .* needs at least 10"):
        mx.pp.select_features(one_cell, n_top=10)


def test_a_class_with_one_row_stays_in_training_and_the_rest_is_stratified(caplog):
    """One rare class used to make the whole test split random; now only it is kept out of the hold-out."""
    from multiomix.tl._fit import _hold_out

    rng = np.random.default_rng(0)
    labels = pd.Series(np.r_[["rare"], np.repeat(["a", "b", "c"], [100, 40, 19])])
    rows = np.arange(len(labels))
    with caplog.at_level(logging.INFO, logger="multiomix"):
        kept, held = _hold_out(rows, labels, 0.2, what="a test set", random_state=int(rng.integers(100)))
    assert 0 in kept and len(held) == 32
    assert labels.iloc[held].value_counts().to_dict() == {"a": 20, "b": 8, "c": 4}  # stratified
    assert any("single labelled row stay in training (['rare'])" in r.getMessage() for r in caplog.records)
    caplog.clear()
    few = pd.Series(np.repeat(list("abcdefghij"), 3))
    with caplog.at_level(logging.INFO, logger="multiomix"):
        _hold_out(np.arange(30), few, 0.2, what="a test set", random_state=0)  # 6 rows cannot hold 10 classes
    assert any("drawn at random (not stratified)" in r.getMessage() for r in caplog.records)


def test_integer_label_columns_are_named_in_the_inference_error():
    mdata = mx.datasets.synthetic_interaction_mudata(60, n_features={"rna": 5, "methylation": 5, "mirna": 5})
    mdata.obs = pd.DataFrame({"code": mdata.obs["label"].cat.codes.astype(int).to_numpy()}, index=mdata.obs_names)
    with pytest.raises(ValueError, match="integer or boolean columns are never guessed.*label_key='code'"):
        mx.tl.fit_crossattomics(mdata, max_epochs=1, accelerator="cpu", progress_bar=False)
