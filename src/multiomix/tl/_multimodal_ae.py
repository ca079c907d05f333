"""``fit_multimodal_ae``: scanpy-style entry point to :class:`multiomix.models.MultimodalAE`."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from mudata import MuData

from .._baseline import MAX_ROWS, subsample_rows
from .._docs import fill_doc
from .._logging import logger
from .._metrics import clustering_metrics
from .._utils import (
    check_modalities,
    check_output_columns,
    get_matrix,
    label_text,
    new_mudata,
    quiet_logger,
    write_obsm,
)
from ..models import MultimodalAE
from ..models.base import SeedEnsemble, check_n_models, resolve_layers
from ..pp._features import infer_modality_kind
from ..train._runner import check_fit_kwargs
from ._embedding import modality_block
from ._fit import FitData, _hold_out, drop_class_outputs, finish_fit, options_for, prepare_fit, stored_params
from ._results import check_replaceable

__all__ = ["fit_multimodal_ae"]

_NO_TEST_NOTE = "test_size=0"


class _DropNote(logging.Filter):
    """Drop prepare_fit's "no test metrics" note: an unsupervised embedding has no test metrics to miss."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_NO_TEST_NOTE)


def _feature_masks(mdata: MuData, modalities: Sequence[str], use_highly_variable: bool | None) -> dict[str, Any]:
    """Per modality, the boolean mask of ``var['highly_variable']`` to train on (``None``: all features)."""
    masks: dict[str, Any] = {}
    for m in modalities:
        var = mdata.mod[m].var
        has = "highly_variable" in var.columns
        if use_highly_variable and not has:
            raise KeyError(f"use_highly_variable=True but modality {m!r} has no var['highly_variable']; run "
                           "mx.pp.select_features first or pass use_highly_variable=False.")
        if not has or use_highly_variable is False:
            masks[m] = None
            continue
        mask = var["highly_variable"].fillna(False).to_numpy().astype(bool)
        if not mask.any():
            raise ValueError(f"Modality {m!r}: var['highly_variable'] selects no feature.")
        if use_highly_variable is None:
            logger.info(f"modality {m!r}: training on the {int(mask.sum())} of {len(mask)} features with "
                        "var['highly_variable'] (use_highly_variable=False for all)")
        masks[m] = mask
    return masks


#: components per modality of the PCA / LSI baseline (pca_concat's default)
_BASELINE_COMPONENTS = 20


def _subset_view(mdata: MuData, fit: FitData, layers: Mapping[str, str | None], masks: Mapping[str, Any]) -> MuData:
    """Build the training view over the selected features, with a copy of the user's ``var``.

    The user's object is not touched; modalities without a selection share the view's matrices.
    """
    mods = {}
    for m, mask in masks.items():
        matrix = get_matrix(fit.view.mod[m], layers[m], modality=m)
        var = mdata.mod[m].var
        if mask is not None:
            matrix, var = matrix[:, np.flatnonzero(mask)], var.iloc[np.flatnonzero(mask)]
        adata = ad.AnnData(X=matrix, obs=pd.DataFrame(index=fit.view.obs_names), var=var.copy())
        if layers[m] is not None:
            adata.layers[layers[m]] = matrix
        mods[m] = adata
    return new_mudata(mods)


def baseline_kinds(likelihoods: Mapping[str, str]) -> dict[str, str]:
    """:func:`pca_concat` kind per modality for the data the autoencoder reads, from its reconstruction loss.

    ``"bce"`` (binary peaks): TF-IDF + LSI; ``"mse"`` (already normalised or continuous): z-scores + PCA; ``"nb"``
    (raw counts): the kind its name suggests (RNA: log-normalisation + PCA, protein: CLR + PCA, ATAC: LSI).

    Examples
    --------
    >>> baseline_kinds({"rna": "nb", "atac": "bce", "adt": "mse"})
    {'rna': 'rna', 'atac': 'atac', 'adt': 'scaled'}
    """
    return {m: "atac" if lik == "bce" else "scaled" if lik == "mse" else infer_modality_kind(m)
            for m, lik in likelihoods.items()}


def _baseline_embedding(view: MuData, likelihoods: Mapping[str, str], *, random_state: int) -> np.ndarray:
    """Concatenated per-modality PCA / LSI (:func:`pca_concat`, 20 components each) of what the model reads."""
    kinds = baseline_kinds(likelihoods)
    with quiet_logger("multiomix"):
        return np.concatenate([
            modality_block(view.mod[m], name=m, kind=kinds[m], layer=None, n_comps=_BASELINE_COMPONENTS,
                           use_highly_variable=False, random_state=random_state)
            for m in likelihoods], axis=1)


def _scored_rows(labels: pd.Series, *, random_state: int) -> np.ndarray:
    """Rows the embedding scores use: all rows, or a stratified ``MAX_ROWS`` of the labelled ones (logged).

    k-means with k = the number of classes and the baseline's PCA / LSI over every cell took several times the
    training epoch at 50,000 cells; as the logistic baselines, the scores are bounded.
    """
    known = np.flatnonzero(labels.notna().to_numpy())
    if len(known) <= MAX_ROWS:
        return np.arange(len(labels))
    kept = subsample_rows(known, label_text(labels.iloc[known]).to_numpy(), max_rows=MAX_ROWS,
                          random_state=random_state)
    logger.info(f"embedding scores: on a stratified random {MAX_ROWS:,} of the {len(known):,} labelled rows")
    return kept


def _embedding_metrics(latent: np.ndarray, labels: pd.Series, *, random_state: int) -> dict[str, Any]:
    """ARI/NMI of k-means (k = number of classes) on the latent against the labels, over the labelled rows."""
    from sklearn.cluster import KMeans

    known = labels.notna().to_numpy()
    truth = label_text(labels[known])
    k = truth.nunique()
    if k < 2:
        return {"missing": f"fewer than two classes among the labelled rows ({k})"}
    clusters = KMeans(k, n_init=10, random_state=random_state).fit_predict(latent[known])
    return {"kmeans": clustering_metrics(truth.to_numpy(), clusters), "k": int(k),
            "description": "k-means on the latent (k = number of classes) against the labels, labelled rows; "
                           "the labels are never used in training"}


@fill_doc
def fit_multimodal_ae(
    mdata: MuData,
    *,
    label_key: str | None = None,
    modalities: Sequence[str] | None = None,
    layer: str | Mapping[str, str | None] | None = None,
    use_highly_variable: bool | None = None,
    losses: Mapping[str, str] | None = None,
    loss_weights: Mapping[str, float] | None = None,
    latent_dim: int = 20,
    hidden_dim: int = 128,
    n_layers: int = 1,
    dropout: float = 0.1,
    input_dropout: float = 0.2,
    modality_dropout: float = 0.0,
    max_epochs: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    batch_size: int | None = None,
    early_stopping_patience: int | None = None,
    split_key: str = "split",
    validation_size: float = 0.15,
    n_models: int = 5,
    baseline: bool = True,
    random_state: int = 0,
    key_added: str = "mmae",
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    progress_bar: bool | None = None,
    **trainer_kwargs: Any,
) -> MultimodalAE | SeedEnsemble:
    """Fit a multimodal autoencoder and write its joint embedding to ``mdata.obsm['X_<key_added>']``.

    Each modality gets an encoder into a joint latent from which every modality is decoded (see
    :class:`~multiomix.models.MultimodalAE`). The fit is unsupervised: with ``obs[split_key]`` the model trains on
    the ``train`` rows and keeps the epoch with the lowest loss on the ``validation`` rows (or on a random
    ``validation_size`` of the train rows); without it, a random ``validation_size`` of all rows is held out for
    that choice (``validation_size=0``: train on every row, keep the last epoch). The embedding is written for
    every row. Nothing is written to ``mdata`` until training succeeded.

    Parameters
    ----------
    mdata
        Paired MuData.
    label_key
        Optional column of ``mdata.obs`` with labels, used only to score the embedding (never for training).
    modalities
        Modalities to use (default all).
    layer
        Layer per modality (one name or a dict; ``None`` = ``.X``).
    use_highly_variable
        Train on the features with ``var['highly_variable']`` (written by :func:`multiomix.pp.select_features`).
        ``None``: per modality, when that column exists (one log line says so); ``False``: all features.
    losses
        ``"mse"``, ``"bce"`` or ``"nb"`` per modality (default: ``"bce"`` for binary data, else ``"mse"``).
    loss_weights
        Weight of each modality's loss (default 1 each).
    latent_dim
        Width of the joint embedding.
    hidden_dim, n_layers, dropout, input_dropout
        Encoder/decoder size and regularisation. The defaults (128 hidden units, input dropout 0.2, with the
        early-stopping patience of 30) were chosen on Patch-seq, a data set the joint-embedding benchmark does not
        score (``benchmarks/mmae_defaults.py``).
    modality_dropout
        Probability that a training cell is encoded from one random modality only (enables translation).
    max_epochs, lr, weight_decay, batch_size, early_stopping_patience
        Training options (defaults: the model's ``_train_defaults``: at most 200 epochs, AdamW at 1e-3 with weight
        decay 1e-4, 128 cells per batch, stop 30 epochs after the best validation epoch, whose weights are kept).
    split_key
        Column of ``mdata.obs`` with ``train``/``validation``/``test`` (``test`` rows are embedded, not trained on).
    validation_size
        Share of the train rows held out to choose the epoch when there are no ``validation`` rows.
    n_models
        Autoencoders to train from seeds ``random_state``, ``random_state + 1``, .... With more than one, a
        :class:`~multiomix.models.SeedEnsemble` is returned and the embedding joins the members' latents
        (``n_models x latent_dim`` columns, each member's latent divided by its standard deviation over its
        training rows). Without ``validation`` rows in ``obs[split_key]``, each member holds out its own random
        ``validation_size`` of the cells (drawn with its seed) to choose its epoch, so that every cell is trained
        on by most members; with them, all members share them. The default of 5 was chosen on Patch-seq, with
        the other defaults (``benchmarks/mmae_defaults.py``): a single autoencoder's neighbour graph varies from
        seed to seed, and five seeds side by side gave clusters closer to the cell types, at five times the
        training time; ``n_models=1`` trains one autoencoder, as fast as before.
    baseline
        With ``label_key``: also embed the same inputs by concatenated per-modality PCA / LSI (as
        :func:`~multiomix.tl.pca_concat` does, 20 components each; TF-IDF + LSI for a ``"bce"`` modality,
        z-scores + PCA for ``"mse"``, the count preprocessing of the modality's kind for ``"nb"``), score it the
        same way, store it under ``uns[key_added]['baseline']`` and log one line: model vs baseline.
    random_state
        Seed: runs on CPU are reproducible.
    key_added
        Results go to ``obsm['X_<key_added>']`` and ``uns[key_added]``.
    %(fit_lightning)s

    Returns
    -------
    The trained model (a :class:`~multiomix.models.SeedEnsemble` when ``n_models > 1``; ``history`` is its first
    member's). Writes ``mdata.obsm['X_<key_added>']`` and ``mdata.uns[key_added]`` with ``params``,
    ``history`` (a DataFrame of per-epoch losses), row counts, ``seconds_per_epoch``, the ``features`` used per
    modality and, with ``label_key``, ``embedding_metrics`` (k-means with k = the number of classes on the
    embedding, against the labels: ARI, NMI; ``n_scored`` rows, a stratified 5,000 of the labelled rows when there
    are more) and ``baseline`` (the same for the PCA / LSI embedding of those rows).

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.bmmc_multiome()
    >>> model = mx.tl.fit_multimodal_ae(mdata, latent_dim=16, max_epochs=100, modality_dropout=0.2)
    >>> mdata.obsm["X_mmae"].shape
    (500, 80)
    >>> single = mx.tl.fit_multimodal_ae(mdata, n_models=1, key_added="mmae_single")
    >>> mdata.obsm["X_mmae_single"].shape
    (500, 20)
    """
    arguments = dict(locals())
    check_fit_kwargs(trainer_kwargs, MultimodalAE)
    modalities = check_modalities(mdata, modalities)
    check_replaceable(mdata, key_added, "fit")
    check_output_columns(mdata, key_added, [], obsm=[f"X_{key_added}"])  # the user's own embedding is kept
    n_models = check_n_models(n_models)
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {latent_dim}.")
    if max_epochs is not None and max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}.")
    if label_key is not None and label_key not in mdata.obs.columns:
        raise KeyError(f"Label key {label_key!r} not found in mdata.obs; columns: {list(mdata.obs.columns)}.")
    layers = resolve_layers(modalities, layer)
    masks = _feature_masks(mdata, modalities, use_highly_variable)
    note_filter = _DropNote()
    logger.addFilter(note_filter)
    try:  # labels are not given to prepare_fit: unlabelled rows are trained on as well
        fit = prepare_fit(mdata, label_key=None, modalities=modalities, layer=layer, supervised=False,
                          split_key=split_key, test_size=0.0, validation_size=validation_size,
                          random_state=random_state)
    finally:
        logger.removeFilter(note_filter)
    # no split column is written for an embedding (every row is "train" without one)
    fit = replace(fit, new_split=None, notes=[n for n in fit.notes if not n.startswith(_NO_TEST_NOTE)])
    view = _subset_view(mdata, fit, layers, masks)
    MultimodalAE.setup_mudata(view, modalities=modalities, layer=layer)
    if len(fit.validation) == 0:  # train_on_rows asks Lightning to validate every epoch; there is nothing to validate
        trainer_kwargs.setdefault("limit_val_batches", 0)

    # with no validation rows of the user's, each member holds out its own random validation_size (drawn with its
    # seed) to choose its epoch: every cell is trained on by most members, and the members differ more
    own_validation = len(fit.validation) > 0 and not (
        split_key in mdata.obs.columns and (mdata.obs[split_key].astype(str) == "validation").any())
    pool = np.sort(np.concatenate([fit.train, fit.validation]))

    def rows_of(seed: int) -> tuple[np.ndarray, np.ndarray]:
        if seed == random_state or not own_validation:
            return fit.train, fit.validation
        return _hold_out(pool, pd.Series("cell", index=range(mdata.n_obs)), validation_size, what="a validation set",
                         random_state=seed)

    def train_one(seed: int) -> MultimodalAE:
        member = MultimodalAE(view, **options_for(MultimodalAE.__init__, {**arguments, "random_state": seed}))
        train, validation = rows_of(seed)
        member.train(train_indices=train, validation_indices=validation,
                     **options_for(member.train, {**arguments, "random_state": seed}), **trainer_kwargs)
        # what the ensemble divides this member's latent by, so that every member weighs alike
        member.latent_scale_ = float(np.std(member.get_latent_representation(indices=train)))
        return member

    start = time.perf_counter()
    members = [train_one(random_state + i) for i in range(n_models)]
    seconds = time.perf_counter() - start
    model = members[0] if n_models == 1 else SeedEnsemble(members)
    if n_models > 1:
        logger.info(f"trained {n_models} autoencoders (seeds {random_state}-{random_state + n_models - 1}); the "
                    "embedding joins their latents (n_models=1 for one)")
    latent = model.get_latent_representation()
    params = {**stored_params(arguments, exclude=("losses", "loss_weights", "use_highly_variable", "layer"),
                              defaults=MultimodalAE._train_defaults),
              "modalities": list(model.modalities), "losses": dict(members[0].likelihoods_),
              "loss_weights": {m: float((loss_weights or {}).get(m, 1.0)) for m in model.modalities},
              "use_highly_variable": {m: masks[m] is not None for m in modalities},
              "layer": {m: v or "X" for m, v in layers.items()}}
    metrics = baseline_metrics = None
    if label_key is not None:
        scored = _scored_rows(mdata.obs[label_key], random_state=random_state)
        labels = mdata.obs[label_key].iloc[scored]
        metrics = _embedding_metrics(latent[scored], labels, random_state=random_state)
        metrics["n_scored"] = int(labels.notna().sum())  # the labelled rows among them
        if baseline and "kmeans" in metrics:
            baseline_metrics = {"embedding": f"pca_concat of the model's inputs, {_BASELINE_COMPONENTS} components "
                                             "per modality", "kinds": baseline_kinds(members[0].likelihoods_)}
            try:
                inputs = view if len(scored) == view.n_obs else view[scored].copy()
                reference = _baseline_embedding(inputs, members[0].likelihoods_, random_state=random_state)
            except ValueError as error:  # e.g. a modality too small to reduce: the fit stands without a baseline
                baseline_metrics["missing"] = str(error)
                logger.warning(f"no baseline embedding: {error}")
            else:
                baseline_metrics.update(_embedding_metrics(reference, labels, random_state=random_state))

    def outputs() -> dict[str, Any]:
        drop_class_outputs(mdata, key_added)  # a classifier's earlier outputs under this key
        write_obsm(mdata, f"X_{key_added}", np.asarray(latent, dtype=np.float32))
        n_epochs = sum(max(len(m.history.get("train_loss", [])), 1) if m.history is not None else 1
                       for m in members)
        extra: dict[str, Any] = {
            "seconds_per_epoch": seconds / n_epochs,
            "features": {m: np.asarray(model.feature_names_[m]) for m in modalities},
        }
        if metrics is not None:
            extra["embedding_metrics"] = metrics
        if baseline_metrics is not None:
            extra["baseline"] = baseline_metrics
        return extra

    finish_fit(mdata, fit, model, key_added=key_added, params=params, split_key=split_key, outputs=outputs)
    if baseline_metrics is not None and "kmeans" in baseline_metrics:
        ours, peer = metrics["kmeans"], baseline_metrics["kmeans"]
        logger.info(f"{key_added} vs baseline (k-means with k = {metrics['k']} on the labelled rows, {label_key!r}): "
                    f"NMI {ours['nmi']:.3f} vs {peer['nmi']:.3f}, ARI {ours['ari']:.3f} vs {peer['ari']:.3f} "
                    f"(concatenated PCA/LSI of the same inputs; baseline=False skips it)")
    return model
