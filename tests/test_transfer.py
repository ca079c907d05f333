"""Annotation transfer: calibration, 'unknown' flags, model-agnostic paths and all-or-nothing outputs."""

from __future__ import annotations

import contextlib
import logging
import warnings

import anndata as ad
import matplotlib.pyplot as plt
import mudata as md
import numpy as np
import pandas as pd
import pytest

import multiomix as mx
from multiomix.tl import _transfer

FAST = {"max_epochs": 15, "adapt_epochs": 3, "latent_dim": 8, "hidden": (32,), "n_heads": 2, "projection_dim": 16,
        "accelerator": "cpu", "progress_bar": False}


def blobs(n: int = 300, *, types: int = 5, seed: int = 0, noise: float = 1.6, shift: float = 0.0) -> md.MuData:
    """``types`` Gaussian cell types in two modalities (overlapping: not every cell is separable)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(100).normal(scale=2.0, size=(types, 2, 20))
    y = rng.integers(0, types, n)
    mods = {}
    for k, name in enumerate(("rna", "adt")):
        x = centres[y, k] + noise * rng.normal(size=(n, 20)) + shift
        mods[name] = ad.AnnData(X=x.astype(np.float32), obs=pd.DataFrame(index=[f"c{seed}-{i}" for i in range(n)]),
                                var=pd.DataFrame(index=[f"{name}{j}" for j in range(20)]))
    mdata = md.MuData(mods)
    mdata.obs["cell_type"] = pd.Categorical([f"T{t}" for t in y])
    return mdata


@contextlib.contextmanager
def _no_warning_logged():
    """Collect the messages multiomix logs at warning level."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("multiomix")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def reference_query(novel: str = "T4"):
    reference = blobs(400, seed=1)
    reference = reference[reference.obs["cell_type"] != novel].copy()
    reference.obs["cell_type"] = reference.obs["cell_type"].cat.remove_unused_categories()
    query = blobs(300, seed=2, shift=0.2)
    truth = query.obs["cell_type"].astype(str).to_numpy()
    del query.obs["cell_type"]
    return reference, query, truth


def test_temperature_scaling_lowers_ece_on_held_out_cells():
    rng = np.random.default_rng(0)
    n, k = 4000, 6
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    over = np.exp(4 * logits)  # overconfident: 4 x the true log-odds
    over /= over.sum(1, keepdims=True)
    fit, test = np.arange(n // 2), np.arange(n // 2, n)
    temperature = _transfer.fit_temperature(over[fit], y[fit])
    assert 3 < temperature < 5  # recovers the planted factor
    scaled = _transfer.temperature_scale(over[test], temperature)
    correct = over[test].argmax(1) == y[test]
    before = _transfer.expected_calibration_error(over[test].max(1), correct)
    after = _transfer.expected_calibration_error(scaled.max(1), correct)
    assert after < 0.5 * before and after < 0.05
    np.testing.assert_array_equal(scaled.argmax(1), over[test].argmax(1))


def test_unknown_threshold_flags_left_out_types_and_respects_the_false_unknown_rate():
    rng = np.random.default_rng(1)
    known, novel = rng.beta(8, 2, 2000), rng.beta(2, 3, 500)
    chosen = _transfer.choose_unknown_threshold(known, novel, max_false_unknown=0.05)
    assert (known < chosen["threshold"]).mean() <= 0.05
    assert (novel < chosen["threshold"]).mean() > 0.5 and chosen["auroc"] > 0.9


@pytest.mark.parametrize("model", ["unitednet", "multimodal_ae", "logistic"])
def test_transfer_flags_a_type_absent_from_the_reference(model):
    reference, query, truth = reference_query()
    before = set(reference.obs.columns), set(reference.obsm.keys()), set(reference.uns.keys())
    mx.tl.transfer_labels(reference, query, label_key="cell_type", model=model, random_state=0, **FAST)
    assert (set(reference.obs.columns), set(reference.obsm.keys()), set(reference.uns.keys())) == before
    key = "cell_type_transferred"
    novel = truth == "T4"
    unknown = query.obs[f"{key}_unknown"].to_numpy()
    assert unknown[novel].mean() > unknown[~novel].mean() + 0.2
    pred = query.obs[key].astype(str).to_numpy()
    assert (pred[~novel] == truth[~novel]).mean() > 0.7
    uns = query.uns[key]
    assert list(uns["classes"]) == ["T0", "T1", "T2", "T3"] and uns["temperature"] > 0
    assert 0 < uns["unknown_threshold"] < 1 and uns["unknown_selection"]["false_unknown_rate"] <= 0.05
    assert uns["reliability"]["n"].sum() == uns["calibration"]["n_cells"]
    proba = query.obsm[f"{key}_proba"]
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(proba.max(1), query.obs[f"{key}_confidence"], atol=1e-6)
    assert uns["reference_latent"].shape[0] == reference.n_obs == len(uns["reference_labels"])
    assert query.obsm[f"X_{key}"].shape[1] == uns["reference_latent"].shape[1]
    # the flag thresholds the match score where a kNN vote is taken (models with classes), else the confidence
    confidence = query.obs[f"{key}_confidence"].to_numpy()
    if model == "multimodal_ae":
        assert uns["unknown_score"] == "confidence" and f"{key}_match_score" not in query.obs
        np.testing.assert_array_equal(unknown, confidence < uns["unknown_threshold"])
    else:
        match = query.obs[f"{key}_match_score"].to_numpy()
        assert uns["unknown_score"] == "match" and 0 <= match.min() and match.max() <= 1
        np.testing.assert_array_equal(unknown, match < uns["unknown_threshold"])
        assert uns["unknown_selection"]["auroc"] > 0.5 and "auroc_confidence" in uns["unknown_selection"]


def test_neighbour_agreement_and_match_score():
    codes = np.array([[0, 0, 1, 1], [2, 2, 2, 2]])
    np.testing.assert_allclose(_transfer.neighbour_agreement(codes, np.array([0, 2])), [0.5, 1.0])
    np.testing.assert_allclose(_transfer.match_score(np.array([0.9, 0.3]), np.array([0.5, 1.0])), [0.7, 0.65])


def test_leave_type_out_scores_known_cells_as_the_query_is_scored_and_novel_without_their_type():
    y = np.repeat([0, 1, 2], 4)
    proba = np.full((12, 3), 0.1)
    proba[np.arange(12), y] = 0.8
    agreement = {c: np.where(y == c, 0.2, 0.9) for c in range(3)}  # left-out cells sit among mixed neighbours
    known, novel = _transfer.leave_type_out_scores(proba, y)
    np.testing.assert_allclose(known, 0.8)  # over all classes, as a query cell of a known type is scored
    assert len(known) == 12 and len(novel) == 12
    np.testing.assert_allclose(novel, 0.5)  # their own class removed: two equal classes left
    held_out = np.full(12, 0.7)  # the agreement of the held-out cells taken as the query's is
    known, novel = _transfer.leave_type_out_scores(proba, y, left_out_agreement=agreement, known_agreement=held_out)
    np.testing.assert_allclose(known, (0.8 + 0.7) / 2)
    np.testing.assert_allclose(novel, (0.5 + 0.2) / 2)
    with pytest.raises(ValueError, match="both"):
        _transfer.leave_type_out_scores(proba, y, left_out_agreement=agreement)
    # a type without an agreement is skipped as novel, its cells still count as known
    known, novel = _transfer.leave_type_out_scores(proba, y, left_out_agreement={0: agreement[0]},
                                                   known_agreement=held_out)
    assert len(novel) == 4 and len(known) == 12
    out = _transfer.calibrate(proba, y, left_out_agreement=agreement, known_agreement=held_out)
    assert out["unknown_score"] == "match" and out["unknown_selection"]["auroc"] == 1.0
    assert _transfer.calibrate(proba, y)["unknown_score"] == "confidence"
    # left-out probabilities are temperature-scaled one type at a time: the same scores as scaling them all first
    rng = np.random.default_rng(0)
    left_out = {c: rng.dirichlet(np.ones(3), size=12) for c in range(3)}
    scale = 1.7
    pre = {c: _transfer.temperature_scale(p, scale) for c, p in left_out.items()}
    lazily = _transfer.leave_type_out_scores(proba, y, left_out, agreement, known_agreement=held_out,
                                             left_out_transform=lambda p: _transfer.temperature_scale(p, scale))
    for a, b in zip(lazily, _transfer.leave_type_out_scores(proba, y, pre, agreement, known_agreement=held_out),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_query_of_known_types_is_flagged_unknown_at_about_the_chosen_rate():
    """The threshold is chosen on held-out cells scored as query cells are: on a query drawn like the reference
    (every type known), about ``max_false_unknown`` of its cells are flagged. Scoring the known held-out cells with
    a type left out too raised their scores (4 overlapping types: 9-13 % of such a query flagged at 5 %)."""
    def make(n, seed, prefix):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 4, n)
        x = np.random.default_rng(99).normal(0, 0.4, (4, 30))[y] + rng.normal(size=(n, 30))
        adata = ad.AnnData(x.astype(np.float32), obs=pd.DataFrame(index=[f"{prefix}{i}" for i in range(n)]),
                           var=pd.DataFrame(index=[f"g{j}" for j in range(30)]))
        mdata = md.MuData({"rna": adata})
        mdata.obs["cell_type"] = pd.Categorical([f"t{v}" for v in y])
        return mdata

    flagged = []
    for seed in range(2):
        reference, query = make(1000, 10 * seed, "r"), make(600, 10 * seed + 1, "q")
        mx.tl.transfer_labels(reference, query, label_key="cell_type", model="logistic", random_state=seed)
        flagged.append(query.obs["cell_type_transferred_unknown"].mean())
    assert np.mean(flagged) <= 0.06, flagged


def test_unknown_score_confidence_thresholds_the_confidence():
    reference, query, _ = reference_query()
    mx.tl.transfer_labels(reference, query, label_key="cell_type", model="logistic", unknown_score="confidence",
                          key_added="c", random_state=0)
    uns = query.uns["c"]
    assert uns["unknown_score"] == "confidence" and "c_match_score" not in query.obs
    np.testing.assert_array_equal(query.obs["c_unknown"], query.obs["c_confidence"] < uns["unknown_threshold"])
    with pytest.raises(ValueError, match="unknown_score"):
        mx.tl.transfer_labels(reference, query.copy(), label_key="cell_type", unknown_score="distance")


def test_rna_only_query_uses_the_shared_modality():
    reference, query, truth = reference_query()
    rna_only = md.MuData({"rna": query.mod["rna"].copy()})
    mx.tl.transfer_labels(reference, rna_only, label_key="cell_type", key_added="lt", **FAST)
    assert rna_only.uns["lt"]["params"]["modalities"] == ["rna"]
    assert rna_only.uns["lt"]["params"]["method"].startswith("standardised logistic regression")
    known = truth != "T4"
    assert (rna_only.obs["lt"].astype(str).to_numpy()[known] == truth[known]).mean() > 0.6
    # the joint PCA of reference + query RNA is the embedding written for plotting
    assert rna_only.obsm["X_lt"].shape == (rna_only.n_obs, rna_only.uns["lt"]["reference_latent"].shape[1])
    with pytest.raises(ValueError, match="two shared modalities"):
        mx.tl.transfer_labels(reference, rna_only, label_key="cell_type", model="unitednet", **FAST)


def test_a_query_with_fewer_features_is_transferred_on_the_shared_ones(caplog):
    """A model fitted here uses the features both objects have (by name), logged; the reference is not changed,
    and an AnnData, or a query that shares no feature, gets an error that says what to do."""
    import logging

    reference, query, truth = reference_query()
    types = reference.obs["cell_type"].cat.categories
    reference.obs["cell_type"] = reference.obs["cell_type"].cat.reorder_categories(list(reversed(types)))
    before = reference.copy()
    fewer = md.MuData({"rna": query.mod["rna"][:, ::-2].copy(), "adt": query.mod["adt"].copy()})  # 10 of 20, reversed
    with caplog.at_level(logging.INFO, logger="multiomix"):
        mx.tl.transfer_labels(reference, fewer, label_key="cell_type", key_added="lt", **FAST)
    assert "modality 'rna': the query has 10 of the reference's 20 features" in caplog.text
    assert list(fewer.obs["lt"].cat.categories) == list(reference.obs["cell_type"].cat.categories)
    known = truth != "T4"
    assert (fewer.obs["lt"].astype(str).to_numpy()[known] == truth[known]).mean() > 0.6
    assert reference.mod["rna"].n_vars == 20 and reference.obs.equals(before.obs) and set(reference.uns) == set()
    renamed = md.MuData({"rna": query.mod["rna"].copy(), "adt": query.mod["adt"].copy()})
    renamed.mod["rna"].var_names = [f"gene{j}" for j in range(20)]
    with pytest.raises(KeyError, match="the query has none of the reference's 20 features by name"):
        mx.tl.transfer_labels(reference, renamed, label_key="cell_type", **FAST)
    with pytest.raises(TypeError, match=r"`query` must be a MuData, got AnnData; wrap one modality"):
        mx.tl.transfer_labels(reference, query.mod["rna"], label_key="cell_type", **FAST)
    gex = md.MuData({"gex": query.mod["rna"].copy(), "adt": query.mod["adt"].copy()})
    with caplog.at_level(logging.INFO, logger="multiomix"):
        mx.tl.transfer_labels(reference, gex, label_key="cell_type", key_added="lt", **FAST)
    assert "the query's ['gex'] are not in the reference" in caplog.text
    extra = md.MuData({"rna": ad.concat([query.mod["rna"], query.mod["adt"][:, :5]], axis=1),
                       "adt": query.mod["adt"].copy()})
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="multiomix"):
        mx.tl.transfer_labels(reference, extra, label_key="cell_type", key_added="lt", **FAST)
    assert caplog.text.count("modality 'rna': 5 features the model does not use are ignored") == 1


def test_logistic_path_gives_every_reference_class_a_column():
    reference, query, _ = reference_query()
    labels = reference.obs["cell_type"].astype(str)
    rows = np.arange(reference.n_obs)
    only_held_out = rows[labels.to_numpy() == "T3"][:5]  # a class the regression never trains on
    train = rows[labels.to_numpy() != "T3"]
    estimator, out = _transfer._logistic_transfer(reference, query, labels=labels, ref_train=train,
                                                  ref_val=only_held_out, class_weighting=True, random_state=0)
    assert out["classes"] == ["T0", "T1", "T2", "T3"] and list(estimator.classes_) == ["T0", "T1", "T2"]
    for proba in (out["query_proba"], out["val_proba"]):
        np.testing.assert_allclose(proba.sum(1), 1)
        assert proba[:, 3].max() < 1e-6  # the class without training rows keeps only the floor
    assert (out["query_proba"].argmax(1) < 3).all()


def test_fitted_model_without_classes_gives_knn_on_its_latent():
    reference, query, truth = reference_query()
    ae = mx.tl.fit_multimodal_ae(reference.copy(), max_epochs=15, latent_dim=8, progress_bar=False, n_models=1,
                                 accelerator="cpu")
    with warnings.catch_warnings(), _no_warning_logged() as logged:
        mx.tl.transfer_labels(reference, query, label_key="cell_type", model=ae, key_added="ae")
    assert not [m for m in logged if "overconfident" in m]  # leave-one-out kNN: no rows it was trained on
    assert query.uns["ae"]["params"]["method"].startswith("kNN")
    assert query.obsm["X_ae"].shape == (query.n_obs, 8)
    # fit_multimodal_ae's default, an ensemble of autoencoders, is used whole: kNN on its joined latent
    ensemble = mx.tl.fit_multimodal_ae(reference.copy(), max_epochs=5, latent_dim=4, progress_bar=False,
                                       n_models=2, accelerator="cpu")
    mx.tl.transfer_labels(reference, query, label_key="cell_type", model=ensemble, key_added="ens")
    assert query.obsm["X_ens"].shape == (query.n_obs, 8)
    np.testing.assert_allclose(query.obsm["X_ens"], ensemble.get_latent_representation(query), atol=1e-5)


def test_an_unsupervised_unitednet_s_clusters_are_never_taken_for_numbered_labels():
    """Labels that are cluster numbers ('0', '1', ...) are not the clusters of an unsupervised UnitedNet: the
    transfer is a kNN vote on its latent, as for any model without classes, whatever the labels are named."""
    reference, query, _ = reference_query()
    fit_on = reference.copy()
    del fit_on.obs["cell_type"]
    model = mx.tl.fit_unitednet(fit_on, mode="unsupervised", n_clusters=4, max_epochs=3, latent_dim=8, hidden=(16,),
                                n_heads=1, accelerator="cpu", progress_bar=False)
    assert model.classes == ["0", "1", "2", "3"]
    numbered = reference.copy()
    numbered.obs["cell_type"] = numbered.obs["cell_type"].cat.rename_categories(["3", "0", "2", "1"])
    for ref, key in ((numbered, "numbers"), (reference, "names")):
        mx.tl.transfer_labels(ref, query, label_key="cell_type", model=model, key_added=key, adapt_epochs=0,
                              knn_weight=0)
        assert query.uns[key]["params"]["method"].startswith("kNN"), query.uns[key]["params"]["method"]
    renamed = query.obs["numbers"].astype(str).map(dict(zip(["3", "0", "2", "1"], reference.obs["cell_type"].cat
                                                                                    .categories)))
    assert (renamed == query.obs["names"].astype(str)).all()  # the same transfer under other names


def test_nothing_is_written_when_the_transfer_fails(monkeypatch):
    reference, query, _ = reference_query()
    before = set(query.obs.columns), set(query.obsm.keys()), set(query.uns.keys())

    def broken(*args, **kwargs):
        raise RuntimeError("calibration failed")

    monkeypatch.setattr(_transfer, "calibrate", broken)
    with pytest.raises(RuntimeError, match="calibration failed"):
        mx.tl.transfer_labels(reference, query, label_key="cell_type", model="multimodal_ae", **FAST)
    assert (set(query.obs.columns), set(query.obsm.keys()), set(query.uns.keys())) == before
    # and a failure inside the writes leaves nothing half-written
    monkeypatch.undo()
    monkeypatch.setattr(_transfer, "write_obsm", broken)
    with pytest.raises(RuntimeError):
        mx.tl.transfer_labels(reference, query, label_key="cell_type", model="multimodal_ae", **FAST)
    assert (set(query.obs.columns), set(query.obsm.keys()), set(query.uns.keys())) == before


def test_plots_read_the_transfer(tmp_path, neighbors_reset_threads):
    import matplotlib
    import torch

    matplotlib.use("agg")
    reference, query, truth = reference_query()
    mx.tl.transfer_labels(reference, query, label_key="cell_type", model="multimodal_ae", key_added="lt", **FAST)
    joint = mx.pl.transfer_embedding(query, "lt")
    assert torch.get_num_threads() == 1  # the fixture's graph set 2: the user's count is kept
    assert joint.n_obs == reference.n_obs + query.n_obs and joint.obsm["X_umap"].shape == (joint.n_obs, 2)
    assert set(joint.obs["source"]) == {"reference", "query"}
    assert set(joint.obs["label"][joint.obs["source"] == "reference"]) == {"T0", "T1", "T2", "T3"}
    fig = mx.pl.transfer(query, "lt", show=False, save=tmp_path / "transfer.png")
    assert len(fig.axes) == 2 and (tmp_path / "transfer.png").stat().st_size > 0  # no labels: no heatmap
    query.obs["truth"] = truth
    fig = mx.pl.transfer(query, "lt", truth_key="truth", show=False)
    heat = fig.axes[2]
    assert [t.get_text() for t in heat.get_yticklabels()][-1] == "T4"  # the novel type is a row, below the shared ones
    # every reference label has a column, also one that no query cell received
    query.obs["lt"] = pd.Categorical(np.where(query.obs["lt"] == "T2", "T1", query.obs["lt"].astype(str)))
    heat = mx.pl.transfer(query, "lt", truth_key="truth", show=False).axes[2]
    assert [t.get_text() for t in heat.get_xticklabels()][:4] == ["T0", "T1", "T2", "T3"]
    assert [t.get_text() for t in heat.get_yticklabels()][-1] == "T4"
    fig = mx.pl.transfer(query, "lt", truth_key="truth", joint=joint, show=False)  # the UMAP computed once
    np.testing.assert_allclose(np.vstack([c.get_offsets() for c in fig.axes[0].collections]),
                               np.vstack([joint.obsm["X_umap"][(joint.obs["source"] == s).to_numpy()]
                                          for s in ("reference", "query")]))
    with pytest.raises(ValueError, match="not this transfer's embedding"):
        mx.pl.transfer(query, "lt", joint=joint[:10].copy(), show=False)
    # the agreement in the title is the heatmap's: a cell flagged unknown is a miss, whatever its argmax
    query.obs["lt_unknown"] = np.arange(query.n_obs) < 40
    shown = np.where(query.obs["lt_unknown"], "unknown", query.obs["lt"].astype(str)) == query.obs["truth"]
    title = mx.pl.transfer(query, "lt", truth_key="truth", joint=joint, show=False).axes[2].get_title()
    assert f"agreement {shown.mean():.2f};" in title
    # query cells without a label of their own are left out of the heatmap and the agreement, and counted
    query.obs["truth"] = query.obs["truth"].astype(object)
    query.obs.loc[query.obs_names[::5], "truth"] = np.nan
    labelled = query.obs["truth"].notna().to_numpy()
    heat = mx.pl.transfer(query, "lt", truth_key="truth", joint=joint, show=False).axes[2]
    assert "nan" not in [t.get_text() for t in heat.get_yticklabels()]
    assert f"agreement {shown[labelled].mean():.2f};" in heat.get_title()
    assert f"{int((~labelled).sum())} cells without a label left out" in heat.get_title()
    ax = mx.pl.reliability(query, "lt", show=False, save=tmp_path / "reliability.png")
    assert ax.get_xlabel().startswith("confidence") and (tmp_path / "reliability.png").exists()
    fig, (mine, theirs) = plt.subplots(1, 2)
    mine.tick_params(labelsize=5)
    mx.pl.reliability(query, "lt", ax=theirs, show=False)
    assert mine.get_xticklabels()[0].get_fontsize() == 5  # the user's own panel keeps its fonts
    with pytest.raises(KeyError, match="transfer_labels"):
        mx.pl.reliability(query, "missing", show=False)
    with pytest.raises(KeyError, match="nope"):
        mx.pl.transfer(query, "lt", truth_key="nope", show=False)


def test_fitted_classifier_gives_its_own_probabilities_calibrated_on_its_held_out_rows():
    reference, query, truth = reference_query()
    model = mx.tl.fit_crossattomics(reference, label_key="cell_type", max_epochs=10, accelerator="cpu",
                                    progress_bar=False, baseline=False)
    held_out = reference.obs["split"].astype(str).isin(["validation", "test"]).sum()
    assert held_out > 0  # the fit wrote its split
    mx.tl.transfer_labels(reference, query, model=model, key_added="cao", knn_weight=0)
    uns = query.uns["cao"]
    assert uns["params"]["method"] == "CrossAttOmics.predict_proba" and "knn_vote" not in uns
    assert uns["calibration"]["n_cells"] == held_out and "split" in uns["calibration"]["rows"]
    np.testing.assert_array_equal(query.obs["cao"].astype(str).to_numpy(), model.predict(query).astype(str).to_numpy())
    # a fixed weight: the calibrated probabilities averaged with a kNN vote in a joint PCA of reference + query
    mx.tl.transfer_labels(reference, query, model=model, key_added="cao_vote", knn_weight=0.5)
    vote = query.uns["cao_vote"]
    assert "kNN vote" in vote["params"]["method"] and vote["knn_vote"]["knn_weight"] == 0.5
    assert set(vote["knn_vote"]["held_out_nll_by_weight"]) == {"0", "0.25", "0.5", "0.75", "1"}
    np.testing.assert_allclose(query.obsm["cao_vote_proba"].sum(1), 1, atol=1e-5)
    # default: the weight with the lowest negative log-likelihood on the held-out reference cells
    mx.tl.transfer_labels(reference, query, model=model, key_added="cao_auto")
    auto = query.uns["cao_auto"]["knn_vote"]
    nlls = auto["held_out_nll_by_weight"]
    assert nlls[f"{auto['knn_weight']:g}"] == min(nlls.values())


def test_n_models_averages_adapted_unitednets_and_refuses_other_paths():
    reference, query, truth = reference_query()
    ensemble = mx.tl.transfer_labels(reference, query, label_key="cell_type", n_models=2, knn_weight=0,
                                     random_state=3, key_added="ens", **FAST)
    assert isinstance(ensemble, mx.models.SeedEnsemble) and [m.random_state for m in ensemble] == [3, 4]
    uns = query.uns["ens"]
    assert uns["params"]["n_models"] == 2 and "cross-fitted on 2 folds" in uns["params"]["method"]
    assert uns["calibration"]["n_cells"] == reference.n_obs  # every reference cell is scored out of fold
    rows = np.arange(reference.n_obs, reference.n_obs + query.n_obs)  # the members' joint reference + query view
    members = [m.predict_proba(indices=rows).to_numpy() for m in ensemble]
    assert not np.allclose(members[0], members[1])
    # temperature scaling keeps the order: the labels are those of the members' mean probabilities
    mean = np.mean(members, axis=0)
    np.testing.assert_array_equal(query.obs["ens"].astype(str).to_numpy(), np.asarray(ensemble.classes)[mean.argmax(1)])
    known = truth != "T4"
    assert (query.obs["ens"].astype(str).to_numpy()[known] == truth[known]).mean() > 0.7
    before = set(query.obs.columns), set(query.obsm.keys()), set(query.uns.keys())
    for other in ("multimodal_ae", "logistic"):
        with pytest.raises(ValueError, match="n_models=2 trains several UnitedNets"):
            mx.tl.transfer_labels(reference, query, label_key="cell_type", model=other, n_models=2, **FAST)
    with pytest.raises(ValueError, match="positive integer"):
        mx.tl.transfer_labels(reference, query, label_key="cell_type", n_models=0, **FAST)
    with pytest.raises(TypeError, match="member"):
        mx.tl.transfer_labels(reference, query, model=ensemble)
    assert (set(query.obs.columns), set(query.obsm.keys()), set(query.uns.keys())) == before


def test_a_fitted_model_lacking_reference_types_transfers_the_types_it_knows():
    """A rare type whose cells all fell outside the fit's training rows: its reference cells are left out."""
    reference, query, _ = reference_query()
    rare = reference.obs["cell_type"] == "T3"
    reference.obs["split"] = pd.Categorical(np.where(rare, "test", "train"), categories=["train", "validation", "test"])
    model = mx.tl.fit_unitednet(reference, label_key="cell_type", max_epochs=3, latent_dim=8, hidden=(16,),
                                n_heads=2, accelerator="cpu", progress_bar=False, baseline=False)
    assert "T3" not in model.classes
    before = reference.copy()
    mx.tl.transfer_labels(reference, query, model=model, adapt_epochs=1, key_added="known", progress_bar=False)
    assert list(query.uns["known"]["classes"]) == list(model.classes)
    np.testing.assert_allclose(query.obsm["known_proba"].sum(1), 1, atol=1e-5)
    assert reference.n_obs == before.n_obs and reference.obs["cell_type"].equals(before.obs["cell_type"])


def test_a_small_balanced_reference_is_held_out_without_stratification():
    """More types than held-out cells: the calibration rows are drawn without stratification, not an error."""
    reference, query, _ = reference_query()
    small = reference[reference.obs.groupby("cell_type", observed=True).head(4).index].copy()
    mx.tl.transfer_labels(small, query, label_key="cell_type", model="logistic", key_added="small")
    rows = query.uns["small"]["calibration"]["rows"]
    assert "of the reference" in rows and "stratified" not in rows


def test_unlabelled_reference_cells_are_left_out_and_user_columns_never_overwritten():
    """Reference cells without a label are not used (as in the fits); a ``key_added`` that names one of the
    query's own columns is refused before any training, leaving the query as it was."""
    reference, query, truth = reference_query()
    labels = reference.obs["cell_type"].astype(object)
    labels.iloc[:20] = np.nan
    reference.obs["cell_type"] = labels
    before = reference.obs.copy()
    mx.tl.transfer_labels(reference, query, label_key="cell_type", model="logistic", key_added="lt")
    pd.testing.assert_frame_equal(reference.obs, before)
    assert not np.isin(np.asarray(query.uns["lt"]["reference_labels"]).astype(str), ["nan", "None"]).any()
    assert len(query.uns["lt"]["reference_labels"]) == reference.n_obs - 20
    known = truth != "T4"
    assert (query.obs["lt"].astype(str).to_numpy()[known] == truth[known]).mean() > 0.6
    query.obs["truth"] = truth
    columns = list(query.obs.columns)
    with pytest.raises(ValueError, match=r"\['truth'\], which key_added='truth' would overwrite"):
        mx.tl.transfer_labels(reference, query, label_key="cell_type", model="logistic", key_added="truth")
    assert list(query.obs.columns) == columns and (query.obs["truth"] == truth).all()
    mx.tl.transfer_labels(reference, query, label_key="cell_type", model="logistic", key_added="lt")  # a rerun


def test_unknown_threshold_sits_in_the_gap_between_novel_and_known_scores():
    """Well separated held-out scores: the threshold is halfway between them, not at the lowest known score, so
    query cells of known types scored a little below every held-out known cell are not flagged."""
    from multiomix.tl._calibration import choose_unknown_threshold

    rng = np.random.default_rng(0)
    known, novel = rng.uniform(0.95, 0.99, 40), rng.uniform(0.2, 0.5, 10)
    chosen = choose_unknown_threshold(known, novel, max_false_unknown=0.05)
    assert chosen["false_unknown_rate"] == 0 and chosen["true_unknown_rate"] == 1
    assert chosen["threshold"] == pytest.approx((known.min() + novel.max()) / 2)
    query_known = rng.uniform(0.93, 0.99, 200)  # a little shifted: some below every held-out known score
    assert (query_known < known.min()).any() and not (query_known < chosen["threshold"]).any()
    # overlapping scores: the same held-out cells are flagged as by the chosen score itself
    known, novel = rng.uniform(0.3, 0.9, 60), rng.uniform(0.1, 0.5, 20)
    chosen = choose_unknown_threshold(known, novel, max_false_unknown=0.05)
    assert (known < chosen["threshold"]).mean() == pytest.approx(chosen["false_unknown_rate"])
    assert (novel < chosen["threshold"]).mean() == pytest.approx(chosen["true_unknown_rate"])


def test_the_calibration_hold_out_is_stratified_beside_a_type_of_one_cell():
    """A type with a single cell stays in training and the others are held out in proportion (one singleton
    turned stratification off for every type, and a 15-cell type could get no held-out cell)."""
    labels = pd.Series(np.repeat(["a", "b", "c", "d"], [120, 60, 15, 1]))
    reference = md.MuData({"rna": ad.AnnData(np.zeros((196, 2), np.float32),
                                             obs=pd.DataFrame(index=[f"c{i}" for i in range(196)]))})
    for seed in range(4):
        train, held, source = _transfer._held_out_rows(reference, labels, split_key="split", validation_size=0.1,
                                                       random_state=seed, fitted_here=True)
        assert labels.iloc[held].value_counts().reindex(list("abcd"), fill_value=0).tolist() == [12, 6, 2, 0]
        assert source.startswith("a stratified 0.1") and "one cell kept for training" in source
        assert sorted(np.r_[train, held]) == list(range(196))
    # too few held-out cells for every type: drawn at random, said so
    few = pd.Series(np.repeat(list("abcdefgh"), 3))
    small = reference[:24].copy()
    _, held, source = _transfer._held_out_rows(small, few, split_key="split", validation_size=0.1, random_state=0,
                                               fitted_here=True)
    assert len(held) == 3 and not source.startswith("a stratified")


def test_leave_one_out_knn_leaves_the_cell_out_even_beside_its_duplicates():
    """Cells at identical coordinates: each is scored by the others, never by itself."""
    from multiomix.tl import _knn_vote

    latent = np.zeros((3, 2))
    proba = _knn_vote.knn_proba(latent, np.array([0, 1, 1]), 2, None, k=2, leave_one_out=True)
    assert proba[0, 1] > proba[0, 0]  # its two neighbours are both class 1
    np.testing.assert_allclose(proba[1], proba[2])  # each of the class-1 cells sees one 0 and one 1
    np.testing.assert_allclose(proba[1], [0.5, 0.5])


@pytest.mark.parametrize("n_folds", [1, 3])
def test_left_out_votes_match_a_search_per_type(n_folds):
    """The kNN vote without type ``c`` comes from one wide search (refined only for cells whose list runs out of
    other types): the same neighbours, mixtures and agreements as a search among the other types' cells per type,
    built one type at a time when read."""
    from multiomix.tl import _knn_vote

    rng = np.random.default_rng(n_folds)
    n_ref, n_types, k = 360, 9, 15
    codes = np.r_[np.zeros(100, int), rng.integers(1, n_types, n_ref - 100)]  # one dominant type, whose cells
    space = rng.normal(0, 3, (n_types, 5))[codes] + rng.normal(0, 1, (n_ref, 5))  # run out of others in 3k
    parts = np.array_split(rng.permutation(n_ref), max(n_folds, 2))
    folds = [(np.sort(np.concatenate(parts[:i] + parts[i + 1:])), np.sort(parts[i])) for i in range(n_folds)]
    held = np.concatenate([h for _, h in folds])
    val_proba = rng.dirichlet(np.ones(n_types), len(held))
    out = _knn_vote.knn_ensemble(val_proba, codes[held], rng.dirichlet(np.ones(n_types), 20), space,
                                 rng.normal(0, 3, (20, 5)), codes, folds, weight=0.5, k=k)
    scale = out["info"]["distance_scale"]
    model_val = (out["val_proba"] - 0.5 * np.concatenate([
        _knn_vote._knn_votes(space[t], codes[t], n_types, space[h], k=k, scale=scale)[0] for t, h in folds])) / 0.5
    assert sorted(out["left_out"]) == list(range(n_types))
    for c in range(n_types):
        votes, neighbours = zip(*(
            _knn_vote._knn_votes(space[t[codes[t] != c]], codes[t[codes[t] != c]], n_types, space[h], k=k,
                                 scale=scale)[::2] for t, h in folds))
        expected = 0.5 * model_val + 0.5 * np.concatenate(votes)
        np.testing.assert_allclose(out["left_out"][c], expected, atol=1e-12)
        masked = expected.copy()
        masked[:, c] = -np.inf
        agreement = np.concatenate(neighbours) == masked.argmax(1)[:, None]
        np.testing.assert_allclose(out["left_out_agreement"][c], agreement.mean(1))
        assert c not in np.concatenate(neighbours)


def test_joint_pca_of_a_large_modality_never_densifies_it(monkeypatch):
    """Above ``DENSE_PCA_MAX_ENTRIES`` a sparse modality is decomposed sparse (no ``toarray``) and a dense one in
    float32; both find the planted low-rank structure that the small-data path finds."""
    from scipy import sparse

    from multiomix.tl import _knn_vote

    rng = np.random.default_rng(0)
    z = rng.normal(0, 1, (300, 3)) * [5.0, 3.0, 2.0]
    counts = rng.poisson(np.exp(z @ rng.normal(0, 0.4, (3, 200)) - 1.0)).astype(np.float32)

    def mdata(x, rows):
        obs = pd.DataFrame(index=[f"c{i}" for i in rows])
        return md.MuData({"rna": ad.AnnData(x[rows], obs=obs)})

    def coordinates(x):
        ref, query = _knn_vote.joint_pca(mdata(x, np.arange(200)), mdata(x, np.arange(200, 300)), ["rna"],
                                         n_components=3)
        return np.vstack([ref, query])

    small = coordinates(sparse.csr_matrix(counts))
    monkeypatch.setattr(_knn_vote, "DENSE_PCA_MAX_ENTRIES", 1000)
    dense_large = coordinates(counts)
    monkeypatch.setattr(sparse.csr_matrix, "toarray", lambda self, *a, **k: pytest.fail("densified"))
    sparse_large = coordinates(sparse.csr_matrix(counts))
    for other in (dense_large, sparse_large):
        for k in range(3):  # the same component, up to its sign
            assert abs(np.corrcoef(small[:, k], other[:, k])[0, 1]) > 0.999


def test_fitted_model_and_a_query_lacking_one_of_its_modalities():
    reference, query, _ = reference_query()
    model = mx.tl.fit_crossattomics(reference, label_key="cell_type", max_epochs=1, accelerator="cpu",
                                    progress_bar=False, baseline=False)
    kept = list(query.mod)[0]
    one = md.MuData({kept: query[kept].copy()})
    with pytest.raises(KeyError, match=r"The query lacks \[.*\], which the given CrossAttOmics was fitted on.*"
                                       rf"\['{kept}'\]"):
        mx.tl.transfer_labels(reference, one, label_key="cell_type", model=model)
    assert not [c for c in one.obs.columns if "transferred" in c]


def test_a_scanpy_clustering_under_the_key_is_the_users_and_kept():
    """sc.tl.leiden writes obs['leiden'] and uns['leiden'] = {'params': ...}: not an earlier transfer's record."""
    reference, query, _ = reference_query()
    query.obs["leiden"] = pd.Categorical(np.arange(query.n_obs) % 3).astype(str)
    query.uns["leiden"] = {"params": {"resolution": 1.0, "n_iterations": -1}}
    with pytest.raises(ValueError, match=r"\.obs already has \['leiden'\], which key_added='leiden' would overwrite"):
        mx.tl.transfer_labels(reference, query, label_key="cell_type", key_added="leiden", **FAST)
    assert set(query.uns["leiden"]) == {"params"} and query.obs["leiden"].nunique() == 3


def test_a_transfer_rerun_by_confidence_drops_the_earlier_match_score():
    reference, query, _ = reference_query()
    mx.tl.transfer_labels(reference, query, label_key="cell_type", model="logistic", key_added="lt")
    assert "lt_match_score" in query.obs
    mx.tl.transfer_labels(reference, query, label_key="cell_type", model="logistic", key_added="lt",
                          unknown_score="confidence")
    assert "lt_match_score" not in query.obs and query.uns["lt"]["unknown_score"] == "confidence"
    with pytest.raises(ValueError, match=r"holds the results of mx.tl.transfer_labels"):
        mx.tl.fit_crossattomics(query.copy(), label_key="lt", max_epochs=1, key_added="lt", accelerator="cpu",
                                progress_bar=False)


@pytest.mark.parametrize("model", [None, "multimodal_ae"])
def test_a_backed_reference_transfers_like_the_same_reference_in_memory(model, tmp_path):
    reference, query, _ = reference_query()
    reference.write_h5mu(tmp_path / "reference.h5mu")
    quick = {**FAST, "max_epochs": 2, "adapt_epochs": 1}
    in_memory = query.copy()
    mx.tl.transfer_labels(reference, in_memory, label_key="cell_type", model=model, random_state=0, **quick)
    backed = md.read_h5mu(tmp_path / "reference.h5mu", backed=True)
    mx.tl.transfer_labels(backed, query, label_key="cell_type", model=model, random_state=0, **quick)
    key = "cell_type_transferred"
    assert query.obs[key].tolist() == in_memory.obs[key].tolist()
    np.testing.assert_allclose(query.obsm[f"{key}_proba"], in_memory.obsm[f"{key}_proba"], atol=1e-5)


def test_reference_and_query_are_checked_before_fitting_and_say_which_is_wrong():
    """Misaligned modalities, duplicated feature names, a missing layer or an empty query: a clear error naming
    the object, before any training; obsm entries of the user are kept like their obs columns."""
    reference, query, truth = reference_query()
    ragged = md.MuData({"rna": reference["rna"].copy(), "adt": reference["adt"][:250].copy()})
    ragged.obs["cell_type"] = reference.obs["cell_type"].to_numpy()
    with pytest.raises(ValueError, match="reference: Modality 'adt' has 250 observations"):
        mx.tl.transfer_labels(ragged, query, label_key="cell_type", **FAST)
    duplicated = reference.copy()
    duplicated["rna"].var_names = ["rna0"] + list(duplicated["rna"].var_names[:-1])
    with pytest.raises(ValueError, match="reference: modality 'rna' has duplicated feature names"):
        mx.tl.transfer_labels(duplicated, query, label_key="cell_type", model="logistic")
    with pytest.raises(KeyError, match="reference: modality 'rna' has no layer 'counts'"):
        mx.tl.transfer_labels(reference, query, label_key="cell_type", model="logistic", layer="counts")
    with pytest.raises(ValueError, match="The query has no cells"):
        mx.tl.transfer_labels(reference, query[:0].copy(), label_key="cell_type", model="logistic")
    query.obsm["X_mine"] = np.ones((query.n_obs, 3))
    with pytest.raises(ValueError, match=r"\.obsm already has \['X_mine'\]"):
        mx.tl.transfer_labels(reference, query, label_key="cell_type", model="logistic", key_added="mine")
    assert query.obsm["X_mine"].shape == (query.n_obs, 3)
    assert not any(c.startswith("mine") for c in query.obs.columns)
    with pytest.raises(KeyError, match="run mx.tl.transfer_labels"):
        mx.pl.transfer(query, "cell_type")


def test_whole_number_labels_with_gaps_read_the_same_in_every_output():
    """Integer labels with missing values are floats in pandas: the transferred column reads 3, as the classes
    and the stored reference labels read '3', so that a plot shows each type once."""
    reference, query, truth = reference_query()
    codes = reference.obs["cell_type"].cat.codes.astype(float).to_numpy()
    codes[:10] = np.nan
    reference.obs["code"] = codes
    mx.tl.transfer_labels(reference, query, label_key="code", model="logistic")
    categories = list(query.obs["code_transferred"].cat.categories)
    assert categories == [0, 1, 2, 3]
    assert sorted(map(str, categories)) == sorted(query.uns["code_transferred"]["classes"])
    assert set(query.uns["code_transferred"]["reference_labels"]) == {"0", "1", "2", "3"}


def test_knn_votes_of_a_query_cell_depend_on_the_reference_alone():
    from multiomix.tl._knn_vote import knn_proba

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(120, 5))
    codes = np.arange(120) % 3
    ref[:, 0] += 4 * codes
    query = rng.normal(size=(60, 5)) + np.r_[[4.0], [0] * 4]
    whole = knn_proba(ref, codes, 3, query, k=10)
    np.testing.assert_allclose(knn_proba(ref, codes, 3, query[:10], k=10), whole[:10])  # the other cells don't matter
    far = knn_proba(ref, codes, 3, query + 50.0, k=10)  # far from every reference cell: flat votes, not confident
    assert far.max() < 0.34


@pytest.mark.parametrize("weight", [3.0, -1.0, "AUTO", True])
def test_a_bad_knn_weight_is_refused_before_any_fit(weight):
    reference, query, _ = reference_query()
    with pytest.raises(ValueError, match="`knn_weight` must be 'auto' or a number in \\[0, 1\\]"):
        mx.tl.transfer_labels(reference, query, label_key="cell_type", model="multimodal_ae", knn_weight=weight)
    assert "cell_type_transferred" not in query.obs


def test_the_model_a_transfer_returns_reads_the_layer_it_was_fitted_on():
    reference, query, _ = reference_query()
    for data in (reference, query):  # .X scrambled: only the layer holds the signal
        for m in ("rna", "adt"):
            data.mod[m].layers["signal"] = data.mod[m].X.copy()
            data.mod[m].X = np.random.default_rng(0).permutation(data.mod[m].X)
    model = mx.tl.transfer_labels(reference, query, label_key="cell_type", layer="signal", max_epochs=3,
                                  adapt_epochs=1, progress_bar=False)
    assert model.layers == {"rna": "signal", "adt": "signal"}
    direct = model.predict_proba(query).to_numpy()  # reads the layer it records
    on_layer = model.predict_proba(mx.models.base.matched_input(
        query, features=model.feature_names_, layers={"rna": "signal", "adt": "signal"})).to_numpy()
    np.testing.assert_allclose(direct, on_layer, atol=1e-6)
