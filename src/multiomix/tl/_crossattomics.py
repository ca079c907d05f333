"""Scanpy-style functions around :class:`~multiomix.models.CrossAttOmics`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from mudata import MuData
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from .._utils import (
    check_labels,
    check_modalities,
    history_frame,
    restore_on_error,
    split_indices,
    to_uns,
    write_obs,
    write_obsm,
    write_uns,
)
from ..explain import interaction_relevance
from ..models import CrossAttOmics, default_interaction_graph
from ..models._base import modality_key
from ..nn import validate_graph


def training_rows(
    obs: pd.DataFrame, *, label_key: str | None, split_key: str, validation_size: float, random_state: int
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Train / validation / test rows from ``obs[split_key]`` (validation carved from train when absent).

    Returns ``(None, None, empty)`` when there is no split column (the model then splits internally).
    """
    splits = split_indices(obs, split_key)
    if splits is None:
        return None, None, np.array([], dtype=int)
    train, validation = splits["train"], splits["validation"]
    if len(validation) == 0 and validation_size > 0:
        labels = obs[label_key].iloc[train] if label_key is not None else None
        stratify = labels if labels is not None and labels.value_counts().min() >= 2 else None
        train, validation = train_test_split(
            train, test_size=validation_size, random_state=random_state, stratify=stratify
        )
    return np.sort(train), np.sort(validation), splits["test"]


def classification_metrics(y_true: pd.Series, y_pred: pd.Series) -> dict[str, float]:
    """Accuracy, macro-F1 and balanced accuracy."""
    y_true, y_pred = y_true.astype(str), y_pred.astype(str)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "n": len(y_true),
    }


def write_classifier_outputs(mdata: MuData, proba: pd.DataFrame, latent: np.ndarray, *, key: str) -> pd.Series:
    """Write ``obs['<key>_prediction']``, ``obs['<key>_confidence']``, ``obsm['<key>_proba']``, ``obsm['X_<key>']``."""
    codes = proba.to_numpy().argmax(1)
    prediction = pd.Categorical.from_codes(codes, categories=list(proba.columns))
    write_obs(mdata, f"{key}_prediction", prediction)
    write_obs(mdata, f"{key}_confidence", proba.to_numpy().max(1).astype(np.float32))
    write_obsm(mdata, f"{key}_proba", proba.to_numpy().astype(np.float32))
    write_obsm(mdata, f"X_{key}", latent.astype(np.float32))
    return pd.Series(prediction, index=mdata.obs_names)


def fit_crossattomics(
    mdata: MuData,
    *,
    label_key: str,
    modalities: Sequence[str] | None = None,
    layer: str | dict[str, str | None] | None = None,
    interaction_graph: Mapping[str, Sequence[str]] | None = None,
    groups: Any = None,
    group_sizes: Sequence[int] | Mapping[str, Sequence[int]] = (16,),
    hidden: Sequence[int] = (64,),
    heads: int = 1,
    dropout: float = 0.3,
    class_weighting: bool = True,
    standardize: bool = True,
    target_self_attention: bool = True,
    add_unimodal_branches: bool = True,
    add_unimodal_to_multimodal: bool = False,
    max_epochs: int = 200,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 64,
    early_stopping_patience: int = 20,
    validation_size: float = 0.15,
    split_key: str = "split",
    random_state: int = 0,
    key_added: str = "crossattomics",
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    **trainer_kwargs: Any,
) -> CrossAttOmics:
    """Fit CrossAttOmics on a MuData and write its predictions and embedding into it.

    When ``obs[split_key]`` exists (see :func:`multiomix.pp.split`), only ``'train'`` rows are trained on;
    early stopping watches the ``'validation'`` rows (or ``validation_size`` of the train rows when there are
    none); predictions are written for every row, and metrics on the ``'test'`` rows go to ``uns``.

    Parameters
    ----------
    mdata
        Paired MuData.
    label_key
        Column of ``mdata.obs`` with the classes.
    modalities
        Modalities to use (default: all).
    layer
        Layer to read (one for all, or a dict per modality); default ``.X``.
    interaction_graph
        ``{target: [sources]}``; default: expression (``rna``) is the target of every other modality.
    groups
        Feature groups: ``None`` (random, ~20 features each), an int, or ``{group: [features]}`` (per modality
        or for all).
    group_sizes, hidden, heads, dropout, class_weighting, standardize
        Architecture and loss options, see :class:`~multiomix.models.CrossAttOmics`.
    target_self_attention, add_unimodal_branches, add_unimodal_to_multimodal
        Fusion options, see :class:`~multiomix.nn.CrossAttOmicsNet`.
    max_epochs, lr, weight_decay, batch_size, early_stopping_patience
        Training options, see :meth:`~multiomix.models.CrossAttOmics.train`.
    validation_size
        Share of the train rows held out for early stopping when there are no validation rows.
    split_key
        Column of ``mdata.obs`` with ``train``/``validation``/``test``.
    random_state
        Seed (CPU runs are reproducible).
    key_added
        Prefix of every key written.
    accelerator, devices
        Lightning accelerator and devices.
    **trainer_kwargs
        Passed to the Lightning trainer (e.g. ``strategy="ddp_notebook"``, ``enable_progress_bar=False``).

    Returns
    -------
    The trained model. Writes ``obs['<key>_prediction']``, ``obs['<key>_confidence']``,
    ``obsm['<key>_proba']``, ``obsm['X_<key>']`` and ``uns['<key>']`` (params, history, test metrics).

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.tcga_brca()
    >>> mx.pp.split(mdata, label_key="subtype", test_size=0.2, random_state=0)
    >>> model = mx.tl.fit_crossattomics(mdata, label_key="subtype")
    >>> mdata.uns["crossattomics"]["test_metrics"]["macro_f1"]  # doctest: +SKIP
    """
    modalities = check_modalities(mdata, modalities)
    validate_graph(interaction_graph or default_interaction_graph(modalities), modalities)
    train, validation, test = training_rows(
        mdata.obs,
        label_key=label_key,
        split_key=split_key,
        validation_size=validation_size,
        random_state=random_state,
    )
    check_labels(mdata.obs, label_key, rows=train)
    if mdata.obs[label_key].isna().any():
        raise ValueError(f"mdata.obs[{label_key!r}] has missing labels; every row needs a label to be registered.")
    with restore_on_error(mdata):
        CrossAttOmics.setup_mudata(mdata, label_key=label_key, modalities=modalities, layer=layer)
        model = CrossAttOmics(
            mdata,
            interaction_graph=interaction_graph,
            groups=groups,
            group_sizes=group_sizes,
            hidden=hidden,
            heads=heads,
            dropout=dropout,
            class_weighting=class_weighting,
            standardize=standardize,
            target_self_attention=target_self_attention,
            add_unimodal_branches=add_unimodal_branches,
            add_unimodal_to_multimodal=add_unimodal_to_multimodal,
            random_state=random_state,
        )
        model.train(
            max_epochs,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            train_indices=train,
            validation_indices=validation,
            validation_size=validation_size,
            early_stopping_patience=early_stopping_patience,
            accelerator=accelerator,
            devices=devices,
            **trainer_kwargs,
        )
        proba = model.predict_proba(batch_size=512)
        latent = model.get_latent_representation(batch_size=512)
    prediction = write_classifier_outputs(mdata, proba, latent, key=key_added)
    info: dict[str, Any] = {
        "params": to_uns(
            {
                "label_key": label_key,
                "modalities": modalities,
                "interaction_graph": model.interaction_graph,
                "group_sizes": list(group_sizes) if not isinstance(group_sizes, Mapping) else dict(group_sizes),
                "hidden": list(hidden),
                "heads": heads,
                "dropout": dropout,
                "class_weighting": class_weighting,
                "standardize": standardize,
                "target_self_attention": target_self_attention,
                "add_unimodal_branches": add_unimodal_branches,
                "add_unimodal_to_multimodal": add_unimodal_to_multimodal,
                "max_epochs": max_epochs,
                "lr": lr,
                "weight_decay": weight_decay,
                "batch_size": batch_size,
                "random_state": random_state,
                "n_groups": {m: len(g) for m, g in model.feature_groups_.items()},
            }
        ),
        "classes": np.asarray(model.classes),
        "interactions": np.asarray(model.interactions),
        "history": history_frame(model.history),
    }
    if len(test):
        info["test_metrics"] = classification_metrics(mdata.obs[label_key].iloc[test], prediction.iloc[test])
    write_uns(mdata, key_added, info)
    return model


def interaction_importance(
    mdata: MuData,
    model: CrossAttOmics,
    *,
    groupby: str | None = None,
    target: str = "label",
    batch_size: int = 256,
    key_added: str = "crossattomics_interactions",
) -> None:
    """LRP relevance of every interaction (``source->target``) and unimodal branch, per class.

    For each sample, the relevance of the logit of its class (``target='label'``: the true label,
    ``'prediction'``: the predicted class) is propagated back to the fusion parts with a conservative rule
    (attention weights, LayerNorm/BatchNorm scales and bias shares held constant; gradient x input), so the
    parts' relevances sum to that logit. Scores are then averaged per group of ``groupby``.

    Parameters
    ----------
    mdata
        The MuData the model was trained on (or one set up the same way).
    model
        A trained :class:`~multiomix.models.CrossAttOmics`.
    groupby
        Column of ``mdata.obs`` to average by (default: the model's label key).
    target
        ``'label'`` or ``'prediction'``: which class's logit to explain for each sample.
    batch_size
        Samples per batch.
    key_added
        Key in ``mdata.uns``.

    Returns
    -------
    Nothing; writes ``uns[key_added]`` with ``mean`` (groups x parts, signed mean relevance), ``mean_abs``
    (mean absolute relevance), ``share`` (each part's share of the group's total absolute relevance: the
    importance, rows sum to 1), ``overall_share`` (the same over all samples, sorted: the ranking),
    ``per_sample`` (samples x parts, signed), ``conservation_error`` (mean absolute difference between the
    relevances' sum and the logit, divided by the mean absolute logit) and ``params``. Parts are each
    interaction's attention message ``source->target`` (what the source contributes through
    cross-attention), each target's own tokens (its residual path), and the unimodal branches.

    Examples
    --------
    >>> mx.tl.interaction_importance(mdata, model)
    >>> mdata.uns["crossattomics_interactions"]["mean"]  # doctest: +SKIP
    """
    label_key = model.adata_manager.registry["setup_args"]["label_key"]
    groupby = groupby or label_key
    if groupby not in mdata.obs.columns:
        raise KeyError(f"groupby={groupby!r} is not a column of mdata.obs.")
    if target not in ("label", "prediction"):
        raise ValueError(f"target must be 'label' or 'prediction', got {target!r}.")
    model._validate_anndata(mdata)
    module = model.module
    module.eval()
    classes = model.classes
    relevances, logits = [], []
    loader = model._make_data_loader(adata=mdata, batch_size=batch_size)
    device = next(module.parameters()).device
    for tensors in loader:
        x = module.standardizer({m: tensors[modality_key(m)].to(device) for m in module.modalities})
        if target == "label":
            cls = tensors["labels"].view(-1).long().to(device)
        else:
            with torch.no_grad():
                cls = module.net(x).argmax(1)
        rel, logit = interaction_relevance(module.net, x, cls)
        relevances.append(rel.cpu())
        logits.append(logit.cpu())
    relevance = torch.cat(relevances).numpy()
    logit = torch.cat(logits).numpy()
    per_sample = pd.DataFrame(relevance, index=mdata.obs_names, columns=model.interactions)
    groups = mdata.obs[groupby].astype("category")
    mean = per_sample.groupby(groups.values, observed=True).mean()
    mean.index = mean.index.astype(str)
    mean_abs = per_sample.abs().groupby(groups.values, observed=True).mean()
    mean_abs.index = mean_abs.index.astype(str)
    share = mean_abs.div(mean_abs.sum(1), axis=0)
    overall = per_sample.abs().mean()
    error = float(np.abs(relevance.sum(1) - logit).mean() / max(np.abs(logit).mean(), 1e-12))
    write_uns(
        mdata,
        key_added,
        {
            "mean": mean,
            "mean_abs": mean_abs,
            "share": share,
            "overall_share": (overall / overall.sum()).sort_values(ascending=False).to_frame("share"),
            "per_sample": per_sample,
            "conservation_error": error,
            "params": {"groupby": groupby, "target": target, "classes": np.asarray(classes)},
        },
    )
