"""The one fit pipeline behind every ``tl.fit_*`` and ``tl.transfer_labels``.

1. :func:`prepare_fit` checks the input (modalities aligned, unique obs names, finite values, labels), resolves
   the label column (inferred when ``label_key=None``), and the rows: ``obs[split_key]`` when it exists, else a
   stratified ``test_size`` hold-out of the labelled rows (written to ``obs['split']`` at the end); validation
   rows are carved, stratified, from the train rows when none are given. Rows without a label are kept and
   predicted but never trained on.
2. The model is set up on a **training view**: a new MuData around the user's matrices, so scvi-tools'
   registration never touches the user's object.
3. :func:`finish_classifier_fit` (or :func:`finish_fit`) computes the test metrics, fits the strong simple
   baseline on the same training rows, and writes every output under ``key_added`` at the very end, so a
   failed fit leaves the user's object exactly as it was.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from mudata import MuData
from scipy import sparse
from sklearn.model_selection import train_test_split

from .._baseline import MAX_ROWS, logistic_baseline, stack_modalities, subsample_rows
from .._logging import logger
from .._metrics import classification_metrics
from .._utils import (
    SPLIT_VALUES,
    check_aligned,
    check_finite,
    check_has_obs,
    check_modalities,
    check_output_columns,
    get_matrix,
    history_frame,
    in_memory,
    label_text,
    modality_matrix,
    new_mudata,
    plain_array,
    restore_on_error,
    split_indices,
    to_uns,
    warn_merged_labels,
    write_obs,
    write_obsm,
    write_uns,
)
from ..models.base import SeedEnsemble, check_n_models, resolve_layers
from ._results import check_replaceable, record_kind

#: suffixes of the columns multiomix writes; never taken for a label column
_OUTPUT_SUFFIXES = ("_prediction", "_transferred", "_unknown", "_confidence", "_match_score")


@dataclass
class FitData:
    """What :func:`prepare_fit` resolved: the label column, the rows and the training view."""

    label_key: str | None
    classes: list[str]
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    view: MuData
    new_split: pd.Categorical | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> dict[str, np.ndarray]:
        """Train / validation / test rows by name."""
        return {"train": self.train, "validation": self.validation, "test": self.test}


#: fit arguments never stored in ``uns[key_added]['params']``
_NOT_STORED = ("mdata", "adata", "trainer_kwargs", "accelerator", "devices", "progress_bar", "key_added", "split_key")


def options_for(function: Callable[..., Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Pick the fit's ``arguments`` that ``function`` (a model's ``__init__`` or ``train``) takes by keyword.

    Lets a fit pass its architecture and training options on without listing each one twice.

    Examples
    --------
    >>> options_for(lambda *, lr, batch_size: None, {"lr": 1e-3, "batch_size": 32, "key_added": "x"})
    {'lr': 0.001, 'batch_size': 32}
    """
    names = inspect.signature(function).parameters
    return {k: v for k, v in arguments.items()
            if k in names and names[k].kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            and k not in ("self", "mdata", "adata")}


def stored_params(
    arguments: Mapping[str, Any], *, exclude: Sequence[str] = (), defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return the fit's arguments to store in ``uns[key_added]["params"]`` (no data, devices or trainer options).

    Examples
    --------
    >>> stored_params({"mdata": None, "lr": None, "devices": "auto"}, defaults={"lr": 1e-3})
    {'lr': 0.001}
    """
    defaults = defaults or {}
    return {k: defaults.get(k) if v is None and k in defaults else v
            for k, v in arguments.items() if k not in (*_NOT_STORED, *exclude)}


def label_candidates(obs: pd.DataFrame, *, split_key: str = "split") -> list[str]:
    """Columns of ``obs`` that could hold class labels.

    Categorical or string columns with at least two classes that are not unique per row, other than the split
    column, private columns (``_*``) and multiomix outputs (``*_prediction``, ``*_transferred``, ...).

    Examples
    --------
    >>> obs = pd.DataFrame({"subtype": list("aabb"), "id": list("wxyz"), "split": ["train"] * 4})
    >>> label_candidates(obs)
    ['subtype']
    """
    out = []
    for name in obs.columns:
        column = obs[name]
        if name == split_key or str(name).startswith("_") or str(name).endswith(_OUTPUT_SUFFIXES):
            continue
        if not (isinstance(column.dtype, pd.CategoricalDtype) or column.dtype == object
                or pd.api.types.is_string_dtype(column.dtype)):
            continue
        values = column.dropna()
        n_unique = values.astype(str).nunique()
        if n_unique >= 2 and n_unique < len(values):
            out.append(str(name))
    # 'rna:subtype' beside 'subtype' with the same labels is mudata's pulled copy of it, not another candidate
    return [name for name in out if not _pulled_copy(obs, name, out)]


def _pulled_copy(obs: pd.DataFrame, name: str, candidates: list[str]) -> bool:
    """Whether ``name`` (``'<modality>:<column>'``) repeats the labels of the candidate ``<column>``."""
    base = name.split(":", 1)[1] if ":" in name else None
    if base is None or base not in candidates:
        return False
    pulled, own = obs[name], obs[base]
    return bool((pulled.isna() | (pulled.astype(str) == own.astype(str))).all())


def resolve_label_key(obs: pd.DataFrame, label_key: str | None, *, split_key: str = "split") -> str:
    """``label_key`` checked, or inferred when ``None`` and exactly one column is a plausible label.

    Examples
    --------
    >>> resolve_label_key(pd.DataFrame({"subtype": list("aabb")}), None)
    'subtype'
    """
    if label_key is not None:
        if label_key not in obs.columns:
            pulled = [c for c in obs.columns if str(c).endswith(f":{label_key}")]
            hint = (f" The column is in a modality's .obs: pass label_key={pulled[0]!r}, or copy it to the MuData "
                    f"with `mdata.obs[{label_key!r}] = mdata.obs[{pulled[0]!r}]`." if pulled else "")
            raise KeyError(f"Label key {label_key!r} not found in .obs; available columns: {list(obs.columns)}.{hint}")
        return label_key
    candidates = label_candidates(obs, split_key=split_key)
    if len(candidates) != 1:
        found = f"candidates: {candidates}" if candidates else "no categorical or string column with 2+ classes"
        numeric = [c for c in obs.columns
                   if pd.api.types.is_integer_dtype(obs[c]) or pd.api.types.is_bool_dtype(obs[c])]
        also = (f"; integer or boolean columns are never guessed, but may be named, e.g. label_key={numeric[0]!r}"
                if numeric and not candidates else "")
        raise ValueError(f"Cannot infer the label column ({found}); pass `label_key=`{also}.")
    logger.info(f"using .obs[{candidates[0]!r}] as labels")
    return candidates[0]


def _hold_out(rows: np.ndarray, labels: pd.Series, size: float, *, what: str, random_state: int):
    """Split ``rows`` into (kept, held out), stratified when every class can be.

    Classes with a single row are kept (trained on) and the others stratified; when the held-out rows are too
    few to hold every class, they are drawn at random, and that is logged.
    """
    if size <= 0 or len(rows) == 0:
        return rows, np.array([], dtype=int)
    n_held = max(1, int(round(size * len(rows))))
    n_classes = labels.iloc[rows].nunique()
    if len(rows) - n_held < 2:
        raise ValueError(
            f"{len(rows)} labelled rows are too few to hold out {what} ({size:g} of them) and still train on at least "
            f"2; add rows, lower the share, or give obs['split'] yourself."
        )
    text = labels.iloc[rows].astype(str).to_numpy()
    counts = pd.Series(text).value_counts()
    single = np.isin(text, counts.index[counts == 1])  # a class with one row stays on the training side
    pool = rows[~single]
    n_pool_classes = int((counts >= 2).sum())
    if single.any() and n_pool_classes >= 1 and n_pool_classes <= n_held <= len(pool) - n_pool_classes:
        kept, held = train_test_split(pool, test_size=n_held, random_state=random_state, stratify=text[~single])
        singles = list(counts.index[counts == 1][:5])
        logger.info(f"holding out {what}: classes with a single labelled row stay in training ({singles}); the "
                    "other classes are held out stratified")
        return np.sort(np.concatenate([kept, rows[single]])), np.sort(held)
    can_stratify = counts.min() >= 2 and n_held >= n_classes and len(rows) - n_held >= n_classes
    if not can_stratify and n_classes > 1 and len(rows) > n_classes:
        logger.info(f"holding out {what}: {n_held} held-out rows cannot hold each of the {n_classes} classes, so "
                    "they are drawn at random (not stratified)")
    kept, held = train_test_split(rows, test_size=n_held, random_state=random_state,
                                  stratify=text if can_stratify else None)
    return np.sort(kept), np.sort(held)


def check_input(mdata: MuData, modalities: Sequence[str], layers: Mapping[str, str | None]) -> None:
    """Check the input before any fit: rows and features exist, modalities aligned, obs names unique, values finite.

    Examples
    --------
    >>> check_input(mdata, ["rna", "mirna"], {"rna": None, "mirna": None})  # doctest: +SKIP
    """
    check_modalities(mdata, list(modalities))
    check_has_obs(mdata, needs="there is nothing to fit")
    if not mdata.obs_names.is_unique:
        duplicated = list(mdata.obs_names[mdata.obs_names.duplicated()].unique()[:5])
        raise ValueError(f"mdata.obs_names has duplicates (e.g. {duplicated}); run `mdata.obs_names_make_unique()`.")
    check_aligned(mdata, modalities)
    for mod in modalities:
        adata = mdata.mod[mod]
        if not adata.var_names.is_unique:
            duplicated = list(adata.var_names[adata.var_names.duplicated()].unique()[:5])
            raise ValueError(f"Modality {mod!r} has duplicated feature names (e.g. {duplicated}).")
        layer = layers.get(mod)
        matrix = modality_matrix(adata, layer, modality=mod)
        if not getattr(adata, "isbacked", False):
            check_finite(matrix, f"Modality {mod!r} ({'X' if layer is None else 'layer ' + layer})")


def training_view(
    mdata: MuData,
    *,
    modalities: Sequence[str],
    layers: Mapping[str, str | None],
    label_key: str | None = None,
    labels: pd.Categorical | None = None,
    obsm: Mapping[str, Sequence[str]] | None = None,
    var: Mapping[str, Sequence[str]] | None = None,
) -> MuData:
    """Build a new MuData around ``mdata``'s matrices (no copy) for scvi-tools to register.

    Only the ``var`` columns the model reads (``var``: per modality) are copied, so that whatever else a user keeps
    in ``var`` cannot get in the way of the model (e.g. of ``model.save(..., save_anndata=True)``).

    Examples
    --------
    >>> view = training_view(mdata, modalities=["rna"], layers={"rna": None})  # doctest: +SKIP
    """
    mods = {}
    for mod in modalities:
        source = mdata.mod[mod]
        matrix = get_matrix(source, layers.get(mod), modality=mod)
        if getattr(source, "isbacked", False):  # minibatches are random rows, which h5py cannot read unsorted
            matrix = in_memory(matrix)
            check_finite(matrix, f"Modality {mod!r} ({'X' if layers.get(mod) is None else 'layer ' + layers[mod]})")
            kind = "sparse" if sparse.issparse(matrix) else "dense"
            logger.info(f"modality {mod!r} is backed: read into memory ({kind}) for training")
        if isinstance(matrix, sparse.spmatrix | sparse.sparray) and matrix.format != "csr":
            matrix = matrix.tocsr()  # minibatches are row slices (a sparse copy, never densified)
        columns = [c for c in (var or {}).get(mod, ()) if c in source.var.columns]  # a missing one: the model says
        adata = ad.AnnData(X=matrix, obs=pd.DataFrame(index=mdata.obs_names),
                           var=source.var[columns].copy().rename_axis(None))
        if layers.get(mod) is not None:
            adata.layers[layers[mod]] = matrix
        for key in (obsm or {}).get(mod, ()):
            adata.obsm[key] = plain_array(source.obsm[key])
        mods[mod] = adata
    view = new_mudata(mods)
    if label_key is not None:
        view.obs[label_key] = labels
    return view


def prepare_fit(
    mdata: MuData,
    *,
    label_key: str | None,
    modalities: Sequence[str],
    layer: str | Mapping[str, str | None] | None = None,
    supervised: bool = True,
    split_key: str = "split",
    test_size: float = 0.2,
    validation_size: float = 0.15,
    random_state: int = 0,
    obsm: Mapping[str, Sequence[str]] | None = None,
    var: Mapping[str, Sequence[str]] | None = None,
    output_key: str | None = None,
) -> FitData:
    """Resolve labels and rows and build the training view (nothing is written to ``mdata``).

    Parameters
    ----------
    mdata
        The user's MuData.
    label_key
        Label column, or ``None`` to infer it (supervised fits) / to fit without labels.
    modalities, layer
        Modalities the model reads and the layer of each.
    supervised
        Whether labels are required (inferred when ``label_key`` is ``None``).
    split_key
        Column with ``train``/``validation``/``test``; when absent, a stratified ``test_size`` share of the
        labelled rows is held out for testing, a ``validation_size`` share of the rest for early stopping, and
        both are written to ``obs['split']`` with the outputs.
    test_size
        Share of the labelled rows held out when there is no split column (0: train on all, no test metrics).
    validation_size
        Share of the train rows held out for early stopping when there are no ``validation`` rows.
    random_state
        Seed of the hold-outs.
    obsm
        Per modality, ``obsm`` keys the model reads.
    var
        Per modality, ``var`` columns the model reads (the only ones the view carries).
    output_key
        ``key_added`` of a fit that writes class predictions: refuse, before training, to overwrite a user's
        ``obs['<key>_prediction']`` / ``obs['<key>_confidence']`` (see :func:`~multiomix._utils.check_output_columns`).

    Returns
    -------
    :class:`FitData`.

    Examples
    --------
    >>> fit = prepare_fit(mdata, label_key=None, modalities=["rna", "mirna"])  # doctest: +SKIP
    """
    if not 0 <= test_size < 1 or not 0 <= validation_size < 1:
        raise ValueError(f"Need 0 <= test_size < 1 and 0 <= validation_size < 1; got {test_size}, {validation_size}.")
    if output_key is not None:
        check_replaceable(mdata, output_key, "fit")
        check_output_columns(mdata, output_key, classifier_columns(output_key), obsm=classifier_obsm(output_key))
    layers = resolve_layers(modalities, layer)
    check_input(mdata, modalities, layers)
    if supervised or label_key is not None:
        label_key = resolve_label_key(mdata.obs, label_key, split_key=split_key)
    labels = mdata.obs[label_key] if label_key is not None else pd.Series(["_"] * mdata.n_obs, index=mdata.obs_names)
    labelled = np.flatnonzero(labels.notna().to_numpy())
    if label_key is not None and len(labelled) == 0:
        raise ValueError(f"Every one of the {len(labels)} rows of .obs[{label_key!r}] is missing. A Series assigned "
                         "to .obs is aligned by its index: labels indexed by anything but mdata.obs_names (e.g. "
                         "integer ids, while obs_names are strings) all become NaN; assign the values "
                         "(`series.to_numpy()` in obs order) or reindex the Series by obs_names first.")
    text = label_text(labels)
    if label_key is not None:
        warn_merged_labels(labels, label_key)
    notes: list[str] = []
    splits = split_indices(mdata.obs, split_key)
    new_split = None
    if splits is not None:
        train, validation, test = (np.intersect1d(splits[k], labelled) for k in SPLIT_VALUES)
        dropped = len(splits["train"]) - len(train)
        if dropped:
            notes.append(f"{dropped} train rows without a label are predicted but not trained on")
    else:
        rest, test = _hold_out(labelled, text, test_size, what="a test set", random_state=random_state)
        train, validation = rest, np.array([], dtype=int)
        assignment = pd.Series(pd.NA, index=mdata.obs_names, dtype=object)
        assignment.iloc[rest] = "train"
        assignment.iloc[test] = "test"
        new_split = pd.Categorical(assignment.to_numpy(), categories=list(SPLIT_VALUES))
        if test_size == 0:
            notes.append("test_size=0: every labelled row is trained on, so there are no test metrics")
    if len(validation) == 0:
        train, validation = _hold_out(train, text, validation_size, what="a validation set",
                                      random_state=random_state)
        if new_split is not None:  # the split written says which rows were validated on, so a refit reuses them
            new_split[validation] = "validation"
    if supervised:
        classes_in_train = text.iloc[train].unique()
        if len(classes_in_train) < 2:
            raise ValueError(f".obs[{label_key!r}] has a single class in the training rows "
                             f"({list(classes_in_train)}); need at least two.")
        category_order = (list(dict.fromkeys(label_text(pd.Series(labels.cat.categories))))  # 1 and '1': one
                          if isinstance(labels.dtype, pd.CategoricalDtype)
                          else sorted(map(str, classes_in_train)))
        classes = [c for c in category_order if c in set(classes_in_train)]
        unseen = ~text.iloc[validation].isin(classes).to_numpy()
        if unseen.any():
            notes.append(f"{int(unseen.sum())} validation rows of classes absent from training are not used")
            validation = validation[~unseen]
        untrained = ~text.iloc[test].isin(classes).to_numpy() & text.iloc[test].notna().to_numpy()
        if untrained.any():
            notes.append(f"{int(untrained.sum())} test rows of classes absent from training "
                         f"({sorted(set(text.iloc[test][untrained]))}) are predicted and scored as errors")
        small = [c for c in classes if (text.iloc[train] == c).sum() < 3]
        if small:
            logger.warning(f"classes with fewer than 3 training rows: {small}")
        view_labels = np.full(mdata.n_obs, classes[0], dtype=object)
        used = np.concatenate([train, validation])
        view_labels[used] = text.iloc[used].to_numpy()
        view = training_view(mdata, modalities=modalities, layers=layers, label_key=label_key,
                             labels=pd.Categorical(view_labels, categories=classes), obsm=obsm, var=var)
    else:
        classes = []
        view = training_view(mdata, modalities=modalities, layers=layers, obsm=obsm, var=var)
    for note in notes:
        logger.info(note)
    return FitData(label_key=label_key, classes=classes, train=train, validation=validation, test=test, view=view,
                   new_split=new_split, notes=notes)


def train_members(train_one: Callable[[int], Any], *, n_models: int, random_state: int):
    """Train ``n_models`` models with seeds ``random_state + i``: one model as itself, several as a seed ensemble.

    Parameters
    ----------
    train_one
        ``seed -> trained model`` (every member on the same rows and training view).
    n_models
        Number of members (a positive integer).
    random_state
        Seed of the first member.

    Examples
    --------
    >>> model = train_members(lambda seed: train_crossattomics(seed), n_models=1, random_state=0)  # doctest: +SKIP
    """
    n_models = check_n_models(n_models)
    members = [train_one(random_state + i) for i in range(n_models)]
    if n_models == 1:
        return members[0]
    logger.info(f"trained {n_models} models (seeds {random_state}-{random_state + n_models - 1}); the predictions "
                "average their class probabilities")
    return SeedEnsemble(members)


def first_member(model):
    """Return the model itself, or the first member of a seed ensemble (for what one network holds, e.g. attention)."""
    return model.members[0] if isinstance(model, SeedEnsemble) else model


def modality_features(mdata: MuData, modalities: Sequence[str], layers: Mapping[str, str | None]):
    """``rows -> concatenated modality matrices`` for the baseline (sparse stays sparse).

    Examples
    --------
    >>> features = modality_features(mdata, ["rna", "mirna"], {"rna": None, "mirna": None})  # doctest: +SKIP
    """
    matrices = [get_matrix(mdata.mod[m], layers.get(m), modality=m) for m in modalities]
    matrices = [in_memory(x) if getattr(mdata.mod[m], "isbacked", False) else x for m, x in zip(modalities, matrices)]
    return lambda rows: stack_modalities([m[rows] for m in matrices])


def classifier_columns(key: str) -> list[str]:
    """``obs`` columns a classifier fit (or scoring) under ``key`` writes."""
    return [f"{key}_prediction", f"{key}_confidence"]


def classifier_obsm(key: str, *, embedding: bool = True) -> list[str]:
    """``obsm`` entries a classifier fit (or scoring) under ``key`` writes (``embedding``: with ``X_<key>``)."""
    return ([f"X_{key}"] if embedding else []) + [f"{key}_proba"]


def prediction_categories(classes: Sequence[str], labels: pd.Series | None) -> list:
    """Return the categories of a prediction column.

    They are the label column's own values, so that ``labels == prediction`` works: for a categorical of
    strings its categories in their order (unused ones kept), then any class they lack; for numbers or
    booleans (which the model reads as text, ``'1'``, ``'True'``) the column's own values, when each class
    is one of them. Otherwise the model's classes as strings.

    Examples
    --------
    >>> labels = pd.Series(pd.Categorical(["b", "a"], categories=["b", "a", "unused"]))
    >>> prediction_categories(["a", "b"], labels)
    ['b', 'a', 'unused']
    >>> prediction_categories(["0", "1"], pd.Series([1, 0, 1]))
    [0, 1]
    >>> prediction_categories(["0", "1"], pd.Series([1.0, 0.0, None]))
    [0, 1]
    """
    classes = [str(c) for c in classes]
    if labels is None:
        return classes
    categorical = isinstance(labels.dtype, pd.CategoricalDtype)
    own = list(labels.cat.categories) if categorical else list(pd.unique(labels.dropna()))
    if own and all(isinstance(c, str) for c in own):
        return own + [c for c in classes if c not in own] if categorical else classes
    if not own or any(isinstance(c, str) for c in own):
        return classes
    by_text = dict(zip(label_text(pd.Series(own)), own))
    if len(by_text) != len(own) or not set(classes) <= set(by_text):
        return classes
    values = [v.item() if isinstance(v, np.generic) else v for v in (own if categorical else sorted(own))]
    # whole numbers stored as floats (integer labels with missing values) read 31, as the classes read '31'
    if all(isinstance(v, float) and v.is_integer() for v in values):
        return [int(v) for v in values]
    return values


def argmax_labels(scores: np.ndarray, classes: Sequence[str], categories: Sequence) -> pd.Categorical:
    """Return the class of each row's highest score (columns in ``classes`` order), categorical of ``categories``.

    ``categories`` may be the label column's own numbers or booleans (:func:`prediction_categories`); each class
    then becomes the value that reads as it.

    Examples
    --------
    >>> list(argmax_labels(np.array([[0.2, 0.8]]), ["a", "b"], ["b", "a"]))
    ['b']
    >>> list(argmax_labels(np.array([[0.2, 0.8]]), ["0", "1"], [0, 1]))
    [1]
    """
    categories = list(categories)
    by_text = dict(zip(label_text(pd.Series(categories)), categories))
    names = np.empty(len(classes), dtype=object)
    names[:] = [by_text.get(str(c), str(c)) for c in classes]
    return pd.Categorical(names[np.asarray(scores).argmax(1)], categories=categories)


def write_classifier_outputs(mdata: MuData, proba: pd.DataFrame, latent: np.ndarray | None, *, key: str,
                             label_key: str | None = None) -> pd.Series:
    """Write ``obs['<key>_prediction']``, ``obs['<key>_confidence']``, ``obsm['<key>_proba']``, ``obsm['X_<key>']``.

    The prediction's categories are those of ``obs[label_key]`` when it is a categorical of strings
    (:func:`prediction_categories`); ``obsm['<key>_proba']`` keeps the model's classes as its columns.

    Examples
    --------
    >>> write_classifier_outputs(mdata, proba, latent, key="crossattomics")  # doctest: +SKIP
    """
    check_output_columns(mdata, key, classifier_columns(key), obsm=classifier_obsm(key, embedding=latent is not None))
    labels = mdata.obs[label_key] if label_key is not None and label_key in mdata.obs.columns else None
    prediction = argmax_labels(proba.to_numpy(), list(proba.columns),
                               prediction_categories(list(proba.columns), labels))
    write_obs(mdata, f"{key}_prediction", prediction)
    write_obs(mdata, f"{key}_confidence", proba.to_numpy().max(1).astype(np.float32))
    write_obsm(mdata, f"{key}_proba", proba.to_numpy().astype(np.float32))
    if latent is not None:
        write_obsm(mdata, f"X_{key}", np.asarray(latent, dtype=np.float32))
    return pd.Series(prediction, index=mdata.obs_names)


def finish_fit(
    mdata: MuData, fit: FitData, model, *, key_added: str, params: Mapping[str, Any], split_key: str,
    outputs: Callable[[], dict[str, Any]],
) -> None:
    """Write the outputs (``outputs()`` writes model-specific keys), ``uns[key_added]`` and a new split column.

    Every write happens here, after training, inside :class:`~multiomix._utils.restore_on_error`.

    Examples
    --------
    >>> finish_fit(mdata, fit, model, key_added="ae", params={}, split_key="split", outputs=dict)  # doctest: +SKIP
    """
    with restore_on_error(mdata):
        extra = outputs()
        info: dict[str, Any] = {
            "params": to_uns(dict(params)),
            "history": history_frame(model.history) if model.history is not None else pd.DataFrame(),
            "n_train": len(fit.train), "n_validation": len(fit.validation), "n_test": len(fit.test),
            **extra,
        }
        if fit.notes:
            info["notes"] = np.asarray(fit.notes)
        if fit.new_split is not None:
            write_obs(mdata, split_key, fit.new_split)
        write_uns(mdata, key_added, info)


def finish_classifier_fit(
    mdata: MuData,
    fit: FitData,
    model,
    *,
    key_added: str,
    params: Mapping[str, Any],
    split_key: str,
    baseline: bool,
    baseline_features: Callable[[np.ndarray], Any] | None,
    random_state: int,
    extra: Callable[[], dict[str, Any]] | None = None,
    batch_size: int = 256,
    baseline_C: float | None = None,
) -> None:
    """Predict every row, score the test rows against the baseline, and write everything under ``key_added``.

    ``baseline_C``: the ``C`` the same inner search already chose on the same rows (CrossAttOmics' fitted linear
    path); the baseline is then fitted once at it instead of searching again.

    Writes ``obs['<key>_prediction']``, ``obs['<key>_confidence']``, ``obsm['<key>_proba']``,
    ``obsm['X_<key>']`` and ``uns[key_added]`` with ``params``, ``classes``, ``history``, row counts,
    ``test_metrics`` and ``baseline`` (its name, ``C`` and ``test_metrics``); logs one line model vs baseline.

    Examples
    --------
    >>> finish_classifier_fit(mdata, fit, model, key_added="crossattomics", params={}, split_key="split",
    ...                       baseline=True, baseline_features=features, random_state=0)  # doctest: +SKIP
    """
    proba = model.predict_proba(batch_size=batch_size)
    proba.index = mdata.obs_names
    latent = model.get_latent_representation(batch_size=batch_size)
    truth = label_text(mdata.obs[fit.label_key])
    prediction = proba.columns.to_numpy()[proba.to_numpy().argmax(1)]
    info: dict[str, Any] = {"classes": np.asarray(model.classes)}
    if len(fit.test):
        info["test_metrics"] = classification_metrics(truth.iloc[fit.test], prediction[fit.test])
    else:
        info["test_metrics_missing"] = "no test rows (test_size=0 or no 'test' rows in the split column)"
        logger.info("no test rows: test metrics are missing")
    if baseline and len(fit.test) and baseline_features is not None:
        peer = _baseline(fit, baseline_features, truth, random_state=random_state, C=baseline_C)
        info["baseline"] = peer
        ours, theirs = info["test_metrics"], peer["test_metrics"]
        logger.info(
            f"{key_added} vs baseline ({peer['name']}, C={peer['C']:g}) on {ours['n']} test rows: macro-F1 "
            f"{ours['macro_f1']:.3f} vs {theirs['macro_f1']:.3f}, accuracy {ours['accuracy']:.3f} vs "
            f"{theirs['accuracy']:.3f}"
        )

    def outputs() -> dict[str, Any]:
        write_classifier_outputs(mdata, proba, latent, key=key_added, label_key=fit.label_key)
        return {**info, **(extra() if extra is not None else {})}

    finish_fit(mdata, fit, model, key_added=key_added, params=params, split_key=split_key, outputs=outputs)


def _baseline(fit: FitData, features: Callable[[np.ndarray], Any], truth: pd.Series, *, random_state: int,
              C: float | None = None):
    # sorted, as the rows CrossAttOmics fits its linear path on: the inner CV's shuffled folds depend on row order,
    # and the baseline is to be that very regression
    train = np.sort(np.concatenate([fit.train, fit.validation]))
    if len(train) > MAX_ROWS:
        logger.info(f"baseline: fitted on a stratified random {MAX_ROWS:,} of the {len(train):,} training rows")
        train = subsample_rows(train, truth.iloc[train].to_numpy(), max_rows=MAX_ROWS, random_state=random_state)
    search = logistic_baseline(features(train), truth.iloc[train].to_numpy(), random_state=random_state, C=C)
    prediction = search.predict(features(fit.test))
    return {
        "name": "logistic_regression",
        "description": "standardised logistic regression on the concatenated inputs, class-weighted, C by inner CV",
        "C": float(search.best_params_["logisticregression__C"]),
        "n_train": len(train),
        "test_metrics": classification_metrics(truth.iloc[fit.test], prediction),
    }


def drop_class_outputs(mdata: MuData | ad.AnnData, key: str) -> None:
    """Remove the class outputs an earlier fit or ``predict`` wrote under ``key``, before a write that has none.

    An embedding-only fit (a translation UnitedNet, the multimodal autoencoder) or ``predict`` with such a model
    under a classifier's key would otherwise leave the classifier's predictions beside a record without classes.
    Outputs that no earlier multiomix run under ``key`` wrote are never touched.
    """
    if record_kind(mdata.uns.get(key)) not in ("fit", "scored"):
        return
    for column in (f"{key}_prediction", f"{key}_confidence"):
        if column in mdata.obs.columns:
            del mdata.obs[column]
            logger.info(f"removed .obs[{column!r}] (an earlier run under key_added={key!r})")
    if f"{key}_proba" in mdata.obsm:
        del mdata.obsm[f"{key}_proba"]
        logger.info(f"removed .obsm[{key + '_proba'!r}] (an earlier run under key_added={key!r})")
