"""``fit_med_crossvit``: scanpy-style entry point to :class:`multiomix.models.MedCrossViT`."""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import pandas as pd
import scvi
from mudata import MuData

from multiomix._utils import check_labels, check_modalities, split_indices, write_obs, write_obsm, write_uns
from multiomix.models._med_crossvit import MedCrossViT

__all__ = ["fit_med_crossvit"]


def _history_frame(history: dict[str, pd.DataFrame]) -> pd.DataFrame:
    if not history:
        return pd.DataFrame()
    frame = pd.concat([df.rename(columns=lambda c, k=k: k) for k, df in history.items()], axis=1)
    frame.index = frame.index.astype(int)
    frame.index.name = "epoch"
    return frame.astype(float)


def fit_med_crossvit(
    mdata: MuData,
    *,
    label_key: str,
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
    max_epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 32,
    validation_size: float = 0.15,
    random_state: int = 0,
    key_added: str = "medcrossvit",
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    **train_kwargs: Any,
) -> MedCrossViT:
    """Fit Med-CrossViT on tile bags + expression and write predictions, embedding and attention.

    If ``mdata.obs['split']`` exists (see :func:`multiomix.pp.split`), the model trains on the ``train``
    rows and keeps the weights of the best ``validation`` epoch (when there are no validation rows,
    ``validation_size`` of the train rows are held out); otherwise a random ``validation_size`` of all rows
    is held out. Predictions, embedding and attention are written for every patient.

    Parameters
    ----------
    mdata
        MuData with a tile-bag modality (``obsm[tiles_key]``, ``obsm[mask_key]``, as
        :func:`multiomix.io.read_tile_bags` writes) and an expression modality, same patients in both.
    label_key
        Column of ``mdata.obs`` with the class labels.
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
    max_epochs, lr, weight_decay, batch_size
        Optimisation (AdamW, early stopping on the validation loss).
    validation_size
        Fraction held out for validation when ``obs['split']`` gives none.
    random_state
        Seed (``scvi.settings.seed``, weight init, bag draws): CPU runs are reproducible.
    key_added
        Outputs: ``obs['<key_added>_prediction']``, ``obs['<key_added>_confidence']``,
        ``obsm['<key_added>_proba']``, ``obsm['X_<key_added>']`` and ``uns[key_added]``.
    accelerator, devices
        Lightning accelerator and devices.
    **train_kwargs
        Passed to :meth:`multiomix.models.MedCrossViT.train` (e.g. ``early_stopping_patience``, ``strategy``).

    Returns
    -------
    The trained model. ``mdata.uns[key_added]`` holds ``params``, ``history`` (per-epoch losses and
    accuracies), ``classes``, ``seconds_per_epoch`` and ``attention``: ``tiles`` ``(n, n_tiles)`` (tile CLS
    -> tiles; 0 on padded slots), ``genes`` (DataFrame patients x genes, gene CLS -> genes) and the
    cross-attention maps ``tiles_cross`` (gene CLS -> tiles) and ``genes_cross`` (tile CLS -> genes).

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata, truth = mx.datasets.synthetic_tile_bags(300)
    >>> mx.pp.split(mdata, label_key="label", random_state=0)
    >>> model = mx.tl.fit_med_crossvit(mdata, label_key="label", max_epochs=60)
    >>> mdata.obs["medcrossvit_prediction"].head()
    >>> mdata.uns["medcrossvit"]["attention"]["tiles"].shape
    """
    check_modalities(mdata, [tiles_modality, rna_modality])
    splits = split_indices(mdata.obs)
    check_labels(mdata.obs, label_key, rows=None if splits is None else splits["train"])
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}.")
    snapshot = {"": set(mdata.uns.keys()), **{m: set(a.uns.keys()) for m, a in mdata.mod.items()}}
    try:
        scvi.settings.seed = random_state
        MedCrossViT.setup_mudata(
            mdata,
            label_key=label_key,
            tiles_modality=tiles_modality,
            rna_modality=rna_modality,
            rna_layer=rna_layer,
            tiles_key=tiles_key,
            mask_key=mask_key,
        )
        model = MedCrossViT(
            mdata,
            wsi_dim=wsi_dim,
            rna_dim=rna_dim,
            depth=depth,
            enc_depth=enc_depth,
            enc_heads=heads,
            enc_dim_head=dim_head,
            enc_mlp_dim=mlp_dim,
            cross_depth=cross_depth,
            cross_heads=heads,
            cross_dim_head=dim_head,
            gene_tokenizer=gene_tokenizer,
            pool=pool,
            bag_size=bag_size,
            dropout=dropout,
            emb_dropout=emb_dropout,
            random_state=random_state,
        )
        indices: dict[str, Any] = {}
        if splits is not None:
            train, val = splits["train"], splits["validation"]
            if len(val) == 0 and validation_size > 0:
                perm = np.random.default_rng(random_state).permutation(train)
                n_val = max(1, int(round(validation_size * len(train))))
                val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            indices = {"train_indices": train, "validation_indices": val}
        start = time.perf_counter()
        model.train(
            max_epochs=max_epochs,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            validation_size=validation_size,
            accelerator=accelerator,
            devices=devices,
            **indices,
            **train_kwargs,
        )
        seconds = time.perf_counter() - start
        proba = model.predict_proba(mdata)
        embedding = model.get_latent_representation(mdata)
        attention = model.get_attention(mdata)
    except Exception:
        for key in set(mdata.uns.keys()) - snapshot[""]:
            del mdata.uns[key]
        for m, a in mdata.mod.items():
            for key in set(a.uns.keys()) - snapshot.get(m, set()):
                del a.uns[key]
        raise
    history = _history_frame(model.history)
    classes = model.classes
    codes = proba.to_numpy().argmax(1)
    genes = model.gene_names
    params = {
        "label_key": label_key,
        "tiles_modality": tiles_modality,
        "rna_modality": rna_modality,
        "rna_layer": rna_layer or "X",
        "tiles_key": tiles_key,
        "mask_key": mask_key or "",
        "wsi_dim": int(wsi_dim),
        "rna_dim": int(rna_dim),
        "depth": int(depth),
        "enc_depth": int(enc_depth),
        "heads": int(heads),
        "dim_head": int(dim_head),
        "mlp_dim": int(mlp_dim),
        "cross_depth": int(cross_depth),
        "gene_tokenizer": gene_tokenizer,
        "pool": pool,
        "bag_size": int(bag_size or 0),
        "dropout": float(dropout),
        "emb_dropout": float(emb_dropout),
        "max_epochs": int(max_epochs),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "batch_size": int(batch_size),
        "random_state": int(random_state),
    }
    obs_names = mdata.obs_names
    write_obs(mdata, f"{key_added}_prediction", pd.Categorical.from_codes(codes, categories=classes))
    write_obs(mdata, f"{key_added}_confidence", proba.to_numpy().max(1).astype(np.float32))
    write_obsm(mdata, f"{key_added}_proba", proba.to_numpy().astype(np.float32))
    write_obsm(mdata, f"X_{key_added}", np.asarray(embedding, dtype=np.float32))
    write_uns(
        mdata,
        key_added,
        {
            "params": params,
            "classes": np.asarray(classes, dtype=object),
            "history": history,
            "seconds_per_epoch": seconds / max(len(history), 1),
            "attention": {
                "tiles": attention["tiles"].astype(np.float32),
                "tiles_cross": attention["tiles_cross"].astype(np.float32),
                "genes": pd.DataFrame(attention["genes"].astype(np.float32), index=obs_names, columns=genes),
                "genes_cross": pd.DataFrame(attention["genes_cross"].astype(np.float32), index=obs_names,
                                            columns=genes),
            },
        },
    )
    return model
