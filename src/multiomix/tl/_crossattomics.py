"""Scanpy-style functions around :class:`~multiomix.models.CrossAttOmics`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from mudata import MuData

from .._docs import fill_doc
from .._logging import logger
from .._utils import check_modalities, label_text, write_uns
from ..explain import interaction_relevance
from ..models import CrossAttOmics, SeedEnsemble, default_interaction_graph
from ..models._crossattomics import groups_from_column, groups_per_modality
from ..models.base import modality_key, resolve_layers
from ..nn import validate_graph
from ..train._runner import check_fit_kwargs
from ._fit import (
    finish_classifier_fit,
    first_member,
    modality_features,
    options_for,
    prepare_fit,
    stored_params,
    train_members,
)
from ._results import check_replaceable


@fill_doc
def fit_crossattomics(
    mdata: MuData,
    *,
    label_key: str | None = None,
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
    linear_path: Literal["fitted", "trained"] | None = "fitted",
    n_models: int = 1,
    max_epochs: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    batch_size: int | None = None,
    early_stopping_patience: int | None = None,
    split_key: str = "split",
    test_size: float = 0.2,
    validation_size: float = 0.15,
    baseline: bool = True,
    random_state: int = 0,
    key_added: str = "crossattomics",
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    progress_bar: bool | None = None,
    **trainer_kwargs: Any,
) -> CrossAttOmics | SeedEnsemble:
    """Fit CrossAttOmics on a MuData and write its predictions and embedding into it.

    Follows the fit contract (``docs/conventions.md``): with ``obs[split_key]`` only ``'train'`` rows are
    trained on and early stopping watches the ``'validation'`` rows (or a stratified ``validation_size`` of the
    train rows); without it, a stratified ``test_size`` of the labelled rows is held out and the split is
    written to ``obs[split_key]``. Rows without a label are predicted, never trained on. Test metrics of the
    model and of a logistic-regression baseline fitted on the same rows go to ``uns[key_added]``.

    Parameters
    ----------
    mdata
        Paired MuData.
    label_key
        Column of ``mdata.obs`` with the classes (``None``: the one plausible label column).
    modalities
        Modalities to use (default: all).
    layer
        Layer to read (one for all, or a dict per modality); default ``.X``.
    interaction_graph
        ``{target: [sources]}``; default: expression (``rna``) is the target of every other modality.
    groups
        Feature groups: ``None`` (random, ~20 features each), an int, ``{group: [features]}`` or the name of a
        ``var`` column with each feature's group (:func:`~multiomix.pp.group_features`), per modality or for all.
    group_sizes, hidden, heads, dropout, class_weighting, standardize
        Architecture and loss options, see :class:`~multiomix.models.CrossAttOmics`.
    target_self_attention, add_unimodal_branches, add_unimodal_to_multimodal
        Fusion options, see :class:`~multiomix.nn.CrossAttOmicsNet`.
    linear_path
        ``"fitted"`` (default): a frozen, CV-tuned logistic regression of the inputs is added to the logits and
        training starts from it, so the deep part has to earn its place; ``"trained"``: a linear path trained
        with the rest; ``None``: none (the original architecture). See :class:`~multiomix.models.CrossAttOmics`.
    %(fit_n_models)s
    max_epochs, lr, weight_decay, batch_size, early_stopping_patience
        Training options (defaults: the model's, see :meth:`~multiomix.models.base.MultiomixModel.train`).
    %(fit_split_key)s
    %(fit_test_size)s
    validation_size
        Share of the train rows held out for early stopping when there are no validation rows.
    %(fit_baseline)s
    %(fit_random_state)s
    %(fit_key_added)s
    %(fit_lightning)s

    Returns
    -------
    The trained model (a :class:`~multiomix.models.SeedEnsemble` when ``n_models > 1``). Writes
    ``obs['<key>_prediction']``, ``obs['<key>_confidence']``,
    ``obsm['<key>_proba']``, ``obsm['X_<key>']`` and ``uns['<key>']`` (params, classes, history, interactions,
    ``best_epoch`` (-1: the fitted linear path alone was best), test metrics, baseline), and ``obs[split_key]``
    when it created the split.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.tcga_brca()
    >>> model = mx.tl.fit_crossattomics(mdata)
    >>> mdata.uns["crossattomics"]["test_metrics"]["macro_f1"]  # doctest: +SKIP
    """
    arguments = dict(locals())
    check_fit_kwargs(trainer_kwargs, CrossAttOmics)
    modalities = check_modalities(mdata, modalities)
    validate_graph(default_interaction_graph(modalities) if interaction_graph is None else interaction_graph,
                   modalities)
    # groups named by a var column: the view carries that column (and only the columns a model reads)
    var_columns = {m: [spec] for m, spec in groups_per_modality(groups, modalities).items() if isinstance(spec, str)}
    for m, (column,) in var_columns.items():
        groups_from_column(mdata.mod[m].var, column, modality=m)  # a clear error before anything is fitted
    fit = prepare_fit(mdata, label_key=label_key, modalities=modalities, layer=layer, split_key=split_key,
                      test_size=test_size, validation_size=validation_size, random_state=random_state,
                      var=var_columns, output_key=key_added)
    CrossAttOmics.setup_mudata(fit.view, label_key=fit.label_key, modalities=modalities, layer=layer)

    def train_one(seed: int) -> CrossAttOmics:
        member = CrossAttOmics(fit.view, **options_for(CrossAttOmics.__init__, {**arguments, "random_state": seed}))
        member.train(train_indices=fit.train, validation_indices=fit.validation,
                     **options_for(member.train, arguments), **trainer_kwargs)
        return member

    model = train_members(train_one, n_models=n_models, random_state=random_state)
    first = first_member(model)
    members = list(model) if n_models > 1 else [model]
    best_epochs = [-2 if m.best_epoch_ is None else m.best_epoch_ for m in members]
    params = {**stored_params(arguments, exclude=("groups",), defaults=CrossAttOmics._train_defaults),
              "label_key": fit.label_key, "modalities": modalities,
              "interaction_graph": first.interaction_graph,
              "n_groups": {m: len(g) for m, g in first.feature_groups_.items()}}
    extra = {"interactions": np.asarray(first.interactions), "best_epoch": best_epochs[0]}
    if n_models > 1:
        extra["best_epoch_per_model"] = np.asarray(best_epochs)
    finish_classifier_fit(
        mdata, fit, model, key_added=key_added, params=params, split_key=split_key, baseline=baseline,
        baseline_features=modality_features(mdata, modalities, resolve_layers(modalities, layer)),
        random_state=random_state, extra=lambda: extra,
        # the fitted linear path ran the baseline's search on the same rows (same folds, class-weighted alike):
        # the baseline is fitted once at its C instead of searching again (half of a fit's time on wide data)
        baseline_C=getattr(first, "linear_path_C_", None) if linear_path == "fitted" and first.class_weighting
        else None,
    )
    if linear_path == "fitted":
        logger.info("the frozen linear path was fitted on the training and validation rows (as the baseline): the "
                    "validation curves in the history are optimistic; the test metrics are the honest figure")
    if linear_path == "fitted" and all(epoch == -1 for epoch in best_epochs):
        logger.info("the deep part did not lower the validation loss of the logistic regression alone: the model "
                    f"is that logistic regression (uns[{key_added!r}]['best_epoch'] == -1)")
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
    (attention weights and LayerNorm/BatchNorm scales held constant, biases as constant inputs; gradient x
    input), so the parts' relevances plus the biases' sum to that logit. Scores are then averaged per group of
    ``groupby``.

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
    ``per_sample`` (samples x parts, signed), ``bias`` (groups x ``mean``/``mean_abs``: the relevance of the
    biases downstream of the parts, i.e. of the logit no part carries, such as the fitted logistic regression's
    intercept; not counted in ``share``), ``conservation_error`` (mean absolute difference between the parts'
    and the biases' relevances summed and the logit, divided by the mean absolute logit) and ``params`` (with
    ``linear_path_only``: the fit kept its linear path alone, and a warning says so). Parts are each
    interaction's attention message ``source->target`` (what the source contributes through
    cross-attention), each target's own tokens (its residual path), and the unimodal branches.

    Examples
    --------
    >>> mx.tl.interaction_importance(mdata, model)
    >>> mdata.uns["crossattomics_interactions"]["mean"]  # doctest: +SKIP
    """
    if isinstance(model, SeedEnsemble):
        raise TypeError("interaction_importance explains one network; pass a member of the ensemble "
                        "(e.g. `model.members[0]`).")
    if not isinstance(model, CrossAttOmics):
        raise TypeError(f"interaction_importance explains a fitted CrossAttOmics (what mx.tl.fit_crossattomics "
                        f"returns), got {type(model).__name__}.")
    label_key = model.label_key
    groupby = groupby or label_key
    if groupby not in mdata.obs.columns:
        raise KeyError(f"groupby={groupby!r} is not a column of mdata.obs.")
    if target not in ("label", "prediction"):
        raise ValueError(f"target must be 'label' or 'prediction', got {target!r}.")
    check_replaceable(mdata, key_added, "interaction_importance")
    data = model._validate_anndata(mdata)
    module = model.module
    module.eval()
    classes = model.classes
    known = mdata.obs[label_key] if label_key in mdata.obs.columns else pd.Series(np.nan, index=mdata.obs_names)
    # the model's classes are the labels as strings (as its fit read them), whatever the column's dtype
    label_codes = torch.as_tensor(pd.Categorical(label_text(known).where(known.notna(), None),
                                                 categories=classes).codes.astype(np.int64))
    if target == "label":
        foreign = known.notna().to_numpy() & (label_codes.numpy() < 0)
        if foreign.any():
            examples = sorted(set(label_text(known[foreign])))[:3]
            logger.info(f"{int(foreign.sum())} rows have a label the model has no class for (e.g. {examples}): "
                        "their relevance is for their predicted class")
    linear_only = bool(getattr(model, "linear_path", None) == "fitted" and getattr(model, "best_epoch_", None) == -1)
    relevances, logits, biases = [], [], []
    loader = model._make_data_loader(adata=data, batch_size=batch_size)
    device = next(module.parameters()).device
    start = 0
    for tensors in loader:
        x = module.standardizer({m: tensors[modality_key(m)].to(device) for m in module.modalities})
        with torch.no_grad():
            cls = module.net(x).argmax(1)
        if target == "label":  # rows without a known label fall back to the predicted class
            codes = label_codes[start : start + len(cls)].to(device)
            cls = torch.where(codes >= 0, codes, cls)
        start += len(cls)
        rel, logit, bias = interaction_relevance(module.net, x, cls, return_bias=True)
        relevances.append(rel.cpu())
        logits.append(logit.cpu())
        biases.append(bias.cpu())
    relevance = torch.cat(relevances).numpy()
    logit = torch.cat(logits).numpy()
    bias = pd.Series(torch.cat(biases).numpy(), index=mdata.obs_names)
    per_sample = pd.DataFrame(relevance, index=mdata.obs_names, columns=model.interactions)
    column = mdata.obs[groupby]  # groups named as the model names classes: 1.0 of a float column is '1'
    text = label_text(column).where(column.notna(), None)
    if isinstance(column.dtype, pd.CategoricalDtype):  # a categorical keeps its order
        order = list(dict.fromkeys(label_text(pd.Series(column.cat.categories))))
    elif pd.api.types.is_numeric_dtype(column):  # numbers in numeric order (2 before 10)
        order = list(dict.fromkeys(label_text(pd.Series(np.sort(column.dropna().unique())))))
    else:
        order = sorted(set(text.dropna()))
    groups = pd.Series(pd.Categorical(text, categories=order), index=mdata.obs_names)
    mean = per_sample.groupby(groups.values, observed=True).mean()
    mean.index = mean.index.astype(str)
    mean_abs = per_sample.abs().groupby(groups.values, observed=True).mean()
    mean_abs.index = mean_abs.index.astype(str)
    share = mean_abs.div(mean_abs.sum(1), axis=0)
    overall = per_sample.abs().mean()
    bias_by_group = pd.DataFrame({"mean": bias.groupby(groups.values, observed=True).mean(),
                                  "mean_abs": bias.abs().groupby(groups.values, observed=True).mean()})
    bias_by_group.index = bias_by_group.index.astype(str)
    error = float(np.abs(relevance.sum(1) + bias.to_numpy() - logit).mean() / max(np.abs(logit).mean(), 1e-12))
    write_uns(
        mdata,
        key_added,
        {
            "mean": mean,
            "mean_abs": mean_abs,
            "share": share,
            "overall_share": (overall / overall.sum()).sort_values(ascending=False).to_frame("share"),
            "per_sample": per_sample,
            "bias": bias_by_group,
            "conservation_error": error,
            "params": {"groupby": groupby, "target": target, "classes": np.asarray(classes),
                       "linear_path_only": linear_only},
        },
    )
    if linear_only:
        logger.warning("the model is its fitted linear path alone (best_epoch_ == -1: the deep part did not lower "
                       "the validation loss), so every interaction and branch has no relevance; a longer fit, or "
                       "linear_path=None, trains a network whose parts carry relevance")
