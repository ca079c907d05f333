"""The strong simple peer fitted beside every supervised model on exactly the same rows."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

#: inverse regularisation strengths searched by the inner cross-validation
C_GRID = tuple(np.logspace(-4, 2, 7))
#: most training rows a logistic baseline is fitted on (a stratified random subset beyond that, see
#: :func:`subsample_rows`): its search fits 36 models, and a dense copy of all rows can take gigabytes
MAX_ROWS = 5000


def subsample_rows(rows: np.ndarray, labels: np.ndarray, *, max_rows: int = MAX_ROWS,
                   random_state: int = 0) -> np.ndarray:
    """At most ``max_rows`` of ``rows``, stratified by ``labels`` (every class keeps at least one row), sorted.

    ``rows`` unchanged when there are no more than ``max_rows``; ``labels`` holds the label of each row. The draw
    depends on the partition of the rows into classes, not on the labels' values: codes and names of the same
    classes give the same rows.

    Examples
    --------
    >>> rows = np.arange(10_000); labels = rows % 4
    >>> kept = subsample_rows(rows, labels, max_rows=3000)
    >>> len(kept), np.bincount(labels[kept]).tolist()
    (3000, [750, 750, 750, 750])
    >>> names = np.array(["d", "c", "b", "a"])[labels]
    >>> bool((subsample_rows(rows, names, max_rows=3000) == kept).all())
    True
    """
    rows, labels = np.asarray(rows), np.asarray(labels).astype(str)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int | np.integer) or max_rows < 1:
        raise ValueError(f"`max_rows` must be a positive integer, got {max_rows!r}.")
    if len(labels) != len(rows):
        raise ValueError(f"`labels` must hold one label per row: {len(labels)} labels for {len(rows)} rows.")
    if len(rows) <= max_rows:
        return rows
    rng = np.random.default_rng(random_state)
    # classes in order of first appearance, so that the draw is the same whatever stands for a class (codes or
    # names sort differently): the baseline and CrossAttOmics' fitted linear path subsample the same rows
    _, first, codes, counts = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    classes, codes, counts = order, rank[codes.ravel()], counts[order]
    quota = np.maximum(1, np.floor(counts * max_rows / len(rows))).astype(int)
    for c in rng.permutation(np.flatnonzero(quota < counts))[: max(0, max_rows - quota.sum())]:
        quota[c] += 1  # the rows the floor left out, one more for as many random classes
    kept = [rng.choice(np.flatnonzero(codes == c), quota[c], replace=False) for c in range(len(classes))]
    return np.sort(rows[np.concatenate(kept)])


def stack_modalities(matrices: Sequence) -> np.ndarray | sparse.csr_matrix:
    """Concatenate per-modality matrices column-wise (sparse stays sparse).

    Examples
    --------
    >>> stack_modalities([np.ones((2, 1)), np.zeros((2, 2))]).shape
    (2, 3)
    """
    if any(sparse.issparse(m) for m in matrices):
        return sparse.hstack([sparse.csr_matrix(m) for m in matrices]).tocsr()
    return np.hstack([np.asarray(m, dtype=np.float32) for m in matrices])


def logistic_baseline(x_train, y_train: np.ndarray, *, random_state: int = 0, class_weighting: bool = True,
                      folds: int = 5, C: float | None = None):
    """Standardised logistic regression with ``C`` chosen by inner stratified cross-validation.

    Parameters
    ----------
    x_train
        Training matrix (dense or sparse; sparse data are scaled without centring).
    y_train
        Training labels.
    random_state
        Seed of the inner folds.
    class_weighting
        ``class_weight="balanced"``, as the deep models weight their loss.
    folds
        Inner folds (at least 2), at most the size of the largest class. Classes rarer than ``folds`` sit in the
        held-out part of fewer folds, so ``C`` is searched even when a few classes have one or two members.
        ``C = 1`` without a search when no fold can be scored (every class a singleton, or a fold whose training
        part holds one class).
    C
        Fit at this ``C`` without a search (one fit instead of a grid of cross-validated ones), e.g. the ``C`` the
        same search already chose on the same rows.

    Returns
    -------
    The fitted :class:`~sklearn.model_selection.GridSearchCV` (``best_params_`` holds ``C``).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(40, 3)); y = (x[:, 0] > 0).astype(int)
    >>> logistic_baseline(x, y).score(x, y.astype(str)) > 0.9
    True
    """
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 2:
        raise ValueError(f"`folds` must be an integer of at least 2, got {folds!r}.")
    y_train = np.asarray(y_train).astype(str)
    counts = np.unique(y_train, return_counts=True)[1]
    n_splits = int(min(folds, counts.max()))
    scaler = StandardScaler(with_mean=not sparse.issparse(x_train))
    lr = LogisticRegression(max_iter=2000, class_weight="balanced" if class_weighting else None)
    pipeline = make_pipeline(scaler, lr)
    fixed_c = GridSearchCV(pipeline, {"logisticregression__C": [1.0 if C is None else float(C)]},
                           cv=[(np.arange(len(y_train)),) * 2])
    if n_splits < 2 or C is not None:  # every class a singleton: no inner CV possible, keep sklearn's default C
        return fixed_c.fit(x_train, y_train)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    search = GridSearchCV(pipeline, {"logisticregression__C": list(C_GRID)}, cv=splitter, scoring="f1_macro")
    with warnings.catch_warnings():  # classes rarer than `folds` are absent from some folds, by design
        for message in ("The least populated class", "y_pred contains classes not in y_true",
                        "One or more of the test scores are non-finite"):
            warnings.filterwarnings("ignore", message=message)
        warnings.filterwarnings("ignore", category=FitFailedWarning)
        search.fit(x_train, y_train)
    # a fold whose training part holds a single class cannot be fitted: no score for any C, so no search
    return search if np.isfinite(search.best_score_) else fixed_c.fit(x_train, y_train)
