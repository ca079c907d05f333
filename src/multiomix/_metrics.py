"""Metrics used by fits and benchmarks, in one place."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    adjusted_rand_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    normalized_mutual_info_score,
    roc_auc_score,
)


def classification_metrics(y_true, y_pred) -> dict[str, float]:
    """Accuracy, macro-F1 (over the classes present in truth or prediction), balanced accuracy and ``n``.

    Examples
    --------
    >>> classification_metrics(["a", "b", "b"], ["a", "b", "a"])["accuracy"]
    0.6666666666666666
    """
    y_true, y_pred = pd.Series(y_true).astype(str).to_numpy(), pd.Series(y_pred).astype(str).to_numpy()
    with warnings.catch_warnings():  # rare classes: a predicted class absent from the truth is expected, not news
        warnings.filterwarnings("ignore", message=r".*y_pred contains classes not in y_true", category=UserWarning)
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "n": int(len(y_true)),
        }


def clustering_metrics(y_true, clusters) -> dict[str, float]:
    """ARI and NMI (geometric) of a clustering against labels, and ``n``.

    Examples
    --------
    >>> clustering_metrics(["a", "a", "b"], [1, 1, 0])["ari"]
    1.0
    """
    y_true, clusters = pd.Series(y_true).astype(str).to_numpy(), pd.Series(clusters).astype(str).to_numpy()
    return {
        "ari": float(adjusted_rand_score(y_true, clusters)),
        "nmi": float(normalized_mutual_info_score(y_true, clusters, average_method="geometric")),
        "n": int(len(y_true)),
    }


def pearson_per_column(pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``pred`` with the same column of ``obs`` (NaN when constant).

    Examples
    --------
    >>> pearson_per_column(np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [4.0], [7.0]])).round(3)
    array([0.993])
    """
    pred = np.asarray(pred, dtype=np.float64)
    obs = np.asarray(obs, dtype=np.float64)
    pc, oc = pred - pred.mean(0), obs - obs.mean(0)
    denom = np.sqrt((pc**2).sum(0) * (oc**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (pc * oc).sum(0) / np.where(denom > 0, denom, 1), np.nan)


def r2_per_column(pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Coefficient of determination of each column (NaN for a constant column).

    Examples
    --------
    >>> r2_per_column(np.array([[1.0], [2.0]]), np.array([[1.0], [2.0]]))
    array([1.])
    """
    pred = np.asarray(pred, dtype=np.float64)
    obs = np.asarray(obs, dtype=np.float64)
    ss_res = ((obs - pred) ** 2).sum(0)
    ss_tot = ((obs - obs.mean(0)) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), np.nan)


def track_metrics(pred: np.ndarray, obs: np.ndarray, *, binary: bool, track_names) -> pd.DataFrame:
    """Per-track Pearson (regions and bins pooled) and, for binary targets, AUROC and AUPRC.

    ``pred`` and ``obs`` are ``(regions, tracks)`` or ``(regions, bins, tracks)``; a constant track (or one
    class only, for AUROC/AUPRC) gives NaN.

    Examples
    --------
    >>> pred, obs = np.array([[0.2], [0.9], [0.6]]), np.array([[0], [1], [1]])
    >>> track_metrics(pred, obs, binary=True, track_names=["t"]).round(3)
           pearson  auroc  auprc
    track
    t        0.904    1.0    1.0
    """
    p = np.asarray(pred, dtype=np.float64).reshape(-1, np.shape(pred)[-1])
    o = np.asarray(obs, dtype=np.float64).reshape(-1, np.shape(obs)[-1])
    index = pd.Index(list(map(str, track_names)), name="track")
    table = pd.DataFrame({"pearson": pearson_per_column(p, o)}, index=index)
    if binary:
        both = [len(np.unique(o[:, t])) == 2 for t in range(o.shape[1])]
        table["auroc"] = [roc_auc_score(o[:, t], p[:, t]) if b else np.nan for t, b in enumerate(both)]
        table["auprc"] = [average_precision_score(o[:, t], p[:, t]) if b else np.nan for t, b in enumerate(both)]
    return table
