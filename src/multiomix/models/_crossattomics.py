"""CrossAttOmics as a scvi-tools model class."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from ..nn import CrossAttOmicsNet, random_groups, validate_graph
from ..nn.crossattomics import interaction_name
from ._base import (
    ClassPredictionMixin,
    Standardizer,
    SupervisedTrainingPlan,
    class_weights,
    cross_entropy,
    feature_mean_std,
    modality_key,
    register_mudata_fields,
    resolve_rows,
    train_on_rows,
)

logger = logging.getLogger("multiomix")

_TARGET_PREFERENCE = ("rna", "mrna", "gex", "expression")


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
    """About 20 features per group, between 2 and 20 groups."""
    return int(np.clip(n_features // 20, 2, 20))


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


class CrossAttOmicsModule(BaseModuleClass):
    """scvi-tools module wrapping :class:`~multiomix.nn.CrossAttOmicsNet` with a cross-entropy loss.

    Parameters
    ----------
    modalities
        Modality names (registry keys ``X_<modality>``).
    class_weight
        Per-class weights of the cross-entropy, or ``None``.
    **net_kwargs
        Passed to :class:`~multiomix.nn.CrossAttOmicsNet`.
    """

    def __init__(self, *, modalities: Sequence[str], class_weight: Sequence[float] | None = None, **net_kwargs: Any):
        super().__init__()
        self.modalities = list(modalities)
        self.net = CrossAttOmicsNet(**net_kwargs)
        self.standardizer = Standardizer(net_kwargs["in_features"])
        weight = torch.as_tensor(class_weight, dtype=torch.float32) if class_weight is not None else None
        self.register_buffer("class_weight", weight)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"x": {m: tensors[modality_key(m)] for m in self.modalities}}

    @auto_move_data
    def inference(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fused representation and class logits."""
        fused = self.net.fuse(self.standardizer(x))
        return {"fused": fused, "logits": self.net.head(fused)}

    def _get_generative_input(self, tensors, inference_outputs) -> dict:
        return {}

    def generative(self) -> dict:
        """No generative part (a discriminative model)."""
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Class-weighted cross-entropy."""
        logits = inference_outputs["logits"]
        labels = tensors[REGISTRY_KEYS.LABELS_KEY]
        ce = cross_entropy(logits, labels, self.class_weight)
        return LossOutput(
            loss=ce, classification_loss=ce, logits=logits, true_labels=labels, n_obs_minibatch=labels.shape[0]
        )

    def sample(self, *args, **kwargs):
        """Not defined for a classifier."""
        raise NotImplementedError("CrossAttOmics is discriminative; it has no generative sampling.")


class CrossAttOmics(ClassPredictionMixin, UnsupervisedTrainingMixin, BaseModelClass):
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
        Per modality: ``None`` (random groups of about 20 features), an int (number of random groups) or a dict
        ``{group name: [feature names]}`` (e.g. pathways). A single int/dict applies to every modality.
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
    _training_plan_cls = SupervisedTrainingPlan

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
        random_state: int = 0,
    ):
        super().__init__(mdata)
        modalities = self.modalities
        graph = validate_graph(interaction_graph or default_interaction_graph(modalities), modalities)
        generator = torch.Generator().manual_seed(random_state)
        per_mod = groups if isinstance(groups, Mapping) and set(groups) <= set(modalities) and groups else None
        self.feature_groups_: dict[str, list[list[int]]] = {}
        self.group_names_: dict[str, list[str]] = {}
        for m in modalities:
            spec = per_mod.get(m) if per_mod is not None else groups
            idx, names = resolve_groups(mdata.mod[m].var_names, spec, generator=generator)
            self.feature_groups_[m], self.group_names_[m] = idx, names
        sizes = {m: list(group_sizes[m] if isinstance(group_sizes, Mapping) else group_sizes) for m in modalities}
        labels = self.get_from_registry(mdata, REGISTRY_KEYS.LABELS_KEY).ravel()
        n_classes = self.summary_stats.n_labels
        torch.manual_seed(random_state)
        self.module = self._module_cls(
            modalities=modalities,
            class_weight=class_weights(labels, n_classes).tolist() if class_weighting else None,
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
        )
        self.random_state = random_state
        self.standardize = standardize
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

    @classmethod
    def setup_anndata(cls, adata, **kwargs) -> None:
        """Not supported: CrossAttOmics needs several modalities; use :meth:`setup_mudata`."""
        raise TypeError("CrossAttOmics reads several modalities: build a MuData and call `setup_mudata`.")

    @property
    def modalities(self) -> list[str]:
        """Modalities the model reads, in registration order."""
        args = self.adata_manager.registry["setup_args"]
        return list(args["modalities"]) if args.get("modalities") else list(self.adata.mod.keys())

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of the logits."""
        return [str(c) for c in self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY).categorical_mapping]

    @property
    def interaction_graph(self) -> dict[str, list[str]]:
        """The interaction graph ``{target: [sources]}``."""
        return dict(self.module.net.graph)

    @property
    def interactions(self) -> list[str]:
        """Names of the fusion parts (``source->target`` interactions, then unimodal branches)."""
        return self.module.net.part_names

    def train(
        self,
        max_epochs: int = 200,
        *,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        batch_size: int = 64,
        train_indices: np.ndarray | None = None,
        validation_indices: np.ndarray | None = None,
        validation_size: float = 0.15,
        early_stopping: bool = True,
        early_stopping_patience: int = 20,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        datasplitter_kwargs: dict | None = None,
        **trainer_kwargs: Any,
    ):
        """Train with scvi-tools' Lightning engine, keeping the weights of the best validation epoch.

        Parameters
        ----------
        max_epochs
            Maximum number of epochs.
        lr, weight_decay
            AdamW learning rate and weight decay.
        batch_size
            Minibatch size.
        train_indices, validation_indices
            Integer rows to train / validate on (e.g. from ``obs['split']``); rows in neither are not used.
            Default: a random ``validation_size`` split of all rows.
        validation_size
            Fraction held out for validation when no indices are given.
        early_stopping
            Stop when the validation loss has not improved for ``early_stopping_patience`` epochs.
        early_stopping_patience
            Patience in epochs.
        accelerator, devices
            Lightning accelerator and devices; ``strategy`` goes in ``trainer_kwargs``: ``"ddp"`` from a
            script, ``"ddp_notebook"`` (fork-based) in Jupyter or on CPU processes. ``"ddp_spawn"`` is not
            supported: it pickles scvi-tools' MuData field classes, which cannot be pickled.
        plan_kwargs, datasplitter_kwargs
            Extra arguments of the training plan / data splitter.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (e.g. ``strategy``, ``enable_progress_bar``).

        Examples
        --------
        >>> model.train(max_epochs=100, accelerator="gpu", devices=2, strategy="ddp_notebook")
        """
        rows = resolve_rows(self.adata.n_obs, train_indices, validation_indices, validation_size=validation_size,
                            random_state=self.random_state)
        if self.standardize:
            for m in self.modalities:
                matrix = self.adata_manager.get_from_registry(modality_key(m))
                self.module.standardizer.set(m, *feature_mean_std(matrix, rows[0]))
        return train_on_rows(
            self, max_epochs, rows=rows, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
            early_stopping=early_stopping, early_stopping_patience=early_stopping_patience, accelerator=accelerator,
            devices=devices, random_state=self.random_state, plan_kwargs=plan_kwargs,
            datasplitter_kwargs=datasplitter_kwargs, **trainer_kwargs,
        )

    @torch.inference_mode()
    def _collect(self, mdata: MuData | None, indices, batch_size: int, what: str) -> np.ndarray:
        mdata = self._validate_anndata(mdata)
        loader = self._make_data_loader(adata=mdata, indices=indices, batch_size=batch_size)
        self.module.eval()
        out = [self.module.inference(**self.module._get_inference_input(t))[what].cpu() for t in loader]
        return torch.cat(out).numpy()

    def predict_proba(
        self, mdata: MuData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 512
    ) -> pd.DataFrame:
        """Class probabilities (samples x classes).

        Examples
        --------
        >>> proba = model.predict_proba()
        """
        logits = self._collect(mdata, indices, batch_size, "logits")
        proba = torch.softmax(torch.as_tensor(logits), dim=-1).numpy()
        names = (mdata or self.adata).obs_names
        names = names if indices is None else names[np.asarray(indices)]
        return pd.DataFrame(proba, index=names, columns=self.classes)

    def get_latent_representation(
        self, mdata: MuData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 512
    ) -> np.ndarray:
        """Fused representation fed to the classification head (samples x fused width).

        Examples
        --------
        >>> z = model.get_latent_representation()
        """
        return self._collect(mdata, indices, batch_size, "fused")


__all__ = ["CrossAttOmics", "CrossAttOmicsModule", "default_interaction_graph", "interaction_name"]
