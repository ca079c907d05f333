"""Scanpy-style fit of :class:`~multiomix.models.UnitedNet` (annotation transfer: ``_transfer.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from mudata import MuData
from scipy import sparse

from .._baseline import MAX_ROWS
from .._docs import fill_doc
from .._logging import logger
from .._metrics import clustering_metrics, pearson_per_column, r2_per_column
from .._utils import (
    check_modalities,
    check_output_columns,
    get_matrix,
    write_obsm,
)
from ..models import UnitedNet
from ..models.base import MultiomixModel, SeedEnsemble, check_n_models, resolve_layers
from ..nn.unitednet import ridge_fit
from ..train import PHASES
from ..train._runner import check_fit_kwargs
from ._fit import (
    FitData,
    drop_class_outputs,
    finish_classifier_fit,
    finish_fit,
    first_member,
    label_candidates,
    modality_features,
    options_for,
    prepare_fit,
    resolve_label_key,
    stored_params,
    train_members,
    write_classifier_outputs,
)
from ._results import check_replaceable

_UNLABELLED = "__unlabelled__"


@fill_doc
def fit_unitednet(
    mdata: MuData,
    *,
    label_key: str | None = None,
    mode: Literal["supervised", "unsupervised", "translation"] | None = None,
    modalities: Sequence[str] | None = None,
    layer: str | dict[str, str | None] | None = None,
    n_clusters: int | None = None,
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
    head_fusion_init: Literal["auto", "uniform", "diverse"] = "auto",
    cluster_head_choice: Literal["silhouette", "loss"] = "silhouette",
    refine_clusters: bool = True,
    loss_weights: dict[str, float] | None = None,
    binary: Literal["auto"] | dict[str, bool] = "auto",
    class_weighting: bool = True,
    linear_skip: bool = True,
    linear_skip_max_cells: int = 5000,
    max_epochs: int | None = None,
    lr: float | dict[str, float] | None = None,
    weight_decay: float | None = None,
    batch_size: int | None = None,
    classification_repeats: int = 1,
    n_models: int = 1,
    early_stopping: bool | None = None,
    early_stopping_patience: int | None = None,
    split_key: str = "split",
    test_size: float = 0.2,
    validation_size: float = 0.15,
    baseline: bool = True,
    random_state: int = 0,
    key_added: str = "unitednet",
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    progress_bar: bool | None = None,
    **trainer_kwargs: Any,
) -> UnitedNet | SeedEnsemble:
    """Fit UnitedNet on a paired MuData and write the fused embedding and group predictions into it.

    Follows the fit contract (``docs/conventions.md``): with ``obs[split_key]`` only ``'train'`` rows are
    trained on and the checkpoint and best head are chosen on the ``'validation'`` rows (or a stratified
    ``validation_size`` of the train rows), never on ``'test'`` rows; without it, ``test_size`` of the rows
    (stratified by label in supervised mode) is held out and the split written to ``obs[split_key]``.

    Parameters
    ----------
    mdata
        Paired MuData (at least two modalities).
    label_key
        Column of ``mdata.obs`` with labels. Supervised mode trains on them (``None``: the one plausible label
        column; rows without a label are predicted, never trained on); in unsupervised mode they are only used
        for metrics and the default number of clusters; translation mode does not use them.
    mode
        ``"supervised"``, ``"unsupervised"`` or ``"translation"``; default supervised when ``label_key`` is
        given or can be inferred, else unsupervised.
    modalities
        Modalities to use (default: all).
    layer
        Layer to read (one for all, or a dict per modality); default ``.X``.
    n_clusters
        Clusters in unsupervised mode (default: the number of classes of ``label_key``).
    latent_dim, hidden, n_heads, projection_dim, fuser, dropout, input_dropout, adversarial
        Architecture, see :class:`~multiomix.models.UnitedNet`.
    contrastive_temperature, head_temperature, head_fusion_init, cluster_head_choice, refine_clusters
        Loss and head options, see :class:`~multiomix.models.UnitedNet`.
    loss_weights, binary, class_weighting, linear_skip, linear_skip_max_cells
        See :class:`~multiomix.models.UnitedNet`.
    max_epochs, lr, weight_decay, batch_size, early_stopping_patience
        Training options (defaults: the model's: 100 epochs, 1e-3, 0, 64, 30).
    classification_repeats, early_stopping
        See :meth:`~multiomix.models.UnitedNet.train` (``None``: stop on the validation loss in supervised
        mode, patience 30; train every epoch in unsupervised mode; the best validation epoch is restored).
    %(fit_n_models)s
        Supervised mode only.
    %(fit_split_key)s
    test_size
        Share of the rows held out for testing when there is no split column (0: none).
    validation_size
        Share of the train rows held out for checkpoint/head selection when there are no validation rows.
    baseline
        Supervised mode: also fit the logistic-regression baseline on the same rows and store its test metrics.
        Translation mode: ridge regression of every pair ``source->target`` (continuous target) on the
        standardised training + validation rows (at most 5,000, a random subset beyond that), the penalty by
        leave-one-out error, scored on the test rows like the model; pairs wider than
        ``UnitedNet.linear_skip_max_weights`` weights are skipped (named in the record).
    %(fit_random_state)s
    %(fit_key_added)s
    %(fit_lightning)s

    Returns
    -------
    The trained model (a :class:`~multiomix.models.SeedEnsemble` when ``n_models > 1``; its first member's
    latent and heads are written). Writes ``obsm['X_<key>']`` (fused latent of the best head; the mean modality
    latent in translation mode) and, except in translation mode, ``obs['<key>_prediction']``,
    ``obs['<key>_confidence']`` and ``obsm['<key>_proba']``; ``uns['<key>']`` holds params, history, the numbers
    of train / validation / test rows and ``test_metrics``, and (except in translation mode) classes, best head
    and fusion weights (supervised: accuracy, macro-F1, ... and the baseline's;
    unsupervised with labels: ARI/NMI per split under ``metrics``; translation: per-feature Pearson and R² of
    every pair ``source->target`` with a continuous target on the test rows, and the ridge baseline's mean
    Pearson and R² per pair under ``baseline``).

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.patchseq()
    >>> model = mx.tl.fit_unitednet(mdata, label_key="cell_type_TEM", max_epochs=100)
    >>> mdata.obs["unitednet_prediction"].head()
    """
    arguments = dict(locals())
    check_fit_kwargs(trainer_kwargs, UnitedNet)
    modalities = check_modalities(mdata, modalities)
    if len(modalities) < 2:
        raise ValueError(f"UnitedNet needs at least two modalities, got {modalities}.")
    if mode is None:
        # supervised when a label column is given or present (several candidates: resolve_label_key lists them)
        supervised = label_key is not None or len(label_candidates(mdata.obs, split_key=split_key)) >= 1
        mode = "supervised" if supervised else "unsupervised"
        logger.info(f"UnitedNet mode: {mode!r}")
    if mode not in PHASES:
        raise ValueError(f"`mode` must be one of {list(PHASES)}, got {mode!r}.")
    supervised = mode == "supervised"
    if check_n_models(n_models) > 1 and not supervised:
        raise ValueError(f"n_models > 1 averages class probabilities, so it needs mode='supervised' (got {mode!r}); "
                         "for clusters of several seeds see `mx.tl.consensus_clusters`.")
    metric_key = None
    if mode == "translation" and (label_key is not None or n_clusters is not None):
        logger.info("mode='translation' predicts modalities only: label_key and n_clusters are not used")
        label_key = n_clusters = None
    if not supervised and label_key is not None:
        metric_key = resolve_label_key(mdata.obs, label_key, split_key=split_key)
        if mode == "unsupervised" and n_clusters is None:
            # the classes present (a categorical column keeps unused categories after subsetting)
            n_clusters = int(mdata.obs[metric_key].dropna().astype(str).nunique())
    if mode == "translation":  # no class outputs; its embedding and record are checked here
        check_replaceable(mdata, key_added, "fit")
        check_output_columns(mdata, key_added, [], obsm=[f"X_{key_added}"])
    fit = prepare_fit(mdata, label_key=label_key if supervised else None, modalities=modalities, layer=layer,
                      supervised=supervised, split_key=split_key, test_size=test_size,
                      validation_size=validation_size, random_state=random_state,
                      output_key=None if mode == "translation" else key_added)
    UnitedNet.setup_mudata(fit.view, modalities=modalities, label_key=fit.label_key if supervised else None,
                           layer=layer)
    options = options_for(UnitedNet.__init__, {**arguments, "mode": mode, "n_clusters": n_clusters})

    def train_one(seed: int) -> UnitedNet:
        member = UnitedNet(fit.view, **{**options, "random_state": seed})
        member.modality_vars_ = {m: mdata.mod[m].var.copy() for m in modalities}  # the user's var columns
        member.train(train_indices=fit.train, validation_indices=fit.validation, **trainer_kwargs,
                     **{**options_for(MultiomixModel.train, arguments), **options_for(member.train, arguments)})
        return member

    model = train_members(train_one, n_models=n_models, random_state=random_state)
    first = first_member(model)
    params = {**stored_params(arguments, exclude=("loss_weights", "binary"), defaults=UnitedNet._train_defaults),
              "mode": mode, "label_key": fit.label_key if supervised else metric_key, "modalities": modalities,
              "n_clusters": n_clusters, "binary": dict(first.binary_)}
    if loss_weights is not None:
        params["loss_weights"] = dict(loss_weights)

    def heads() -> dict[str, Any]:
        return {"best_head": first.best_head, "fusion_weights": first.fusion_weights().to_numpy()}

    if supervised:
        layers = resolve_layers(modalities, layer)
        finish_classifier_fit(
            mdata, fit, model, key_added=key_added, params=params, split_key=split_key, baseline=baseline,
            baseline_features=modality_features(mdata, modalities, layers), random_state=random_state, extra=heads,
        )
    elif mode == "unsupervised":
        proba = model.predict_proba()
        proba.index = mdata.obs_names
        latent = model.get_latent_representation()
        metrics = _cluster_metrics(mdata, fit, metric_key, proba)

        def outputs() -> dict[str, Any]:
            write_classifier_outputs(mdata, proba, latent, key=key_added)
            return {"classes": np.asarray(model.classes), **heads(), **metrics}

        finish_fit(mdata, fit, model, key_added=key_added, params=params, split_key=split_key, outputs=outputs)
    else:
        latent = model.get_latent_representation()
        metrics = _translation_metrics(mdata, fit, model)
        if baseline and "test_metrics" in metrics:
            metrics["baseline"] = _ridge_baseline(mdata, fit, model, random_state=random_state)
            for pair, theirs in metrics["baseline"]["test_metrics"].items():
                ours = metrics["test_metrics"][pair]
                logger.info(f"{key_added} {pair} vs baseline (ridge, alpha={theirs['alpha']:g}) on {len(fit.test)} "
                            f"test rows: mean Pearson {ours['mean_pearson']:.3f} vs {theirs['mean_pearson']:.3f}, "
                            f"mean R² {ours['mean_r2']:.3f} vs {theirs['mean_r2']:.3f}")

        def outputs() -> dict[str, Any]:
            drop_class_outputs(mdata, key_added)
            write_obsm(mdata, f"X_{key_added}", latent.astype(np.float32))
            return metrics

        finish_fit(mdata, fit, model, key_added=key_added, params=params, split_key=split_key, outputs=outputs)
    return model


def _cluster_metrics(mdata: MuData, fit: FitData, label_key: str | None, proba: pd.DataFrame) -> dict[str, Any]:
    """Return ARI/NMI of the clusters against ``label_key`` per split (labelled rows only), and the test split's.

    The splits are those of ``obs['split']`` (a split the fit wrote names its validation rows too).
    """
    if label_key is None:
        return {}
    truth = mdata.obs[label_key]
    prediction = pd.Series(proba.columns.to_numpy()[proba.to_numpy().argmax(1)], index=mdata.obs_names)
    metrics = {}
    for name, rows in fit.rows.items():
        rows = rows[truth.iloc[rows].notna().to_numpy()]
        if len(rows):
            metrics[name] = clustering_metrics(truth.iloc[rows], prediction.iloc[rows])
    out: dict[str, Any] = {"metrics": metrics}
    if "test" in metrics:
        out["test_metrics"] = metrics["test"]
    return out


def _translation_metrics(mdata: MuData, fit: FitData, model: UnitedNet) -> dict[str, Any]:
    """Per-feature Pearson and R² on the test rows of every pair ``source->target`` with a continuous target."""
    if not len(fit.test):
        return {"test_metrics_missing": "no test rows (test_size=0 or no 'test' rows in the split column)"}
    metrics = {}
    for target in model.modalities:
        if model.binary_[target]:
            continue  # binary targets are predicted as probabilities; per-feature R² is not meaningful there
        truth, columns = _test_truth(mdata, fit, model, target)
        for source in model.modalities:
            if source == target:
                continue
            pred = model.translate(mdata.mod[source][fit.test], source=source, target=target)
            pearson, r2 = _per_column_metrics(pred, truth, columns)
            metrics[f"{source}->{target}"] = {
                "mean_pearson": _nanmean(pearson),
                "mean_r2": _nanmean(r2),
                "per_feature": pd.DataFrame({"pearson": pearson, "r2": r2},
                                            index=pd.Index(model.feature_names_[target])),
            }
    return {"test_metrics": metrics}


def _ridge_baseline(mdata: MuData, fit: FitData, model: UnitedNet, *, random_state: int) -> dict[str, Any]:
    """Ridge regression of every continuous pair, scored on the test rows in the target's units.

    Fitted on the model's standardised training + validation rows, the penalty by leave-one-out error.
    """
    rows = np.union1d(fit.train, fit.validation)
    if len(rows) > MAX_ROWS:
        rows = np.sort(np.random.default_rng(random_state).choice(rows, MAX_ROWS, replace=False))
    width = {m: len(model.feature_names_[m]) for m in model.modalities}
    pairs = [(s, t) for t in model.modalities if not model.binary_[t] for s in model.modalities if s != t]
    fitted = [(s, t) for s, t in pairs if width[s] * width[t] <= model.linear_skip_max_weights]
    used = sorted({m for pair in fitted for m in pair})
    train = model._standardised(rows, used) if fitted else {}
    test = model._standardised(fit.test, sorted({s for s, _ in fitted})) if fitted else {}
    metrics = {}
    for s, t in fitted:
        weight, bias, alpha = ridge_fit(train[s], train[t])
        with torch.no_grad():
            pred = model.module.to_data_scale(t, torch.addmm(bias, test[s], weight)).cpu().numpy()
        pearson, r2 = _per_column_metrics(pred, *_test_truth(mdata, fit, model, t))
        metrics[f"{s}->{t}"] = {"mean_pearson": _nanmean(pearson), "mean_r2": _nanmean(r2), "alpha": alpha}
    out = {"name": "ridge", "n_train": len(rows), "test_metrics": metrics,
           "description": "ridge regression of each target modality on the standardised source modality, "
                          "penalty by leave-one-out error, fitted on the training + validation rows"}
    skipped = [f"{s}->{t}" for s, t in pairs if (s, t) not in fitted]
    if skipped:
        out["skipped"] = f"{skipped}: more weights than UnitedNet.linear_skip_max_weights"
    return out


def _test_truth(mdata: MuData, fit: FitData, model: UnitedNet, target: str):
    """Test rows of ``target`` (CSC when sparse, for column blocks) and the positions of the model's features."""
    truth = get_matrix(mdata.mod[target], model.layers[target], modality=target)[fit.test]
    truth = truth.tocsc() if sparse.issparse(truth) else truth
    return truth, mdata.mod[target].var_names.get_indexer(model.feature_names_[target])


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _per_column_metrics(pred: np.ndarray, truth, columns: np.ndarray, block: int = 1024):
    """Per-column Pearson and R² of ``pred`` against ``truth[:, columns]``, densified ``block`` columns at a time."""
    pearson, r2 = np.empty(len(columns)), np.empty(len(columns))
    for start in range(0, len(columns), block):
        part = slice(start, start + block)
        observed = truth[:, columns[part]]
        observed = observed.toarray() if sparse.issparse(observed) else np.asarray(observed)
        pearson[part], r2[part] = pearson_per_column(pred[:, part], observed), r2_per_column(pred[:, part], observed)
    return pearson, r2


__all__ = ["fit_unitednet"]
