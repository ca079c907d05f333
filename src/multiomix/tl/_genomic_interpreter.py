"""Scanpy-style functions over :class:`~multiomix.models.GenomicInterpreter`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._logging import logger
from .._utils import split_indices, write_obsm, write_uns
from ..models._genomic_interpreter import DEFAULT_BACKBONE_KWARGS, GenomicInterpreter, track_metrics

__all__ = ["attention_maps", "attention_pair_hit_rate", "fit_genomic_interpreter"]


def _history_frame(history: dict[str, pd.DataFrame]) -> pd.DataFrame:
    frames = [df.rename(columns=lambda _c, k=key: k) for key, df in history.items() if len(df)]
    table = pd.concat(frames, axis=1) if frames else pd.DataFrame()
    table.index = pd.Index(np.arange(len(table)), name="epoch")
    return table.astype(float).reset_index()


def fit_genomic_interpreter(
    adata: AnnData,
    *,
    backbone: str = "swin1d",
    sequence_key: str = "dna_onehot",
    tracks_key: str | None = None,
    layer: str | None = None,
    loss: Literal["auto", "poisson", "bce", "mse"] = "auto",
    backbone_kwargs: dict | None = None,
    max_epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    validation_size: float = 0.1,
    reverse_complement: bool = True,
    head_pool: Literal["meanmax", "attention"] = "meanmax",
    random_state: int = 0,
    key_added: str = "genomic_interpreter",
    accelerator: str = "auto",
    devices: int | str = "auto",
    **train_kwargs: Any,
) -> GenomicInterpreter:
    """Train a Genomic Interpreter on regions and write its predictions and metrics into ``adata``.

    ``obs['split']`` (``train``/``validation``/``test``), when present, decides which regions are trained on,
    used for model selection, and held out; otherwise ``validation_size`` of the regions are held out for
    validation and nothing is tested.

    Writes

    - ``.obsm['<key_added>_prediction']``: predicted tracks of every region (target scale);
    - ``.uns['<key_added>']``: ``params``, ``history`` (per-epoch losses and validation metrics), ``metrics``
      (per-track Pearson, and AUROC/AUPRC for binary targets, per split), ``track_names``.

    Parameters
    ----------
    adata
        Regions as observations with one-hot DNA in ``.obsm[sequence_key]``.
    backbone
        ``"swin1d"``, ``"full_attention"``, ``"cnn_maxpool"``, ``"cnn_attpool"``, ``"cnn_dilated"`` or
        ``"enformer_like"``.
    sequence_key, tracks_key, layer
        Where the DNA and the targets are (see :meth:`~multiomix.models.GenomicInterpreter.setup_anndata`).
    loss
        ``"auto"``, ``"poisson"``, ``"bce"`` or ``"mse"``.
    backbone_kwargs
        Backbone overrides.
    max_epochs, batch_size, lr, weight_decay
        Training settings.
    validation_size
        Validation fraction when ``obs['split']`` is absent.
    reverse_complement
        Reverse-complement augmentation during training; predictions average both strands.
    head_pool
        Token pooling of the track head for one value per region, ``"meanmax"`` or ``"attention"``
        (see :class:`~multiomix.models.GenomicInterpreter`).
    random_state
        Seed (CPU runs are reproducible).
    key_added
        Prefix of the outputs.
    accelerator, devices
        Lightning accelerator/devices (``strategy=`` goes in ``train_kwargs``).
    **train_kwargs
        Passed to :meth:`~multiomix.models.GenomicInterpreter.train`.

    Returns
    -------
    The trained model.

    Examples
    --------
    >>> import multiomix as mx
    >>> adata = mx.datasets.oct4_mafk()
    >>> model = mx.tl.fit_genomic_interpreter(adata, backbone="swin1d", max_epochs=10)
    >>> adata.uns["genomic_interpreter"]["metrics"]["test"]
    """
    splits = split_indices(adata.obs)
    work = adata.copy()  # the user's object is written only once training succeeded
    for key in list(work.uns.keys()):
        if key.startswith("_scvi"):
            del work.uns[key]
    GenomicInterpreter.setup_anndata(work, sequence_key=sequence_key, tracks_key=tracks_key, layer=layer)
    model = GenomicInterpreter(work, backbone=backbone, backbone_kwargs=backbone_kwargs, loss=loss,
                               reverse_complement=reverse_complement, head_pool=head_pool,
                               random_state=random_state)
    if splits is not None:
        train_idx, val_idx = splits["train"], splits["validation"]
        if len(val_idx) == 0 and validation_size > 0:
            rng = np.random.default_rng(random_state)
            perm = rng.permutation(train_idx)
            n_val = max(1, int(round(validation_size * len(train_idx))))
            val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        train_kwargs.update(train_indices=train_idx, validation_indices=val_idx)
    model.train(max_epochs=max_epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                validation_size=validation_size, accelerator=accelerator, devices=devices, **train_kwargs)
    pred = model.predict(reverse_complement_average=reverse_complement)
    observed = model.observed().reshape(pred.shape)
    metrics = {}
    groups = splits if splits is not None else {"train": np.arange(adata.n_obs)}
    for name, rows in groups.items():
        if len(rows) > 1:
            metrics[name] = track_metrics(pred[rows], observed[rows], loss=model.loss_, track_names=model.track_names)
    params = {
        "backbone": backbone, "loss": model.loss_, "sequence_key": sequence_key,
        "tracks_key": "" if tracks_key is None else tracks_key, "layer": "" if layer is None else layer,
        "backbone_kwargs": json.dumps({**DEFAULT_BACKBONE_KWARGS[backbone], **(backbone_kwargs or {})}),
        "max_epochs": max_epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "reverse_complement": reverse_complement, "head_pool": head_pool, "random_state": random_state,
        "n_parameters": int(sum(p.numel() for p in model.module.parameters())),
    }
    result = {
        "params": params,
        "history": _history_frame(model.history),
        "metrics": metrics,
        "track_names": np.array(model.track_names, dtype=object),
    }
    # write into the user's object only now
    write_obsm(adata, f"{key_added}_prediction", pred.astype(np.float32))
    write_uns(adata, key_added, result)
    return model


def _resolve_regions(adata: AnnData, regions: Sequence[int | str] | int | str) -> np.ndarray:
    regions = [regions] if isinstance(regions, int | str | np.integer) else list(regions)
    if len(regions) == 0:
        raise ValueError("`regions` is empty.")
    if all(isinstance(r, int | np.integer) for r in regions):
        rows = np.asarray(regions, dtype=int)
        if rows.min() < 0 or rows.max() >= adata.n_obs:
            raise IndexError(f"Region positions must be in [0, {adata.n_obs}); got {regions}.")
        return rows
    missing = [r for r in regions if r not in adata.obs_names]
    if missing:
        raise KeyError(f"Regions {missing[:5]} are not in adata.obs_names.")
    return adata.obs_names.get_indexer(regions)


def attention_maps(
    adata: AnnData,
    model: GenomicInterpreter,
    *,
    regions: Sequence[int | str] | int | str,
    key_added: str = "genomic_interpreter",
    max_tokens: int = 4096,
) -> None:
    """Extract the exact hierarchical attention maps of chosen regions into ``.uns[key_added]['attention']``.

    Each 1D-Swin layer contributes its regular and its shifted window pass (both in original token
    coordinates, block-diagonal), the transformer layers their full maps.

    Writes ``.uns[key_added]['attention']`` (``{layer: (n_regions, heads, tokens, tokens) float32}``),
    ``['attention_resolution']`` (``{layer: bp per token}``) and ``['attention_regions']`` (region names).

    Parameters
    ----------
    adata
        Regions (set up like the model's training data: same ``sequence_key`` and length).
    model
        A trained :class:`~multiomix.models.GenomicInterpreter` with the ``swin1d`` or ``full_attention`` backbone.
    regions
        Region names or integer positions (a handful: maps grow with the square of the length).
    key_added
        ``.uns`` key (shared with :func:`fit_genomic_interpreter`).
    max_tokens
        Refuse layers longer than this many tokens.

    Examples
    --------
    >>> mx.tl.attention_maps(adata, model, regions=[0, 1, 2])
    >>> adata.uns["genomic_interpreter"]["attention"].keys()
    """
    rows = _resolve_regions(adata, regions)
    sequence_key = model.adata_manager.registry["setup_args"]["sequence_key"]
    if sequence_key not in adata.obsm:
        raise KeyError(f".obsm[{sequence_key!r}] (the model's sequence key) not found.")
    # a minimal AnnData of the chosen regions, shaped like the training data (targets are not read)
    tracks_key = model.adata_manager.registry["setup_args"].get("tracks_key")
    n_out = model.module.head.net[-1].out_features
    n_vars = model.adata.n_vars if tracks_key is None else 0
    sub = AnnData(X=np.zeros((len(rows), n_vars), dtype=np.float32),
                  obs=pd.DataFrame(index=adata.obs_names[rows].astype(str)),
                  var=pd.DataFrame(index=model.adata.var_names if tracks_key is None else []))
    sub.obsm[sequence_key] = np.asarray(adata.obsm[sequence_key][rows])
    if tracks_key is not None:
        sub.obsm[tracks_key] = np.zeros((len(rows), model.module.n_bins, n_out), dtype=np.float32)
    maps = model.get_attention(sub, max_tokens=max_tokens)
    entry = dict(adata.uns.get(key_added, {}))
    entry["attention"] = {name: m.astype(np.float32) for name, m in maps.items()}
    entry["attention_resolution"] = {k: int(v) for k, v in model.layer_resolutions().items()}
    entry["attention_regions"] = np.array(adata.obs_names[rows], dtype=object)
    adata.uns[key_added] = entry
    logger.info(f"added .uns[{key_added!r}]['attention']")


def attention_pair_hit_rate(
    adata: AnnData,
    *,
    pos_a_key: str = "motif_a_pos",
    pos_b_key: str = "motif_b_pos",
    motif_length: int = 8,
    key: str = "genomic_interpreter",
    tolerance: int = 1,
) -> pd.DataFrame:
    """How often a layer's strongest non-local attention links two known positions (e.g. planted motifs).

    For every region in ``.uns[key]['attention_regions']`` with both positions known, and every layer, the
    head-averaged map (regular + shifted pass for window layers) is read at the query token of motif A: the
    key with the largest weight, ignoring keys within ``tolerance`` tokens of the query, is a hit when it
    lies within ``tolerance`` tokens of motif B (and likewise from B to A). The chance rate is the fraction of
    eligible keys (non-zero weight, not local) that would count as a hit.

    Parameters
    ----------
    adata
        Regions with the attention written by :func:`attention_maps`.
    pos_a_key, pos_b_key
        ``.obs`` columns with the motifs' start positions in bp (-1 when absent).
    motif_length
        Motif length in bp (the token of a motif is that of its centre).
    key
        ``.uns`` key written by :func:`attention_maps`.
    tolerance
        Tokens of slack.

    Returns
    -------
    DataFrame indexed by layer with ``resolution_bp``, ``distance_tokens``, ``hit_a_to_b``, ``hit_b_to_a``,
    ``hit_either``, ``chance`` and ``n_regions``.

    Examples
    --------
    >>> mx.tl.attention_pair_hit_rate(adata, motif_length=8)
    """
    entry = adata.uns.get(key, {})
    if "attention" not in entry:
        raise KeyError(f".uns[{key!r}]['attention'] not found; run mx.tl.attention_maps first.")
    for col in (pos_a_key, pos_b_key):
        if col not in adata.obs.columns:
            raise KeyError(f"Position column {col!r} not found in .obs.")
    names = list(entry["attention_regions"])
    rows = adata.obs_names.get_indexer(names)
    pos_a = adata.obs[pos_a_key].to_numpy()[rows]
    pos_b = adata.obs[pos_b_key].to_numpy()[rows]
    keep = (pos_a >= 0) & (pos_b >= 0)
    maps, resolution = entry["attention"], entry["attention_resolution"]
    layers: dict[str, list[str]] = {}
    for name in maps:
        layers.setdefault(name.rsplit(".", 1)[0] if name.startswith("stage") else name, []).append(name)
    records = []
    for layer, parts in layers.items():
        combined = sum(np.asarray(maps[p]).mean(axis=1) for p in parts)  # (n, tokens, tokens)
        bp = int(resolution[parts[0]])
        n_tokens = combined.shape[-1]
        hits_ab, hits_ba, chance, dists = [], [], [], []
        for i in np.flatnonzero(keep):
            ta = min(int((pos_a[i] + motif_length / 2) // bp), n_tokens - 1)
            tb = min(int((pos_b[i] + motif_length / 2) // bp), n_tokens - 1)
            if abs(ta - tb) <= 2 * tolerance:
                continue
            dists.append(abs(tb - ta))
            for query, target, store in ((ta, tb, hits_ab), (tb, ta, hits_ba)):
                row = combined[i, query].copy()
                cols = np.arange(n_tokens)
                local = np.abs(cols - query) <= tolerance
                row[local] = -np.inf
                store.append(abs(int(np.argmax(row)) - target) <= tolerance)
                eligible = (~local) & (combined[i, query] > 0)
                chance.append(((np.abs(cols - target) <= tolerance) & eligible).sum() / max(eligible.sum(), 1))
        records.append({
            "layer": layer, "resolution_bp": bp, "distance_tokens": float(np.mean(dists)) if dists else np.nan,
            "hit_a_to_b": float(np.mean(hits_ab)) if hits_ab else np.nan,
            "hit_b_to_a": float(np.mean(hits_ba)) if hits_ba else np.nan,
            "hit_either": float(np.mean(np.logical_or(hits_ab, hits_ba))) if hits_ab else np.nan,
            "chance": float(np.mean(chance)) if chance else np.nan, "n_regions": len(hits_ab),
        })
    return pd.DataFrame(records).set_index("layer")
