"""Med-CrossViT (tile bags + expression) as a scvi-tools model class."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import MuDataCategoricalObsField, MuDataLayerField, MuDataWrapper, ObsmField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from multiomix._utils import check_aligned, check_finite, check_modalities, get_matrix
from multiomix.nn.crossvit import MedCrossViT as MedCrossViTNet
from multiomix.nn.crossvit import sample_bag_indices

from ._base import (
    ClassPredictionMixin,
    SupervisedTrainingPlan,
    class_weights,
    cross_entropy,
    modality_key,
    resolve_rows,
    train_on_rows,
)

logger = logging.getLogger("multiomix")

TILES_KEY = "tiles"
TILE_MASK_KEY = "tile_mask"
ATTENTION_KEYS = ("tiles_self", "tiles_cross", "genes_self", "genes_cross")

__all__ = ["MedCrossViT", "MedCrossViTModule"]


class _BagObsmField(ObsmField):
    """An ``obsm`` field of bags ``(n, n_tiles, ...)`` whose number of slots may differ between datasets.

    scvi-tools' ``ObsmField`` records ``shape[1]`` columns and refuses data with another count on transfer;
    here only the trailing width (``shape[2]``, the tile embedding width, when ``width_axis=2``) is
    recorded and checked, so a trained model can read bags of another size.
    """

    def __init__(self, *args, width_axis: int | None = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.width_axis = width_axis

    def _setup_column_names(self, adata):
        data = self.get_field_data(adata)
        return np.arange(data.shape[self.width_axis] if self.width_axis is not None else 1)

    def transfer_field(self, state_registry: dict, adata_target, **kwargs) -> dict:
        self.validate_field(adata_target)
        data = self.get_field_data(adata_target)
        width = len(state_registry[self.COLUMN_NAMES_KEY])
        if self.width_axis is not None and (data.ndim <= self.width_axis or data.shape[self.width_axis] != width):
            raise ValueError(
                f"obsm[{self.attr_key!r}] has shape {data.shape}; the model was trained on tiles {width} wide."
            )
        return {self.COLUMN_NAMES_KEY: np.asarray(state_registry[self.COLUMN_NAMES_KEY]).copy()}


_MuDataBagObsmField = MuDataWrapper(_BagObsmField)


def _check_bags(mdata: MuData, modality: str, tiles_key: str, mask_key: str | None) -> None:
    adata = mdata.mod[modality]
    if tiles_key not in adata.obsm:
        raise KeyError(
            f"obsm[{tiles_key!r}] not found in modality {modality!r}; it has {list(adata.obsm.keys())}. "
            "Read tile bags with mx.io.read_tile_bags."
        )
    tiles = adata.obsm[tiles_key]
    if not isinstance(tiles, np.ndarray) or tiles.ndim != 3:
        raise ValueError(
            f"Modality {modality!r} obsm[{tiles_key!r}] must be a (n_obs, n_tiles, dim) array, "
            f"got {type(tiles).__name__} of shape {getattr(tiles, 'shape', None)}."
        )
    check_finite(tiles, f"Modality {modality!r} obsm[{tiles_key!r}]")
    if mask_key is None:
        return
    if mask_key not in adata.obsm:
        raise KeyError(
            f"obsm[{mask_key!r}] (tile mask) not found in modality {modality!r}; it has {list(adata.obsm.keys())}. "
            "Pass mask_key=None if every slot holds a real tile."
        )
    mask = np.asarray(adata.obsm[mask_key])
    if mask.shape != tiles.shape[:2]:
        raise ValueError(f"obsm[{mask_key!r}] has shape {mask.shape}; expected {tiles.shape[:2]} to match the tiles.")
    empty = np.flatnonzero(~mask.astype(bool).any(1))
    if len(empty):
        raise ValueError(f"{len(empty)} bags have no tiles in obsm[{mask_key!r}] (e.g. {adata.obs_names[empty[0]]!r}).")


class MedCrossViTModule(BaseModuleClass):
    """scvi-tools module around :class:`multiomix.nn.crossvit.MedCrossViT` with a cross-entropy loss.

    Parameters
    ----------
    rna_key
        Registry key of the expression field.
    has_mask
        Whether a tile mask is registered.
    bag_size
        During training, draw this many real tiles per bag at every step (``None``: use all).
    class_weight
        Per-class weights of the cross-entropy (``None``: unweighted).
    **net_kwargs
        Passed to :class:`multiomix.nn.crossvit.MedCrossViT`.
    """

    def __init__(
        self,
        *,
        rna_key: str,
        has_mask: bool,
        bag_size: int | None = None,
        class_weight: Sequence[float] | None = None,
        **net_kwargs: Any,
    ):
        super().__init__()
        self.rna_key, self.has_mask, self.bag_size = rna_key, has_mask, bag_size
        self.net = MedCrossViTNet(**net_kwargs)
        weight = torch.as_tensor(class_weight, dtype=torch.float32) if class_weight is not None else None
        self.register_buffer("class_weight", weight)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {
            "tiles": tensors[TILES_KEY],
            "genes": tensors[self.rna_key],
            "tile_mask": tensors[TILE_MASK_KEY] if self.has_mask else None,
        }

    @auto_move_data
    def inference(
        self, tiles: torch.Tensor, genes: torch.Tensor, tile_mask: torch.Tensor | None = None
    ) -> dict[str, Any]:
        """Logits, embedding (both pooled vectors) and CLS attention weights."""
        mask = tile_mask > 0.5 if tile_mask is not None else torch.ones(tiles.shape[:2], dtype=torch.bool,
                                                                          device=tiles.device)
        if self.training and self.bag_size is not None:
            index, mask = sample_bag_indices(mask, self.bag_size)
            tiles = torch.gather(tiles, 1, index.unsqueeze(-1).expand(-1, -1, tiles.shape[-1]))
        wsi, rna, attention = self.net.encode(tiles, genes, tile_mask=mask)
        logits = self.net.wsi_head(wsi) + self.net.rna_head(rna)
        return {"logits": logits, "embedding": torch.cat((wsi, rna), dim=-1), "attention": attention}

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
        return LossOutput(loss=ce, classification_loss=ce, logits=logits, true_labels=labels,
                          n_obs_minibatch=labels.shape[0])

    def sample(self, *args, **kwargs):
        """Not defined for a classifier."""
        raise NotImplementedError("MedCrossViT is discriminative; it has no generative sampling.")


class MedCrossViT(ClassPredictionMixin, UnsupervisedTrainingMixin, BaseModelClass):
    """Med-CrossViT: classify patients from a bag of slide tile embeddings and an expression vector.

    Tiles (from a pathology foundation model, :func:`multiomix.io.read_tile_bags`) and genes become two
    token sequences with CLS tokens; a transformer encodes each, then each CLS token attends to the other
    modality's tokens, and one head per modality classifies (logits summed). After the Med-CrossViT
    design (Paco's Log; ``pacocp/Med-CrossViT``), itself built on CrossViT (Chen, Fan & Panda, ICCV 2021),
    with its bugs fixed: separate heads, any tile width, true attention weights returned.

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata`.
    wsi_dim, rna_dim
        Model widths of the tile and gene branches.
    depth
        Number of (tile transformer, gene transformer, cross-transformer) blocks.
    enc_depth, enc_heads, enc_dim_head, enc_mlp_dim
        Per-modality transformer: layers per block, heads, head width, MLP width.
    cross_depth, cross_heads, cross_dim_head
        Cross-transformer: layers per block, heads, head width.
    gene_tokenizer
        ``"per_gene"`` (value x per-gene embedding + gene identity) or ``"dense"`` (the original's map).
    pool
        ``"cls"`` or ``"mean"`` (see :class:`multiomix.nn.crossvit.MedCrossViT`).
    bag_size
        Tiles drawn per bag at each training step (``None``: all real tiles). Prediction uses all tiles.
    dropout, emb_dropout
        Dropout rates.
    class_weighting
        Weight the cross-entropy by inverse class frequency ("balanced").
    random_state
        Seed of the weight initialisation and of training.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata, truth = mx.datasets.synthetic_tile_bags(200)
    >>> mx.models.MedCrossViT.setup_mudata(mdata, tiles_modality="wsi", rna_modality="rna", label_key="label")
    >>> model = mx.models.MedCrossViT(mdata, bag_size=32)
    >>> model.train(max_epochs=30)
    >>> model.predict().head()
    """

    _module_cls = MedCrossViTModule
    _training_plan_cls = SupervisedTrainingPlan

    def __init__(
        self,
        mdata: MuData,
        *,
        wsi_dim: int = 64,
        rna_dim: int = 64,
        depth: int = 1,
        enc_depth: int = 1,
        enc_heads: int = 4,
        enc_dim_head: int = 16,
        enc_mlp_dim: int = 128,
        cross_depth: int = 1,
        cross_heads: int = 4,
        cross_dim_head: int = 16,
        gene_tokenizer: Literal["per_gene", "dense"] = "per_gene",
        pool: Literal["cls", "mean"] = "cls",
        bag_size: int | None = None,
        dropout: float = 0.1,
        emb_dropout: float = 0.1,
        class_weighting: bool = True,
        random_state: int = 0,
    ):
        super().__init__(mdata)
        args = self.adata_manager.registry["setup_args"]
        tiles = self.get_from_registry(mdata, TILES_KEY)
        n_genes = mdata.mod[args["rna_modality"]].n_vars
        labels = self.get_from_registry(mdata, REGISTRY_KEYS.LABELS_KEY).ravel()
        n_classes = self.summary_stats.n_labels
        if bag_size is not None and bag_size < 1:
            raise ValueError(f"bag_size must be a positive integer or None, got {bag_size}.")
        torch.manual_seed(random_state)
        self.module = self._module_cls(
            rna_key=modality_key(args["rna_modality"]),
            has_mask=args["mask_key"] is not None,
            bag_size=bag_size,
            class_weight=class_weights(labels, n_classes).tolist() if class_weighting else None,
            num_classes=n_classes,
            tile_dim=tiles.shape[2],
            n_genes=n_genes,
            wsi_dim=wsi_dim,
            rna_dim=rna_dim,
            depth=depth,
            enc_depth=enc_depth,
            enc_heads=enc_heads,
            enc_dim_head=enc_dim_head,
            enc_mlp_dim=enc_mlp_dim,
            cross_depth=cross_depth,
            cross_heads=cross_heads,
            cross_dim_head=cross_dim_head,
            gene_tokenizer=gene_tokenizer,
            pool=pool,
            dropout=dropout,
            emb_dropout=emb_dropout,
        )
        self.random_state = random_state
        self._model_summary_string = (
            f"MedCrossViT: tiles {tiles.shape[2]} wide -> {wsi_dim}, {n_genes} genes -> {rna_dim}; depth {depth}; "
            f"{n_classes} classes; gene tokenizer {gene_tokenizer!r}; pool {pool!r}."
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        *,
        label_key: str,
        tiles_modality: str = "wsi",
        rna_modality: str = "rna",
        rna_layer: str | None = None,
        tiles_key: str = "tiles",
        mask_key: str | None = "tile_mask",
        **kwargs: Any,
    ) -> None:
        """Register a MuData: the tile bags (``obsm``), the expression (a layer) and the labels.

        Parameters
        ----------
        mdata
            Paired MuData (every patient in both modalities, same order).
        label_key
            Column of ``mdata.obs`` with the class labels.
        tiles_modality
            Modality holding the bags (``obsm[tiles_key]`` ``(n, n_tiles, dim)``, ``obsm[mask_key]``).
        rna_modality
            Modality holding the expression.
        rna_layer
            Layer of ``rna_modality`` to read (``None``: ``.X``).
        tiles_key, mask_key
            ``obsm`` keys of the bags and of the tile mask (``None``: every slot is a real tile).
        **kwargs
            Internal (used by :meth:`~scvi.model.base.BaseModelClass.load`).

        Examples
        --------
        >>> mx.models.MedCrossViT.setup_mudata(mdata, label_key="label", tiles_modality="wsi", rna_modality="rna")
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_modalities(mdata, [tiles_modality, rna_modality])
        check_aligned(mdata, [tiles_modality, rna_modality])
        _check_bags(mdata, tiles_modality, tiles_key, mask_key)
        expr = get_matrix(mdata.mod[rna_modality], rna_layer)
        if not getattr(mdata.mod[rna_modality], "isbacked", False):
            check_finite(expr, f"Modality {rna_modality!r} ({'X' if rna_layer is None else 'layer ' + rna_layer})")
        if label_key not in mdata.obs.columns:
            raise KeyError(f"Label key {label_key!r} not found in mdata.obs; columns: {list(mdata.obs.columns)}.")
        fields = [
            _MuDataBagObsmField(TILES_KEY, tiles_key, width_axis=2, mod_key=tiles_modality, mod_required=True),
            MuDataLayerField(modality_key(rna_modality), rna_layer, mod_key=rna_modality, is_count_data=False,
                             mod_required=True),
            MuDataCategoricalObsField(REGISTRY_KEYS.LABELS_KEY, label_key, mod_key=None),
        ]
        if mask_key is not None:
            fields.append(
                _MuDataBagObsmField(TILE_MASK_KEY, mask_key, width_axis=None, mod_key=tiles_modality, mod_required=True)
            )
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(mdata, **kwargs)
        cls.register_manager(manager)

    @classmethod
    def setup_anndata(cls, adata, **kwargs) -> None:
        """Not supported: the model needs two modalities, register a MuData with :meth:`setup_mudata`."""
        raise NotImplementedError("MedCrossViT reads a MuData (tiles + rna); use MedCrossViT.setup_mudata.")

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of the logits."""
        return [str(c) for c in self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY).categorical_mapping]

    @property
    def gene_names(self) -> list[str]:
        """Genes, in the order of the gene tokens."""
        return [str(g) for g in self.adata.mod[self.adata_manager.registry["setup_args"]["rna_modality"]].var_names]

    def train(
        self,
        max_epochs: int = 100,
        *,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        batch_size: int = 32,
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
            Minibatch size (patients).
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
            Lightning accelerator and devices; ``strategy="ddp_spawn"`` etc. go in ``trainer_kwargs``.
        plan_kwargs, datasplitter_kwargs
            Extra arguments of the training plan / data splitter.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (e.g. ``strategy``, ``enable_progress_bar``).

        Examples
        --------
        >>> model.train(max_epochs=50, batch_size=16)
        """
        rows = resolve_rows(self.adata.n_obs, train_indices, validation_indices, validation_size=validation_size,
                            random_state=self.random_state)
        return train_on_rows(
            self, max_epochs, rows=rows, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
            early_stopping=early_stopping, early_stopping_patience=early_stopping_patience, accelerator=accelerator,
            devices=devices, random_state=self.random_state, plan_kwargs=plan_kwargs,
            datasplitter_kwargs=datasplitter_kwargs, **trainer_kwargs,
        )

    @torch.inference_mode()
    def _collect(self, mdata: MuData | None, indices, batch_size: int) -> dict[str, Any]:
        mdata = self._validate_anndata(mdata)
        loader = self._make_data_loader(adata=mdata, indices=indices, batch_size=batch_size)
        self.module.eval()
        logits, embedding, attention = [], [], {k: [] for k in ATTENTION_KEYS}
        for tensors in loader:
            out = self.module.inference(**self.module._get_inference_input(tensors))
            logits.append(out["logits"].cpu())
            embedding.append(out["embedding"].cpu())
            for k in ATTENTION_KEYS:
                attention[k].append(out["attention"][k].cpu())
        n_tiles = max(a.shape[1] for a in attention["tiles_self"])
        for k in ("tiles_self", "tiles_cross"):  # minibatches are padded to the field's width already
            attention[k] = [torch.nn.functional.pad(a, (0, n_tiles - a.shape[1])) for a in attention[k]]
        return {
            "logits": torch.cat(logits).numpy(),
            "embedding": torch.cat(embedding).numpy(),
            "attention": {k: torch.cat(v).numpy() for k, v in attention.items()},
        }

    def _obs_names(self, mdata: MuData | None, indices) -> pd.Index:
        names = (mdata if mdata is not None else self.adata).obs_names
        return names if indices is None else names[np.asarray(indices)]

    def predict_proba(
        self, mdata: MuData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 128
    ) -> pd.DataFrame:
        """Class probabilities (patients x classes).

        Examples
        --------
        >>> proba = model.predict_proba()
        """
        logits = self._collect(mdata, indices, batch_size)["logits"]
        proba = torch.softmax(torch.as_tensor(logits), dim=-1).numpy()
        return pd.DataFrame(proba, index=self._obs_names(mdata, indices), columns=self.classes)

    def get_latent_representation(
        self, mdata: MuData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 128
    ) -> np.ndarray:
        """Pooled tile vector and pooled gene vector, concatenated (patients x ``wsi_dim + rna_dim``).

        Examples
        --------
        >>> z = model.get_latent_representation()
        """
        return self._collect(mdata, indices, batch_size)["embedding"]

    def get_attention(
        self, mdata: MuData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 128
    ) -> dict[str, np.ndarray]:
        """CLS attention weights per patient (last layer of the last block, mean over heads).

        Returns
        -------
        ``tiles_self`` / ``tiles_cross`` ``(n, n_tiles)`` (tile CLS in the tile transformer / gene CLS in
        the cross-attention, over the tiles; 0 on padded slots) and ``genes_self`` / ``genes_cross``
        ``(n, n_genes)``; plus ``tiles`` and ``genes``, aliases of ``tiles_self`` and ``genes_self``: the
        weights through which each modality's CLS token (read by that modality's head) gathers its own tokens.

        Examples
        --------
        >>> attn = model.get_attention()
        >>> attn["genes"].shape
        """
        attention = self._collect(mdata, indices, batch_size)["attention"]
        attention["tiles"], attention["genes"] = attention["tiles_self"], attention["genes_self"]
        return attention
