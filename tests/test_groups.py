"""Feature modules (``mx.pp.group_features``), GMT gene sets, and CrossAttOmics groups read from a ``var`` column."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from mudata import MuData
from scipy import sparse
from sklearn.metrics import adjusted_rand_score

import multiomix as mx

FAST = {"max_epochs": 2, "enable_progress_bar": False, "batch_size": 128}


def _modules(n_obs: int = 200, sizes=(12, 9, 5), noise: float = 0.3, seed: int = 0):
    """Features driven by one of ``len(sizes)`` latent factors each (a planted module), features shuffled."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n_obs, len(sizes)))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    order = rng.permutation(len(truth))
    truth = truth[order]
    x = factors[:, truth] * rng.uniform(0.5, 2.0, len(truth)) + noise * rng.normal(size=(n_obs, len(truth)))
    return x.astype(np.float32), truth


def test_group_features_recovers_planted_modules():
    x, truth = _modules()
    adata = ad.AnnData(x)
    mx.pp.group_features(adata, n_groups=3)
    found = adata.var["feature_group"]
    assert isinstance(found.dtype, pd.CategoricalDtype)
    assert list(found.cat.categories) == ["module0", "module1", "module2"]
    assert adjusted_rand_score(truth, found.cat.codes) == 1.0
    assert found.value_counts().tolist() == [12, 9, 5]  # numbered by decreasing size


def test_group_features_sparse_equals_dense_and_row_sample():
    x, truth = _modules(n_obs=300)
    dense, sparse_ = ad.AnnData(x), ad.AnnData(sparse.csr_matrix(x))
    for adata in (dense, sparse_):
        mx.pp.group_features(adata, n_groups=3, random_state=1)
    assert (dense.var["feature_group"] == sparse_.var["feature_group"]).all()
    sampled = mx.pp.group_features(ad.AnnData(x), n_groups=3, max_rows=100, copy=True)
    assert adjusted_rand_score(truth, sampled.var["feature_group"].cat.codes) == 1.0


def test_group_features_mudata_selected_modalities_and_default_size():
    x, _ = _modules(sizes=(30, 25, 25))
    mdata = MuData({"rna": ad.AnnData(x), "other": ad.AnnData(x[:, :10].copy())})
    out = mx.pp.group_features(mdata, "rna", copy=True)
    assert "feature_group" not in mdata["rna"].var  # copy=True leaves the object alone
    assert "feature_group" not in out["other"].var
    assert out["rna"].var["feature_group"].nunique() == 4  # default: about 20 features a module


def test_group_features_bad_input_leaves_object_untouched():
    x, _ = _modules()
    mdata = MuData({"rna": ad.AnnData(x), "b": ad.AnnData(x[:, :5].copy())})
    with pytest.raises(ValueError, match="n_groups must be between 1 and the 5 features of b"):
        mx.pp.group_features(mdata, n_groups={"rna": 3, "b": 9})
    assert "feature_group" not in mdata["rna"].var  # nothing written before the error
    with pytest.raises(ValueError, match="not grouped here"):
        mx.pp.group_features(mdata, "rna", n_groups={"b": 2})
    nan = ad.AnnData(np.where(np.eye(*x.shape, dtype=bool), np.nan, x))
    with pytest.raises(ValueError, match="NaN"):
        mx.pp.group_features(nan)
    with pytest.raises(TypeError, match="AnnData or a MuData"):
        mx.pp.group_features(x)


def test_read_gmt(tmp_path):
    path = tmp_path / "sets.gmt"
    path.write_text("SET_A\tdescription\tg1\tg2\tg1\t\nSET_B\thttp://x\tg3\n\n")
    assert mx.io.read_gmt(path) == {"SET_A": ["g1", "g2"], "SET_B": ["g3"]}
    path.write_text("SET_A\tg1\n")
    with pytest.raises(ValueError, match="line 1: a GMT line needs a name, a description and at least one gene"):
        mx.io.read_gmt(path)
    path.write_text("SET_A\td\tg1\nSET_A\td\tg2\n")
    with pytest.raises(ValueError, match="appears twice"):
        mx.io.read_gmt(path)


@pytest.fixture
def small() -> MuData:
    mdata = mx.datasets.synthetic_interaction_mudata(120, n_features={"rna": 20, "methylation": 15, "mirna": 10})
    mx.pp.split(mdata, label_key="label", test_size=0.25, random_state=0)
    return mdata


def test_crossattomics_groups_from_var_column_survive_save_load(small, tmp_path):
    mx.pp.group_features(small, n_groups={"rna": 4, "methylation": 3, "mirna": 2})
    column = small["rna"].var["feature_group"].astype(object)
    column.iloc[0] = None  # a feature in no group
    small["rna"].var["feature_group"] = column
    model = mx.tl.fit_crossattomics(small, label_key="label", groups="feature_group", baseline=False, **FAST)
    names = small["rna"].var_names
    got = {g: [names[i] for i in idx] for g, idx in zip(model.group_names_["rna"], model.feature_groups_["rna"])}
    want = {g: list(names[(column == g).to_numpy()]) for g in column.dropna().unique()}
    assert got == want and names[0] not in sum(got.values(), [])
    assert len(model.feature_groups_["mirna"]) == 2
    model.save(tmp_path / "model")
    for m in small.mod:  # the groups are stored with the model, not re-read from var
        del small[m].var["feature_group"]
    loaded = mx.models.CrossAttOmics.load(tmp_path / "model", adata=small)
    assert loaded.feature_groups_ == model.feature_groups_
    np.testing.assert_allclose(loaded.predict_proba().to_numpy(), model.predict_proba().to_numpy(), atol=1e-6)


def test_crossattomics_groups_column_mixed_with_random_and_missing_column(small):
    mx.pp.group_features(small, "rna", n_groups=5)
    model = mx.tl.fit_crossattomics(small, label_key="label", groups={"rna": "feature_group", "methylation": 4},
                                    baseline=False, **FAST)
    assert len(model.feature_groups_["rna"]) == 5 and len(model.feature_groups_["methylation"]) == 4
    with pytest.raises(KeyError, match="names no column of .mod\\['methylation'\\].var"):
        mx.tl.fit_crossattomics(small, label_key="label", groups="feature_group", baseline=False, **FAST)


def test_group_features_never_splits_identical_features_into_more_modules_than_profiles(caplog):
    rng = np.random.default_rng(0)
    x = np.hstack([np.repeat(rng.normal(size=(30, 2)), 3, axis=1), np.ones((30, 2))])  # 2 profiles x 3, 2 constant
    adata = ad.AnnData(x.astype(np.float32))
    with caplog.at_level("WARNING", logger="multiomix"):
        mx.pp.group_features(adata, n_groups=5)
    found = adata.var["feature_group"].cat.codes.to_numpy()
    assert "vary in only 3 distinct ways" in caplog.text
    assert len(set(found[:3])) == 1 and len(set(found[3:6])) == 1 and len(set(found[6:])) == 1
    assert adata.var["feature_group"].value_counts().min() > 0  # no empty module


def test_crossattomics_view_carries_only_the_groups_column(small, tmp_path):
    mx.pp.group_features(small, n_groups={"rna": 3, "methylation": 3, "mirna": 2})
    small["rna"].var["mixed"] = ["a", 1] * 10  # a column AnnData cannot write
    model = mx.tl.fit_crossattomics(small, label_key="label", groups="feature_group", baseline=False, **FAST)
    assert list(model.adata["rna"].var.columns) == ["feature_group"]
    model.save(tmp_path / "m", save_anndata=True)
    with pytest.raises(KeyError, match="no column of .mod\\['rna'\\].var \\(columns: \\['feature_group', 'mixed'"):
        mx.tl.fit_crossattomics(small, label_key="label", groups="other", baseline=False, **FAST)
