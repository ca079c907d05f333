"""What every annotation transfer shares: calibration, 'unknown' flags, kNN on a latent space, and the outputs.

Any model with a latent space (and, optionally, class probabilities) goes through the same steps:

1. class probabilities for *held-out reference cells* (cells the model did not train on) and for the query; with
   ``n_models > 1``, UnitedNets cross-fitted on folds of the reference score every reference cell out of fold
   (:func:`_cross_fit_folds`) and the query by their mean;
2. :func:`fit_temperature`: one temperature ``T`` minimising the negative log-likelihood of the held-out
   reference labels (targets smoothed by ``1 / (n + 2)``) under ``p_T ∝ p ** (1 / T)`` (temperature scaling
   of the log-probabilities; the most probable class never changes);
3. :func:`knn_ensemble` (models with classes): the calibrated model probabilities averaged with a kNN vote of
   the reference cells in a joint PCA of reference + query (label-free), then calibrated again;
4. :func:`leave_type_out_scores` and :func:`choose_unknown_threshold`: a threshold on the match score (the mean
   of the confidence and the neighbour agreement, :func:`match_score`) below which a query cell is flagged
   ``unknown``, chosen on the reference only by leaving each reference type out in turn (its held-out cells are
   scored without their class: the calibrated probabilities renormalised over the other classes, the kNN vote
   and the neighbour agreement taken among the reference cells of the other types; every held-out cell, scored
   as the query is, is a known cell), never on the query;
5. :func:`write_transfer`: the outputs under one key, written only when everything above succeeded.

Steps 2 and 4 live in ``_calibration.py`` and step 3 in ``_knn_vote.py`` (both re-exported here); this file
holds the orchestration.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from sklearn.model_selection import train_test_split

from .._logging import each_line_once, logger
from .._utils import (
    check_aligned,
    check_labels,
    check_modalities,
    check_output_columns,
    get_matrix,
    in_memory,
    label_text,
    measured_modalities,
    new_mudata,
    restore_on_error,
    to_uns,
    warn_merged_labels,
    write_obs,
    write_obsm,
    write_uns,
)
from ..models.base import matched_input, resolve_layers
from ..train._runner import check_fit_kwargs
from ._calibration import (
    calibrate,
    choose_unknown_threshold,
    expected_calibration_error,
    fit_temperature,
    leave_type_out_scores,
    match_score,
    reliability_table,
    temperature_scale,
)
from ._fit import argmax_labels, prediction_categories, resolve_label_key
from ._knn_vote import joint_pca, knn_ensemble, knn_proba, neighbour_agreement, stack_rows
from ._results import check_replaceable

_UNLABELLED = "__unlabelled__"


def _transfer_columns(key: str) -> list[str]:
    """``obs`` columns a transfer under ``key`` writes."""
    return [key, f"{key}_confidence", f"{key}_match_score", f"{key}_unknown"]


def _transfer_obsm(key: str) -> list[str]:
    """``obsm`` entries a transfer under ``key`` writes."""
    return [f"X_{key}", f"{key}_proba"]


def write_transfer(
    query: MuData,
    key: str,
    *,
    proba: np.ndarray,
    classes: Sequence[str],
    calibration: dict,
    latent: np.ndarray | None,
    reference_latent: np.ndarray | None,
    reference_labels: Sequence[str] | None,
    params: dict[str, Any],
    agreement: np.ndarray | None = None,
    categories: Sequence[str] | None = None,
) -> None:
    """Write every output of a transfer into ``query`` (all or nothing).

    ``categories``: of the transferred label column (default ``classes``), e.g. the reference label column's own.

    With ``calibration['unknown_score'] == 'match'``, ``agreement`` (the query cells' neighbour agreement) gives
    the match score that ``unknown_threshold`` applies to; else the threshold applies to the confidence.
    """
    check_replaceable(query, key, "transfer")
    check_output_columns(query, key, _transfer_columns(key), obsm=_transfer_obsm(key))
    calibrated = temperature_scale(proba, calibration["temperature"])
    confidence = calibrated.max(1)
    by_match = calibration.get("unknown_score", "confidence") == "match"
    if by_match and agreement is None:
        raise ValueError("the unknown threshold applies to the match score, but no neighbour agreement was given.")
    score = match_score(confidence, agreement) if by_match else confidence
    unknown = score < calibration["unknown_threshold"]
    classes = np.asarray(list(map(str, classes)))
    uns = {"params": to_uns(params), "classes": classes, **calibration,
           "n_unknown": int(unknown.sum())}
    if reference_latent is not None:
        uns["reference_latent"] = np.asarray(reference_latent, dtype=np.float32)
        uns["reference_labels"] = np.asarray(list(map(str, reference_labels)))
    with restore_on_error(query):
        write_obs(query, key, argmax_labels(calibrated, classes, classes if categories is None else categories))
        write_obs(query, f"{key}_confidence", confidence.astype(np.float32))
        if by_match:
            write_obs(query, f"{key}_match_score", score.astype(np.float32))
        elif f"{key}_match_score" in query.obs.columns:  # an earlier run's (check_output_columns made sure)
            del query.obs[f"{key}_match_score"]
            logger.info(f"removed .obs[{key + '_match_score'!r}] (an earlier run's; unknown_score='confidence' now)")
        write_obs(query, f"{key}_unknown", unknown)
        if latent is not None:
            write_obsm(query, f"X_{key}", np.asarray(latent, dtype=np.float32))
        write_obsm(query, f"{key}_proba", calibrated.astype(np.float32))  # columns: uns[key]['classes']
        write_uns(query, key, uns)
    if calibration["unknown_threshold"] <= 0:
        logger.info(f"{key}: the unknown threshold is 0, so no cell is flagged unknown: leaving reference types "
                    "out found no score below which the left-out cells fall and the known ones stay (with two types, "
                    "none can be left out)")
    logger.info(f"{key}: temperature {calibration['temperature']:.2f}, unknown below "
                f"{'match score' if by_match else 'confidence'} "
                f"{calibration['unknown_threshold']:.2f} ({int(unknown.sum())} of {len(unknown)} query cells)")


# ----------------------------------------------------------------------------------------------- transfer_labels
def _held_out_rows(reference: MuData, labels: pd.Series, *, split_key: str, validation_size: float,
                   random_state: int, fitted_here: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """Return reference rows to train (or adapt) on, held-out rows for calibration, and where they come from."""
    rows = np.arange(reference.n_obs)
    if not fitted_here and split_key in reference.obs.columns:
        split = reference.obs[split_key].astype(str).to_numpy()
        held = np.isin(split, ["validation", "test"])
        if held.any() and (~held).any():
            return rows[~held], rows[held], f"reference.obs[{split_key!r}] in ('validation', 'test')"
    n_held = int(np.ceil(validation_size * len(rows)))  # as train_test_split counts a float share
    if n_held < 1 or n_held >= len(rows):
        raise ValueError(f"validation_size={validation_size:g} holds out {n_held} of the {len(rows)} reference cells; "
                         "it must leave at least one cell on each side.")
    counts = labels.value_counts()
    single = labels.map(counts).to_numpy() == 1  # a type with one cell stays on the training side
    pool, n_types = rows[~single], int((counts >= 2).sum())
    stratified = 1 <= n_types <= n_held <= len(pool) - n_types
    if stratified:
        train, held = train_test_split(pool, test_size=n_held, random_state=random_state,
                                       stratify=labels.to_numpy()[~single])
        train = np.concatenate([train, rows[single]])
    else:  # too few held-out cells to hold every type
        train, held = train_test_split(rows, test_size=n_held, random_state=random_state)
    source = (f"a {'stratified ' if stratified else ''}{validation_size:g} of the reference "
              f"{'(types with one cell kept for training) ' if stratified and single.any() else ''}"
              f"(random_state={random_state})")
    if not fitted_here:
        logger.warning(f"`model` was fitted elsewhere and reference.obs has no {split_key!r} column with validation or "
                       "test rows: the calibration rows may have been trained on, so the confidence may be "
                       "overconfident")
        source += ", possibly seen by the model"
    return np.sort(train), np.sort(held), source


def _cross_fit_folds(labels: pd.Series, n_folds: int, *, random_state: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_folds`` (train, held-out) pairs of reference rows, stratified by label where every fold can hold a class."""
    import warnings

    from sklearn.model_selection import KFold, StratifiedKFold

    if n_folds > len(labels):
        raise ValueError(f"n_models={n_folds} folds need at least as many reference cells; got {len(labels)}.")
    rows = np.arange(len(labels))
    stratified = labels.value_counts().max() >= n_folds
    splitter = (StratifiedKFold if stratified else KFold)(n_folds, shuffle=True, random_state=random_state)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        return [(np.sort(train), np.sort(held)) for train, held in splitter.split(rows, labels.to_numpy())]


def _unitednet_transfer(reference, query, *, model, label_key, labels, modalities, layers, arch, max_epochs,
                        adapt_epochs, ref_train, ref_val, train_kw, random_state):
    """Fit (when ``model`` is None) and adapt UnitedNet; probabilities and latents of query and reference."""
    from ..models import UnitedNet

    def view_of(matrices: dict, obs_names, var_names: dict) -> MuData:
        """Build a MuData of the matrices in ``.X`` and, where the model reads a layer, in that layer too."""
        mods = {}
        for m, matrix in matrices.items():
            adata = AnnData(X=matrix, obs=pd.DataFrame(index=obs_names), var=pd.DataFrame(index=var_names[m]))
            if layers.get(m) is not None:
                adata.layers[layers[m]] = matrix
            mods[m] = adata
        return new_mudata(mods)

    if model is None:
        ref_view = view_of({m: in_memory(get_matrix(reference.mod[m], layers[m], modality=m)) for m in modalities},
                           reference.obs_names, {m: reference.mod[m].var_names for m in modalities})
        ref_view.obs[label_key] = pd.Categorical(labels)
        UnitedNet.setup_mudata(ref_view, label_key=label_key, layer=layers)
        model = UnitedNet(ref_view, mode="supervised", random_state=random_state, **arch)
        model.modality_vars_ = {m: reference.mod[m].var.copy() for m in modalities}
        model.train(max_epochs, train_indices=ref_train, validation_indices=ref_val, **train_kw)
    classes = list(model.classes)
    missing = sorted(set(labels) - set(classes))
    if missing:
        raise ValueError(f"reference.obs[{label_key!r}] has labels {missing[:5]} the model was not trained on.")
    ref_matched = matched_input(reference, features=model.feature_names_, layers=layers)
    query_matched = matched_input(query, features=model.feature_names_, layers=layers)
    if adapt_epochs <= 0:
        return model, {"classes": classes, "query_proba": model.predict_proba(query_matched).to_numpy(),
                       "val_proba": model.predict_proba(ref_matched, indices=ref_val).to_numpy(),
                       "query_latent": model.get_latent_representation(query_matched),
                       "reference_latent": model.get_latent_representation(ref_matched)}
    names = [f"ref-{i}" for i in range(reference.n_obs)] + [f"query-{i}" for i in range(query.n_obs)]
    joint = view_of({m: stack_rows(ref_matched.mod[m].X, query_matched.mod[m].X) for m in modalities}, names,
                    {m: model.feature_names_[m] for m in modalities})
    joint.obs[label_key] = pd.Categorical(list(labels) + [_UNLABELLED] * query.n_obs,
                                          categories=[*classes, _UNLABELLED])
    UnitedNet.setup_mudata(joint, label_key=label_key, unlabeled_category=_UNLABELLED, layer=layers)
    params = {**model.init_params_["non_kwargs"], **model.init_params_.get("kwargs", {}), "random_state": random_state}
    final = UnitedNet(joint, **params)
    final.modality_vars_ = {m: v.copy() for m, v in model.modality_vars_.items()}
    final.module.load_state_dict(model.module.state_dict())
    final.skip_blend_chosen_ = getattr(model, "skip_blend_chosen_", False)  # kept: its maps saw those rows
    query_rows = np.arange(reference.n_obs, joint.n_obs)
    final.train(adapt_epochs, train_indices=np.sort(np.concatenate([ref_train, query_rows])),
                validation_indices=ref_val, **train_kw)
    return final, {"classes": classes, "query_proba": final.predict_proba(indices=query_rows).to_numpy(),
                   "val_proba": final.predict_proba(indices=ref_val).to_numpy(),
                   "query_latent": final.get_latent_representation(indices=query_rows),
                   "reference_latent": final.get_latent_representation(indices=np.arange(reference.n_obs))}


def _logistic_transfer(ref_matched: MuData, query_matched: MuData, *, labels: pd.Series, ref_train: np.ndarray,
                       ref_val: np.ndarray, class_weighting: bool, random_state: int):
    """Fit a standardised logistic regression (``C`` by inner CV) on the training rows; return it and probabilities."""
    from .._baseline import logistic_baseline, stack_modalities

    classes = sorted(set(labels))
    x_ref = stack_modalities([ref_matched.mod[m].X for m in ref_matched.mod])
    x_query = stack_modalities([query_matched.mod[m].X for m in query_matched.mod])
    estimator = logistic_baseline(x_ref[ref_train], labels.to_numpy()[ref_train], random_state=random_state,
                                  class_weighting=class_weighting)
    columns = pd.Index(classes).get_indexer(estimator.classes_)

    def proba(x) -> np.ndarray:  # classes absent from the training rows get a floor probability
        out = np.full((x.shape[0], len(classes)), 1e-7)
        out[:, columns] = estimator.predict_proba(x)
        return out / out.sum(1, keepdims=True)

    return estimator, {"classes": classes, "query_proba": proba(x_query), "val_proba": proba(x_ref[ref_val])}


@dataclass
class _Scores:
    """What one way of transferring gives: probabilities of the query and of the calibration rows, and latents."""

    model: Any
    method: str
    classes: list[str]
    proba: np.ndarray
    val_proba: np.ndarray
    val_codes: np.ndarray
    latent: np.ndarray | None
    ref_latent: np.ndarray | None
    source: str | None = None  # where the calibration rows come from, when the method chooses them itself


def _check_model_choice(model: Any, n_models: int, unknown_score: str) -> tuple[bool, int]:
    """Validate ``model``, ``n_models`` and ``unknown_score``; return whether ``model`` is a fitted model."""
    from ..models.base import MultiomixModel, SeedEnsemble, check_n_models

    if isinstance(model, SeedEnsemble) and not model.embeds:
        raise TypeError("transfer_labels adapts one fitted model to the query; pass a member of the ensemble "
                        "(e.g. `model.members[0]`) or a model name.")
    # an ensemble of embedding models (fit_multimodal_ae's default) is used whole: kNN on its joined latent
    fitted = isinstance(model, MultiomixModel | SeedEnsemble)
    n_models = check_n_models(n_models)
    if unknown_score not in ("match", "confidence"):
        raise ValueError(f"`unknown_score` must be 'match' or 'confidence', got {unknown_score!r}.")
    if model is not None and not fitted and model not in ("unitednet", "multimodal_ae", "logistic"):
        raise ValueError("`model` must be None, 'unitednet', 'multimodal_ae', 'logistic' or a fitted multiomix "
                         f"model; got {model!r}.")
    return fitted, n_models


def _shared_modalities(reference: MuData, query: MuData, model: Any, modalities: Sequence[str] | None,
                       layer: str | dict[str, str | None] | None) -> tuple[Any, list[str], dict[str, str | None]]:
    """Modalities and layers of a transfer with a model fitted here, and that model's name (default by modalities)."""
    if modalities is None:
        measured = measured_modalities(reference)
        modalities = [m for m in measured if m in query.mod]
        dropped = [m for m in measured if m not in query.mod]
        if not modalities:
            raise KeyError(f"reference and query share no modality (reference: {list(reference.mod)}, "
                           f"query: {list(query.mod)}).")
        unmatched = [m for m in query.mod if m not in reference.mod]
        if dropped:
            also = f" (the query's {unmatched} are not in the reference: rename to match?)" if unmatched else ""
            logger.info(f"the query lacks {dropped}: transferring on {modalities}{also}")
    modalities = check_modalities(reference, modalities)
    layers = resolve_layers(modalities, layer)
    if model is None:
        model = "unitednet" if len(modalities) >= 2 else "logistic"
    if model == "unitednet" and len(modalities) < 2:
        raise ValueError(f"UnitedNet needs at least two shared modalities, got {modalities}; "
                         "use model='logistic' or 'multimodal_ae'.")
    return model, modalities, layers


def _check_reference(reference: MuData, modalities: Sequence[str], layers: dict[str, str | None]) -> None:
    """Check the reference as a fit would, before anything is fitted: aligned modalities, layers, unique names."""
    try:
        check_aligned(reference, modalities)
    except ValueError as err:
        raise ValueError(f"reference: {err}") from None
    for m in modalities:
        if layers.get(m) is not None and layers[m] not in reference.mod[m].layers:
            raise KeyError(f"reference: modality {m!r} has no layer {layers[m]!r} (its layers: "
                           f"{list(reference.mod[m].layers)}); pass layer= naming a layer of both objects, or None "
                           "for .X.")
        names = reference.mod[m].var_names
        if names.has_duplicates:
            duplicated = list(names[names.duplicated()].unique()[:3])
            raise ValueError(f"reference: modality {m!r} has duplicated feature names (e.g. {duplicated}); features "
                             "are matched to the query by name, so make them unique "
                             f"(reference.mod[{m!r}].var_names_make_unique()).")


def _features_in_both(reference: MuData, query: MuData, modalities: Sequence[str]) -> MuData:
    """Return the reference with each modality cut to the features the query has too (by name, reference order).

    Only a model fitted here can do with fewer features; a copy is made when a modality loses some (logged), and
    the user's reference is never changed.
    """
    keep = {}
    for m in modalities:
        names = reference.mod[m].var_names
        present = np.asarray(names.isin(query.mod[m].var_names))
        if present.all():
            continue
        if not present.any():
            raise KeyError(f"Modality {m!r}: the query has none of the reference's {len(names)} features by name "
                           f"(reference {list(names[:3])}, query {list(query.mod[m].var_names[:3])}); use the same "
                           "feature names (e.g. gene symbols, or Ensembl IDs, in both).")
        keep[m] = present
        logger.info(f"modality {m!r}: the query has {int(present.sum())} of the reference's {len(names)} features; "
                    "the model is fitted on those")
    if not keep:
        return reference
    mods = {m: (a[:, keep[m]].copy() if m in keep else a) for m, a in reference.mod.items() if m in modalities}
    out = new_mudata(mods)
    out.obs = reference.obs.copy()
    return out


def _reference_labels(reference: MuData, label_key: str, model: Any, fitted: bool) -> tuple[MuData, pd.Series]:
    """Return the reference labels as strings, leaving out unlabelled cells and types a fitted classifier never saw."""
    missing = reference.obs[label_key].isna().to_numpy() if label_key in reference.obs.columns else None
    check_labels(reference.obs, label_key, rows=None if missing is None else np.flatnonzero(~missing))
    if missing.any():  # as in the fits: cells without a label are never trained on
        logger.info(f"{int(missing.sum())} reference cells without a label in reference.obs[{label_key!r}] are left "
                    "out of the transfer")
        reference = reference[~missing]
    labels = label_text(reference.obs[label_key])
    warn_merged_labels(reference.obs[label_key], label_key)
    if fitted and _label_classifier(model):
        untrained = sorted(set(labels) - set(map(str, model.classes)))
        if untrained and len(untrained) < labels.nunique():  # e.g. rare types with no row in the fit's training rows
            keep = ~labels.isin(untrained).to_numpy()
            logger.warning(f"{int((~keep).sum())} reference cells of types the model was not trained on are left out "
                           f"of the transfer: {untrained[:5]}{' ...' if len(untrained) > 5 else ''}")
            reference, labels = reference[keep], labels[keep]
    return reference, labels


def _calibration_folds(reference: MuData, labels: pd.Series, *, n_models: int, split_key: str,
                       validation_size: float, random_state: int,
                       fitted: bool) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """(train, held-out) reference rows of each model fitted or adapted here, and where the held-out rows come from."""
    if n_models > 1:
        folds = _cross_fit_folds(labels, n_models, random_state=random_state)
        return folds, f"out-of-fold reference cells ({n_models} stratified folds, random_state={random_state})"
    ref_train, ref_val, source = _held_out_rows(reference, labels, split_key=split_key,
                                                validation_size=validation_size, random_state=random_state,
                                                fitted_here=not fitted)
    return [(ref_train, ref_val)], source


def _unitednet_scores(reference: MuData, query: MuData, *, model: Any, folds, labels: pd.Series, adapt_epochs: int,
                      random_state: int, **fit_kw: Any) -> _Scores:
    """Fit (or take) and adapt one UnitedNet per fold; with several, the members' mean query probabilities."""
    from ..models.base import SeedEnsemble

    method = "UnitedNet" + (f", adapted {adapt_epochs} epochs on reference + query" if adapt_epochs > 0 else "")
    members, outs = [], []
    for i, (train_rows, held_rows) in enumerate(folds):
        member, out = _unitednet_transfer(reference, query, model=model, labels=labels, adapt_epochs=adapt_epochs,
                                          ref_train=train_rows, ref_val=held_rows, random_state=random_state + i,
                                          **fit_kw)
        members.append(member)
        outs.append(out)
    final, out = members[0], outs[0]
    if len(folds) > 1:
        method += f", cross-fitted on {len(folds)} folds of the reference, mean of the members' probabilities"
        final = SeedEnsemble(members)
        out = {**out, "query_proba": np.mean([o["query_proba"] for o in outs], axis=0),
               "val_proba": np.concatenate([o["val_proba"] for o in outs])}
    val_codes = pd.Index(out["classes"]).get_indexer(labels.iloc[np.concatenate([held for _, held in folds])])
    return _Scores(final, method, out["classes"], out["query_proba"], out["val_proba"], val_codes,
                   out["query_latent"], out["reference_latent"])


def _logistic_scores(reference: MuData, query: MuData, *, features, layers, labels: pd.Series, ref_train, ref_val,
                     class_weighting: bool, random_state: int) -> _Scores:
    """Standardised logistic regression on the reference's shared features (latents: the joint PCA, later)."""
    estimator, out = _logistic_transfer(matched_input(reference, features=features, layers=layers),
                                        matched_input(query, features=features, layers=layers), labels=labels,
                                        ref_train=ref_train, ref_val=ref_val, class_weighting=class_weighting,
                                        random_state=random_state)
    method = "standardised logistic regression (C by inner CV" + (", class-weighted)" if class_weighting else ")")
    val_codes = pd.Index(out["classes"]).get_indexer(labels.iloc[ref_val])
    return _Scores(estimator, method, out["classes"], out["query_proba"], out["val_proba"], val_codes, None, None)


def _label_classifier(model: Any) -> bool:
    """Whether a fitted model predicts label classes (an unsupervised UnitedNet's classes are its clusters)."""
    first = model.members[0] if hasattr(model, "members") else model
    return (getattr(first, "_logits_output", None) is not None and bool(getattr(model, "classes", None))
            and getattr(first, "mode", "supervised") == "supervised")


def _predicts_classes(model: Any, labels: pd.Series) -> bool:
    """Whether a fitted model's own probabilities cover the reference's classes (else: kNN on its latent).

    Cluster numbers of an unsupervised model are never taken for labels, even when the labels are numbers too.
    """
    return _label_classifier(model) and set(labels) <= set(model.classes)


def _latent_model_scores(reference: MuData, query: MuData, *, model: Any, labels: pd.Series, ref_val,
                         n_neighbors: int) -> _Scores:
    """Score with a fitted model's own probabilities if it predicts the reference's classes, else kNN on its latent."""
    ref_latent = model.get_latent_representation(reference)
    latent = model.get_latent_representation(query)
    if _predicts_classes(model, labels):
        classes = list(model.classes)
        return _Scores(model, f"{type(model).__name__}.predict_proba", classes, model.predict_proba(query).to_numpy(),
                       model.predict_proba(reference, indices=ref_val).to_numpy(),
                       pd.Index(classes).get_indexer(labels.iloc[ref_val]), latent, ref_latent)
    classes = sorted(set(labels))
    codes = pd.Index(classes).get_indexer(labels)
    return _Scores(model, f"kNN (k={n_neighbors}) on the {type(model).__name__} latent of the reference cells",
                   classes, knn_proba(ref_latent, codes, len(classes), latent, k=n_neighbors),
                   knn_proba(ref_latent, codes, len(classes), None, k=n_neighbors, leave_one_out=True), codes,
                   latent, ref_latent, source="leave-one-out kNN over every reference cell")


def _fit_multimodal_ae(reference: MuData, *, modalities, layers, latent_dim: int, dropout: float,
                       input_dropout: float, max_epochs: int | None, ref_train, ref_val, random_state: int,
                       train_kw: dict):
    """Fit an unsupervised MultimodalAE on the reference's shared modalities."""
    from ..models import MultimodalAE

    view = new_mudata({m: AnnData(X=in_memory(get_matrix(reference.mod[m], layers[m], modality=m)),
                                  obs=pd.DataFrame(index=reference.obs_names), var=reference.mod[m].var[[]])
                       for m in modalities})
    MultimodalAE.setup_mudata(view, modalities=modalities)
    model = MultimodalAE(view, latent_dim=min(latent_dim, 32), dropout=dropout, input_dropout=input_dropout,
                         random_state=random_state)
    model.train(max_epochs, train_indices=ref_train, validation_indices=ref_val, **train_kw)
    return model


def _add_knn_vote(scores: _Scores, reference: MuData, query: MuData, *, features, layers, labels: pd.Series, folds,
                  knn_weight, n_neighbors: int, knn_components: int, unknown_score: str,
                  random_state: int) -> tuple[dict | None, dict | None, dict | None]:
    """Average the model with a kNN vote in a joint PCA (in place); the PCA is also the latent where there is none.

    Returns the left-out types' scores, the vote's record and the neighbour agreement (``None`` where unused).
    """
    uses_vote = not scores.method.startswith("kNN") and knn_weight != 0
    if not uses_vote and scores.latent is not None:
        return None, None, None
    ref_space, query_space = joint_pca(
        matched_input(reference, features=features, layers=layers),
        matched_input(query, features=features, layers=layers), list(features),
        n_components=knn_components, random_state=random_state)
    if scores.latent is None:
        scores.latent, scores.ref_latent = query_space, ref_space
    if not uses_vote:
        return None, None, None
    ref_codes = pd.Index(scores.classes).get_indexer(labels)
    vote = knn_ensemble(scores.val_proba, scores.val_codes, scores.proba, ref_space, query_space, ref_codes, folds,
                        weight=knn_weight, k=n_neighbors)
    scores.val_proba, scores.proba = vote["val_proba"], vote["query_proba"]
    agreement = ({"query": vote["query_agreement"], "held_out": vote["held_out_agreement"],
                  "left_out": vote["left_out_agreement"]} if unknown_score == "match" else None)
    vote_info = {**vote["info"], "space": f"joint PCA of reference + query ({knn_components} per modality)"}
    scores.method += f" + kNN vote (weight {vote_info['knn_weight']:g}) in a joint PCA of reference + query"
    return vote["left_out"], vote_info, agreement


@each_line_once("features the model does not use are ignored")
def transfer_labels(
    reference: MuData,
    query: MuData,
    *,
    label_key: str | None = None,
    model: Any = None,
    modalities: Sequence[str] | None = None,
    layer: str | dict[str, str | None] | None = None,
    latent_dim: int = 64,
    hidden: Sequence[int] = (256,),
    n_heads: int = 5,
    projection_dim: int = 100,
    fuser: Literal["modality", "feature"] = "modality",
    dropout: float = 0.1,
    input_dropout: float = 0.0,
    adversarial: bool = False,
    contrastive_temperature: float = 0.1,
    head_temperature: float = 1.0,
    loss_weights: dict[str, float] | None = None,
    binary: Literal["auto"] | dict[str, bool] = "auto",
    class_weighting: bool = True,
    linear_skip: bool = True,
    linear_skip_max_cells: int = 5000,
    max_epochs: int | None = None,
    adapt_epochs: int = 30,
    lr: float | dict[str, float] | None = None,
    batch_size: int | None = None,
    n_neighbors: int = 15,
    knn_weight: float | Literal["auto"] = "auto",
    knn_components: int = 20,
    max_false_unknown: float = 0.05,
    unknown_score: Literal["match", "confidence"] = "match",
    n_models: int = 1,
    store_reference: bool = True,
    split_key: str = "split",
    validation_size: float = 0.1,
    random_state: int = 0,
    key_added: str | None = None,
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    progress_bar: bool | None = None,
    **trainer_kwargs: Any,
):
    """Transfer cell labels from a labelled reference to a query, with a calibrated confidence and 'unknown' flags.

    Works with any multiomix model that has a latent space, on the modalities reference and query share:

    * ``model=None`` or ``"unitednet"`` (default with two or more shared modalities): a supervised UnitedNet is
      fitted on the reference, then adapted the way UnitedNet's transfer does (translation and contrastive
      training on reference + query cells, classification on reference cells only);
    * ``"logistic"`` (default with a single shared modality, e.g. an RNA-only query of a CITE-seq reference):
      a standardised logistic regression on the reference's shared features (``C`` by 5-fold inner stratified
      CV scored by macro-F1, searched even when some types have fewer than 5 cells; class-weighted with
      ``class_weighting``), averaged with the kNN vote below like UnitedNet's; the joint PCA
      of that vote is the embedding written for plotting;
    * ``"multimodal_ae"``: an unsupervised :class:`~multiomix.models.MultimodalAE` is fitted on the reference's
      shared modalities and every query cell gets the labels of its ``n_neighbors`` nearest reference cells in
      that latent space (distance-weighted votes);
    * a fitted model: a supervised UnitedNet is adapted as above; another model that predicts the reference's
      classes (e.g. :class:`~multiomix.models.CrossAttOmics`) gives its own ``predict_proba`` (averaged with the
      kNN vote below, like UnitedNet's); a model without
      classes (``MultimodalAE``, an unsupervised UnitedNet, ...) gives kNN on its latent space as above, and so
      does a :class:`~multiomix.models.SeedEnsemble` of embedding models (what ``fit_multimodal_ae`` returns by
      default), on its joined latent.

    **Calibration.** The probabilities of held-out reference cells (the rows the fit holds out for validation;
    with ``n_models > 1``, every reference cell, each scored by the member that held it out; for a model fitted
    elsewhere, ``reference.obs[split_key]`` in ``validation``/``test``, or, for kNN,
    leave-one-out over every reference cell) fix one temperature ``T`` (minimum negative log-likelihood, targets
    smoothed by ``1 / (n + 2)`` so that a small held-out set scored all right does not push ``T`` to 0;
    ``p ∝ p_model ** (1 / T)``; the most probable class never changes).

    **kNN vote.** For a model with classes, the calibrated probabilities are averaged with a kNN vote
    (``n_neighbors``, distance-weighted, nearly flat for a cell far from every reference cell) of the reference
    cells in a PCA of reference and query cells together (``knn_components`` per modality, no labels read),
    weight ``knn_weight``; the average is calibrated again by one temperature on the held-out reference cells
    (whose vote is taken among the other reference cells). Under a donor shift the two err on different cells.

    **Unknown cells.** ``<key>_unknown`` is ``match_score < uns[key]['unknown_threshold']``. The match score of a
    cell is the mean of its confidence and its *neighbour agreement*, the share of its ``n_neighbors`` nearest
    reference cells in the joint PCA of the kNN vote that carry its most probable class
    (``<key>_match_score``): a cell of a type missing from the reference tends to get a low confidence, or to sit
    among reference cells of several types, and the two err on different cells. With ``unknown_score=
    "confidence"``, or without the kNN vote (``knn_weight=0`` or a model without classes), the threshold applies
    to the confidence alone. The threshold is chosen on the reference only: each reference type is left out in
    turn, its held-out cells are scored without their class (calibrated probabilities renormalised over the
    other classes, the kNN vote and the neighbour agreement taken among the reference cells of the other types)
    and are the 'novel' cells; every held-out cell, scored as a query cell is, is a 'known' cell; the threshold
    maximises Youden's J (novel cells flagged minus known cells
    flagged) among thresholds that flag at most ``max_false_unknown`` of the known held-out cells (the midpoint of
    the gap between held-out scores where it lies, so a query cell just below the lowest known one is kept). The
    query's labels are never read. The query's cells do shape two things without labels, as in scArches' query
    mapping: the joint PCA the kNN vote is taken in (fitted on reference and query cells together, so the
    held-out reference cells' votes, hence the temperature and threshold, move a little with the query) and
    UnitedNet's unsupervised adaptation.

    Parameters
    ----------
    reference
        Labelled MuData (cells without a label are left out).
    query
        MuData with at least one of the reference's modalities (features matched by name, per modality).
    label_key
        Column of ``reference.obs`` with the labels (``None``: ``model``'s label column, else the one plausible
        label column).
    model
        ``None``, ``"unitednet"``, ``"logistic"``, ``"multimodal_ae"`` or a fitted multiomix model (see above).
    modalities
        Modalities to use (default: the model's, else those reference and query share).
    layer
        Layer to read (same in reference and query); default ``.X``.
    latent_dim, hidden, n_heads, projection_dim, fuser, dropout, input_dropout, adversarial
        Architecture of a model fitted here (``latent_dim``, ``dropout``, ``input_dropout`` also for
        ``"multimodal_ae"``, whose latent is at most 32 wide: the default 64 is UnitedNet's), see
        :class:`~multiomix.models.UnitedNet`.
    contrastive_temperature, head_temperature, loss_weights, binary, class_weighting, linear_skip
        See :class:`~multiomix.models.UnitedNet` (a UnitedNet fitted here only; ``class_weighting`` also for
        ``"logistic"``).
    linear_skip_max_cells
        See :class:`~multiomix.models.UnitedNet`.
    max_epochs
        Epochs of a model fitted here (default: the model's).
    adapt_epochs
        Epochs of UnitedNet's joint adaptation (0 skips it).
    lr, batch_size
        Training options (defaults: the model's).
    n_neighbors
        Neighbours of the kNN on a latent space (models without classes) and of the kNN vote averaged with a
        classifier's probabilities.
    knn_weight
        Weight ``w`` of the kNN vote in the joint PCA of reference + query in the class probabilities of a model
        with classes (``(1 - w) * calibrated model + w * kNN``; 0: the model alone; ``"auto"``, the default: the
        ``w`` in (0, 0.25, 0.5, 0.75, 1) with the lowest negative log-likelihood on the held-out reference cells).
    knn_components
        Principal components per modality of that joint PCA.
    max_false_unknown
        Largest share of held-out reference cells of known types that may be flagged unknown.
    unknown_score
        What the unknown threshold applies to: ``"match"`` (default; the match score, see above) or
        ``"confidence"``.
    n_models
        Number of UnitedNets fitted here (``model=None`` or ``"unitednet"``). With ``n > 1`` the reference is split
        into ``n`` stratified folds; member ``i`` (seed ``random_state + i``) is trained and adapted with fold ``i``
        held out (``validation_size`` is not used), so every reference cell gets an out-of-fold probability: the
        temperature, the kNN weight and the unknown threshold are chosen on all reference cells instead of a tenth
        of them, and the query gets the mean of the members' probabilities. ``n`` times the cost; returns a
        :class:`~multiomix.models.SeedEnsemble` of the adapted members.
    store_reference
        Store the reference cells' latent and labels in ``query.uns[key]`` (for :func:`multiomix.pl.transfer`).
    split_key
        Column of ``reference.obs`` marking the rows a model fitted elsewhere held out.
    validation_size
        Share of reference cells held out (stratified) for checkpointing, head selection and calibration.
    random_state
        Seed.
    key_added
        Name of every output (default ``'<label_key>_transferred'``).
    accelerator, devices
        Lightning accelerator and devices.
    progress_bar
        Show a progress bar (default: ``mx.settings.progress_bar``).
    **trainer_kwargs
        Passed to the model's training (e.g. ``weight_decay``, ``early_stopping_patience``) and on to Lightning's
        ``Trainer``; a keyword neither takes raises a ``TypeError`` at once.

    Returns
    -------
    The model used (UnitedNet: the adapted one; ``"logistic"``: the fitted scikit-learn search, whose
    ``best_params_`` hold ``C``). Writes, with ``key = key_added``: ``query.obs[key]`` (most
    probable reference class), ``query.obs[key + '_confidence']`` (calibrated maximum probability),
    ``query.obs[key + '_unknown']`` (bool), ``query.obs[key + '_match_score']`` (with the match score),
    ``query.obsm['X_' + key]`` (latent), ``query.obsm[key + '_proba']``
    (calibrated probabilities, columns ``uns[key]['classes']``) and ``query.uns[key]`` with ``params``,
    ``classes``, ``temperature``, ``unknown_score``, ``unknown_threshold``, ``unknown_selection`` (rates and
    leave-one-type-out AUROC on the reference; ``auroc_confidence``: that of the confidence alone),
    ``calibration`` (NLL and ECE on the held-out reference cells before and after),
    ``knn_vote`` (the kNN weight, the model's own temperature and the held-out NLL of every candidate weight;
    models with classes),
    ``reliability`` / ``reliability_uncalibrated`` (binned confidence vs accuracy on those cells) and, with
    ``store_reference``, ``reference_latent`` / ``reference_labels``. Nothing is written unless the whole
    transfer succeeds; the reference is never written to.

    Examples
    --------
    >>> import multiomix as mx
    >>> cite = mx.datasets.bmmc_cite()
    >>> reference, query = cite[cite.obs["batch"] == "s1d1"].copy(), cite[cite.obs["batch"] == "s1d2"].copy()
    >>> mx.tl.transfer_labels(reference, query, label_key="cell_type")
    >>> query.obs["cell_type_transferred_unknown"].mean()
    >>> mx.pl.transfer(query, "cell_type_transferred")
    """
    from ..models import UnitedNet

    check_fit_kwargs(trainer_kwargs, UnitedNet)
    for name, data in (("reference", reference), ("query", query)):
        if not isinstance(data, MuData):
            raise TypeError(f"`{name}` must be a MuData, got {type(data).__name__}; wrap one modality as "
                            "`mudata.MuData({'rna': adata})`.")
    if query.n_obs == 0:
        raise ValueError("The query has no cells (0 observations).")
    fitted, n_models = _check_model_choice(model, n_models, unknown_score)
    if not (knn_weight == "auto" or (isinstance(knn_weight, numbers.Real) and not isinstance(knn_weight, bool)
                                     and 0.0 <= float(knn_weight) <= 1.0)):
        raise ValueError(f"`knn_weight` must be 'auto' or a number in [0, 1], got {knn_weight!r}.")
    if label_key is None and fitted and model.label_key is not None and model.label_key in reference.obs.columns:
        label_key = model.label_key
    label_key = resolve_label_key(reference.obs, label_key)
    key = key_added or f"{label_key}_transferred"
    check_replaceable(query, key, "transfer")
    check_output_columns(query, key, _transfer_columns(key), obsm=_transfer_obsm(key))
    if fitted:
        modalities, layers = list(model.modalities), model.layers
        lacking = [m for m in modalities if m not in getattr(query, "mod", {})]
        if lacking:
            raise KeyError(f"The query lacks {lacking}, which the given {type(model).__name__} was fitted on: a fitted "
                           f"model reads every modality it was trained on. Leave `model` out (or pass "
                           f"model='unitednet' / 'logistic') to fit on the modalities reference and query share, "
                           f"e.g. {[m for m in modalities if m not in lacking]}.")
    else:
        model, modalities, layers = _shared_modalities(reference, query, model, modalities, layer)
        _check_reference(reference, modalities, layers)
        reference = _features_in_both(reference, query, modalities)
    reference, labels = _reference_labels(reference, label_key, model, fitted)
    features = (model.feature_names_ if fitted
                else {m: list(map(str, reference.mod[m].var_names)) for m in modalities})
    try:  # checks modalities, alignment, layers and features first
        matched_input(query, features=features, layers=layers)
    except (KeyError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        raise type(err)(f"query: {message}") from None
    train_kw = {"lr": lr, "batch_size": batch_size, "accelerator": accelerator, "devices": devices,
                "progress_bar": progress_bar, **trainer_kwargs}
    is_unitednet = model == "unitednet" or (isinstance(model, UnitedNet) and model.mode == "supervised")
    if n_models > 1 and (fitted or not is_unitednet):
        raise ValueError(f"n_models={n_models} trains several UnitedNets here (two or more shared modalities, "
                         f"model=None or 'unitednet'); got model={type(model).__name__ if fitted else repr(model)} "
                         f"on {modalities}. Use n_models=1.")
    # a fitted model without the reference's classes is scored by leave-one-out kNN on its label-free latent:
    # its held-out rows are not the calibration rows, so whether it trained on them does not matter
    own_classes = fitted and _predicts_classes(model, labels)
    folds, source = _calibration_folds(reference, labels, n_models=n_models, split_key=split_key,
                                       validation_size=validation_size, random_state=random_state,
                                       fitted=own_classes)
    ref_train, ref_val = folds[0]
    if is_unitednet:
        arch = {"latent_dim": latent_dim, "hidden": tuple(hidden), "n_heads": n_heads,
                "projection_dim": projection_dim, "fuser": fuser, "dropout": dropout, "input_dropout": input_dropout,
                "adversarial": adversarial, "contrastive_temperature": contrastive_temperature,
                "head_temperature": head_temperature, "loss_weights": loss_weights, "binary": binary,
                "class_weighting": class_weighting, "linear_skip": linear_skip,
                "linear_skip_max_cells": linear_skip_max_cells}
        scores = _unitednet_scores(reference, query, model=model if fitted else None, folds=folds, labels=labels,
                                   adapt_epochs=adapt_epochs, random_state=random_state, label_key=label_key,
                                   modalities=modalities, layers=layers, arch=arch, max_epochs=max_epochs,
                                   train_kw=train_kw)
    elif model == "logistic":
        scores = _logistic_scores(reference, query, features=features, layers=layers, labels=labels,
                                  ref_train=ref_train, ref_val=ref_val, class_weighting=class_weighting,
                                  random_state=random_state)
    else:
        if model == "multimodal_ae":
            model = _fit_multimodal_ae(reference, modalities=modalities, layers=layers, latent_dim=latent_dim,
                                       dropout=dropout, input_dropout=input_dropout, max_epochs=max_epochs,
                                       ref_train=ref_train, ref_val=ref_val, random_state=random_state,
                                       train_kw=train_kw)
        scores = _latent_model_scores(reference, query, model=model, labels=labels, ref_val=ref_val,
                                      n_neighbors=n_neighbors)
    space_features = features if model == "logistic" else scores.model.feature_names_
    left_out, vote_info, agreement = _add_knn_vote(
        scores, reference, query, features=space_features, layers=layers, labels=labels, folds=folds,
        knn_weight=knn_weight, n_neighbors=n_neighbors, knn_components=knn_components, unknown_score=unknown_score,
        random_state=random_state)
    calibration = calibrate(scores.val_proba, scores.val_codes, max_false_unknown=max_false_unknown,
                            left_out=left_out, left_out_agreement=None if agreement is None else agreement["left_out"],
                            known_agreement=None if agreement is None else agreement["held_out"])
    calibration["calibration"]["rows"] = scores.source or source
    if vote_info is not None:
        calibration["knn_vote"] = vote_info
    params = {"label_key": label_key, "method": scores.method, "modalities": list(modalities),
              "max_epochs": max_epochs, "adapt_epochs": adapt_epochs if is_unitednet else 0, "lr": lr,
              "batch_size": batch_size, "n_neighbors": n_neighbors, "knn_weight": knn_weight,
              "knn_components": knn_components, "max_false_unknown": max_false_unknown,
              "unknown_score": calibration["unknown_score"], "n_models": n_models,
              "validation_size": validation_size, "random_state": random_state}
    label_column = reference.obs[label_key] if label_key in reference.obs.columns else None
    categories = prediction_categories(scores.classes, label_column)  # the reference column's order
    write_transfer(query, key, proba=scores.proba, classes=scores.classes, calibration=calibration,
                   categories=categories,
                   latent=scores.latent, reference_latent=scores.ref_latent if store_reference else None,
                   reference_labels=labels.to_numpy() if store_reference else None, params=params,
                   agreement=None if agreement is None else agreement["query"])
    return scores.model




__all__ = [
    "calibrate",
    "choose_unknown_threshold",
    "expected_calibration_error",
    "fit_temperature",
    "joint_pca",
    "knn_ensemble",
    "knn_proba",
    "leave_type_out_scores",
    "match_score",
    "neighbour_agreement",
    "reliability_table",
    "temperature_scale",
    "transfer_labels",
    "write_transfer",
]
