"""Train / validation / test splits written into ``obs``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from sklearn.model_selection import train_test_split

from .._logging import logger
from .._utils import SPLIT_VALUES, write_obs


def split(
    data: AnnData | MuData,
    *,
    label_key: str | None = None,
    test_size: float = 0.2,
    validation_size: float = 0.0,
    random_state: int = 0,
    key_added: str = "split",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Write a (stratified) ``train``/``validation``/``test`` split into ``obs[key_added]``.

    Parameters
    ----------
    data
        AnnData or MuData.
    label_key
        Column of ``obs`` to stratify by. A class with a single row stays in ``train`` (logged), as in the fits'
        own hold-out; a split that cannot put every other class on both sides (more classes than held-out rows)
        raises a ``ValueError`` saying so. The held-out rows are then divided into validation and test,
        stratified where every class can be. Rows without a label
        get no split (missing), as in the fits: they are predicted, never trained on or scored.
    test_size
        Fraction of the (labelled) rows in ``test``.
    validation_size
        Fraction of the (labelled) rows in ``validation`` (0: the models carve their own from ``train``).
    random_state
        Seed.
    key_added
        Column written.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. ``obs[key_added]`` is categorical with categories
    ``['train', 'validation', 'test']``.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.tcga_brca()
    >>> mx.pp.split(mdata, label_key="subtype", test_size=0.2, random_state=0)
    >>> int(mdata.obs["split"].value_counts()["test"])
    154
    """
    if not 0 <= test_size < 1 or not 0 <= validation_size < 1 or test_size + validation_size >= 1:
        raise ValueError(f"Need 0 <= test_size, validation_size and their sum < 1; got {test_size}, {validation_size}.")
    if key_added in data.obs.columns:  # an earlier split (only train/validation/test and missing values) is replaced
        earlier = set(data.obs[key_added].dropna().astype(str)) - {"train", "validation", "test"}
        if earlier or key_added == label_key:
            raise ValueError(f".obs[{key_added!r}] holds the user's own values (e.g. {sorted(earlier)[:3]}), which "
                             f"key_added={key_added!r} would overwrite; pass another key_added (default 'split').")
    stratify, rows = None, np.arange(data.n_obs)
    if label_key is not None:
        if label_key not in data.obs.columns:
            raise KeyError(f"label_key {label_key!r} not found in .obs; columns: {list(data.obs.columns)}.")
        rows = np.flatnonzero(data.obs[label_key].notna().to_numpy())  # unlabelled rows get no split
        if len(rows) < 2:
            raise ValueError(f".obs[{label_key!r}] has {len(rows)} labelled rows; a split needs at least 2.")
        stratify = data.obs[label_key].iloc[rows].astype(str).to_numpy()
    held_out = test_size + validation_size
    singles = np.zeros(len(rows), dtype=bool)
    if stratify is not None and held_out > 0:
        counts = pd.Series(stratify).value_counts()
        singles = np.isin(stratify, counts.index[counts < 2])
        if singles.all():
            raise ValueError(f"Every class of .obs[{label_key!r}] has a single row: there is nothing to hold out "
                             "stratified; pass label_key=None for an unstratified split.")
    # the rows that are split: single-row classes stay in train
    _check_enough_rows(int((~singles).sum()), test_size, validation_size, labelled=label_key is not None)
    if singles.any():
        logger.info(f"split: classes of .obs[{label_key!r}] with a single row stay in train: "
                    f"{sorted(set(stratify[singles]))[:5]}")
    if stratify is not None and held_out > 0:
        _check_stratifiable(stratify[~singles], held_out, label_key)
    data = data.copy() if copy else data
    assignment = np.full(data.n_obs, None, dtype=object)
    assignment[rows] = "train"
    rows, stratify = rows[~singles], (None if stratify is None else stratify[~singles])
    if held_out > 0:
        # whole rows: scikit-learn rounds a float share up, and 0.2 + 0.1 is 0.30000000000000004 (31 rows of 100)
        rest, held = train_test_split(rows, test_size=_n_held(len(rows), held_out), random_state=random_state,
                                      stratify=stratify)
        assignment[held] = "test"
        if validation_size > 0 and test_size > 0:
            share = test_size / held_out
            held_labels = None if stratify is None else stratify[np.searchsorted(rows, held)]
            sub = held_labels if held_labels is not None and _can_stratify(held_labels, share) else None
            val, _ = train_test_split(held, test_size=_n_held(len(held), share), random_state=random_state,
                                      stratify=sub)
            assignment[val] = "validation"
        elif validation_size > 0:
            assignment[held] = "validation"
    write_obs(data, key_added, pd.Categorical(assignment, categories=list(SPLIT_VALUES)))
    return data if copy else None


def _n_held(n: int, share: float) -> int:
    """Rows held out for a share: ``ceil(share * n)`` as scikit-learn's ``train_test_split``, without float noise.

    Examples
    --------
    >>> _n_held(100, 0.2 + 0.1), _n_held(100, 0.25)
    (30, 25)
    """
    return int(np.ceil(round(share * n, 9)))


def _check_enough_rows(n: int, test_size: float, validation_size: float, *, labelled: bool) -> None:
    """Raise a clear error when ``n`` rows are too few to keep training rows beside the held-out ones."""
    rows = "labelled rows" if labelled else "rows"
    if n == 0:
        raise ValueError(f"The data have no {rows} (0): there is nothing to split.")
    held_out = test_size + validation_size
    if held_out == 0:
        return
    n_held = _n_held(n, held_out)
    both = test_size > 0 and validation_size > 0
    if n - n_held < 1 or (both and n_held < 2):
        least = next(k for k in range(2, 10**9) if k - _n_held(k, held_out) >= 1 and (not both or
                                                                                      _n_held(k, held_out) >= 2))
        raise ValueError(f"Too few {rows} to split: {n}, of which test_size + validation_size = {held_out:g} would "
                         f"hold out {n_held}, leaving {n - n_held} to train on"
                         + (" and too few to fill both validation and test" if both and n_held < 2 else "")
                         + f". These sizes need at least {least} {rows}.")


def _can_stratify(labels: np.ndarray, share: float) -> bool:
    """Whether a stratified split of ``labels`` with ``share`` held out puts every class on both sides."""
    counts = pd.Series(labels).value_counts()
    n_held = _n_held(len(labels), share)
    return counts.min() >= 2 and counts.size <= n_held and counts.size <= len(labels) - n_held


def _check_stratifiable(labels: np.ndarray, held_out: float, label_key: str) -> None:
    """Raise a clear error when a stratified split of ``labels`` with ``held_out`` held out is impossible."""
    counts = pd.Series(labels).value_counts()
    n_held = _n_held(len(labels), held_out)
    if counts.size > n_held or counts.size > len(labels) - n_held:
        raise ValueError(f"A stratified split puts every class on both sides: {counts.size} classes of "
                         f".obs[{label_key!r}] need at least {counts.size} held-out and {counts.size} kept rows, but "
                         f"test_size + validation_size = {held_out:g} holds out {n_held} of {len(labels)}. "
                         "Change the sizes, or pass label_key=None for an unstratified split.")

