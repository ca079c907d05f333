"""``fit_med_crossvit``: scanpy-style entry point to :class:`multiomix.models.MedCrossViT`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from mudata import MuData

from .._baseline import stack_modalities
from .._docs import fill_doc
from .._logging import logger
from .._utils import check_modalities
from ..models._med_crossvit import MedCrossViT, _check_bags, real_tiles
from ..models.base import SeedEnsemble, check_n_models
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

__all__ = ["fit_med_crossvit"]


def _mean_pooled_tiles(mdata: MuData, tiles_modality: str, tiles_key: str, mask_key: str | None):
    """``rows -> mean of each bag's real tiles`` (padded slots left out), for the baseline."""
    tiles = mdata.mod[tiles_modality].obsm[tiles_key]
    mask = None if mask_key is None else real_tiles(mdata.mod[tiles_modality].obsm[mask_key])

    def pooled(rows: np.ndarray) -> np.ndarray:
        bags = np.asarray(tiles[rows], dtype=np.float64)
        real = mask[rows] if mask is not None else np.ones(bags.shape[:2], dtype=bool)
        return ((bags * real[..., None]).sum(1) / real.sum(1, keepdims=True)).astype(np.float32)

    return pooled


def attention_record(attention: dict[str, np.ndarray], genes: Sequence[str], obs_names) -> dict[str, Any]:
    """Build ``uns[key]['attention']`` (read by :func:`multiomix.pl.tile_attention`) from ``get_attention``."""
    return {
        "tiles": attention["tiles"].astype(np.float32),
        "tiles_cross": attention["tiles_cross"].astype(np.float32),
        "genes": pd.DataFrame(attention["genes"].astype(np.float32), index=obs_names, columns=genes),
        "genes_cross": pd.DataFrame(attention["genes_cross"].astype(np.float32), index=obs_names, columns=genes),
    }


@fill_doc
def fit_med_crossvit(
    mdata: MuData,
    *,
    label_key: str | None = None,
    tiles_modality: str = "wsi",
    rna_modality: str = "rna",
    rna_layer: str | None = None,
    tiles_key: str = "tiles",
    mask_key: str | None = "tile_mask",
    wsi_dim: int = 64,
    rna_dim: int = 64,
    depth: int = 1,
    enc_depth: int = 1,
    heads: int = 4,
    dim_head: int = 16,
    mlp_dim: int = 128,
    cross_depth: int = 1,
    gene_tokenizer: Literal["per_gene", "dense"] = "per_gene",
    pool: Literal["cls", "mean"] = "cls",
    bag_size: int | None = None,
    dropout: float = 0.1,
    emb_dropout: float = 0.1,
    class_weighting: bool = True,
    wide_path: Literal["fitted"] | None = "fitted",
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
    key_added: str = "medcrossvit",
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    progress_bar: bool | None = None,
    **trainer_kwargs: Any,
) -> MedCrossViT | SeedEnsemble:
    """Fit Med-CrossViT on tile bags + expression and write predictions, embedding and attention.

    Follows the fit contract (``docs/conventions.md``): with ``obs[split_key]`` only ``'train'`` rows are
    trained on and early stopping watches the ``'validation'`` rows (or a stratified ``validation_size`` of the
    train rows); without it, a stratified ``test_size`` of the labelled rows is held out and the split is
    written to ``obs[split_key]``. Rows without a label are predicted, never trained on. Test metrics of the
    model and of a logistic-regression baseline (on the mean of each bag's real tiles concatenated with the
    expression), fitted on the same rows, go to ``uns[key_added]``.

    Parameters
    ----------
    mdata
        MuData with a tile-bag modality (``obsm[tiles_key]``, ``obsm[mask_key]``, as
        :func:`multiomix.io.read_tile_bags` writes) and an expression modality, same patients in both.
    label_key
        Column of ``mdata.obs`` with the class labels (``None``: the one plausible label column).
    tiles_modality, rna_modality
        The two modalities.
    rna_layer
        Layer of ``rna_modality`` (``None``: ``.X``); give standardised log-expression.
    tiles_key, mask_key
        ``obsm`` keys of the bags and the tile mask (``None``: no padding).
    wsi_dim, rna_dim
        Model widths of the two branches.
    depth, enc_depth, heads, dim_head, mlp_dim, cross_depth
        Blocks, transformer layers per block, heads, head width, MLP width, cross-attention layers per
        block (``heads``/``dim_head`` are used by both self- and cross-attention).
    gene_tokenizer
        ``"per_gene"`` or ``"dense"`` (the original's map).
    pool
        ``"cls"`` or ``"mean"``.
    bag_size
        Tiles drawn per bag at each training step (``None``: all).
    dropout, emb_dropout
        Dropout rates.
    class_weighting
        Weight the cross-entropy by inverse class frequency of the training rows.
    wide_path
        ``"fitted"`` (default): start from a cross-validated wide path (logistic regression + a rank-1 tile x
        expression product of the mean tile and the expression), frozen, and keep the transformer only if it
        lowers the validation loss; ``None``: the original architecture. See :class:`~multiomix.models.MedCrossViT`.
    %(fit_n_models)s
    max_epochs, lr, weight_decay, batch_size, early_stopping_patience
        Training options (defaults: the model's, 100 epochs, AdamW 1e-3 / 1e-2, 32 patients, patience 20).
    %(fit_split_key)s
    %(fit_test_size)s
    validation_size
        Share of the train rows held out (stratified) for early stopping when there are no validation rows.
    %(fit_baseline)s
    random_state
        Seed (weight init, bag draws, hold-outs): CPU runs are reproducible.
    %(fit_key_added)s
    %(fit_lightning)s

    Returns
    -------
    The trained model (a :class:`~multiomix.models.SeedEnsemble` when ``n_models > 1``; the first member's
    embedding and attention are written). Writes ``obs['<key>_prediction']``, ``obs['<key>_confidence']``,
    ``obsm['<key>_proba']``, ``obsm['X_<key>']`` (pooled tile vector and pooled gene vector) and
    ``uns['<key>']`` with ``params``, ``classes``, ``history`` (per-epoch losses and accuracies),
    ``test_metrics``, ``baseline``, ``seconds_per_epoch`` and ``attention``: ``tiles`` ``(n, n_tiles)`` (tile CLS
    -> tiles; 0 on padded slots), ``genes`` (DataFrame patients x genes, gene CLS -> genes) and the
    cross-attention maps ``tiles_cross`` (gene CLS -> tiles) and ``genes_cross`` (tile CLS -> genes); and
    ``obs[split_key]`` when it created the split. ``params['wide_path_only']`` is ``True`` when the wide path
    alone was kept (``params['best_epoch'] == -1``): the attention maps then do not explain the predictions, and
    :func:`multiomix.pl.tile_attention` says so in its title.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata, truth = mx.datasets.synthetic_tile_bags(300)
    >>> model = mx.tl.fit_med_crossvit(mdata, label_key="label", max_epochs=60)
    >>> mdata.obs["medcrossvit_prediction"].head()
    >>> mdata.uns["medcrossvit"]["attention"]["tiles"].shape
    """
    arguments = dict(locals())
    check_fit_kwargs(trainer_kwargs, MedCrossViT)
    defaults = MedCrossViT._train_defaults
    epochs = defaults["max_epochs"] if max_epochs is None else max_epochs
    if epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}.")
    if bag_size is not None and bag_size < 1:
        raise ValueError(f"bag_size must be a positive integer or None, got {bag_size}.")
    modalities = [tiles_modality, rna_modality]
    check_modalities(mdata, modalities)
    _check_bags(mdata, tiles_modality, tiles_key, mask_key)
    layers = {rna_modality: rna_layer}
    fit = prepare_fit(mdata, label_key=label_key, modalities=modalities, layer=layers, split_key=split_key,
                      test_size=test_size, validation_size=validation_size, random_state=random_state,
                      obsm={tiles_modality: [tiles_key] + ([mask_key] if mask_key is not None else [])},
                      output_key=key_added)
    MedCrossViT.setup_mudata(fit.view, label_key=fit.label_key, tiles_modality=tiles_modality,
                             rna_modality=rna_modality, layer=rna_layer, tiles_key=tiles_key, mask_key=mask_key)
    renamed = {"enc_heads": heads, "enc_dim_head": dim_head, "enc_mlp_dim": mlp_dim, "cross_heads": heads,
               "cross_dim_head": dim_head}  # one heads / head width for self- and cross-attention

    def train_one(seed: int) -> MedCrossViT:
        member = MedCrossViT(fit.view, **options_for(MedCrossViT.__init__, {**arguments, "random_state": seed}),
                             **renamed)
        member.train(train_indices=fit.train, validation_indices=fit.validation,
                     **options_for(member.train, {**arguments, "max_epochs": epochs}), **trainer_kwargs)
        return member

    start = time.perf_counter()
    model = train_members(train_one, n_models=n_models, random_state=random_state)
    seconds = (time.perf_counter() - start) / check_n_models(n_models)  # per model
    first = first_member(model)
    n_epochs = max(len(next(iter(first.history.values()))) if first.history else 0, 1)
    attention = attention_record(first.get_attention(), first.gene_names, mdata.obs_names)

    def extra() -> dict[str, Any]:
        return {"seconds_per_epoch": seconds / n_epochs, "attention": attention}

    # the wide path alone was kept (the transformer never lowered the validation loss): the attention maps come
    # from a transformer whose heads are zero, so they do not explain the predictions; say so where they are read
    wide_only = bool(first.wide_path is not None and first.best_epoch_ == -1)
    if wide_only:
        logger.warning("the kept model is its wide path alone (the transformer never lowered the validation loss): "
                       "the stored attention maps do not explain its predictions")
    params = {**stored_params(arguments, defaults=defaults), "label_key": fit.label_key,
              "best_epoch": -2 if first.best_epoch_ is None else int(first.best_epoch_), "wide_path_only": wide_only}
    pooled = _mean_pooled_tiles(mdata, tiles_modality, tiles_key, mask_key)
    expression = modality_features(mdata, [rna_modality], layers)
    finish_classifier_fit(
        mdata, fit, model, key_added=key_added, params=params, split_key=split_key, baseline=baseline,
        baseline_features=lambda rows: stack_modalities([pooled(rows), expression(rows)]),
        random_state=random_state, extra=extra,
    )
    return model
