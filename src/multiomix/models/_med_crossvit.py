"""Med-CrossViT (tile bags + expression) as a scvi-tools model class."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import anndata as ad
import numpy as np
import pandas as pd
import torch
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import MuDataCategoricalObsField, MuDataLayerField, MuDataWrapper, ObsmField

from .._baseline import subsample_rows
from .._utils import (
    check_aligned,
    check_finite,
    check_modalities,
    check_not_views,
    get_matrix,
    new_mudata,
    plain_array,
    quiet_scvi,
    seeded,
)
from ..module import MedCrossViTModule
from ..module._med_crossvit import ATTENTION_KEYS, TILE_MASK_KEY, TILES_KEY
from ..nn.crossvit import masked_mean
from ..nn.wide import fit_wide_path
from .base import MultimodalInputMixin, MultiomixModel, adata_alias, modality_key

logger = logging.getLogger("multiomix")
#: rows the wide path is fitted on at most (a stratified sample above it)
_MAX_WIDE_ROWS = 5000

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


def real_tiles(mask) -> np.ndarray:
    """Boolean mask of the real tiles: a value above 0.5 (``True``, 1, 1.0), as the network reads the mask.

    Examples
    --------
    >>> real_tiles(np.array([[1.0, 0.3, 0.0]])).tolist()
    [[True, False, False]]
    """
    return np.asarray(mask).astype(float) > 0.5


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
    if mask_key is None:
        check_finite(tiles, f"Modality {modality!r} obsm[{tiles_key!r}]")
        return
    if mask_key not in adata.obsm:
        raise KeyError(
            f"obsm[{mask_key!r}] (tile mask) not found in modality {modality!r}; it has {list(adata.obsm.keys())}. "
            "When fitting, pass mask_key=None if every slot holds a real tile; a model fitted with a mask reads one "
            "from new data too (all True when every slot holds a real tile)."
        )
    mask = np.asarray(adata.obsm[mask_key])
    if mask.shape != tiles.shape[:2]:
        raise ValueError(f"obsm[{mask_key!r}] has shape {mask.shape}; expected {tiles.shape[:2]} to match the tiles.")
    check_finite(tiles[real_tiles(mask)], f"Modality {modality!r} obsm[{tiles_key!r}] (real tiles; padded slots may "
                 "hold anything)")
    empty = np.flatnonzero(~real_tiles(mask).any(1))  # e.g. a bag whose mask holds 0.3 only
    if len(empty):
        raise ValueError(f"{len(empty)} bags have no tiles in obsm[{mask_key!r}] (e.g. {adata.obs_names[empty[0]]!r}).")


def _expression_layer(layer, rna_modality: str) -> dict[str, str] | None:
    """``layer`` (a name or ``{rna_modality: name}``) as ``{rna_modality: name}``, or ``None`` for ``.X``."""
    if isinstance(layer, Mapping):
        unknown = sorted(set(layer) - {rna_modality})
        if unknown:
            raise KeyError(f"`layer` names modalities {unknown}; only the expression ({rna_modality!r}) has one.")
        layer = layer.get(rna_modality)
    return {rna_modality: layer} if layer is not None else None


def _bags_only(data, setup_args: Mapping[str, Any]):
    """Reduce ``data`` to what the model reads: the expression, and the tiles modality without its ``.X``.

    The tiles modality's ``.X`` (e.g. mean-pooled tiles) is never read, so it is left out before new data are
    matched by name. Nothing of ``data`` is modified: a new MuData is built around the same objects.
    """
    tiles, rna = setup_args["tiles_modality"], setup_args["rna_modality"]
    if not isinstance(data, MuData) or tiles not in data.mod or rna not in data.mod:
        return data  # matched_input gives the error
    check_aligned(data, [rna, tiles])  # on the user's object: the view below takes the expression's order
    source = data.mod[tiles]
    bags = ad.AnnData(obs=pd.DataFrame(index=source.obs_names))
    for key in source.obsm.keys():
        bags.obsm[key] = plain_array(source.obsm[key])
    view = new_mudata({rna: data.mod[rna], tiles: bags})
    for column in data.obs.columns:
        view.obs[column] = data.obs[column].to_numpy()
    return view


class MedCrossViT(MultimodalInputMixin, MultiomixModel):
    """Med-CrossViT: classify patients from a bag of slide tile embeddings and an expression vector.

    Tiles (from a pathology foundation model, :func:`multiomix.io.read_tile_bags`) and genes become two
    token sequences with CLS tokens; a transformer encodes each, then each CLS token attends to the other
    modality's tokens, and one head per modality classifies (logits summed). After the Med-CrossViT
    design (Paco's Log; ``pacocp/Med-CrossViT``), itself built on CrossViT (Chen, Fan & Panda, ICCV 2021),
    with its bugs fixed: separate heads, any tile width, true attention weights returned.

    New data (``predict``, ``get_latent_representation``, ``get_attention``, ``load(adata=...)``) are matched to
    the training genes by name; the bags are read from ``obsm`` of the tiles modality, whose ``.X`` is not read.
    No label column is needed.

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
        Weight the cross-entropy by inverse class frequency ("balanced") of the training rows.
    wide_path
        ``"fitted"`` (default): a wide path of each bag's mean tile and the expression (a logistic regression plus a
        rank-1 tile x expression product, :class:`~multiomix.nn.WidePath`) is fitted first, with its penalty,
        its product and its epochs chosen by 5-fold cross-validation on the training rows, and then frozen; the
        heads' output layers start at zero, so training starts from exactly that model and the transformer learns
        what it misses. The transformer is kept only if it lowers the validation loss of the wide path alone (the
        validation rows are unseen by both). ``None``: the original architecture.
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
    _latent_output = "embedding"
    _train_defaults: ClassVar[dict[str, Any]] = {
        "max_epochs": 100,
        "lr": 1e-3,
        "weight_decay": 1e-2,
        "batch_size": 32,
        "early_stopping_patience": 20,
    }

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
        wide_path: Literal["fitted"] | None = "fitted",
        random_state: int = 0,
    ):
        if bag_size is not None and bag_size < 1:
            raise ValueError(f"bag_size must be a positive integer or None, got {bag_size}.")
        if wide_path not in ("fitted", None):
            raise ValueError(f"wide_path must be 'fitted' or None, got {wide_path!r}.")
        super().__init__(mdata, random_state=random_state)
        # the tiles modality is matched by its obsm bags only: it has no features the model reads
        self.feature_names_[self.tiles_modality] = []
        tiles = self.get_from_registry(mdata, TILES_KEY)
        n_genes = len(self.feature_names_[self.rna_modality])
        n_classes = len(self.classes)
        with seeded(random_state):  # the user's global random state is kept
            self.module = self._module_cls(
                rna_key=modality_key(self.rna_modality),
                has_mask=self.setup_args["mask_key"] is not None,
                bag_size=bag_size,
                class_weighting=class_weighting,
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
                wide_path=wide_path is not None,
            )
        self.wide_path = wide_path
        if wide_path is not None:  # fitted once, then frozen (also after load, which does not refit it)
            self.module.net.wide.requires_grad_(False)
        self._initial_state_is_candidate = wide_path is not None
        self._model_summary_string = (
            f"MedCrossViT: tiles {tiles.shape[2]} wide -> {wsi_dim}, {n_genes} genes -> {rna_dim}; depth {depth}; "
            f"{n_classes} classes; gene tokenizer {gene_tokenizer!r}; pool {pool!r}; wide path {wide_path!r}."
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
        layer: str | Mapping[str, str | None] | None = None,
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
        layer
            Layer of ``rna_modality`` to read (``None``: ``.X``); also ``{rna_modality: name}``.
        tiles_key, mask_key
            ``obsm`` keys of the bags and of the tile mask (``None``: every slot is a real tile).
        **kwargs
            Internal (used by :meth:`~scvi.model.base.BaseModelClass.load`).

        Examples
        --------
        >>> mx.models.MedCrossViT.setup_mudata(mdata, label_key="label", tiles_modality="wsi", rna_modality="rna")
        """
        layer = _expression_layer(layer, rna_modality)  # stored per modality: new data read it for the rna only
        setup_method_args = cls._get_setup_method_args(**locals())
        rna_layer = layer[rna_modality] if layer is not None else None
        check_modalities(mdata, [tiles_modality, rna_modality])
        check_aligned(mdata, [tiles_modality, rna_modality])
        check_not_views(mdata, [tiles_modality, rna_modality])
        _check_bags(mdata, tiles_modality, tiles_key, mask_key)
        expr = get_matrix(mdata.mod[rna_modality], rna_layer, modality=rna_modality)
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

    # registry ---------------------------------------------------------------------------------------------------
    @property
    def modalities(self) -> list[str]:
        """Modalities whose features the model reads, here the expression only (the bags come from ``obsm``)."""
        return [self.rna_modality]

    @property
    def rna_modality(self) -> str:
        """Modality holding the expression."""
        return self.setup_args["rna_modality"]

    @property
    def tiles_modality(self) -> str:
        """Modality holding the tile bags (in ``obsm``)."""
        return self.setup_args["tiles_modality"]

    @property
    def gene_names(self) -> list[str]:
        """Genes, in the order of the gene tokens."""
        return list(self.feature_names_[self.rna_modality])

    # new data ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _bag_keys(setup_args: Mapping[str, Any]) -> dict[str, list[str]]:
        keys = [setup_args["tiles_key"]] + ([setup_args["mask_key"]] if setup_args.get("mask_key") else [])
        return {setup_args["tiles_modality"]: keys}

    def _match(self, data: MuData) -> MuData:
        args = self.setup_args
        if isinstance(data, MuData) and args["tiles_modality"] in data.mod:  # a bag without tiles is refused, as
            _check_bags(data, args["tiles_modality"], args["tiles_key"], args.get("mask_key"))  # in the fit
        return super()._match(_bags_only(data, args))

    @classmethod
    def load(cls, dir_path: str, adata=None, **kwargs: Any):
        """Load a saved model; ``adata`` is matched to the saved genes by name and its bags read from ``obsm``.

        Reordered genes give identical predictions; the tiles modality's ``.X`` is not read (so scvi-tools'
        check that every modality has the training ``var_names`` does not apply and is not shown).

        Parameters
        ----------
        dir_path
            Folder the model was saved to (with ``save``).
        adata
            MuData to attach (default: the one saved with the model, if any).
        **kwargs
            Passed to scvi-tools' ``load`` (e.g. ``accelerator``, ``device``, ``prefix``).

        Returns
        -------
        model : multiomix.models.MedCrossViT
            The loaded model, with ``adata`` attached.

        Examples
        --------
        >>> model = mx.models.MedCrossViT.load("model_dir", adata=new_mdata)  # doctest: +SKIP
        """
        if adata is not None:
            from scvi.model.base._save_load import _load_saved_files

            with quiet_scvi():  # scvi-tools says "File <dir>/model.pt already downloaded" on each read
                attr_dict, _, _, _ = _load_saved_files(str(dir_path), load_adata=False, map_location="cpu",
                                                       prefix=kwargs.get("prefix"))
            adata = _bags_only(adata, attr_dict["registry_"]["setup_args"])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*var_names. for the loaded .model.", category=UserWarning)
            model = super().load(dir_path, adata=adata, **kwargs)
        if model.module.net.wide is None:  # saved by an earlier version, before the wide path
            model.wide_path = None
        return model

    def _input_obsm(self) -> dict[str, list[str]]:
        return self._bag_keys(self.setup_args)

    @classmethod
    def _load_obsm(cls, setup_args: Mapping[str, Any]) -> dict[str, list[str]]:
        return cls._bag_keys(setup_args)

    def _on_train_start(self, rows: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Class weights from the training rows; with ``wide_path="fitted"``, fit the wide path and start from it.

        The wide path is fitted on the training rows (at most 5,000, stratified), so that the validation rows,
        which it has not seen, choose fairly between it alone and the trained transformer; see ``wide_path``.
        """
        super()._on_train_start(rows)
        if self.wide_path is None:
            return
        # training rows only: the validation rows then judge the wide path and the transformer on equal terms
        rows_fit = np.sort(rows[0])
        codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel().astype(int)
        if len(rows_fit) > _MAX_WIDE_ROWS:
            logger.info(f"wide path: fitted on a stratified random {_MAX_WIDE_ROWS:,} of the {len(rows_fit):,} rows")
            rows_fit = subsample_rows(rows_fit, codes[rows_fit], max_rows=_MAX_WIDE_ROWS,
                                      random_state=self.random_state)
        tiles = np.asarray(self.adata_manager.get_from_registry(TILES_KEY)[rows_fit], dtype=np.float32)
        if self.setup_args["mask_key"] is not None:
            mask = real_tiles(self.adata_manager.get_from_registry(TILE_MASK_KEY)[rows_fit])
        else:
            mask = np.ones(tiles.shape[:2], dtype=bool)
        pooled = masked_mean(torch.as_tensor(tiles), torch.as_tensor(mask)).numpy()
        genes = self._matrix(self.rna_modality)[rows_fit]
        genes = genes.toarray() if hasattr(genes, "toarray") else np.asarray(genes)
        net = self.module.net
        weight = self.module.class_weight
        path, choice = fit_wide_path(pooled, genes, codes[rows_fit], num_classes=len(self.classes),
                                     class_weight=None if weight is None else weight.cpu().numpy(),
                                     rank=net.wide.rank, random_state=self.random_state)
        with torch.no_grad():
            net.wide.load_state_dict(path.state_dict())
            for head in (net.wsi_head, net.rna_head):
                head[-1].weight.zero_(), head[-1].bias.zero_()
        net.wide.requires_grad_(False)
        self.wide_path_choice_ = choice
        product = "on" if choice["product"] else "off"
        logger.info(f"wide path: penalty {choice['penalty']}, tile x expression product {product}, "
                    f"{choice['epochs']} epochs (by {choice['n_folds']}-fold CV on {len(rows_fit)} rows; loss "
                    f"{choice['cv_loss']:.3f}, linear only {choice['cv_loss_linear']:.3f})")

    # prediction -------------------------------------------------------------------------------------------------
    def _inference_outputs(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.module.inference(**self.module._get_inference_input(tensors))
        attention = out.pop("attention")
        return {**out, **{f"attention_{k}": attention[k] for k in ATTENTION_KEYS}}

    @adata_alias
    def get_attention(
        self, mdata: MuData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 256
    ) -> dict[str, np.ndarray]:
        """CLS attention weights per patient (last layer of the last block, mean over heads).

        Parameters
        ----------
        mdata
            Patients (default: the training MuData).
        indices
            Rows to return (default: all).
        batch_size
            Minibatch size.

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
        out = self._collect(mdata, indices, batch_size, [f"attention_{k}" for k in ATTENTION_KEYS])
        attention = {k: out[f"attention_{k}"] for k in ATTENTION_KEYS}
        attention["tiles"], attention["genes"] = attention["tiles_self"], attention["genes_self"]
        return attention

    def relevance_adapter(self):
        """Return the expression's features and the classes for :mod:`multiomix.explain`, without a classifier.

        Med-CrossViT classifies a patient from its tile bag **and** its expression together (the gene CLS token
        attends to that patient's tiles), so there is no function of the expression alone that is what the model
        computes, and a mean-pooled tile vector as a second input is not what it computes either. The adapter
        therefore has ``classifier=None`` (feature relevance with ``kind='group'`` raises); explain this model
        through its attention instead (:meth:`get_attention`, ``uns[key]['attention']`` of
        :func:`multiomix.tl.fit_med_crossvit`, :func:`multiomix.pl.tile_attention`).

        Examples
        --------
        >>> adapter = model.relevance_adapter()  # doctest: +SKIP
        >>> adapter.classifier is None  # doctest: +SKIP
        True
        """
        from ..explain._adapter import RelevanceAdapter

        mods = self.modalities
        return RelevanceAdapter(
            modalities=mods,
            feature_names={m: pd.Index(self.feature_names_[m]) for m in mods},
            layers=self.layers,
            class_names=list(self.classes),
            classifier=None,
            device=self.module.device,
            name="MedCrossViT",
            no_classifier_reason=(
                "scores a patient from its tile bag and its expression together, so no function of the expression "
                "alone is what it computes; explain it through its attention (model.get_attention, "
                "mx.pl.tile_attention)."
            ),
        )
