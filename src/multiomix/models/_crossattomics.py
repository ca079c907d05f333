"""CrossAttOmics as a scvi-tools model class."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from mudata import MuData
from scipy import sparse

from .._baseline import MAX_ROWS, logistic_baseline, stack_modalities, subsample_rows
from .._utils import seeded
from ..module import CrossAttOmicsModule
from ..nn import random_groups, validate_graph
from ..nn.crossattomics import interaction_name
from .base import MultimodalInputMixin, MultiomixModel, register_mudata_fields

logger = logging.getLogger("multiomix")

_TARGET_PREFERENCE = ("rna", "mrna", "gex", "expression")
# logit the fitted linear path gives a class with no training rows (a category no row carries): probability ~1e-13
_ABSENT_CLASS_LOGIT = -30.0


def default_interaction_graph(modalities: Sequence[str]) -> dict[str, list[str]]:
    """Regulatory default: the expression modality is the target of every other modality.

    The target is the first of ``rna``/``mrna``/``gex``/``expression`` present (else the first modality);
    methylation, miRNA, CNV, ... all regulate expression.

    Examples
    --------
    >>> default_interaction_graph(["methylation", "rna", "mirna"])
    {'rna': ['methylation', 'mirna']}
    """
    modalities = list(modalities)
    if len(modalities) < 2:
        raise ValueError(f"CrossAttOmics needs at least two modalities, got {modalities}.")
    lowered = [m.lower() for m in modalities]
    target = next((modalities[lowered.index(p)] for p in _TARGET_PREFERENCE if p in lowered), modalities[0])
    return {target: [m for m in modalities if m != target]}


def default_n_groups(n_features: int) -> int:
    """About 20 features per group, between 2 and 20 groups (one group for a single feature).

    Examples
    --------
    >>> default_n_groups(700), default_n_groups(50), default_n_groups(1)
    (20, 2, 1)
    """
    return int(min(np.clip(n_features // 20, 2, 20), n_features))


def groups_per_modality(groups: Any, modalities: Sequence[str]) -> dict[str, Any]:
    """Return the ``groups`` spec of each modality: a dict keyed by modalities is per modality, else one for all.

    Examples
    --------
    >>> groups_per_modality({"rna": "feature_group"}, ["rna", "mirna"])
    {'rna': 'feature_group', 'mirna': None}
    >>> groups_per_modality(4, ["rna", "mirna"])
    {'rna': 4, 'mirna': 4}
    """
    named = set(groups) & set(modalities) if isinstance(groups, Mapping) else set()
    if named and not set(groups) <= set(modalities):
        raise KeyError(f"groups names modalities {sorted(named)} and also {sorted(set(groups) - set(modalities))}, "
                       f"which are not among the model's modalities {list(modalities)}; give one entry per modality "
                       "(or one spec for all).")
    return {m: groups.get(m) for m in modalities} if named else dict.fromkeys(modalities, groups)


def groups_from_column(var: pd.DataFrame, column: str, *, modality: str) -> dict[str, list[str]]:
    """``{group: [features]}`` from a ``var`` column (e.g. :func:`multiomix.pp.group_features`); missing = no group.

    Examples
    --------
    >>> var = pd.DataFrame({"g": ["a", "b", "a", None]}, index=["f0", "f1", "f2", "f3"])
    >>> groups_from_column(var, "g", modality="rna")
    {'a': ['f0', 'f2'], 'b': ['f1']}
    """
    if column not in var.columns:
        raise KeyError(f"groups={column!r} names no column of .mod[{modality!r}].var (columns: {list(var.columns)}); "
                       f"write one with mx.pp.group_features(mdata, key_added={column!r}).")
    values = var[column]
    keep = values.notna().to_numpy()
    if not keep.any():
        raise ValueError(f".mod[{modality!r}].var[{column!r}] puts no feature in a group (all missing).")
    names = var.index[keep].astype(str)
    labels = values[keep].astype(str).to_numpy()
    order = pd.unique(labels) if not isinstance(values.dtype, pd.CategoricalDtype) else [
        str(c) for c in values.cat.categories if str(c) in set(labels)]
    return {group: list(names[labels == group]) for group in order}


def resolve_groups(
    var_names: pd.Index, spec: int | Mapping[str, Sequence[str]] | None, *, generator: torch.Generator
) -> tuple[list[list[int]], list[str]]:
    """Feature-index groups and their names from an int (random groups) or a dict of feature names."""
    n = len(var_names)
    if spec is None or isinstance(spec, int | np.integer):
        groups = random_groups(n, int(spec) if spec is not None else default_n_groups(n), generator=generator)
        return groups, [f"group{i}" for i in range(len(groups))]
    position = pd.Series(np.arange(n), index=var_names)
    groups, names, unknown = [], [], []
    for name, features in spec.items():
        features = list(features)
        missing = [f for f in features if f not in position.index]
        unknown += missing
        index = sorted(position[[f for f in features if f in position.index]].tolist())
        if index:
            groups.append(index)
            names.append(str(name))
    if not groups:
        raise ValueError(f"None of the given feature groups match any feature (e.g. {unknown[:5]}).")
    if unknown:
        logger.warning(f"{len(unknown)} grouped features are not in the data and were ignored (e.g. {unknown[:3]}).")
    covered = len(set().union(*map(set, groups)))
    if covered < n:
        logger.info(f"{n - covered} of {n} features are in no group and are not used by the encoder.")
    return groups, names


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)


class CrossAttOmics(MultimodalInputMixin, MultiomixModel):
    """CrossAttOmics: multi-omics classification with cross-attention along a regulatory graph.

    Each modality is encoded by an AttOmics encoder into group tokens; for every edge ``source -> target``
    of ``interaction_graph`` the target's tokens attend to the source's (cross-attention), and the fused
    tokens feed an MLP classifier (Beaude et al., Bioinformatics 2025).

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata`.
    interaction_graph
        ``{target: [sources]}``; default: :func:`~multiomix.models.default_interaction_graph`.
    groups
        Per modality: ``None`` (random groups of about 20 features), an int (number of random groups), a dict
        ``{group name: [feature names]}`` (e.g. pathways, :func:`~multiomix.io.read_gmt`) or the name of a ``var``
        column holding each feature's group (e.g. written by :func:`~multiomix.pp.group_features`; features with a
        missing value are in no group). A single int/dict/name applies to every modality.
    group_sizes
        Token widths of the encoder layers, per modality or one list for all.
    hidden
        Hidden widths of the MLP head.
    heads
        Attention heads.
    dropout
        Dropout rate.
    class_weighting
        Weight the cross-entropy by inverse class frequency ("balanced").
    standardize
        Standardise every feature with the mean and standard deviation of the training rows (computed when
        :meth:`train` starts, stored in the model and applied to any data it is later given).
    target_self_attention, add_unimodal_branches, add_unimodal_to_multimodal
        Fusion options, see :class:`~multiomix.nn.CrossAttOmicsNet`.
    linear_path
        A linear map of the standardised inputs added to the logits (wide-and-deep), so the deep part has to earn
        its place. ``"fitted"`` (default): a logistic regression fitted on the training and validation rows, the
        rows of the baseline a fit stores (``C`` by inner cross-validation, class-weighted like the loss; a
        stratified random 5,000 of them when there are more, logged), frozen; the head's output layer starts at
        zero and the weights before training (that logistic regression alone) compete with every epoch for the
        best validation loss. The linear model has seen the validation rows, so its validation loss is
        optimistic: the choice favours it (``best_epoch == -1`` keeps it alone), a conservative rule.
        ``"trained"``: the map starts at zero and is trained with the rest. ``None``: no linear path (the
        original architecture).
    random_state
        Seed of the random groups and the weight initialisation.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.tcga_brca()
    >>> mx.models.CrossAttOmics.setup_mudata(mdata, label_key="subtype")
    >>> model = mx.models.CrossAttOmics(mdata)
    >>> model.train(max_epochs=50)
    >>> labels = model.predict()
    """

    _module_cls = CrossAttOmicsModule
    _latent_output = "latent"

    def __init__(
        self,
        mdata: MuData,
        *,
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
        random_state: int = 0,
    ):
        super().__init__(mdata, random_state=random_state)
        modalities = self.modalities
        given = default_interaction_graph(modalities) if interaction_graph is None else interaction_graph
        graph = validate_graph(given, modalities)
        generator = torch.Generator().manual_seed(random_state)
        interaction_graph = graph  # stored as validated (ordered lists), so that load rebuilds the same edges
        specs = groups_per_modality(groups, modalities)
        if any(isinstance(spec, str) for spec in specs.values()):
            # a var column is read once into explicit groups, which are what the model stores (and load rebuilds)
            specs = {m: groups_from_column(mdata.mod[m].var, spec, modality=m) if isinstance(spec, str) else spec
                     for m, spec in specs.items()}
            groups = specs
        self.feature_groups_: dict[str, list[list[int]]] = {}
        self.group_names_: dict[str, list[str]] = {}
        for m in modalities:
            idx, names = resolve_groups(mdata.mod[m].var_names, specs[m], generator=generator)
            self.feature_groups_[m], self.group_names_[m] = idx, names
        sizes = {m: list(group_sizes[m] if isinstance(group_sizes, Mapping) else group_sizes) for m in modalities}
        n_classes = len(self.classes)
        with seeded(random_state):  # the user's global random state is kept
            self.module = self._module_cls(
                modalities=modalities,
                class_weighting=class_weighting,
                in_features={m: mdata.mod[m].n_vars for m in modalities},
                groups=self.feature_groups_,
                group_sizes=sizes,
                interaction_graph=graph,
                hidden=list(hidden),
                n_classes=n_classes,
                heads=heads,
                dropout=dropout,
                target_self_attention=target_self_attention,
                add_unimodal_branches=add_unimodal_branches,
                add_unimodal_to_multimodal=add_unimodal_to_multimodal,
                linear_skip=linear_path is not None,
            )
        self.standardize = standardize
        if linear_path not in ("fitted", "trained", None):
            raise ValueError(f"linear_path must be 'fitted', 'trained' or None, got {linear_path!r}.")
        self.linear_path = linear_path
        if linear_path == "fitted":  # fitted once and frozen; also after load, which does not refit it
            self.module.net.linear.weight.requires_grad_(False)
        self.class_weighting = class_weighting
        self._initial_state_is_candidate = linear_path == "fitted"
        self._model_summary_string = (
            f"CrossAttOmics over {modalities}; graph {graph}; groups "
            f"{ {m: len(g) for m, g in self.feature_groups_.items()} }; fused width {self.module.net.fused_dim}; "
            f"{n_classes} classes."
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        *,
        label_key: str,
        modalities: Sequence[str] | None = None,
        layer: str | dict[str, str | None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Register a MuData: one data field per modality and the labels.

        Parameters
        ----------
        mdata
            Paired MuData (every sample in every modality, same order).
        label_key
            Column of ``mdata.obs`` with the class labels.
        modalities
            Modalities to use (default: all).
        layer
            Layer to read (one name for all modalities, or a dict per modality); ``None`` reads ``.X``.
        **kwargs
            Internal (used by :meth:`~scvi.model.base.BaseModelClass.load`).

        Examples
        --------
        >>> mx.models.CrossAttOmics.setup_mudata(mdata, label_key="subtype", modalities=["rna", "mirna"])
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        register_mudata_fields(
            cls,
            mdata,
            modalities=modalities,
            layer=layer,
            label_key=label_key,
            setup_method_args=setup_method_args,
            **kwargs,
        )

    def _on_train_start(self, rows: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Standardiser and class weights from the training rows; with ``linear_path="fitted"``, the linear path.

        The linear path is a logistic regression of the standardised inputs (``C`` by inner cross-validation on
        the training and validation rows, class-weighted like the loss: the baseline a fit stores), copied into the
        network and frozen; the head's output layer starts at zero, so training starts from exactly that model and
        the deep part learns what it misses. The deep part is kept only if it lowers the validation loss of the
        linear model alone, which has seen those rows: a conservative choice.
        """
        super()._on_train_start(rows)
        if self.linear_path != "fitted":
            return
        from scvi import REGISTRY_KEYS

        # the same rows as the baseline a fit stores; that the validation rows are among them makes the choice
        # between the linear model alone and a trained deep part conservative (it favours the linear model)
        train = np.sort(np.concatenate([rows[0], rows[1]]))
        codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel().astype(int)
        if len(train) > MAX_ROWS:
            logger.info(f"linear path: fitted on a stratified random {MAX_ROWS:,} of the {len(train):,} training rows")
            train = subsample_rows(train, codes[train], max_rows=MAX_ROWS, random_state=self.random_state)
        module = self.module
        blocks = [self._matrix(m)[train] for m in module.net.modalities]
        if any(sparse.issparse(b) for b in blocks):
            # sparse input stays sparse: the search scales it without centring, which only moves the unpenalised
            # intercept; the weights are then put on the standardiser's scale (x = x' * std + mean)
            search = logistic_baseline(stack_modalities(blocks), codes[train], random_state=self.random_state,
                                       class_weighting=self.class_weighting)
            scaler, lr = search.best_estimator_[0], search.best_estimator_[-1]
            names = module.standardizer.names
            mean, std = (np.concatenate([getattr(module.standardizer, f"{what}{names.index(m)}").cpu().numpy()
                                         for m in module.net.modalities]) for what in ("mean", "std"))
            raw = lr.coef_ / scaler.scale_
            coef, intercept = raw * std, lr.intercept_ + raw @ mean
        else:
            with torch.no_grad():
                x = module.standardizer({m: torch.as_tensor(np.asarray(_dense(b)), dtype=torch.float32)
                                         for m, b in zip(module.net.modalities, blocks)})
            search = logistic_baseline(module.net.wide_input(x).numpy(), codes[train], random_state=self.random_state,
                                       class_weighting=self.class_weighting)
            scaler, lr = search.best_estimator_[0], search.best_estimator_[-1]
            coef = lr.coef_ / scaler.scale_
            intercept = lr.intercept_ - coef @ scaler.mean_
        classes = lr.classes_.astype(int)
        n_classes = module.net.linear.weight.shape[0]
        weight, bias = np.zeros((n_classes, coef.shape[1])), np.zeros(n_classes)
        bias[np.setdiff1d(np.arange(n_classes), classes)] = _ABSENT_CLASS_LOGIT  # a category without training rows
        if len(classes) == 2 and coef.shape[0] == 1:  # one decision function: half on each logit (same softmax),
            # so that the linear path's relevance does not depend on which class is first
            weight[classes[1]], bias[classes[1]] = coef[0] / 2, intercept[0] / 2
            weight[classes[0]], bias[classes[0]] = -coef[0] / 2, -intercept[0] / 2
        else:
            weight[classes], bias[classes] = coef, intercept
        head_out = module.net.head.out
        with torch.no_grad():
            module.net.linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            head_out.weight.zero_()
            head_out.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        module.net.linear.weight.requires_grad_(False)
        self.linear_path_C_ = float(search.best_params_["logisticregression__C"])

    @property
    def interaction_graph(self) -> dict[str, list[str]]:
        """The interaction graph ``{target: [sources]}``."""
        return dict(self.module.net.graph)

    @property
    def interactions(self) -> list[str]:
        """Names of the fusion parts, in the order relevance reports them.

        Per target its ``source->target`` interactions and its own tokens (named by the target), then the unimodal
        branches, and ``"linear"`` when the model has a linear path (see
        :attr:`multiomix.nn.CrossAttOmicsNet.part_names`).
        """
        return self.module.net.part_names

    def relevance_adapter(self):
        """Return what :mod:`multiomix.explain` needs: a classifier from the stored data to class probabilities.

        Examples
        --------
        >>> adapter = model.relevance_adapter()  # doctest: +SKIP
        """
        from ..explain._adapter import FunctionModule, RelevanceAdapter

        module = self.module
        module.eval()
        mods = list(self.modalities)

        def classify(*xs: torch.Tensor) -> torch.Tensor:
            return module.inference(dict(zip(mods, xs)))["logits"].softmax(-1)

        return RelevanceAdapter(
            modalities=mods,
            feature_names={m: pd.Index(self.feature_names_[m]) for m in mods},
            layers=self.layers,
            class_names=list(self.classes),
            classifier=FunctionModule(classify, {"net": module.net, "standardizer": module.standardizer}),
            device=module.device,
            name="CrossAttOmics",
        )


__all__ = ["CrossAttOmics", "default_interaction_graph", "interaction_name"]
