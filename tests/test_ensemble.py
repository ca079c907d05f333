"""Seed ensembles (``n_models`` of the classifier fits): the written probabilities are the members' mean, every
member is trained on the same rows with its own seed, save/load and relevance take the ensemble, and bad
requests fail before anything is written."""

from __future__ import annotations

import mudata as md
import numpy as np
import pandas as pd
import pytest

import multiomix as mx

md.set_options(pull_on_update=False)

FITS = {
    "crossattomics": (mx.tl.fit_crossattomics, {"max_epochs": 3}),
    "medcrossvit": (mx.tl.fit_med_crossvit, {"max_epochs": 3}),
    "unitednet": (mx.tl.fit_unitednet, {"max_epochs": 3, "latent_dim": 8, "hidden": (16,), "n_heads": 2}),
}


def _mdata(n: int = 160) -> md.MuData:
    return mx.datasets.synthetic_interaction_mudata(n, n_features={"rna": 20, "methylation": 20, "mirna": 10})


def _tiles(n: int = 120) -> md.MuData:
    return mx.datasets.synthetic_tile_bags(n, n_tiles=(6, 10), tile_dim=8, n_genes=12)[0]


@pytest.mark.parametrize("name", list(FITS))
def test_fit_writes_the_mean_of_the_members(name):
    fit, kwargs = FITS[name]
    mdata = _tiles() if name == "medcrossvit" else _mdata()
    ensemble = fit(mdata, label_key="label", n_models=3, random_state=4, progress_bar=False, **kwargs)
    assert isinstance(ensemble, mx.models.SeedEnsemble) and len(ensemble) == 3
    assert [m.random_state for m in ensemble] == [4, 5, 6]
    probas = [m.predict_proba().to_numpy() for m in ensemble]
    assert not np.allclose(probas[0], probas[1])  # the seeds differ, so do the members
    written = mdata.obsm[f"{name}_proba"]
    np.testing.assert_allclose(written, np.mean(probas, axis=0), atol=1e-6)
    np.testing.assert_allclose(written.sum(1), 1.0, atol=1e-5)
    prediction = mdata.obs[f"{name}_prediction"].astype(str).to_numpy()
    assert (prediction == np.asarray(ensemble.classes)[written.argmax(1)]).all()
    np.testing.assert_allclose(mdata.obsm[f"X_{name}"], ensemble[0].get_latent_representation(), atol=1e-6)
    assert mdata.uns[name]["params"]["n_models"] == 3
    assert "baseline" in mdata.uns[name]


def test_ensemble_fit_survives_write_h5mu(tmp_path):
    mdata = _mdata(120)
    mx.tl.fit_crossattomics(mdata, label_key="label", n_models=2, max_epochs=2, progress_bar=False)
    mdata.write_h5mu(tmp_path / "fit.h5mu")
    back = md.read_h5mu(tmp_path / "fit.h5mu")
    np.testing.assert_allclose(back.obsm["crossattomics_proba"], mdata.obsm["crossattomics_proba"])
    assert int(back.uns["crossattomics"]["params"]["n_models"]) == 2
    assert len(back.uns["crossattomics"]["best_epoch_per_model"]) == 2


def test_save_load_round_trip(tmp_path):
    mdata = _mdata()
    ensemble = mx.tl.fit_crossattomics(mdata, label_key="label", n_models=2, max_epochs=2, progress_bar=False)
    ensemble.save(str(tmp_path / "ensemble"))
    with pytest.raises(ValueError, match="overwrite"):
        ensemble.save(str(tmp_path / "ensemble"))
    fresh = _mdata()
    loaded = mx.models.SeedEnsemble.load(str(tmp_path / "ensemble"), adata=fresh)
    assert len(loaded) == 2 and [m.random_state for m in loaded] == [0, 1]
    pd.testing.assert_frame_equal(loaded.predict_proba(fresh), ensemble.predict_proba(fresh), atol=1e-6)
    new = _mdata()
    del new.obs["label"]
    mx.tl.predict(new, loaded)
    np.testing.assert_allclose(new.obsm["crossattomics_proba"], ensemble.predict_proba(new).to_numpy(), atol=1e-6)
    assert new.uns["crossattomics"]["model"] == "CrossAttOmics ensemble of 2"
    with pytest.raises(FileNotFoundError, match="ensemble.json"):
        mx.models.SeedEnsemble.load(str(tmp_path / "ensemble" / "member_0"), adata=fresh)
    with pytest.raises(ValueError, match="SeedEnsemble.load"):  # the reverse mistake
        mx.models.CrossAttOmics.load(str(tmp_path / "ensemble"), adata=fresh)


def test_relevance_and_translation_take_the_ensemble():
    mdata = _mdata(120)
    ensemble = mx.tl.fit_unitednet(mdata, label_key="label", n_models=2, progress_bar=False, **FITS["unitednet"][1])
    mx.tl.feature_relevance(mdata, ensemble, groupby="label", n_samples=4, max_cells_per_group=5,
                            key_added="rel")
    assert mdata.uns["rel"]["params"]["n_models"] == 2
    query = md.MuData({"rna": mdata["rna"].copy()})
    mx.tl.predict_modality(query, ensemble, source="rna", target="mirna")
    translations = [m.translate(query, source="rna", target="mirna") for m in ensemble]
    np.testing.assert_allclose(np.asarray(query["mirna_from_rna"].X), np.mean(translations, axis=0), atol=1e-5)
    # an ensemble inside a list counts as its members
    mx.tl.predict_modality(query, [ensemble.members[0], ensemble], source="rna", target="mirna", key_added="three")
    assert query["three"].uns["predict_modality"]["n_models"] == 3
    np.testing.assert_allclose(np.asarray(query["three"].X), np.mean(translations + translations[:1], axis=0),
                               atol=1e-5)


def test_bad_requests_fail_before_writing():
    mdata = _mdata(120)
    keys = set(mdata.uns.keys()), set(mdata.obs.columns)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n_models must be a positive integer"):
            mx.tl.fit_crossattomics(mdata, label_key="label", n_models=bad, max_epochs=1, progress_bar=False)
    with pytest.raises(ValueError, match="mode='supervised'"):
        mx.tl.fit_unitednet(mdata, mode="unsupervised", n_models=2, max_epochs=1, progress_bar=False)
    assert (set(mdata.uns.keys()), set(mdata.obs.columns)) == keys
    ensemble = mx.tl.fit_crossattomics(mdata, label_key="label", n_models=2, max_epochs=1, progress_bar=False)
    with pytest.raises(TypeError, match="one network"):
        mx.tl.interaction_importance(mdata, ensemble)
    with pytest.raises(TypeError, match="member"):
        mx.tl.transfer_labels(mdata, mdata, label_key="label", model=ensemble)
    with pytest.raises(TypeError, match="one class"):
        mx.models.SeedEnsemble([ensemble[0], mx.tl.fit_unitednet(mdata, label_key="label", progress_bar=False,
                                                                  **FITS["unitednet"][1])])


def test_members_set_up_on_other_objects_score_the_same_rows():
    a, b = _mdata(120), _mdata(120)
    b = b[::-1].copy()  # the same patients in another order: member 1 is set up on another object
    first = mx.tl.fit_crossattomics(a, label_key="label", max_epochs=2, random_state=0, progress_bar=False)
    second = mx.tl.fit_crossattomics(b, label_key="label", max_epochs=2, random_state=1, progress_bar=False)
    ensemble = mx.models.SeedEnsemble([first, second])
    expected = (first.predict_proba().to_numpy(dtype=np.float64) + second.predict_proba(a).to_numpy()) / 2
    proba = ensemble.predict_proba()  # the rows of member 0's data, scored by both members
    assert list(proba.index) == list(a.obs_names)
    np.testing.assert_allclose(proba.to_numpy(), expected, atol=1e-6)
    mx.models.CrossAttOmics.setup_mudata(a, label_key="label")
    with pytest.raises(ValueError, match="not trained"):
        mx.models.SeedEnsemble([first, mx.models.CrossAttOmics(a)])
    other = _mdata(120)
    other.mod["rna"] = other["rna"][:, :15].copy()
    other.update()
    narrow = mx.tl.fit_crossattomics(other, label_key="label", max_epochs=1, progress_bar=False)
    with pytest.raises(ValueError, match="other features"):
        mx.models.SeedEnsemble([first, narrow])
