"""Scanpy-style functions around :class:`~multiomix.models.UnitedNet`: fit, and annotation transfer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from sklearn.metrics import accuracy_score, adjusted_rand_score, f1_score, normalized_mutual_info_score
from sklearn.model_selection import train_test_split

from multiomix._utils import (
    check_labels,
    check_modalities,
    get_matrix,
    history_frame,
    restore_on_error,
    split_indices,
    to_uns,
    write_obs,
    write_obsm,
    write_uns,
)
from multiomix.models._unitednet import UnitedNet

_UNLABELLED = "__unlabelled__"


def _rows(obs: pd.DataFrame, *, label_key: str | None, split_key: str, validation_size: float, random_state: int):
    """Train / validation / test rows from ``obs[split_key]`` (validation carved, stratified, from train)."""
    splits = split_indices(obs, split_key)
    if splits is None:
        n = len(obs)
        everything = np.arange(n)
        train, test = everything, np.array([], dtype=int)
        validation = np.array([], dtype=int)
    else:
        train, validation, test = splits["train"], splits["validation"], splits["test"]
    if len(validation) == 0 and validation_size > 0:
        labels = obs[label_key].iloc[train] if label_key is not None else None
        stratify = labels if labels is not None and labels.value_counts().min() >= 2 else None
        train, validation = train_test_split(train, test_size=validation_size, random_state=random_state,
                                             stratify=stratify)
    return np.sort(train), np.sort(validation), np.sort(test)


def _group_metrics(y_true: pd.Series, y_pred: pd.Series, *, clusters: bool) -> dict[str, float]:
    y_true, y_pred = y_true.astype(str).to_numpy(), y_pred.astype(str).to_numpy()
    out = {"ari": float(adjusted_rand_score(y_true, y_pred)),
           "nmi": float(normalized_mutual_info_score(y_true, y_pred, average_method="geometric")), "n": len(y_true)}
    if not clusters:
        out["accuracy"] = float(accuracy_score(y_true, y_pred))
        out["macro_f1"] = float(f1_score(y_true, y_pred, average="macro"))
    return out


def fit_unitednet(
    mdata: MuData,
    *,
    label_key: str | None = None,
    mode: Literal["supervised", "unsupervised", "translation"] | None = None,
    modalities: Sequence[str] | None = None,
    layer: str | dict[str, str | None] | None = None,
    n_clusters: int | None = None,
    max_epochs: int = 100,
    lr: float = 1e-3,
    batch_size: int = 64,
    classification_repeats: int = 1,
    validation_size: float = 0.1,
    split_key: str = "split",
    random_state: int = 0,
    key_added: str = "unitednet",
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    trainer_kwargs: dict[str, Any] | None = None,
    **model_kwargs: Any,
) -> UnitedNet:
    """Fit UnitedNet on a paired MuData and write the fused embedding and group predictions into it.

    When ``obs[split_key]`` exists (see :func:`multiomix.pp.split`) only ``'train'`` rows are trained on; the
    checkpoint and best head are chosen on the ``'validation'`` rows (or ``validation_size`` of the train rows),
    never on ``'test'`` rows; metrics on the test rows go to ``uns``.

    Parameters
    ----------
    mdata
        Paired MuData (at least two modalities).
    label_key
        Column of ``mdata.obs`` with labels (required for ``mode="supervised"``; in the other modes it is only
        used for metrics and the default number of clusters).
    mode
        ``"supervised"``, ``"unsupervised"`` or ``"translation"``; default supervised when ``label_key`` is
        given, else unsupervised.
    modalities
        Modalities to use (default: all).
    layer
        Layer to read (one for all, or a dict per modality); default ``.X``.
    n_clusters
        Clusters in unsupervised mode.
    max_epochs, lr, batch_size, classification_repeats
        Training options, see :meth:`~multiomix.models.UnitedNet.train`.
    validation_size
        Share of the train rows held out for checkpoint/head selection when there are no validation rows.
    split_key
        Column of ``mdata.obs`` with ``train``/``validation``/``test``.
    random_state
        Seed (CPU runs are reproducible).
    key_added
        Prefix of every key written.
    accelerator, devices
        Lightning accelerator and devices.
    trainer_kwargs
        Passed to the Lightning trainer (e.g. ``{"strategy": "ddp_spawn", "enable_progress_bar": False}``).
    **model_kwargs
        Architecture options of :class:`~multiomix.models.UnitedNet` (``latent_dim``, ``n_heads``, ``fuser``,
        ``adversarial``, ...).

    Returns
    -------
    The trained model. Writes ``obsm['X_<key>']`` (fused latent of the best head) and, except in translation
    mode, ``obs['<key>_prediction']`` (categorical), ``obs['<key>_confidence']``, ``obsm['<key>_proba']``;
    ``uns['<key>']`` holds params, classes, history, best head, fusion weights and metrics.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.patchseq()
    >>> model = mx.tl.fit_unitednet(mdata, label_key="cell_type_TEM", max_epochs=100)
    >>> mdata.obs["unitednet_prediction"].head()
    """
    modalities = check_modalities(mdata, modalities)
    if len(modalities) < 2:
        raise ValueError(f"UnitedNet needs at least two modalities, got {modalities}.")
    mode = mode or ("supervised" if label_key is not None else "unsupervised")
    if mode == "supervised" and label_key is None:
        raise ValueError("mode='supervised' needs `label_key`.")
    if label_key is not None:
        if label_key not in mdata.obs.columns:
            raise KeyError(f"Label key {label_key!r} not found in mdata.obs; columns: {list(mdata.obs.columns)}.")
        if mdata.obs[label_key].isna().any():
            raise ValueError(f"mdata.obs[{label_key!r}] has {int(mdata.obs[label_key].isna().sum())} missing labels.")
    train, validation, test = _rows(mdata.obs, label_key=label_key, split_key=split_key,
                                    validation_size=validation_size, random_state=random_state)
    if label_key is not None:
        check_labels(mdata.obs, label_key, rows=train)
        if mode == "supervised":
            missing = sorted(set(mdata.obs[label_key].iloc[validation].astype(str))
                             - set(mdata.obs[label_key].iloc[train].astype(str)))
            if missing:
                # validation classes unseen in training only add noise to the checkpoint choice; keep them out
                keep = ~mdata.obs[label_key].iloc[validation].astype(str).isin(missing).to_numpy()
                validation = validation[keep]
    with restore_on_error(mdata):
        UnitedNet.setup_mudata(mdata, modalities=modalities, label_key=label_key, layer=layer)
        model = UnitedNet(mdata, mode=mode, n_clusters=n_clusters, random_state=random_state, **model_kwargs)
        model.train(max_epochs, lr=lr, batch_size=batch_size, classification_repeats=classification_repeats,
                    train_indices=train, validation_indices=validation, accelerator=accelerator, devices=devices,
                    **(trainer_kwargs or {}))
        latent = model.get_latent_representation()
        proba = model.predict_proba() if mode != "translation" else None
    write_obsm(mdata, f"X_{key_added}", latent.astype(np.float32))
    info: dict[str, Any] = {
        "params": to_uns({"mode": mode, "label_key": label_key, "modalities": modalities, "n_clusters": n_clusters,
                          "max_epochs": max_epochs, "lr": lr, "batch_size": batch_size,
                          "classification_repeats": classification_repeats, "random_state": random_state,
                          **{k: v for k, v in model_kwargs.items() if k != "loss_weights"}}),
        "history": history_frame(model.history),
        "n_train": len(train), "n_validation": len(validation), "n_test": len(test),
    }
    if proba is not None:
        codes = proba.to_numpy().argmax(1)
        prediction = pd.Series(pd.Categorical.from_codes(codes, categories=list(proba.columns)), index=mdata.obs_names)
        write_obs(mdata, f"{key_added}_prediction", prediction.values)
        write_obs(mdata, f"{key_added}_confidence", proba.to_numpy().max(1).astype(np.float32))
        write_obsm(mdata, f"{key_added}_proba", proba.to_numpy().astype(np.float32))
        info["classes"] = np.asarray(model.classes_)
        info["best_head"] = model.best_head
        info["fusion_weights"] = model.fusion_weights().to_numpy()
        if label_key is not None:
            clusters = mode == "unsupervised"
            rows = {"train": train, "validation": validation, "test": test}
            info["metrics"] = {
                name: _group_metrics(mdata.obs[label_key].iloc[r], prediction.iloc[r], clusters=clusters)
                for name, r in rows.items() if len(r)
            }
    write_uns(mdata, key_added, info)
    return model


def _match_features(query: MuData, reference: MuData | None, model: UnitedNet | None, modalities: Sequence[str],
                    layers: dict[str, str | None]) -> dict[str, Any]:
    """Query matrices with columns reordered to the reference features; a clear error when some are missing."""
    out = {}
    for m in modalities:
        if m not in query.mod:
            raise KeyError(f"Query lacks modality {m!r}; it has {list(query.mod)}.")
        expected = model.modality_var(m).index if model is not None else reference.mod[m].var_names
        position = pd.Index(query.mod[m].var_names).get_indexer(expected)
        if (position < 0).any():
            missing = list(expected[position < 0])
            raise KeyError(
                f"Query modality {m!r} lacks {len(missing)} of the {len(expected)} reference features "
                f"(e.g. {missing[:5]}); features are matched by name."
            )
        matrix = get_matrix(query.mod[m], layers.get(m))
        out[m] = matrix[:, position]
    return out


def transfer_labels(
    reference: MuData,
    query: MuData,
    *,
    label_key: str,
    model: UnitedNet | None = None,
    modalities: Sequence[str] | None = None,
    layer: str | dict[str, str | None] | None = None,
    max_epochs: int = 100,
    adapt_epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 64,
    validation_size: float = 0.1,
    random_state: int = 0,
    key_added: str | None = None,
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    trainer_kwargs: dict[str, Any] | None = None,
    **model_kwargs: Any,
) -> UnitedNet:
    """Transfer cell labels from a labelled reference MuData to a query MuData with UnitedNet.

    Fits a supervised UnitedNet on the reference (or reuses ``model``), then adapts it the way UnitedNet's
    transfer does: translation and contrastive training on reference and query cells together, classification
    on the reference cells only (the query's labels are never read). Query features are matched to the
    reference's by name (order and extra features do not matter).

    Parameters
    ----------
    reference
        Labelled paired MuData.
    query
        Paired MuData with the same modalities (its own features may be ordered differently or be a superset).
    label_key
        Column of ``reference.obs`` with the labels.
    model
        A supervised UnitedNet trained on the reference; fitted when ``None``.
    modalities
        Modalities to use (default: the model's, else all of the reference's).
    layer
        Layer to read (same in reference and query); default ``.X``.
    max_epochs
        Epochs of the reference fit (when ``model`` is None).
    adapt_epochs
        Epochs of the joint adaptation (0 skips it).
    lr, batch_size
        Training options.
    validation_size
        Share of reference cells held out for checkpoint and head selection.
    random_state
        Seed.
    key_added
        Column written to ``query.obs`` (default ``'<label_key>_transferred'``); ``'<key>_confidence'`` holds
        the best head's maximum class probability (low values flag cells unlike any reference type).
    accelerator, devices, trainer_kwargs
        Lightning options.
    **model_kwargs
        Architecture options of :class:`~multiomix.models.UnitedNet` (reference fit only).

    Returns
    -------
    The adapted model (over the joint reference + query data). Writes ``query.obs[key]`` (categorical with the
    reference categories), ``query.obs[key + '_confidence']``, ``query.obsm['X_unitednet']`` and
    ``query.uns['unitednet_transfer']``.

    Examples
    --------
    >>> import multiomix as mx
    >>> cite = mx.datasets.bmmc_cite()
    >>> reference, query = cite[cite.obs["batch"] == "s1d1"].copy(), cite[cite.obs["batch"] == "s1d2"].copy()
    >>> mx.tl.transfer_labels(reference, query, label_key="cell_type")
    >>> query.obs["cell_type_transferred"].value_counts().head()
    """
    key = key_added or f"{label_key}_transferred"
    if model is not None:
        if model.mode != "supervised":
            raise ValueError(f"`model` must be a supervised UnitedNet, got mode {model.mode!r}.")
        modalities = model.modalities
        layers = model._layers()
    else:
        modalities = check_modalities(reference, modalities)
        layers = {m: layer.get(m) if isinstance(layer, dict) else layer for m in modalities}
    if len(modalities) < 2:
        raise ValueError(f"UnitedNet needs at least two modalities, got {modalities}.")
    check_modalities(reference, modalities)
    check_labels(reference.obs, label_key)
    if reference.obs[label_key].isna().any():
        raise ValueError(f"reference.obs[{label_key!r}] has missing labels.")
    query_x = _match_features(query, reference, model, modalities, layers)
    for m in modalities:
        if not query.mod[m].obs_names.equals(query.obs_names):
            raise ValueError(f"Query modality {m!r} is not aligned with query.obs; run muon.pp.intersect_obs first.")
    labels = reference.obs[label_key].astype(str)
    rng_rows = np.arange(reference.n_obs)
    stratify = labels if labels.value_counts().min() >= 2 else None
    ref_train, ref_val = train_test_split(rng_rows, test_size=validation_size, random_state=random_state,
                                          stratify=stratify)
    if model is None:
        ref_view = MuData({m: AnnData(X=get_matrix(reference.mod[m], layers[m]), obs=pd.DataFrame(
            index=reference.obs_names), var=reference.mod[m].var[[]]) for m in modalities})
        ref_view.obs[label_key] = pd.Categorical(labels)
        UnitedNet.setup_mudata(ref_view, label_key=label_key)
        model = UnitedNet(ref_view, mode="supervised", random_state=random_state, **model_kwargs)
        model.train(max_epochs, lr=lr, batch_size=batch_size, train_indices=np.sort(ref_train),
                    validation_indices=np.sort(ref_val), accelerator=accelerator, devices=devices,
                    **(trainer_kwargs or {}))
    classes = model.classes_
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"reference.obs[{label_key!r}] has labels {unknown[:5]} the model was not trained on.")
    final = model
    if adapt_epochs > 0:
        mods = {}
        for m in modalities:
            ref_matrix = get_matrix(reference.mod[m], layers[m])
            ref_matrix = ref_matrix[:, pd.Index(reference.mod[m].var_names).get_indexer(model.modality_var(m).index)]
            q = query_x[m]
            stacked = sparse.vstack([sparse.csr_matrix(ref_matrix), sparse.csr_matrix(q)]).tocsr() if (
                sparse.issparse(ref_matrix) or sparse.issparse(q)) else np.vstack([np.asarray(ref_matrix),
                                                                                   np.asarray(q)])
            names = [f"ref-{i}" for i in range(reference.n_obs)] + [f"query-{i}" for i in range(query.n_obs)]
            mods[m] = AnnData(X=stacked, obs=pd.DataFrame(index=names), var=model.modality_var(m)[[]])
        joint = MuData(mods)
        joint.obs[label_key] = pd.Categorical(
            list(labels) + [_UNLABELLED] * query.n_obs, categories=[*classes, _UNLABELLED]
        )
        UnitedNet.setup_mudata(joint, label_key=label_key, unlabeled_category=_UNLABELLED)
        params = {**model.init_params_["non_kwargs"], **model.init_params_.get("kwargs", {}),
                  "random_state": random_state}
        final = UnitedNet(joint, **params)
        state = model.module.state_dict()
        final.module.load_state_dict(state)
        query_rows = np.arange(reference.n_obs, joint.n_obs)
        final.train(adapt_epochs, lr=lr, batch_size=batch_size,
                    train_indices=np.sort(np.concatenate([ref_train, query_rows])),
                    validation_indices=np.sort(ref_val), accelerator=accelerator, devices=devices,
                    **(trainer_kwargs or {}))
        proba = final.predict_proba(indices=query_rows)
        latent = final.get_latent_representation(indices=query_rows)
    else:
        proba, latent = _infer_unregistered(model, query_x, batch_size=512)
    proba.index = query.obs_names
    codes = proba.to_numpy().argmax(1)
    write_obs(query, key, pd.Categorical.from_codes(codes, categories=classes))
    write_obs(query, f"{key}_confidence", proba.to_numpy().max(1).astype(np.float32))
    write_obsm(query, "X_unitednet", latent.astype(np.float32))
    write_uns(query, "unitednet_transfer", {
        "params": to_uns({"label_key": label_key, "modalities": list(modalities), "max_epochs": max_epochs,
                          "adapt_epochs": adapt_epochs, "lr": lr, "batch_size": batch_size,
                          "random_state": random_state}),
        "classes": np.asarray(classes),
        "proba": proba.to_numpy().astype(np.float32),
    })
    return final


@torch.inference_mode()
def _infer_unregistered(
    model: UnitedNet, matrices: dict[str, Any], *, batch_size: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """Best-head probabilities and fused latent for feature-matched matrices (densified per minibatch)."""
    model.module.eval()
    device = model.module.device
    n = next(iter(matrices.values())).shape[0]
    logits, latent = [], []
    for start in range(0, n, batch_size):
        x = {}
        for m in model.modalities:
            chunk = matrices[m][start : start + batch_size]
            chunk = chunk.toarray() if sparse.issparse(chunk) else np.asarray(chunk)
            x[m] = torch.as_tensor(chunk, dtype=torch.float32, device=device)
        out = model.module.inference(x)
        logits.append(out["logits"][model.best_head].cpu())
        latent.append(out["fused"][model.best_head].cpu())
    proba = torch.softmax(torch.cat(logits), -1).numpy()
    return pd.DataFrame(proba, columns=model.classes_), torch.cat(latent).numpy()


__all__ = ["fit_unitednet", "transfer_labels"]
