"""Calibration of transferred labels: temperature scaling, reliability, and the threshold for 'unknown' cells.

Pure NumPy on class probabilities of held-out reference cells; :func:`~multiomix.tl.transfer_labels` (see
``_transfer.py``) calls :func:`calibrate` and writes what it returns into ``query.uns[key]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_auc_score

#: probabilities are clipped here before taking logs
_EPS = 1e-7


def temperature_scale(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Return ``softmax(log(proba) / temperature)`` row-wise (argmax unchanged)."""
    logp = np.log(np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1.0)) / float(temperature)
    logp -= logp.max(1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(1, keepdims=True)


def nll(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the integer labels ``y`` under ``proba``."""
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], _EPS, 1.0))))


def fit_temperature(proba: np.ndarray, y: np.ndarray, *, bounds: tuple[float, float] = (0.1, 10.0),
                    smoothing: float | None = None) -> float:
    """Temperature minimising the NLL of ``y`` (integer class codes) under the temperature-scaled ``proba``.

    The targets are smoothed by ``smoothing`` (default ``1 / (n + 2)``, Laplace's rule of succession): with a
    small held-out set that the model gets all right, the plain NLL keeps falling as the temperature goes to 0
    (every confidence 1); the smoothed one stops where the confidence matches ``(n + 1) / (n + 2)``.
    """
    n = len(y)
    if n == 0:
        return 1.0
    eps = 1.0 / (n + 2) if smoothing is None else float(smoothing)
    rows = np.arange(n)

    def loss(log_t: float) -> float:
        logp = np.log(np.clip(temperature_scale(proba, np.exp(log_t)), _EPS, 1.0))
        return float(-np.mean((1 - eps) * logp[rows, y] + eps * logp.mean(1)))

    res = minimize_scalar(loss, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-4})
    return float(np.exp(res.x))


def reliability_table(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Binned reliability: per equal-width confidence bin, the number of cells, mean confidence and accuracy."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = which == b
        rows.append({"lower": edges[b], "upper": edges[b + 1], "n": int(m.sum()),
                     "confidence": float(confidence[m].mean()) if m.any() else np.nan,
                     "accuracy": float(correct[m].mean()) if m.any() else np.nan})
    return pd.DataFrame(rows)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> float:
    """ECE: the cell-weighted mean of ``|accuracy - confidence|`` over equal-width confidence bins."""
    table = reliability_table(confidence, correct, n_bins)
    used = table["n"] > 0
    if not used.any():
        return float("nan")
    t = table[used]
    return float((t["n"] * (t["accuracy"] - t["confidence"]).abs()).sum() / t["n"].sum())


def match_score(confidence: np.ndarray, agreement: np.ndarray) -> np.ndarray:
    """How well cells match a reference type: the mean of their confidence and their neighbour agreement.

    ``agreement`` is the share of a cell's nearest reference cells that carry its most probable class
    (:func:`~multiomix.tl._knn_vote.neighbour_agreement`). A cell of a type missing from the reference tends to
    get a low confidence, or sit among reference cells of several types, or both: the two err on different cells.

    Examples
    --------
    >>> match_score(np.array([0.9, 0.6]), np.array([1.0, 0.2]))
    array([0.95, 0.4 ])
    """
    return (np.asarray(confidence, dtype=np.float64) + np.asarray(agreement, dtype=np.float64)) / 2


def leave_type_out_scores(proba: np.ndarray, y: np.ndarray, left_out: Mapping[int, np.ndarray] | None = None,
                          left_out_agreement: Mapping[int, np.ndarray] | None = None, *,
                          known_agreement: np.ndarray | None = None,
                          left_out_transform: Callable[[np.ndarray], np.ndarray] | None = None,
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Scores of 'known' cells, and of 'novel' cells when each type in ``y`` is left out in turn.

    Known cells are scored as query cells are: every held-out cell once, by its confidence over all classes (by
    its :func:`match_score` with ``known_agreement``, its neighbour agreement taken as the query's is). For a
    left-out class ``c``, the cells of type ``c`` are cells of a type the classifier does not know: the class-``c``
    column is removed and the rest renormalised, and their max probability is a *novel* score (their match score
    with ``left_out_agreement[c]``, each cell's agreement among the reference cells of the other types); the novel
    scores of every type are pooled. ``left_out[c]``, where given, replaces ``proba`` for left-out class ``c``
    (e.g. a kNN vote taken without the reference cells of type ``c``), after ``left_out_transform``; with
    ``left_out_agreement``, types without an agreement are skipped. (Scoring the known cells with a class left
    out too would raise their scores above what query cells of known types get, so the threshold chosen on
    them would flag more known query cells than its false-unknown rate says.)
    """
    if (left_out_agreement is None) != (known_agreement is None):
        raise ValueError("Match scores need both `left_out_agreement` (novel cells) and `known_agreement` (known "
                         "cells), or neither.")
    y = np.asarray(y)
    known = proba.max(1) / np.clip(proba.sum(1), _EPS, None)
    if known_agreement is not None:
        known = match_score(known, known_agreement)
    novel = []
    for c in np.unique(y):
        if left_out_agreement is not None and int(c) not in left_out_agreement:
            continue
        rows = y == c
        source = proba if left_out is None or int(c) not in left_out else left_out[int(c)]
        if source is not proba and left_out_transform is not None:
            source = left_out_transform(source[rows])
        else:
            source = source[rows]
        rest = np.delete(source, c, axis=1)
        conf = rest.max(1) / np.clip(rest.sum(1), _EPS, None)
        if left_out_agreement is not None:
            conf = match_score(conf, np.asarray(left_out_agreement[int(c)])[rows])
        novel.append(conf)
    return known, (np.concatenate(novel) if novel else np.array([]))


def choose_unknown_threshold(known: np.ndarray, novel: np.ndarray, *, max_false_unknown: float = 0.05) -> dict:
    """Choose the score (confidence or match score) threshold below which a cell is unknown.

    The threshold maximises Youden's J = TPR - FPR among thresholds that flag at most ``max_false_unknown`` of the
    known cells (the false-unknown rate); returns it with its rates and the AUROC of known vs novel scores. Every
    threshold between the chosen score and the next lower one flags the same held-out cells; the midpoint of that
    gap is returned, so that a query cell a little below the lowest held-out known score is not flagged at once
    (with well separated scores, the threshold sits halfway between the novel and the known cells).

    Examples
    --------
    >>> round(choose_unknown_threshold(np.array([0.9, 0.95, 0.99]), np.array([0.3, 0.5]))["threshold"], 3)
    0.7
    """
    if len(known) == 0 or len(novel) == 0:
        return {"threshold": 0.0, "youden_j": float("nan"), "false_unknown_rate": 0.0,
                "true_unknown_rate": float("nan"), "auroc": float("nan")}
    candidates = np.unique(np.concatenate([known, novel, [0.0]]))
    known_sorted, novel_sorted = np.sort(known), np.sort(novel)
    fpr = np.searchsorted(known_sorted, candidates, side="left") / len(known)  # share of known strictly below
    tpr = np.searchsorted(novel_sorted, candidates, side="left") / len(novel)
    j = np.where(fpr <= max_false_unknown, tpr - fpr, -np.inf)
    best = int(np.argmax(j))
    threshold = (candidates[best] + candidates[best - 1]) / 2 if best > 0 else candidates[best]
    auroc = float(roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(novel))], -np.r_[known, novel]))
    return {"threshold": float(threshold), "youden_j": float(j[best]), "false_unknown_rate": float(fpr[best]),
            "true_unknown_rate": float(tpr[best]), "auroc": auroc}


def calibrate(proba: np.ndarray, y: np.ndarray, *, max_false_unknown: float = 0.05, n_bins: int = 10,
              left_out: Mapping[int, np.ndarray] | None = None,
              left_out_agreement: Mapping[int, np.ndarray] | None = None,
              known_agreement: np.ndarray | None = None) -> dict:
    """Temperature, unknown threshold and reliability data from held-out reference cells.

    ``proba`` (cells x classes) are the model's probabilities for held-out reference cells, ``y`` their integer
    class codes, ``left_out`` optional per-class replacements for the leave-one-type-out scores (see
    :func:`leave_type_out_scores`; temperature-scaled here like ``proba``). With ``left_out_agreement`` (and
    ``known_agreement``, the held-out cells' neighbour agreement taken as the query's is) the
    unknown threshold applies to the :func:`match_score` (``unknown_score: 'match'``), else to the confidence
    (``'confidence'``); the leave-one-type-out AUROC of the confidence alone is kept as ``auroc_confidence``.
    Returns a dict for ``uns[key]``.
    """
    y = np.asarray(y, dtype=int)
    temperature = fit_temperature(proba, y)
    calibrated = temperature_scale(proba, temperature)
    correct = proba.argmax(1) == y
    def scale(p: np.ndarray) -> np.ndarray:
        return temperature_scale(p, temperature)

    known, novel = leave_type_out_scores(calibrated, y, left_out, left_out_transform=scale)
    by_confidence = choose_unknown_threshold(known, novel, max_false_unknown=max_false_unknown)
    score = "confidence" if left_out_agreement is None else "match"
    unknown = by_confidence
    if score == "match":
        known, novel = leave_type_out_scores(calibrated, y, left_out, left_out_agreement,
                                             known_agreement=known_agreement, left_out_transform=scale)
        unknown = choose_unknown_threshold(known, novel, max_false_unknown=max_false_unknown)
        unknown["auroc_confidence"] = by_confidence["auroc"]
    return {
        "temperature": temperature,
        "unknown_score": score,
        "unknown_threshold": unknown["threshold"],
        "unknown_selection": {"method": "leave-one-type-out on held-out reference cells, max Youden's J with "
                              f"false-unknown rate <= {max_false_unknown:g}", "score": score,
                              **{k: v for k, v in unknown.items() if k != "threshold"}},
        "calibration": {
            "n_cells": int(len(y)),
            "nll_before": nll(proba, y), "nll_after": nll(calibrated, y),
            "ece_before": expected_calibration_error(proba.max(1), correct, n_bins),
            "ece_after": expected_calibration_error(calibrated.max(1), correct, n_bins),
            "accuracy": float(correct.mean()) if len(y) else float("nan"),
        },
        "reliability": reliability_table(calibrated.max(1), correct, n_bins),
        "reliability_uncalibrated": reliability_table(proba.max(1), correct, n_bins),
    }


__all__ = [
    "calibrate",
    "choose_unknown_threshold",
    "expected_calibration_error",
    "fit_temperature",
    "leave_type_out_scores",
    "match_score",
    "nll",
    "reliability_table",
    "temperature_scale",
]
