"""Train / validation / test splits written into ``obs``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from sklearn.model_selection import train_test_split

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
        Column of ``obs`` to stratify by (classes with a single member cannot be stratified and raise).
    test_size
        Fraction of all rows in ``test``.
    validation_size
        Fraction of all rows in ``validation`` (0: the models carve their own from ``train``).
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
    >>> mdata.obs["split"].value_counts()["test"]
    154
    """
    if not 0 <= test_size < 1 or not 0 <= validation_size < 1 or test_size + validation_size >= 1:
        raise ValueError(f"Need 0 <= test_size, validation_size and their sum < 1; got {test_size}, {validation_size}.")
    stratify = None
    if label_key is not None:
        if label_key not in data.obs.columns:
            raise KeyError(f"label_key {label_key!r} not found in .obs; columns: {list(data.obs.columns)}.")
        stratify = data.obs[label_key].astype(str).to_numpy()
        if data.obs[label_key].isna().any():
            raise ValueError(f".obs[{label_key!r}] has missing values; cannot stratify.")
    data = data.copy() if copy else data
    rows = np.arange(data.n_obs)
    assignment = np.full(data.n_obs, "train", dtype=object)
    held_out = test_size + validation_size
    if held_out > 0:
        rest, held = train_test_split(rows, test_size=held_out, random_state=random_state, stratify=stratify)
        assignment[held] = "test"
        if validation_size > 0 and test_size > 0:
            sub = None if stratify is None else stratify[held]
            val, _ = train_test_split(held, test_size=test_size / held_out, random_state=random_state, stratify=sub)
            assignment[val] = "validation"
        elif validation_size > 0:
            assignment[held] = "validation"
    write_obs(data, key_added, pd.Categorical(assignment, categories=list(SPLIT_VALUES)))
    return data if copy else None
