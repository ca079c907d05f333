"""Input guards: a user's own outputs are never overwritten, and bad input gets a clear error before any work.

Small synthetic data and one epoch per fit; each test checks that the refused call leaves the object as it was.
"""

from __future__ import annotations

import warnings

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest

import multiomix as mx
from multiomix.tl._results import check_replaceable, record_kind

warnings.filterwarnings("ignore", module="mudata")
md.set_options(pull_on_update=False)
FEATURES = {"rna": 10, "methylation": 10, "mirna": 5}
FAST = {"max_epochs": 1, "baseline": False, "progress_bar": False}
FAST_AE = {**FAST, "n_models": 1}


def _data(n: int = 80, seed: int = 0) -> md.MuData:
    return mx.datasets.synthetic_interaction_mudata(n, n_features=FEATURES, random_state=seed)


def _query(n: int = 40) -> md.MuData:
    query = _data(n, seed=1)
    del query.obs["label"]
    return query


def _state(obj) -> dict:
    """What a refused call must leave as it was: obs, obsm and uns (keys and values)."""
    return {"obs": obj.obs.copy(), "obsm": {k: np.array(v, copy=True) for k, v in obj.obsm.items()},
            "uns": {k: repr(v) for k, v in obj.uns.items()}}


def _assert_unchanged(obj, before: dict) -> None:
    pd.testing.assert_frame_equal(obj.obs, before["obs"])
    assert set(obj.obsm) == set(before["obsm"])
    for key, value in before["obsm"].items():
        np.testing.assert_array_equal(np.asarray(obj.obsm[key]), value)
    assert {k: repr(v) for k, v in obj.uns.items()} == before["uns"]


@pytest.fixture(scope="module")
def models():
    train = _data()
    return {"crossattomics": mx.tl.fit_crossattomics(train, label_key="label", **FAST),
            "mmae": mx.tl.fit_multimodal_ae(train, **FAST_AE)}


# 1. predict / the Genomic Interpreter keep a user's own obsm entries --------------------------------------------
@pytest.mark.parametrize(("key", "entries"), [("crossattomics", ["X_crossattomics", "crossattomics_proba"]),
                                               ("crossattomics", ["crossattomics_proba"]),
                                               ("mmae", ["X_mmae"])])
def test_predict_refuses_users_obsm(models, key, entries):
    query = _query()
    for entry in entries:
        query.obsm[entry] = np.arange(query.n_obs * 2, dtype=float).reshape(-1, 2)
    before = _state(query)
    with pytest.raises(ValueError, match=rf"\.obsm already has .*'{entries[0]}'.*key_added='{key}'"):
        mx.tl.predict(query, models[key])
    _assert_unchanged(query, before)
    mx.tl.predict(query, models[key], key_added="scored")  # another key works
    assert "X_scored" in query.obsm


@pytest.mark.parametrize("key", ["crossattomics", "mmae"])
def test_predict_rerun_replaces_its_own_outputs(models, key):
    query = _query()
    mx.tl.predict(query, models[key])
    query.obsm[f"X_{key}"] = np.zeros_like(query.obsm[f"X_{key}"])
    mx.tl.predict(query, models[key])  # its own earlier outputs (uns[key] is its record) are replaced
    assert query.obsm[f"X_{key}"].any()


def test_genomic_interpreter_keeps_users_prediction_obsm():
    adata = mx.datasets.planted_motif_pairs(60, length=256)
    mine = np.arange(120.0).reshape(60, 2)
    adata.obsm["genomic_interpreter_prediction"] = mine.copy()
    before = _state(adata)
    with pytest.raises(ValueError, match=r"\['genomic_interpreter_prediction'\]"):
        mx.tl.fit_genomic_interpreter(adata, **FAST)
    _assert_unchanged(adata, before)
    model = mx.tl.fit_genomic_interpreter(adata, key_added="gi", **FAST)
    new = mx.datasets.planted_motif_pairs(20, length=256, random_state=1)
    new.obsm["genomic_interpreter_prediction"] = mine[:20].copy()
    before = _state(new)
    with pytest.raises(ValueError, match=r"\['genomic_interpreter_prediction'\]"):
        mx.tl.predict(new, model)
    _assert_unchanged(new, before)
    mx.tl.predict(new, model, key_added="gi")
    mx.tl.predict(new, model, key_added="gi")  # a rerun replaces its own
    np.testing.assert_array_equal(new.obsm["genomic_interpreter_prediction"], mine[:20])


# 2. a user's own uns entry under key_added ----------------------------------------------------------------------
def test_users_uns_entry_is_refused():
    mdata = _data()
    mdata.obs["leiden"] = pd.Categorical(np.where(np.arange(mdata.n_obs) % 2, "0", "1"))
    mdata.obs["k2"] = mdata.obs["label"]
    mdata.obsm["X_emb"] = np.random.default_rng(0).normal(size=(mdata.n_obs, 4))
    mdata.uns["leiden"] = {"params": {"resolution": 1.0, "n_iterations": -1}}  # what sc.tl.leiden writes
    mdata.uns["embedding_benchmark"] = {"my_notes": "scores from my own pipeline"}
    mdata.uns["consensus_clusters"] = {"my": "thing"}
    before = _state(mdata)
    calls = {"leiden": lambda: mx.tl.fit_crossattomics(mdata, label_key="label", key_added="leiden", **FAST),
             "embedding_benchmark": lambda: mx.tl.benchmark_embeddings(mdata, keys=["X_emb"], label_key="label",
                                                                       resolutions=[0.5]),
             "consensus_clusters": lambda: mx.tl.consensus_clusters(mdata, ["leiden", "k2"], n_clusters=2)}
    for key, call in calls.items():
        with pytest.raises(ValueError, match=rf"\.uns\['{key}'\] holds an entry that no multiomix function wrote"):
            call()
        _assert_unchanged(mdata, before)
    with pytest.raises(ValueError, match="pass another key_added|Pass another key_added"):
        check_replaceable(mdata, "leiden", "interaction_importance")


def test_records_are_ours_after_h5mu_round_trip(models, tmp_path):
    mdata = _data(60, seed=2)
    mdata.obsm["X_emb"] = np.random.default_rng(0).normal(size=(mdata.n_obs, 4))
    mx.tl.fit_crossattomics(mdata, label_key="label", **FAST)
    mx.tl.fit_multimodal_ae(mdata, **FAST_AE)
    mx.tl.predict(mdata, models["mmae"], key_added="scored")
    mx.tl.benchmark_embeddings(mdata, keys=["X_emb"], label_key="label", resolutions=[0.5])
    mdata.obs["k1"] = mdata.obs["crossattomics_prediction"].astype(str)
    mdata.obs["k2"] = mdata.obs["label"].astype(str)
    mx.tl.consensus_clusters(mdata, ["k1", "k2"], n_clusters=2)
    mdata.write_h5mu(tmp_path / "m.h5mu")
    back = md.read_h5mu(tmp_path / "m.h5mu")
    keys = ["crossattomics", "mmae", "scored", "embedding_benchmark", "consensus_clusters"]
    assert all(record_kind(back.uns[k]) is not None for k in keys)
    mx.tl.fit_crossattomics(back, label_key="label", **FAST)  # reruns replace their own records
    mx.tl.fit_multimodal_ae(back, **FAST_AE)
    mx.tl.predict(back, models["mmae"], key_added="scored")
    mx.tl.benchmark_embeddings(back, keys=["X_emb"], label_key="label", resolutions=[0.5])
    mx.tl.consensus_clusters(back, ["k1", "k2"], n_clusters=2)


# 3. no observations, modalities without features or matrix ---------------------------------------------------
def test_no_observations(models):
    empty = _data(40, seed=1)[:0].copy()
    before = _state(empty)
    for call in (lambda: mx.tl.fit_crossattomics(empty, label_key="label", **FAST),
                 lambda: mx.tl.fit_multimodal_ae(empty, **FAST_AE),
                 lambda: mx.tl.predict(empty, models["crossattomics"]),
                 lambda: mx.tl.predict(empty, models["mmae"]),
                 lambda: models["mmae"].get_latent_representation(empty)):
        with pytest.raises(ValueError, match="has no observations"):
            call()
        _assert_unchanged(empty, before)


@pytest.mark.parametrize("fit", [mx.tl.fit_crossattomics, mx.tl.fit_unitednet, mx.tl.fit_multimodal_ae])
def test_modality_without_features_or_matrix(fit):
    mdata = _data(60)
    mdata.mod["mirna"] = mdata["mirna"][:, []].copy()
    with pytest.raises(ValueError, match="Modality 'mirna' has 0 features"):
        fit(mdata, **FAST)
    mdata = _data(60)
    mdata.mod["mirna"] = ad.AnnData(obs=mdata["mirna"].obs, var=mdata["mirna"].var)
    before = _state(mdata)
    with pytest.raises(ValueError, match=r"Modality 'mirna' has no data: its \.X is empty \(None\).*set its \.X"):
        fit(mdata, **FAST)
    _assert_unchanged(mdata, before)


def test_predict_modality_without_features_or_matrix(models):
    query = _query()
    query.mod["mirna"] = query["mirna"][:, []].copy()
    with pytest.raises(ValueError, match="Modality 'mirna' has 0 features"):
        mx.tl.predict(query, models["crossattomics"])
    query = _query()
    source = query["mirna"]
    query.mod["mirna"] = ad.AnnData(obs=source.obs, var=source.var, layers={"counts": source.X.copy()})
    with pytest.raises(ValueError, match=r"\.X is empty \(None\); pass `layer=` naming .*'counts'"):
        mx.tl.predict(query, models["crossattomics"])


# 4. select_features: seurat_v3's trend cannot be fitted ---------------------------------------------------------
def test_select_features_loess_failure_is_explained():
    rng = np.random.default_rng(1)  # a valid count matrix on which scanpy's loess fails
    counts = rng.poisson(1.0, (60, 30)).astype(np.float32)
    rna = ad.AnnData(X=counts, var=pd.DataFrame(index=[f"g{i}" for i in range(30)]), layers={"counts": counts})
    mdata = md.MuData({"rna": rna})
    with pytest.raises(ValueError, match=r"seurat_v3 could not fit its trend.*flavor=\{'rna': 'variability'\}"):
        mx.pp.select_features(mdata, n_top={"rna": 10})
    assert "highly_variable" not in mdata["rna"].var
    mx.pp.select_features(mdata, n_top={"rna": 10}, flavor={"rna": "variability"})
    assert mdata["rna"].var["highly_variable"].sum() == 10


# 5. small things: split on too few rows, whole-number counts, per-tile obsm ------------------------------------
@pytest.mark.parametrize("n", [0, 1])
def test_split_too_few_rows(n):
    adata = ad.AnnData(np.ones((n, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="no rows|Too few rows"):
        mx.pp.split(adata)
    assert "split" not in adata.obs


def test_split_too_few_rows_for_validation_and_test():
    adata = ad.AnnData(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="too few to fill both validation and test"):
        mx.pp.split(adata, test_size=0.2, validation_size=0.2)
    mx.pp.split(adata)  # 1 train, 1 test
    assert adata.obs["split"].tolist() in (["train", "test"], ["test", "train"])


def test_counts_must_be_whole_numbers():
    mdata = _data(60)
    with pytest.raises(ValueError, match="n_comps must be a whole number >= 1, got 2.5"):
        mx.tl.pca_concat(mdata, n_comps=2.5, layer=None, kinds=dict.fromkeys(mdata.mod, "scaled"))
    mdata.obs["k1"] = mdata.obs["label"]
    mdata.obs["k2"] = mdata.obs["label"]
    with pytest.raises(ValueError, match="n_clusters must be a whole number >= 1, got '3'"):
        mx.tl.consensus_clusters(mdata, ["k1", "k2"], n_clusters="3")
    wsi = mx.datasets.synthetic_tile_bags(8, n_tiles=(3, 6), random_state=0)[0].mod["wsi"]
    with pytest.raises(ValueError, match="bag_size must be a whole number >= 1, got 2.5"):
        mx.io.sample_tile_bags(wsi, bag_size=2.5)


def test_sample_tile_bags_subsets_per_tile_2d_obsm():
    wsi = mx.datasets.synthetic_tile_bags(8, n_tiles=(3, 6), random_state=0)[0].mod["wsi"].copy()
    n_slots = wsi.obsm["tiles"].shape[1]
    wsi.obsm["tile_score"] = wsi.obsm["tiles"][..., 0].copy()  # one score per tile slot
    wsi.obsm["other"] = np.ones((wsi.n_obs, n_slots + 1))  # not per tile: copied as it is
    wsi.obsm["X_pca"] = np.arange(wsi.n_obs * n_slots, dtype=float).reshape(wsi.n_obs, n_slots)  # as wide, not per tile
    small = mx.io.sample_tile_bags(wsi, bag_size=2, per_tile_keys=["tile_score"], random_state=0)
    assert small.obsm["tile_score"].shape == (wsi.n_obs, 2)
    np.testing.assert_array_equal(small.obsm["tile_score"], small.obsm["tiles"][..., 0])
    np.testing.assert_array_equal(small.obsm["other"], wsi.obsm["other"])
    np.testing.assert_array_equal(small.obsm["X_pca"], wsi.obsm["X_pca"])  # not named: kept (with a warning)
    with pytest.raises(ValueError, match="per_tile_keys \\['other'\\]"):
        mx.io.sample_tile_bags(wsi, bag_size=2, per_tile_keys=["other"])


# 6. a misspelt keyword fails at once, also where nothing is trained ------------------------------------------------
@pytest.mark.parametrize("fit", ["crossattomics", "unitednet", "mmae"])
def test_misspelt_keyword_fails_and_leaves_the_object(fit):
    mdata = _data()
    before = _state(mdata)
    function = {"crossattomics": mx.tl.fit_crossattomics, "unitednet": mx.tl.fit_unitednet,
                "mmae": mx.tl.fit_multimodal_ae}[fit]
    label = {} if fit == "mmae" else {"label_key": "label"}
    with pytest.raises(TypeError, match=r"\['max_epoch'\]"):
        function(mdata, max_epoch=5, **label)
    _assert_unchanged(mdata, before)


def test_transfer_without_training_refuses_a_misspelt_keyword_and_keeps_a_model_train_option():
    reference, query = _data(), _query()
    with pytest.raises(TypeError, match=r"\['bogus_option'\]"):
        mx.tl.transfer_labels(reference, query, label_key="label", model="logistic", bogus_option=1)
    assert "label_transferred" not in query.obs
    mx.tl.fit_unitednet(reference, label_key="label", classification_repeats=2, **FAST)  # UnitedNet.train's own


def test_progress_bar_and_lightnings_enable_progress_bar_must_agree():
    mdata = _data()
    with pytest.raises(ValueError, match="disagree"):
        mx.tl.fit_crossattomics(mdata, label_key="label", max_epochs=1, baseline=False, progress_bar=False,
                                enable_progress_bar=True)
    mx.tl.fit_crossattomics(mdata, label_key="label", max_epochs=1, baseline=False, enable_progress_bar=False)


def test_split_with_single_row_classes_checks_the_rows_it_splits():
    adata = ad.AnnData(np.zeros((3, 1), np.float32), obs=pd.DataFrame({"t": ["a", "a", "b"]}, index=["x", "y", "z"]))
    with pytest.raises(ValueError, match="Too few labelled rows"):
        mx.pp.split(adata, label_key="t", test_size=0.2, validation_size=0.2)
    assert "split" not in adata.obs


def test_med_crossvit_accepts_nan_in_padded_slots_only():
    mdata = mx.datasets.synthetic_tile_bags(60, random_state=0)[0]
    tiles, mask = mdata.mod["wsi"].obsm["tiles"], mdata.mod["wsi"].obsm["tile_mask"].astype(bool)
    assert (~mask).any()
    tiles[~mask] = np.nan
    mx.tl.fit_med_crossvit(mdata, label_key="label", max_epochs=1, baseline=False, progress_bar=False)
    tiles[np.argwhere(mask)[0][0], np.argwhere(mask)[0][1], 0] = np.nan
    with pytest.raises(ValueError, match="real tiles"):
        mx.tl.fit_med_crossvit(mdata, label_key="label", max_epochs=1, baseline=False, progress_bar=False,
                               key_added="again")


def test_attention_maps_refuse_a_users_uns_entry():
    adata = mx.datasets.planted_motif_pairs(120, length=64, distance=16, random_state=0)
    model = mx.tl.fit_genomic_interpreter(adata, max_epochs=1, baseline=False, progress_bar=False)
    adata.uns["notes"] = {"mine": 1}
    with pytest.raises(ValueError, match="no multiomix function wrote"):
        mx.tl.attention_maps(adata, model, regions=[0], key_added="notes")
    assert adata.uns["notes"] == {"mine": 1}
    mx.tl.attention_maps(adata, model, regions=[0])  # into the fit's record, as before
    assert "attention" in adata.uns["genomic_interpreter"]
