"""Every supervised fit stores the logistic-regression baseline beside the model and logs one line comparing them.

The comparison must be able to go either way: on a purely linear signal with few samples the baseline wins; on
a planted product of two modalities (an XOR, invisible to any linear model) the model wins.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import multiomix as mx
from multiomix._baseline import logistic_baseline
from multiomix._utils import new_mudata


def _linear(n: int = 120, seed: int = 0, n_genes: int = 100):
    rng = np.random.default_rng(seed)
    rna = rng.normal(size=(n, n_genes)).astype(np.float32)
    mirna = rng.normal(size=(n, n_genes // 4)).astype(np.float32)
    score = rna[:, :5].sum(1) + 0.5 * rng.normal(size=n)
    mdata = new_mudata({"rna": ad.AnnData(rna), "mirna": ad.AnnData(mirna)})
    mdata.obs["label"] = pd.Categorical(np.where(score > 0, "pos", "neg"))
    return mdata


def test_baseline_wins_on_a_linear_signal_with_few_samples(caplog):
    scores = []
    for seed in range(3):  # 150 samples, 300 + 75 features, 5 informative: the original architecture loses
        mdata = _linear(150, seed=seed, n_genes=300)
        with caplog.at_level(logging.INFO, logger="multiomix"):
            mx.tl.fit_crossattomics(mdata, test_size=0.3, linear_path=None, random_state=seed, progress_bar=False)
        info = mdata.uns["crossattomics"]
        assert info["baseline"]["name"] == "logistic_regression"
        assert info["baseline"]["test_metrics"]["n"] == info["test_metrics"]["n"] == 45
        scores.append((info["test_metrics"]["macro_f1"], info["baseline"]["test_metrics"]["macro_f1"]))
    model, baseline = np.mean(scores, 0)
    assert baseline > model + 0.05
    assert any("crossattomics vs baseline (logistic_regression" in r.getMessage() for r in caplog.records)


def test_fitted_linear_path_keeps_the_default_level_with_the_baseline_on_a_linear_signal():
    gaps = []
    for seed in range(3):
        mdata = _linear(seed=seed)
        mx.tl.fit_crossattomics(mdata, test_size=0.3, random_state=seed, progress_bar=False)
        info = mdata.uns["crossattomics"]
        gaps.append(info["baseline"]["test_metrics"]["macro_f1"] - info["test_metrics"]["macro_f1"])
    assert np.mean(gaps) < 0.03  # without the linear path the baseline leads by 0.08-0.20 on these data


def test_a_model_that_is_its_fitted_linear_path_scores_as_the_baseline(monkeypatch):
    """best_epoch == -1: the model is the baseline's logistic regression (same C, same predictions, same metrics)."""
    import multiomix._baseline as baseline_module

    searches = []
    splitter = baseline_module.StratifiedKFold
    monkeypatch.setattr(baseline_module, "StratifiedKFold", lambda *a, **k: searches.append(1) or splitter(*a, **k))
    for seed in range(2):
        mdata = _linear(150, seed=seed)
        split = np.array(["train"] * 80 + ["validation"] * 25 + ["test"] * 45, dtype=object)
        mdata.obs["split"] = np.random.default_rng(seed).permutation(split)  # interleaved train/validation rows
        model = mx.tl.fit_crossattomics(mdata, max_epochs=0, random_state=seed, progress_bar=False)
        info = mdata.uns["crossattomics"]
        assert model.best_epoch_ == -1
        assert info["baseline"]["C"] == model.linear_path_C_  # the same search on the same rows (C differed)
        assert len(searches) == seed + 1  # one inner search per fit: the baseline reuses the linear path's C
        # the same regression, fitted once on float32 standardised inputs: at most a near-tie row may differ
        n = info["test_metrics"]["n"]
        assert abs(info["baseline"]["test_metrics"]["accuracy"] - info["test_metrics"]["accuracy"]) <= 1 / n + 1e-9


def test_model_wins_on_a_planted_product_of_two_modalities():
    mdata = mx.datasets.synthetic_interaction_mudata(600, n_features={"rna": 20, "methylation": 20, "mirna": 10})
    groups = {k: dict(g) for k, g in mdata.uns["feature_groups"].items()}
    mx.tl.fit_crossattomics(mdata, groups=groups, max_epochs=80, progress_bar=False)
    info = mdata.uns["crossattomics"]
    assert info["test_metrics"]["macro_f1"] > info["baseline"]["test_metrics"]["macro_f1"] + 0.15


def test_baseline_can_be_switched_off():
    mdata = _linear(60)
    mx.tl.fit_crossattomics(mdata, baseline=False, max_epochs=2, progress_bar=False)
    assert "baseline" not in mdata.uns["crossattomics"]


def test_logistic_baseline_chooses_c_by_inner_cv():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 50))
    y = np.where(x[:, 0] > 0, "a", "b")
    search = logistic_baseline(x, y)
    assert search.best_params_["logisticregression__C"] in search.param_grid["logisticregression__C"]
    assert len(search.param_grid["logisticregression__C"]) > 1 and search.score(x, y) > 0.9


def test_logistic_baseline_searches_c_with_a_singleton_class():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(121, 30))
    y = np.where(x[:, 0] > 0, "a", "b").astype(object)
    y[0] = "rare"  # one training cell: absent from the training part of one fold, C is still searched
    search = logistic_baseline(x, y)
    assert len(search.cv_results_["params"]) == len(search.param_grid["logisticregression__C"]) > 1
    assert search.n_splits_ == 5 and np.isfinite(search.best_score_)
    assert set(search.classes_) == {"a", "b", "rare"} and search.score(x[1:], y[1:]) > 0.9


def test_logistic_baseline_falls_back_to_c_1_when_no_fold_can_be_scored():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(31, 4))
    y = np.array(["a"] * 30 + ["b"], dtype=object)  # the fold holding "b" out trains on "a" alone
    search = logistic_baseline(x, y)
    assert search.best_params_["logisticregression__C"] == 1.0 and list(search.classes_) == ["a", "b"]
    singletons = logistic_baseline(x[:3], np.array(["a", "b", "c"]))  # no fold possible at all
    assert len(singletons.cv_results_["params"]) == 1 and singletons.best_params_["logisticregression__C"] == 1.0


@pytest.mark.parametrize("folds", [1, 0, 2.5, True])
def test_logistic_baseline_rejects_bad_folds(folds):
    x, y = np.zeros((10, 2)), np.array(["a", "b"] * 5)
    with pytest.raises(ValueError, match="folds"):
        logistic_baseline(x, y, folds=folds)


def test_subsample_rows_is_stratified_and_keeps_every_class():
    from multiomix._baseline import subsample_rows

    rows = np.arange(100, 1100)
    labels = np.array(["a"] * 900 + ["b"] * 97 + ["rare"] * 3)
    kept = subsample_rows(rows, labels, max_rows=100, random_state=1)
    assert len(kept) == 100 and len(set(kept)) == 100 and set(kept) <= set(rows)
    counts = pd.Series(labels[kept - 100]).value_counts()
    assert counts["a"] == 90 and counts["b"] in (9, 10) and counts["rare"] >= 1
    np.testing.assert_array_equal(kept, np.sort(kept))
    np.testing.assert_array_equal(subsample_rows(rows, labels, max_rows=1000), rows)  # not more: unchanged
    np.testing.assert_array_equal(kept, subsample_rows(rows, labels, max_rows=100, random_state=1))
    with pytest.raises(ValueError, match="positive integer"):
        subsample_rows(rows, labels, max_rows=0)
    with pytest.raises(ValueError, match="one label per row"):
        subsample_rows(rows, labels[:10])


def test_baseline_and_linear_path_use_at_most_max_rows(monkeypatch, caplog):
    """Beyond MAX_ROWS training rows the baseline and the fitted linear path see a stratified subset (logged)."""
    import multiomix.models._crossattomics as cao
    import multiomix.tl._fit as fit

    monkeypatch.setattr(fit, "MAX_ROWS", 50)
    monkeypatch.setattr(cao, "MAX_ROWS", 50)
    seen = []
    real = fit.logistic_baseline

    def spy(x, y, **kwargs):
        seen.append(x.shape[0])
        return real(x, y, **kwargs)

    monkeypatch.setattr(fit, "logistic_baseline", spy)
    monkeypatch.setattr(cao, "logistic_baseline", spy)
    mdata = _linear(120, seed=2)
    with caplog.at_level(logging.INFO, logger="multiomix"):
        mx.tl.fit_crossattomics(mdata, test_size=0.3, max_epochs=2, progress_bar=False)
    assert seen == [50, 50]  # linear path, then the baseline
    assert mdata.uns["crossattomics"]["baseline"]["n_train"] == 50
    assert "linear path: fitted on a stratified random 50 of the 84 training rows" in caplog.text
    assert "baseline: fitted on a stratified random 50 of the 84 training rows" in caplog.text
