"""Genomic Interpreter: DNA sequence -> assay tracks, as a scvi-tools model class on AnnData (regions as obs)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from anndata import AnnData
from scipy import sparse
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField, ObsmField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from scvi.train import TrainingPlan
from sklearn.metrics import average_precision_score, roc_auc_score

from .._utils import check_finite, get_matrix
from ..nn.sequence_cnn import BACKBONES
from ..nn.swin1d import Swin1D, TrackHead
from ._base import resolve_rows, train_on_rows

logger = logging.getLogger("multiomix")

DNA_KEY = "dna"
TARGET_KEY = "tracks"
LOSSES = ("poisson", "bce", "mse")
BACKBONE_NAMES = ("swin1d", *BACKBONES)

#: Backbone settings sized for a few-hundred-bp input on a CPU; override with ``backbone_kwargs``.
# swin1d: 64 channels in the stem and in every stage, as wide as the CNN baselines' convolutions. Chosen on the
# Oct4/Mafk validation split only (benchmarks/genomic_interpreter.py --parts screen, 10 epochs): validation BCE
# 0.039 / 0.043 (seeds 0 / 1) against 0.053 / 0.052 for the earlier dims (32, 48, 64); dropout 0.1, no transformer
# layer and a 96-channel first stage were worse. Stochastic depth up to 0.1 with 20 epochs (the default of
# ``train``): 0.034 / 0.032 (seeds 0 / 1), against 0.040 for 20 epochs without it and 0.045 with 0.2 (seed 0).
# full_attention is the same network with one window per stage.
DEFAULT_BACKBONE_KWARGS: dict[str, dict[str, Any]] = {
    "swin1d": {"dims": (64, 64, 64), "depths": (1, 1, 1), "window": 16, "heads": 4, "dim_head": 16,
               "transformer_depth": 1, "stem_kernel": 15, "stem_layers": 2, "stem_pool": 4, "merge": "max",
               "drop_path": 0.1},
    "full_attention": {"dims": (64, 64, 64), "depths": (1, 1, 1), "window": None, "heads": 4, "dim_head": 16,
                       "transformer_depth": 1, "stem_kernel": 15, "stem_layers": 2, "stem_pool": 4, "merge": "max",
                       "drop_path": 0.1},
    "cnn_maxpool": {"dims": (64, 64, 64), "kernels": (15, 5, 5), "pool": 2},
    "cnn_attpool": {"dims": (64, 64, 64), "kernels": (15, 5, 5), "pool": 2},
    "cnn_dilated": {"dim": 64, "stem_kernel": 15, "pool": 4, "n_dilated": 4},
    "enformer_like": {"dims": (48, 64), "stem_kernel": 15, "transformer_depth": 2, "heads": 4, "dim_head": 16},
}


def build_backbone(name: str, **kwargs: Any) -> torch.nn.Module:
    """Instantiate a sequence backbone by name (``swin1d``, ``full_attention`` or a CNN baseline).

    Examples
    --------
    >>> build_backbone("cnn_maxpool", dims=(8,), kernels=5).out_dim
    8
    """
    if name not in DEFAULT_BACKBONE_KWARGS:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {list(DEFAULT_BACKBONE_KWARGS)}.")
    params = {**DEFAULT_BACKBONE_KWARGS[name], **kwargs}
    if name in ("swin1d", "full_attention"):
        return Swin1D(**params)
    return BACKBONES[name](**params)


def _rate(output: torch.Tensor) -> torch.Tensor:
    # log link: the network predicts log-rates, so a 10-fold change is a shift of 2.3 rather than a
    # rescaling of every weight (a softplus link learned far more slowly on count tracks)
    return torch.exp(output.clamp(max=20.0))


class GenomicInterpreterModule(BaseModuleClass):
    """scvi-tools module: sequence backbone + track head, with a Poisson, BCE or MSE loss.

    Parameters
    ----------
    backbone
        Backbone name (see :func:`build_backbone`).
    backbone_kwargs
        Backbone settings.
    n_tracks
        Number of tracks.
    n_bins
        Bins per region for profile targets, ``None`` for one value per region.
    loss
        ``"poisson"`` (counts; log-rate output), ``"bce"`` (binary; logits) or ``"mse"``.
    reverse_complement
        Whether the training plan may augment with reverse complements (profiles are flipped with the DNA).
    head_pool
        Pooling of the tokens for one value per region (see :class:`~multiomix.nn.TrackHead`).
    """

    def __init__(self, *, backbone: str, backbone_kwargs: dict, n_tracks: int, n_bins: int | None,
                 loss: str, reverse_complement: bool = True, head_pool: str = "meanmax"):
        super().__init__()
        self.backbone_name, self.loss_name = backbone, loss
        self.backbone = build_backbone(backbone, **backbone_kwargs)
        self.head = TrackHead(dim=self.backbone.out_dim, n_tracks=n_tracks, n_bins=n_bins, pool=head_pool)
        self.n_bins, self.reverse_complement = n_bins, reverse_complement

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"x": tensors[DNA_KEY]}

    @auto_move_data
    def inference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs (log-space rate parameter, logits or values) for one-hot ``x`` ``(b, L, 4)``."""
        return {"output": self.head(self.backbone(x.float()))}

    def _get_generative_input(self, tensors, inference_outputs) -> dict:
        return {}

    def generative(self) -> dict:
        """No generative part (a discriminative model)."""
        return {}

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        """Predictions on the target scale: Poisson rate, probability, or value."""
        if self.loss_name == "poisson":
            return _rate(output)
        if self.loss_name == "bce":
            return torch.sigmoid(output)
        return output

    def loss(self, tensors, inference_outputs, generative_outputs=None) -> LossOutput:
        """Poisson negative log-likelihood (``rate - y log rate``, log link), BCE on logits, or MSE (entry mean)."""
        output, target = inference_outputs["output"], tensors[TARGET_KEY].to(inference_outputs["output"].dtype)
        target = target.view_as(output)
        if self.loss_name == "poisson":
            per_obs = (_rate(output) - target * output.clamp(max=20.0)).flatten(1).mean(1)
        elif self.loss_name == "bce":
            per_obs = F.binary_cross_entropy_with_logits(output, target, reduction="none").flatten(1).mean(1)
        else:
            per_obs = (output - target).pow(2).flatten(1).mean(1)
        loss = per_obs.mean()
        return LossOutput(loss=loss, reconstruction_loss=per_obs, n_obs_minibatch=target.shape[0])

    def sample(self, *args, **kwargs):
        """Not defined (discriminative model)."""
        raise NotImplementedError("GenomicInterpreter is discriminative; it has no generative sampling.")


def pearson_per_track(pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Pearson correlation per track (last axis), pooling regions and bins; NaN for a constant track.

    Examples
    --------
    >>> pearson_per_track(np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [4.0], [7.0]])).round(3)
    array([0.993])
    """
    p = pred.reshape(-1, pred.shape[-1]).astype(np.float64)
    o = obs.reshape(-1, obs.shape[-1]).astype(np.float64)
    p, o = p - p.mean(0), o - o.mean(0)
    denom = np.sqrt((p**2).sum(0) * (o**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (p * o).sum(0) / denom, np.nan)


def track_metrics(pred: np.ndarray, obs: np.ndarray, *, loss: str, track_names: Sequence[str]) -> pd.DataFrame:
    """Per-track Pearson (all losses) and AUROC/AUPRC (binary targets) as a DataFrame indexed by track."""
    table = pd.DataFrame({"pearson": pearson_per_track(pred, obs)}, index=pd.Index(list(track_names), name="track"))
    if loss == "bce":
        p, o = pred.reshape(-1, pred.shape[-1]), obs.reshape(-1, obs.shape[-1])
        aurocs, auprcs = [], []
        for t in range(p.shape[1]):
            both = len(np.unique(o[:, t])) == 2
            aurocs.append(roc_auc_score(o[:, t], p[:, t]) if both else np.nan)
            auprcs.append(average_precision_score(o[:, t], p[:, t]) if both else np.nan)
        table["auroc"], table["auprc"] = aurocs, auprcs
    return table


class GenomicInterpreterTrainingPlan(TrainingPlan):
    """Training plan: reverse-complement augmentation, loss logging, validation Pearson (and AUROC for BCE).

    Logs ``train_loss``, ``validation_loss``, ``validation_pearson`` (mean over tracks) and, for binary
    targets, ``validation_auroc`` once per epoch.

    Parameters
    ----------
    module
        The module to train.
    warmup_epochs
        Linear learning-rate warm-up over this many epochs' worth of steps (0: none). Without it the
        attention backbones could drift, in the first steps at the full rate, into adding one large
        sample-independent vector to every token, which the final LayerNorm then leaves as a constant
        prediction (observed on planted motif counts at lr 2e-3).
    lr_decay
        Learning rate after the warm-up: ``"constant"`` or ``"cosine"`` (half-cosine from the full rate to 0
        over the remaining steps of ``max_epochs``).
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan`.
    """

    def __init__(self, module: GenomicInterpreterModule, *, warmup_epochs: float = 1.0,
                 lr_decay: str = "constant", **kwargs: Any):
        super().__init__(module, **kwargs)
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be non-negative, got {warmup_epochs}.")
        if lr_decay not in ("constant", "cosine"):
            raise ValueError(f"lr_decay must be 'constant' or 'cosine', got {lr_decay!r}.")
        self.warmup_epochs = warmup_epochs
        self.lr_decay = lr_decay
        self._val_pred: list[torch.Tensor] = []
        self._val_obs: list[torch.Tensor] = []

    def configure_optimizers(self):
        """Return the base optimiser (and plateau scheduler, if asked for) with a per-step warm-up and decay."""
        config = super().configure_optimizers()
        if (self.warmup_epochs <= 0 and self.lr_decay == "constant") or "lr_scheduler" in config:
            return config
        try:
            total = float(self.trainer.estimated_stepping_batches)
        except (AttributeError, RuntimeError):
            total = float("inf")
        if not np.isfinite(total):
            total = 100.0 * max(self.trainer.max_epochs or 1, 1)
        warmup = int(round(self.warmup_epochs * total / max(self.trainer.max_epochs or 1, 1)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            config["optimizer"], partial(lr_factor, warmup=warmup, total=int(total), decay=self.lr_decay)
        )
        config["lr_scheduler"] = {"scheduler": scheduler, "interval": "step"}
        return config

    def _augment(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.module.reverse_complement:
            return batch
        x = batch[DNA_KEY]
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        batch = dict(batch)
        batch[DNA_KEY] = torch.where(flip[:, None, None], x.flip(-2).flip(-1), x)
        y = batch[TARGET_KEY]
        if y.dim() == 3:  # profiles follow the strand
            batch[TARGET_KEY] = torch.where(flip[:, None, None], y.flip(1), y)
        return batch

    def training_step(self, batch, batch_idx):
        _, _, out = self.forward(self._augment(batch), loss_kwargs=self.loss_kwargs)
        self.log("train_loss", out.loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=out.n_obs_minibatch, sync_dist=self.use_sync_dist)
        return out.loss

    def validation_step(self, batch, batch_idx):
        inference_outputs, _, out = self.forward(batch, loss_kwargs=self.loss_kwargs)
        self.log("validation_loss", out.loss, on_step=False, on_epoch=True, batch_size=out.n_obs_minibatch,
                 sync_dist=self.use_sync_dist)
        self._val_pred.append(self.module.mean(inference_outputs["output"]).detach().float().cpu())
        self._val_obs.append(batch[TARGET_KEY].detach().float().cpu())

    def on_validation_epoch_end(self):
        if not self._val_pred:
            return
        pred = torch.cat(self._val_pred).numpy()
        obs = torch.cat(self._val_obs).numpy().reshape(pred.shape)
        self._val_pred, self._val_obs = [], []
        names = [str(i) for i in range(pred.shape[-1])]
        table = track_metrics(pred, obs, loss=self.module.loss_name, track_names=names)
        self.log("validation_pearson", float(np.nanmean(table["pearson"])) if table["pearson"].notna().any()
                 else 0.0, sync_dist=self.use_sync_dist)
        if "auroc" in table and table["auroc"].notna().any():
            self.log("validation_auroc", float(np.nanmean(table["auroc"])), sync_dist=self.use_sync_dist)


def lr_factor(step: int, *, warmup: int, total: int, decay: str = "constant") -> float:
    """Learning-rate multiplier at optimiser ``step``: linear warm-up, then constant or half-cosine to 0.

    Examples
    --------
    >>> [round(lr_factor(s, warmup=2, total=6, decay="cosine"), 2) for s in range(6)]
    [0.5, 1.0, 1.0, 0.85, 0.5, 0.15]
    """
    if decay not in ("constant", "cosine"):
        raise ValueError(f"decay must be 'constant' or 'cosine', got {decay!r}.")
    if step < warmup:
        return (step + 1) / warmup
    if decay == "constant":
        return 1.0
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def infer_loss(targets) -> str:
    """``"bce"`` for 0/1 targets, ``"poisson"`` for non-negative integers, else ``"mse"``.

    Examples
    --------
    >>> infer_loss(np.array([0, 1, 1])), infer_loss(np.array([0, 3, 7])), infer_loss(np.array([-0.5, 1.0]))
    ('bce', 'poisson', 'mse')
    """
    values = np.asarray(targets.data if sparse.issparse(targets) else targets)
    if values.size == 0:
        return "mse"
    if np.isin(values, (0, 1)).all():
        return "bce"
    if values.min() >= 0 and np.allclose(values, np.round(values)):
        return "poisson"
    return "mse"


class GenomicInterpreter(UnsupervisedTrainingMixin, BaseModelClass):
    """Genomic Interpreter: predict assay tracks from DNA with a hierarchical 1D-Swin transformer or a baseline.

    Regions are observations: one-hot DNA in ``.obsm[sequence_key]`` ``(n_regions, L, 4)``; targets either
    in ``.X`` / a layer (``n_regions x tracks``, one value per region) or in ``.obsm[tracks_key]``
    ``(n_regions, bins, tracks)`` (a profile per region). The same layout serves a single-cell ATAC dataset
    transposed to peaks x cells (scBasset-style accessibility prediction, ``loss="bce"``). Backbones:
    ``"swin1d"`` (Li et al. 2023), ``"full_attention"`` (same network, one window over the whole sequence),
    ``"cnn_maxpool"``, ``"cnn_attpool"``, ``"cnn_dilated"`` (Basenji-like), ``"enformer_like"``.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    backbone
        Backbone name.
    backbone_kwargs
        Overrides of the backbone's defaults (:data:`DEFAULT_BACKBONE_KWARGS`).
    loss
        ``"auto"`` (BCE for 0/1, Poisson for counts, else MSE), ``"poisson"``, ``"bce"`` or ``"mse"``.
    reverse_complement
        Augment training batches with reverse complements (each region flipped with probability 0.5).
    head_pool
        For one value per region: ``"meanmax"`` concatenates the mean and the max of the backbone's tokens;
        ``"attention"`` replaces the mean by a learned softmax-weighted sum per feature (started as the mean).
    random_state
        Seed of the weight initialisation, the validation split and the augmentation.

    Examples
    --------
    >>> import multiomix as mx
    >>> adata = mx.datasets.oct4_mafk()
    >>> mx.models.GenomicInterpreter.setup_anndata(adata, sequence_key="dna_onehot")
    >>> model = mx.models.GenomicInterpreter(adata, backbone="swin1d")
    >>> model.train(max_epochs=10)
    >>> pred = model.predict()
    """

    _module_cls = GenomicInterpreterModule
    _training_plan_cls = GenomicInterpreterTrainingPlan

    def __init__(
        self,
        adata: AnnData,
        *,
        backbone: str = "swin1d",
        backbone_kwargs: dict | None = None,
        loss: Literal["auto", "poisson", "bce", "mse"] = "auto",
        reverse_complement: bool = True,
        head_pool: Literal["meanmax", "attention"] = "meanmax",
        random_state: int = 0,
    ):
        super().__init__(adata)
        if backbone not in DEFAULT_BACKBONE_KWARGS:
            raise ValueError(f"Unknown backbone {backbone!r}; choose one of {list(DEFAULT_BACKBONE_KWARGS)}.")
        targets = self.adata_manager.get_from_registry(TARGET_KEY)
        if loss == "auto":
            loss = infer_loss(targets)
        if loss not in LOSSES:
            raise ValueError(f"loss must be 'auto' or one of {LOSSES}, got {loss!r}.")
        values = targets.data if sparse.issparse(targets) else np.asarray(targets)
        if loss in ("poisson", "bce") and values.size and values.min() < 0:
            raise ValueError(f"The targets have negative values but loss={loss!r} needs non-negative targets.")
        if loss == "bce" and values.size and values.max() > 1:
            raise ValueError("loss='bce' needs targets in [0, 1].")
        n_bins, n_tracks = (targets.shape[1], targets.shape[2]) if targets.ndim == 3 else (None, targets.shape[1])
        kwargs = dict(backbone_kwargs or {})
        torch.manual_seed(random_state)
        self.module = self._module_cls(backbone=backbone, backbone_kwargs=kwargs, n_tracks=n_tracks, n_bins=n_bins,
                                       loss=loss, reverse_complement=reverse_complement, head_pool=head_pool)
        self._init_output_bias(targets, loss)
        self.random_state, self.loss_ = random_state, loss
        n_params = sum(p.numel() for p in self.module.parameters())
        self._model_summary_string = (
            f"GenomicInterpreter ({backbone}): {n_params:,} parameters, {n_tracks} track(s)"
            f"{'' if n_bins is None else f' x {n_bins} bins'}, {loss} loss."
        )
        self.init_params_ = self._get_init_params(locals())

    @torch.no_grad()
    def _init_output_bias(self, targets, loss: str) -> None:
        """Start the head at the per-track mean target (log for Poisson, logit for BCE)."""
        values = targets.toarray() if sparse.issparse(targets) else np.asarray(targets, dtype=np.float64)
        mean = values.reshape(-1, values.shape[-1]).mean(0)
        if loss == "poisson":
            bias = np.log(np.clip(mean, 1e-3, None))
        elif loss == "bce":
            p = np.clip(mean, 1e-3, 1 - 1e-3)
            bias = np.log(p / (1 - p))
        else:
            bias = mean
        self.module.head.net[-1].bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        *,
        sequence_key: str = "dna_onehot",
        tracks_key: str | None = None,
        layer: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Register an AnnData of regions: the one-hot DNA and the targets.

        Parameters
        ----------
        adata
            Regions as observations.
        sequence_key
            ``.obsm`` key of the one-hot DNA ``(n_regions, L, 4)`` (see :func:`multiomix.pp.one_hot_sequences`).
        tracks_key
            ``.obsm`` key of profile targets ``(n_regions, bins, tracks)``; ``None`` reads ``.X``/``layer``.
        layer
            Layer with per-region targets (``None``: ``.X``), used when ``tracks_key`` is ``None``.
        **kwargs
            Internal (used by :meth:`~scvi.model.base.BaseModelClass.load`).

        Examples
        --------
        >>> mx.models.GenomicInterpreter.setup_anndata(adata, sequence_key="dna_onehot", tracks_key="tracks")
        """
        if sequence_key not in adata.obsm:
            raise KeyError(
                f"One-hot DNA .obsm[{sequence_key!r}] not found (obsm keys: {list(adata.obsm.keys())}); run "
                "mx.pp.one_hot_sequences first."
            )
        dna = adata.obsm[sequence_key]
        if not isinstance(dna, np.ndarray) or dna.ndim != 3 or dna.shape[2] != 4:
            raise ValueError(
                f".obsm[{sequence_key!r}] must be a (n_regions, length, 4) one-hot array, got "
                f"{type(dna).__name__} of shape {getattr(dna, 'shape', None)}."
            )
        if tracks_key is not None:
            if tracks_key not in adata.obsm:
                raise KeyError(
                    f"Track profiles .obsm[{tracks_key!r}] not found (obsm keys: {list(adata.obsm.keys())})."
                )
            tracks = adata.obsm[tracks_key]
            if not isinstance(tracks, np.ndarray) or tracks.ndim != 3:
                raise ValueError(f".obsm[{tracks_key!r}] must be a (n_regions, bins, tracks) array, got shape "
                                 f"{getattr(tracks, 'shape', None)}.")
            check_finite(tracks, f".obsm[{tracks_key!r}]")
            target_field = ObsmField(TARGET_KEY, tracks_key)
        else:
            matrix = get_matrix(adata, layer)
            if matrix is None or matrix.shape[1] == 0:
                raise ValueError("No targets: .X is empty; pass `tracks_key=` or put one column per track in .X.")
            check_finite(matrix, ".X" if layer is None else f"layer {layer!r}")
            target_field = LayerField(TARGET_KEY, layer, is_count_data=False)
        setup_method_args = cls._get_setup_method_args(**locals())
        fields = [ObsmField(DNA_KEY, sequence_key), target_field]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    @property
    def track_names(self) -> list[str]:
        """Names of the tracks (``var_names`` for targets in ``.X``, else ``track0``, ``track1``, ...)."""
        n = self.module.head.net[-1].out_features
        if self.adata_manager.registry["setup_args"].get("tracks_key") is None:
            return [str(v) for v in self.adata.var_names]
        return [f"track{i}" for i in range(n)]

    def train(
        self,
        max_epochs: int = 20,
        *,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        train_indices: np.ndarray | None = None,
        validation_indices: np.ndarray | None = None,
        validation_size: float = 0.1,
        early_stopping: bool = False,
        early_stopping_patience: int = 5,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        datasplitter_kwargs: dict | None = None,
        **trainer_kwargs: Any,
    ):
        """Train through scvi-tools' Lightning engine, restoring the weights of the best validation epoch.

        Parameters
        ----------
        max_epochs
            Maximum number of epochs.
        lr, weight_decay
            AdamW learning rate and weight decay.
        batch_size
            Minibatch size.
        train_indices, validation_indices
            Integer rows to train / validate on (e.g. from ``obs['split']``); other rows are not used.
            Default: a random ``validation_size`` split of all rows.
        validation_size
            Fraction held out for validation when no indices are given.
        early_stopping, early_stopping_patience
            Stop when the validation loss has not improved for that many epochs.
        accelerator, devices
            Lightning accelerator and devices; ``strategy="ddp"`` etc. go in ``trainer_kwargs``.
        plan_kwargs, datasplitter_kwargs
            Extra arguments of the training plan / data splitter.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`.

        Examples
        --------
        >>> model.train(max_epochs=10, accelerator="gpu", devices=2, strategy="ddp_find_unused_parameters_true")
        """
        rows = resolve_rows(self.adata.n_obs, train_indices, validation_indices, validation_size=validation_size,
                            random_state=self.random_state)
        n_train = len(rows[0])
        datasplitter_kwargs = {
            # a last minibatch of one region breaks BatchNorm in the CNN baselines
            "drop_last": n_train > batch_size and n_train % batch_size == 1,
            **(datasplitter_kwargs or {}),
        }
        plan_kwargs = {"eps": 1e-8, **(plan_kwargs or {})}
        trainer_kwargs.setdefault("gradient_clip_val", 1.0)
        return train_on_rows(
            self, max_epochs, rows=rows, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
            early_stopping=early_stopping, early_stopping_patience=early_stopping_patience, accelerator=accelerator,
            devices=devices, random_state=self.random_state, plan_kwargs=plan_kwargs,
            datasplitter_kwargs=datasplitter_kwargs, **trainer_kwargs,
        )

    @torch.inference_mode()
    def predict(
        self, adata: AnnData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 256,
        reverse_complement_average: bool = False,
    ) -> np.ndarray:
        """Predicted tracks on the target scale (Poisson rate, probability or value).

        Parameters
        ----------
        adata
            Regions to predict (default: the training AnnData); set up like the training data.
        indices
            Rows to predict (default: all).
        batch_size
            Minibatch size.
        reverse_complement_average
            Average the predictions of both strands (profiles are flipped back).

        Returns
        -------
        ``(n, tracks)`` or ``(n, bins, tracks)`` array.

        Examples
        --------
        >>> pred = model.predict(indices=np.arange(10))
        """
        adata = self._validate_anndata(adata)
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        self.module.eval()
        out = []
        for tensors in loader:
            x = tensors[DNA_KEY]
            pred = self.module.mean(self.module.inference(x)["output"])
            if reverse_complement_average:
                rc = self.module.mean(self.module.inference(x.flip(-2).flip(-1))["output"])
                pred = 0.5 * (pred + (rc.flip(1) if rc.dim() == 3 else rc))
            out.append(pred.cpu())
        return torch.cat(out).numpy()

    def observed(self, adata: AnnData | None = None, *, indices: Sequence[int] | None = None) -> np.ndarray:
        """Return the registered targets as a dense array (rows ``indices``)."""
        adata = self._validate_anndata(adata)
        manager = self.get_anndata_manager(adata, required=True)
        targets = manager.get_from_registry(TARGET_KEY)
        rows = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
        targets = targets[rows]
        targets = targets.toarray() if sparse.issparse(targets) else np.asarray(targets)
        return targets.astype(np.float32)

    def evaluate(
        self, adata: AnnData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 256,
        reverse_complement_average: bool = False,
    ) -> pd.DataFrame:
        """Per-track Pearson (and AUROC/AUPRC for binary targets) of the predictions against the targets.

        Examples
        --------
        >>> model.evaluate(indices=test_rows)
        """
        pred = self.predict(adata, indices=indices, batch_size=batch_size,
                            reverse_complement_average=reverse_complement_average)
        obs = self.observed(adata, indices=indices).reshape(pred.shape)
        return track_metrics(pred, obs, loss=self.loss_, track_names=self.track_names)

    @torch.inference_mode()
    def get_attention(
        self, adata: AnnData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 16,
        max_tokens: int = 4096,
    ) -> dict[str, np.ndarray]:
        """Exact attention weights of every layer, as dense maps in token coordinates.

        Only for the ``swin1d``/``full_attention`` backbones. Window passes give block-diagonal maps (the
        shifted pass is rolled back to the original positions, so its blocks straddle the regular windows);
        transformer layers give full maps.

        Parameters
        ----------
        adata
            Regions (default: the training AnnData).
        indices
            Rows to return (default: all; keep it small, maps grow with the square of the length).
        batch_size
            Minibatch size.
        max_tokens
            Refuse layers with more tokens than this (a dense map is tokens x tokens per head and region).

        Returns
        -------
        ``{layer name: (n_regions, heads, tokens, tokens) float32 array}``.

        Examples
        --------
        >>> maps = model.get_attention(indices=[0, 1])
        >>> maps["stage0.layer0.regular"].shape
        """
        if not isinstance(self.module.backbone, Swin1D):
            raise ValueError(
                f"Attention maps need the 'swin1d' backbone; this model uses {self.module.backbone_name!r}."
            )
        adata = self._validate_anndata(adata)
        length = self.adata_manager.get_from_registry(DNA_KEY).shape[1]
        if length / self.module.backbone.stem_pool > max_tokens:
            raise ValueError(f"Sequences of {length} bp give more than max_tokens={max_tokens} tokens per map.")
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        self.module.eval()
        collected: dict[str, list[np.ndarray]] = {}
        for tensors in loader:
            x = tensors[DNA_KEY].to(self.device).float()
            _, weights = self.module.backbone(x, return_attention=True)
            for name, w in weights.items():
                dense = w if isinstance(w, torch.Tensor) else w.dense()
                collected.setdefault(name, []).append(dense.float().cpu().numpy())
        return {name: np.concatenate(chunks) for name, chunks in collected.items()}

    def layer_resolutions(self) -> dict[str, int]:
        """Return the base pairs per token of each attention layer (names as in :meth:`get_attention`)."""
        backbone = self.module.backbone
        if not isinstance(backbone, Swin1D):
            raise ValueError("Layer resolutions are defined for the 'swin1d' backbone only.")
        out = {}
        for i, ((_, layers), bp) in enumerate(zip(backbone.stages, backbone.stage_resolutions())):
            for j in range(len(layers)):
                out[f"stage{i}.layer{j}.regular"] = out[f"stage{i}.layer{j}.shifted"] = bp
        if backbone.transformer is not None:
            for j in range(len(backbone.transformer.layers)):
                out[f"transformer.layer{j}"] = backbone.reduction
        return out
