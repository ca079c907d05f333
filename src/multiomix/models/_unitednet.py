"""UnitedNet as a scvi-tools model class (Tang et al., Nat Commun 14:2546, 2023).

The model (this file) registers the data and adds UnitedNet's hooks to the base training path; the torch module
is :class:`multiomix.module.UnitedNetModule` and the alternating schedule
:class:`multiomix.train.UnitedNetTrainingPlan`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scvi import REGISTRY_KEYS

from .._docs import fill_doc
from .._utils import get_matrix, is_binary, seeded
from ..module._unitednet import Mode, UnitedNetModule
from ..nn.unitednet import refine_prototypes, ridge_fit
from ..train._unitednet import PHASES, UnitedNetTrainingPlan
from .base import (
    MultimodalInputMixin,
    MultiomixModel,
    adata_alias,
    class_weights,
    feature_mean_std,
    register_mudata_fields,
    translate_blocks,
)

logger = logging.getLogger("multiomix")


class UnitedNet(MultimodalInputMixin, MultiomixModel):
    """UnitedNet: one network for group identification, cross-modal prediction and a fused embedding.

    An encoder per modality maps into a shared latent; every decoder reads every modality's latent
    (reconstruction and cross-modal translation); ``n_heads`` fusion heads (softmax weights per modality or per
    latent dimension) -> projector -> cosine-prototype classifier identify groups, and the head with the lowest
    validation loss is used. Training alternates a translation phase and a classification (labels) or
    clustering (self-entropy + DDC) phase, each with its own optimiser, inside :class:`UnitedNetTrainingPlan`
    (Tang et al., Nat Commun 2023). Continuous modalities are standardised with statistics of the training
    rows only (MSE loss); binary modalities (e.g. ATAC peaks) use BCE.

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata`.
    mode
        ``"supervised"`` (needs ``label_key``), ``"unsupervised"`` (clusters, ``n_clusters``) or
        ``"translation"`` (cross-modal prediction only).
    n_clusters
        Clusters in unsupervised mode (default: number of label categories when ``label_key`` is registered).
    latent_dim
        Shared latent width.
    hidden
        Hidden widths of encoders (reversed for decoders).
    n_heads
        Parallel group-identification heads.
    projection_dim
        Projector width of the heads.
    fuser
        ``"modality"`` (one weight per modality) or ``"feature"`` (one per modality and latent dimension).
    dropout, input_dropout
        Dropout in hidden layers and on the encoder inputs.
    adversarial
        Add per-modality LSGAN discriminators (a separate optimiser phase).
    contrastive_temperature
        Temperature of the cross-modal contrastive loss.
    head_temperature
        Temperature of the cosine-prototype logits.
    head_fusion_init
        ``"diverse"``: with several heads, head ``i`` starts favouring modality ``i`` and the rest start
        uniform, so the candidates differ in which modality drives the groups; ``"uniform"``: all heads start
        with equal fusion weights (they then differ only by their random initialisation). ``"auto"`` (default):
        ``"diverse"`` in unsupervised mode, ``"uniform"`` otherwise. On Patch-seq (5-fold CV) diverse heads
        chosen by silhouette raised the unsupervised ARI from 0.37 (uniform heads chosen by loss, 1 seed) to
        0.43 (2 seeds), while supervised accuracy was 0.848 with diverse and 0.859 with uniform heads (2 seeds).
    cluster_head_choice
        Unsupervised mode: how the head is chosen once training ends. ``"silhouette"`` (default): the head
        whose clusters of the training rows have the highest silhouette in the concatenated modality latents
        (a space shared by all heads, so the scores are comparable); ``"loss"``: the head with the lowest
        validation self-entropy + DDC loss (the loss each head minimises, which favours heads whose own
        projection is compact rather than heads that cluster the cells well). Neither uses labels.
    refine_clusters
        Unsupervised mode: once training ends (before the head is chosen), move each head's prototypes to the
        mean direction of the training cells it assigns to them, repeated until the assignments settle
        (spherical k-means started from the learned prototypes, :func:`~multiomix.nn.unitednet.refine_prototypes`).
    loss_weights
        Override weights of ``reconstruction``, ``translation``, ``contrastive``, ``adversarial``,
        ``self_entropy``, ``ddc``.
    binary
        ``"auto"`` (a modality whose values are all 0/1 is binary) or a dict ``{modality: bool}``.
    class_weighting
        Balanced class weights in the cross-entropy.
    linear_skip
        Cross-modal prediction blends the decoder output with a linear map for every ordered pair of
        continuous modalities: ridge regression fitted in closed form on the standardised training rows (penalty
        by leave-one-out error; at most ``linear_skip_max_cells`` rows), and a blend weight per *target feature*
        (grid 0, 0.1, ..., 1) chosen on the validation rows at the end of :meth:`train` (0.5 without validation
        rows): each pair's weight minimises its validation MSE, and a target feature gets its own weight where an
        F test on the validation rows shows that it fits clearly better (F > 10). With few cells the nonlinear
        decoder alone overfits and falls below ridge for most features; a feature whose link to the source
        differs between cell types, which one linear map cannot follow, keeps the decoder, so its cross-modal
        relevance stays type-specific. Once the blend is chosen, the maps are refitted on training + validation
        rows (first call of :meth:`train` only, and only when the training rows number fewer than
        ``linear_skip_max_cells``). It changes :meth:`translate` only, not the latent or the
        groups.
    linear_skip_max_cells
        Training rows (a random subset beyond that) used to fit the linear maps. A pair whose map would hold more
        than ``UnitedNet.linear_skip_max_weights`` (2,000,000) weights, source features x target features, gets
        no linear map (logged): its fit would cost minutes and gigabytes, and with that many features the
        decoder has rarely too few cells.
    random_state
        Seed of the weight initialisation and of training.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.patchseq()
    >>> mx.models.UnitedNet.setup_mudata(mdata, label_key="cell_type_TEM")
    >>> model = mx.models.UnitedNet(mdata, mode="supervised")
    >>> model.train(max_epochs=100)
    >>> model.predict().head()
    >>> ephys = model.translate(mdata, source="rna", target="ephys")
    """

    _module_cls = UnitedNetModule
    _training_plan_cls = UnitedNetTrainingPlan
    #: most weights (source features x target features) of one linear map of ``linear_skip``; wider pairs are
    #: left to the decoder (the closed-form fit of a 2,000 x 1,000 map on 5,000 cells takes a few seconds on
    #: 2 cores, and its cost grows with both widths)
    linear_skip_max_weights: ClassVar[int] = 2_000_000
    _restore_best_epoch = False  # the plan keeps and restores its own best epoch (and head)
    #: elements (rows x grid x target features) of one chunk of the skip-blend search (about 256 MB in float32)
    _blend_chunk_elements = 2**26
    _ddp_unused_parameters = True  # each phase's optimiser step leaves the other phases' parameters out
    #: training defaults (``validation_size=0.1`` and early stopping in supervised mode only are the defaults of
    #: :meth:`train`)
    _train_defaults: ClassVar[dict[str, Any]] = {
        "max_epochs": 100,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "batch_size": 64,
        "early_stopping_patience": 30,
    }
    _logits_output = "logits"
    _latent_output = "latent"

    def __init__(
        self,
        mdata: MuData,
        *,
        mode: Mode = "supervised",
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
        random_state: int = 0,
    ):
        super().__init__(mdata, random_state=random_state)
        if mode not in PHASES:
            raise ValueError(f"`mode` must be one of {list(PHASES)}, got {mode!r}.")
        if head_fusion_init not in ("auto", "uniform", "diverse"):
            raise ValueError(f"`head_fusion_init` must be 'auto', 'uniform' or 'diverse', got {head_fusion_init!r}.")
        if head_fusion_init == "auto":
            head_fusion_init = "diverse" if mode == "unsupervised" else "uniform"
        if cluster_head_choice not in ("silhouette", "loss"):
            raise ValueError(f"`cluster_head_choice` must be 'silhouette' or 'loss', got {cluster_head_choice!r}.")
        self.mode = mode
        modalities = self.modalities
        if len(modalities) < 2:
            raise ValueError(f"UnitedNet needs at least two modalities, got {modalities}.")
        if mode == "supervised" and not self.has_labels:
            raise ValueError("mode='supervised' needs labels: call setup_mudata(..., label_key=...) first.")
        layers = self.layers
        if binary == "auto":
            binary = {m: is_binary(get_matrix(mdata.mod[m], layers[m], modality=m)) for m in modalities}
        else:
            unknown = sorted(set(binary) - set(modalities))
            if unknown:
                raise KeyError(f"`binary` names modalities {unknown} that are not among {modalities}.")
            binary = {m: bool(binary.get(m, False)) for m in modalities}
        class_weight = None
        labelled = MultiomixModel.classes.fget(self)
        if mode == "supervised":
            n_classes = len(labelled)
            if n_classes < 2:
                raise ValueError(f"Supervised UnitedNet needs at least two classes, got {labelled}.")
            if class_weighting:  # set from the training and validation rows when training starts
                class_weight = [1.0] * n_classes
        elif mode == "unsupervised":
            n_classes = n_clusters if n_clusters is not None else (len(labelled) or None)
            if n_classes is None or n_classes < 2:
                raise ValueError("mode='unsupervised' needs `n_clusters` >= 2 (or a registered label_key).")
        else:
            n_classes = 0
        with seeded(random_state):  # the user's global random state is kept
            self.module = self._module_cls(
                modalities=modalities,
                in_features={m: mdata.mod[m].n_vars for m in modalities},
                binary=binary,
                mode=mode,
                n_classes=n_classes,
                class_weight=class_weight,
                loss_weights=loss_weights,
                contrastive_temperature=contrastive_temperature,
                latent_dim=latent_dim,
                hidden=list(hidden),
                n_heads=n_heads,
                projection_dim=projection_dim,
                fuser=fuser,
                dropout=dropout,
                input_dropout=input_dropout,
                discriminators=adversarial,
                temperature=head_temperature,
                fusion_init=head_fusion_init,
                linear_skip=self._linear_skip_pairs(mdata, modalities, binary) if linear_skip else False,
            )
        self.linear_skip_max_cells = linear_skip_max_cells
        self.cluster_head_choice = cluster_head_choice
        self.refine_clusters = refine_clusters
        #: unsupervised mode, ``cluster_head_choice="silhouette"``: silhouette of each head's training clusters
        self.head_silhouettes_: list[float] | None = None
        self.modality_vars_ = {m: mdata.mod[m].var.copy() for m in modalities}
        self.binary_ = binary
        self._model_summary_string = (
            f"UnitedNet ({mode}) over {modalities}; latent {latent_dim}; {n_heads} heads; "
            f"{n_classes} {'classes' if mode == 'supervised' else 'clusters' if mode == 'unsupervised' else ''}; "
            f"binary: {[m for m, b in binary.items() if b]}."
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        *,
        modalities: Sequence[str] | None = None,
        label_key: str | None = None,
        layer: str | dict[str, str | None] | None = None,
        unlabeled_category: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Register a paired MuData: one data field per modality (+ labels).

        Parameters
        ----------
        mdata
            Paired MuData (every cell in every modality, same order).
        modalities
            Modalities to use (default: all; at least two).
        label_key
            Column of ``mdata.obs`` with cell labels (needed for ``mode="supervised"``).
        layer
            Layer to read (one for all, or a dict per modality); ``None`` reads ``.X``.
        unlabeled_category
            Label value of unlabelled cells: they take part in translation/contrastive training only
            (semi-supervised use, annotation transfer).
        **kwargs
            Internal (used by :meth:`~scvi.model.base.BaseModelClass.load`).

        Examples
        --------
        >>> mx.models.UnitedNet.setup_mudata(mdata, modalities=["rna", "ephys"], label_key="cell_type_TEM")
        """
        if label_key is not None:
            if label_key not in mdata.obs.columns:
                raise KeyError(f"Label key {label_key!r} not found in mdata.obs; columns: {list(mdata.obs.columns)}.")
            labels = mdata.obs[label_key]
            if labels.isna().any():
                raise ValueError(
                    f"mdata.obs[{label_key!r}] has {int(labels.isna().sum())} missing labels; give unlabelled cells "
                    "a label and pass it as `unlabeled_category`."
                )
            if unlabeled_category is not None:
                # the model reads the codes past its classes as unlabelled: the category must come last. A text
                # column's categories are sorted, which puts it last only by chance (then a real class would be
                # left untrained and its name given to the unlabelled cells)
                cats = list(map(str, labels.astype("category").cat.categories))  # the order scvi-tools registers
                if str(unlabeled_category) in cats and cats[-1] != str(unlabeled_category):
                    raise ValueError(
                        f"`unlabeled_category` {unlabeled_category!r} must be the last category of "
                        f"mdata.obs[{label_key!r}] (its categories: {cats[:6]}{' ...' if len(cats) > 6 else ''}). "
                        f"Make the column a categorical with it last, e.g. obs[{label_key!r}] = "
                        f"obs[{label_key!r}].astype(pd.CategoricalDtype([*classes, {unlabeled_category!r}])).")
        setup_method_args = cls._get_setup_method_args(**locals())
        register_mudata_fields(
            cls, mdata, modalities=modalities, layer=layer, label_key=label_key,
            setup_method_args=setup_method_args, **kwargs,
        )

    # properties -------------------------------------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        """Class names (supervised), cluster names ``'0'``, ``'1'``, ... (unsupervised) or ``[]`` (translation)."""
        if self.mode == "supervised":
            return super().classes
        return [str(k) for k in range(self.module.n_classes)] if self.mode == "unsupervised" else []

    @property
    def best_head(self) -> int:
        """Index of the head chosen on validation loss."""
        return int(self.module.best_head)

    def fusion_weights(self) -> pd.DataFrame:
        """Softmax fusion weights of the best head (per modality, or modalities x latent dimensions).

        Examples
        --------
        >>> model.fusion_weights()
        """
        if self.module.net.heads is None:
            raise ValueError("A translation-only UnitedNet has no fusion heads.")
        w = self.module.net.heads.fusion_weights()[self.best_head].detach().cpu().numpy()
        return pd.DataFrame(w.reshape(len(self.modalities), -1), index=self.modalities)

    # training ---------------------------------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int | None = None,
        *,
        classification_repeats: int = 1,
        validation_size: float | None = None,
        early_stopping: bool | None = None,
        plan_kwargs: dict | None = None,
        **kwargs: Any,
    ):
        """Train with the alternating schedule: the base's :meth:`~multiomix.models.base.MultiomixModel.train`.

        On the first call, the standardisation statistics, the class weights (training + validation rows) and the
        linear skip maps are fitted before training. The weights of the epoch with the lowest validation loss
        are restored at the end; the best head is the one with the lowest validation group loss (unsupervised:
        prototypes refined, head chosen by silhouette), and the skip blend is chosen on the validation rows.

        Parameters
        ----------
        max_epochs
            Epochs (default 100; one pass over the training rows each).
        classification_repeats
            Classification/clustering updates per minibatch.
        validation_size
            Fraction of the training rows held out for validation when ``validation_indices`` is not given (default
            0.1; or scvi-tools' ``train_size=``).
        early_stopping
            Stop when ``validation_loss`` has not improved for ``early_stopping_patience`` epochs (default 30).
            ``None`` (default): on in supervised mode, off in unsupervised mode, whose first epochs train the
            translation phase only (``cluster_warmup``); switched on there, it cannot stop training before the
            first clustering epoch (Lightning's ``min_epochs``). The best validation epoch (unsupervised: the best
            clustering epoch) is restored either way. Training that continues an earlier unsupervised fit keeps its
            cluster prototypes (no second warm-up and k-means) and its linear skip blend.
        plan_kwargs
            Extra arguments of :class:`~multiomix.train.UnitedNetTrainingPlan`.
        **kwargs
            ``lr`` (one for every phase, or ``{phase: lr}``), ``weight_decay``, ``batch_size``,
            ``train_indices``, ``validation_indices``, ``early_stopping_patience``, ``accelerator``, ``devices``,
            ``progress_bar``, ``datasplitter_kwargs`` and Lightning trainer options, as in the base.

        Examples
        --------
        >>> model.train(max_epochs=50, batch_size=32)  # doctest: +SKIP
        """
        plan = {"classification_repeats": classification_repeats, **(plan_kwargs or {})}
        if early_stopping is None:
            early_stopping = self.mode == "supervised"
        if self.mode == "unsupervised" and bool(self.module.scaler_fitted) and "cluster_warmup" not in plan:
            plan["cluster_warmup"] = None  # continued training: k-means would replace the learned prototypes
            logger.info("training continues an earlier fit: the cluster prototypes are kept (no warm-up, no k-means)")
        warmup = plan.get("cluster_warmup", 0.75)
        if self.mode == "unsupervised" and early_stopping and warmup is not None:
            epochs = max_epochs if max_epochs is not None else self._train_defaults["max_epochs"]
            # no early stop before the prototypes exist and one clustering epoch can be kept
            kwargs.setdefault("min_epochs", min(int(warmup * epochs) + 1, epochs))
        if validation_size is None and "train_size" not in kwargs:
            validation_size = 0.1
        return super().train(max_epochs, validation_size=validation_size, early_stopping=early_stopping,
                             plan_kwargs=plan, **kwargs)

    def _plan_kwargs(self, *, lr, weight_decay: float) -> dict[str, Any]:
        return {"lr": lr, "weight_decay": weight_decay}

    def _on_train_start(self, rows: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """First call only: standardiser, class weights and linear skip maps from the training rows."""
        train, validation, _ = rows
        if len(train) < 2:
            raise ValueError("UnitedNet needs at least two training rows.")
        self._first_fit = not bool(self.module.scaler_fitted)
        if not self._first_fit:
            return
        standardizer = self.module.standardizer
        for m in standardizer.names:
            standardizer.set(m, *feature_mean_std(self._matrix(m), train))
        self.module.scaler_fitted.fill_(True)
        weight = self.module.class_weight
        if weight is not None and self.has_labels:
            # all labelled rows the model sees (train + validation); the unlabelled category is left out
            codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel().astype(int)
            codes = codes[np.union1d(train, validation)]
            weight.copy_(class_weights(codes[codes < len(weight)], len(weight)).to(weight.device))
        if self.module.net.linear_skip:
            self._fit_linear_skip(train)

    def _on_train_end(self, rows: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Refine prototypes and choose the cluster head (unsupervised); choose and refit the linear skip blend."""
        train, validation, _ = rows
        plan = getattr(getattr(self, "trainer", None), "lightning_module", None)
        if len(validation) and plan is not None:  # the plan restores its own best epoch (no BestStateCallback)
            self.best_epoch_ = plan.best_epoch
        if self.mode == "unsupervised" and self.refine_clusters:
            self._refine_prototypes(train)
        if self.mode == "unsupervised" and self.cluster_head_choice == "silhouette":
            self._choose_cluster_head(train)
        elif not len(validation) and self.module.net.heads is not None:
            self._choose_head_on_training_rows(train)
        if self.module.net.linear_skip and len(validation) and not getattr(self, "skip_blend_chosen_", False):
            # chosen once: the maps are then refitted on the validation rows, so a later choice would be in sample
            self._choose_skip_blend(validation)
            self.skip_blend_chosen_ = True
            # the blend is chosen: the linear maps may now use validation rows, unless the training rows already
            # filled the cap (the refit would then see no more rows, only another random subset of them)
            if len(train) < self.linear_skip_max_cells:
                self._fit_linear_skip(np.union1d(train, validation), keep_blend=True)

    @torch.no_grad()
    def _choose_head_on_training_rows(self, rows: np.ndarray, max_cells: int = 50000, chunk: int = 1024) -> None:
        """Without validation rows (the plan chooses the head there): the head with the lowest loss on ``rows``.

        Each head's group loss (class-weighted cross-entropy, or self-entropy + DDC) in eval mode, over chunks of
        the training rows (a random ``max_cells`` of them when there are more), weighted by the chunks' sizes.
        """
        if len(rows) > max_cells:
            rows = np.sort(np.random.default_rng(self.random_state).choice(rows, max_cells, replace=False))
        module = self.module
        was_training = module.training
        module.eval()
        codes = (self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel() if self.has_labels
                 else np.zeros(self.adata.n_obs))
        # chunks of shuffled rows (rows stored by cell type would give single-class chunks); each chunk's loss
        # counts with its total class weight (supervised: the class-weighted mean over all rows) or its size
        rows = np.random.default_rng(self.random_state).permutation(rows)
        weight = module.class_weight if self.mode == "supervised" else None
        total, size = 0.0, 0.0
        for start in range(0, len(rows), chunk):
            part = np.sort(rows[start:start + chunk])
            labels = torch.as_tensor(codes[part], dtype=torch.float32, device=module.device)
            known = labels.long()[labels.long() < module.n_classes] if self.mode == "supervised" else labels
            share = float(weight[known].sum()) if weight is not None else float(len(known))
            if share > 0:
                total = total + module.head_losses(self._standardised(part), labels) * share
                size += share
        module.train(was_training)
        best = int(torch.argmin(total / max(size, 1e-12)))
        module.best_head.fill_(best)
        logger.info(f"no validation rows: head {best} chosen by its loss on the training rows")

    @torch.no_grad()
    def _heads_on_rows(self, rows: np.ndarray, max_cells: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Joint latent, head projections and head logits of ``rows``, in eval mode.

        Shapes: ``(cells, modalities x latent)``, ``(heads, cells, projection)``, ``(heads, cells, classes)``;
        a random subset of ``max_cells`` rows is used when there are more.
        """
        if len(rows) > max_cells:
            rows = np.sort(np.random.default_rng(self.random_state).choice(rows, max_cells, replace=False))
        net = self.module.net
        was_training = net.training
        net.eval()
        joint, hidden, logits = [], [], []
        for start in range(0, len(rows), 1024):  # densify per chunk
            z = net.encode(self._standardised(rows[start:start + 1024]))
            out = net.classify(z)
            joint.append(torch.cat([z[m] for m in self.modalities], dim=1))
            hidden.append(out["hidden"])
            logits.append(out["logits"])
        net.train(was_training)
        return torch.cat(joint), torch.cat(hidden, dim=1), torch.cat(logits, dim=1)

    @torch.no_grad()
    def _refine_prototypes(self, rows: np.ndarray, max_cells: int = 50000) -> None:
        """Spherical k-means of every head's prototypes on its projected training ``rows``."""
        _, hidden, _ = self._heads_on_rows(rows, max_cells)
        prototypes = self.module.net.heads.prototypes
        prototypes.copy_(refine_prototypes(hidden, prototypes.detach()))

    @torch.no_grad()
    def _choose_cluster_head(self, rows: np.ndarray, max_cells: int = 5000) -> None:
        """Make the head whose clusters of ``rows`` have the highest silhouette in the joint latent the best head."""
        from sklearn.metrics import silhouette_score

        joint, _, logits = self._heads_on_rows(rows, max_cells)
        joint, clusters = joint.cpu().numpy(), logits.argmax(-1).cpu().numpy()  # clusters: (heads, cells)
        scores = [
            float(silhouette_score(joint, c)) if 1 < len(np.unique(c)) < len(c) else float("-inf") for c in clusters
        ]
        self.head_silhouettes_ = scores
        if np.isfinite(max(scores)):
            self.module.best_head.fill_(int(np.argmax(scores)))

    def _standardised(self, rows: np.ndarray, modalities: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Dense standardised input of ``rows`` for every modality, or for ``modalities`` (on the module's device)."""
        out = {}
        for m in self.modalities if modalities is None else modalities:
            sub = self._matrix(m)[rows]
            sub = sub.toarray() if sparse.issparse(sub) else np.asarray(sub)
            out[m] = torch.as_tensor(sub, dtype=torch.float32, device=self.module.device)
        return self.module.standardize(out)

    def _linear_skip_pairs(
        self, mdata: MuData, modalities: list[str], binary: dict[str, bool]
    ) -> list[tuple[str, str]]:
        """Pairs with a linear map: every continuous target, from every source narrow enough for the closed form."""
        width = {m: mdata.mod[m].n_vars for m in modalities}
        pairs = [(s, t) for t in modalities if not binary[t] for s in modalities if s != t]
        too_wide = [(s, t) for s, t in pairs if width[s] * width[t] > self.linear_skip_max_weights]
        if too_wide:
            names = ", ".join(f"{s} -> {t} ({width[s]:,} x {width[t]:,})" for s, t in too_wide)
            logger.info(
                f"linear_skip: no linear map for {names}: more than {self.linear_skip_max_weights:,} weights "
                "(`UnitedNet.linear_skip_max_weights`); the decoder predicts these alone. Select features first "
                "(mx.pp.select_features) to keep them."
            )
        return [pair for pair in pairs if pair not in too_wide]

    @torch.no_grad()
    def _fit_linear_skip(self, train_indices: np.ndarray, keep_blend: bool = False) -> None:
        """Closed-form ridge map for every ordered pair with a continuous target, on standardised training rows."""
        rows = np.asarray(train_indices)
        if len(rows) > self.linear_skip_max_cells:
            rng = np.random.default_rng(self.random_state)
            rows = np.sort(rng.choice(rows, self.linear_skip_max_cells, replace=False))
        xs = self._standardised(rows)
        net = self.module.net
        alphas = {}
        for s in self.modalities:
            targets = [t for t in net.skip_targets if net.has_linear_map(s, t)]
            for t, (weight, bias, alpha) in zip(targets, ridge_fit(xs[s], [xs[t] for t in targets]) if targets else []):
                net.set_linear_skip(s, t, weight, bias)
                alphas[f"{s}->{t}"] = alpha
        self.linear_skip_alphas_ = alphas
        if keep_blend:
            return
        for s in self.modalities:  # until the blend is chosen on validation rows: half decoder, half linear
            for t in net.skip_targets:
                if net.has_linear_map(s, t):
                    net.set_skip_blend(s, t, 0.5)

    @torch.no_grad()
    def _choose_skip_blend(self, validation_indices: np.ndarray, grid: int = 11, min_f: float = 10.0) -> None:
        """Blend weight of each target feature of each pair, chosen on the validation rows (standardised units).

        First the pair's weight: the grid value with the lowest validation MSE over all of the pair's target
        features. A target feature then gets its own grid value only where an F test of that extra weight says it
        fits the validation rows clearly better: ``(RSS_pair - RSS_own) / (RSS_own / (n - 1)) > min_f`` (the
        residual sums of squares of the feature at the pair's weight and at its own best weight over ``n``
        validation rows; 10 is about the 0.3 % level, strict because every target feature is tried). A
        feature the decoder predicts clearly better than the linear map (e.g. one whose link to the source
        differs between cell types) thus keeps the decoder path even when the linear map serves most features
        best, while the other features keep the pair's weight instead of a choice fitted to validation noise.
        """
        if len(validation_indices) == 0:
            return
        self.module.eval()
        net = self.module.net
        rows = np.asarray(validation_indices)
        if len(rows) > self.linear_skip_max_cells:  # as the linear maps: a bounded random subset of the rows
            rows = np.sort(np.random.default_rng(self.random_state).choice(rows, self.linear_skip_max_cells,
                                                                           replace=False))
        weights = torch.linspace(0, 1, grid, device=next(net.parameters()).device)
        n = len(rows)
        pairs = [(s, t) for s in self.modalities for t in net.skip_targets if net.has_linear_map(s, t)]
        # residual sums of squares (grid, target features) per pair, summed over chunks of rows: densified and
        # broadcast over the grid a chunk at a time (all rows at once took several times a dense matrix at 50k cells)
        widest = max((len(self.feature_names_[t]) for _, t in pairs), default=1)
        chunk = max(1, int(self._blend_chunk_elements // (grid * max(widest, 1))))
        rss: dict[tuple[str, str], torch.Tensor] = {}
        for start in range(0, n, chunk):
            xs = self._standardised(rows[start : start + chunk])
            for s in dict.fromkeys(s for s, _ in pairs):  # in order
                z = net.encoders[s](xs[s])
                for t in [t for src, t in pairs if src == s]:
                    deep, linear = net.decoders[t](z), net.linear_translate(xs[s], s, t)
                    w = weights[:, None, None]
                    part = (w * deep + (1 - w) * linear - xs[t]).pow(2).sum(1)
                    rss[(s, t)] = part if (s, t) not in rss else rss[(s, t)] + part
        for (s, t), total in rss.items():
            pair = int(total.sum(1).argmin())
            best, own = total.min(0)
            f = (total[pair] - best) / (best / max(n - 1, 1)).clamp_min(1e-12)
            net.set_skip_blend(s, t, weights[torch.where(f > min_f, own, torch.full_like(own, pair))])

    # inference --------------------------------------------------------------------------------------------------
    def _inference_outputs(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return the best head's fused latent and logits (the mean modality latent in translation mode)."""
        out = self.module.inference(**self.module._get_inference_input(tensors))
        if self.module.net.heads is None:
            return {"latent": torch.stack(list(out["z"].values())).mean(0)}
        h = self.best_head
        return {"latent": out["fused"][h], "logits": out["logits"][h]}

    def modality_var(self, target: str) -> pd.DataFrame:
        """Return the ``var`` of a modality the model was trained on.

        Examples
        --------
        >>> model.modality_var("ephys").index[:3]
        """
        if target not in self.modality_vars_:
            raise KeyError(f"Modality {target!r} is not among the model's modalities {self.modalities}.")
        return self.modality_vars_[target].copy()

    @torch.inference_mode()
    @fill_doc
    @adata_alias
    def translate(self, mdata: MuData | AnnData, *, source: str, target: str, batch_size: int = 256) -> np.ndarray:
        """Predict modality ``target`` from modality ``source`` alone (encode ``source``, decode ``target``).

        ``mdata`` needs only the source modality (a MuData holding it, or the source AnnData); its features are
        matched to the training features by name. Values are on the target's original scale (probabilities for
        binary modalities).

        Parameters
        ----------
        mdata
            Data holding the source modality.
        source, target
            Modality names the model was trained on.
        %(translate_end)s

        Examples
        --------
        >>> ephys = model.translate(mdata, source="rna", target="ephys")
        """

        def predict(x: torch.Tensor) -> torch.Tensor:
            pred = self.module.net.translate(self.module.standardize({source: x})[source], source, target)
            return self.module.to_data_scale(target, pred)

        return translate_blocks(self, mdata, source=source, target=target, batch_size=batch_size, predict=predict)

    def relevance_adapter(self):
        """Return what :mod:`multiomix.explain` needs: the best head's classifier and every cross-modal translator.

        Examples
        --------
        >>> adapter = model.relevance_adapter()
        >>> adapter.get_translator("rna", "ephys")  # doctest: +SKIP
        """
        from torch import nn

        from multiomix.explain._adapter import FunctionModule, RelevanceAdapter

        module = self.module
        module.eval()
        mods = list(self.modalities)
        net = module.net
        head = int(module.best_head)
        classifier = None
        if net.heads is not None:
            def classify(*xs: torch.Tensor) -> torch.Tensor:
                z = net.encode(module.standardize(dict(zip(mods, xs))))
                return net.classify(z)["logits"][head].softmax(-1)

            classifier = FunctionModule(classify, {"encoders": net.encoders, "heads": net.heads})

        def translator(source: str, target: str) -> nn.Module:
            enc, dec = net.encoders[source], net.decoders[target]

            def translate(x: torch.Tensor) -> torch.Tensor:
                xs = module.standardize({source: x})[source]
                return module.to_data_scale(target, net.translate(xs, source, target))

            return FunctionModule(translate, {"encoder": enc, "decoder": dec})

        blends = {pair: net.skip_blend(*pair).detach().cpu().numpy().copy() for pair in net.skip_pairs}
        linear = [pair for pair, blend in blends.items() if bool((blend <= 0.0).all())]
        return RelevanceAdapter(
            modalities=mods,
            feature_names={m: pd.Index(self.modality_vars_[m].index.astype(str)) for m in mods},
            layers=self.layers,
            class_names=list(self.classes) if net.heads is not None else None,
            classifier=classifier,
            translator=translator,
            device=module.device,
            name="UnitedNet",
            linear_paths=linear,
            path_blends=blends,
        )


__all__ = ["UnitedNet"]
