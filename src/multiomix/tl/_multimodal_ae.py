"""``fit_multimodal_ae``: scanpy-style entry point to :class:`multiomix.models.MultimodalAE`."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scvi
from mudata import MuData

from .._utils import check_modalities, split_indices, write_obsm, write_uns
from ..models import MultimodalAE
from ..models._base import split_to_external_indexing

__all__ = ["fit_multimodal_ae"]


def _history_frame(history: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    if not history:
        return pd.DataFrame()
    frame = pd.concat([df.rename(columns=lambda c, k=k: k) for k, df in history.items()], axis=1)
    frame.index = frame.index.astype(int)
    frame.index.name = "epoch"
    return frame.astype(float)


def _snapshot_uns(mdata: MuData) -> dict[str, set[str]]:
    snap = {"": set(mdata.uns.keys())}
    snap.update({m: set(a.uns.keys()) for m, a in mdata.mod.items()})
    return snap


def _restore_uns(mdata: MuData, snap: dict[str, set[str]]) -> None:
    for key in set(mdata.uns.keys()) - snap[""]:
        del mdata.uns[key]
    for m, a in mdata.mod.items():
        for key in set(a.uns.keys()) - snap.get(m, set()):
            del a.uns[key]


def fit_multimodal_ae(
    mdata: MuData,
    *,
    modalities: Sequence[str] | None = None,
    layer: str | Mapping[str, str | None] | None = None,
    losses: Mapping[str, str] | None = None,
    loss_weights: Mapping[str, float] | None = None,
    latent_dim: int = 20,
    hidden_dim: int = 256,
    n_layers: int = 1,
    dropout: float = 0.1,
    input_dropout: float = 0.0,
    modality_dropout: float = 0.0,
    max_epochs: int = 200,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 128,
    random_state: int = 0,
    key_added: str = "mmae",
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    **train_kwargs: Any,
) -> MultimodalAE:
    """Fit a multimodal autoencoder and write its joint embedding to ``mdata.obsm['X_<key_added>']``.

    Each modality gets an encoder into a joint latent from which every modality is decoded (see
    :class:`~multiomix.models.MultimodalAE`). If ``mdata.obs['split']`` exists (see :func:`multiomix.pp.split`),
    the model trains on the ``train`` rows and monitors the ``validation`` rows; the embedding is written
    for every cell.

    Parameters
    ----------
    mdata
        Paired MuData.
    modalities
        Modalities to use (default all).
    layer
        Layer per modality (one name or a dict; ``None`` = ``.X``).
    losses
        ``"mse"``, ``"bce"`` or ``"nb"`` per modality (default: ``"bce"`` for binary data, else ``"mse"``).
    loss_weights
        Weight of each modality's loss (default 1 each).
    latent_dim
        Width of the joint embedding.
    hidden_dim, n_layers, dropout, input_dropout
        Encoder/decoder size and regularisation.
    modality_dropout
        Probability that a training cell is encoded from one random modality only (enables translation).
    max_epochs, lr, weight_decay, batch_size
        Optimisation (AdamW).
    random_state
        Seed (``scvi.settings.seed``): runs on CPU are reproducible.
    key_added
        Results go to ``obsm['X_<key_added>']`` and ``uns[key_added]``.
    accelerator, devices
        Lightning accelerator and devices.
    **train_kwargs
        Passed to :meth:`~multiomix.models.MultimodalAE.train` (e.g. ``strategy``, ``early_stopping``).

    Returns
    -------
    The trained model. Writes ``mdata.obsm['X_<key_added>']`` and ``mdata.uns[key_added]`` with ``params``,
    ``history`` (a DataFrame of per-epoch losses) and ``seconds_per_epoch``.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.bmmc_multiome()
    >>> model = mx.tl.fit_multimodal_ae(mdata, latent_dim=16, max_epochs=100, modality_dropout=0.2)
    >>> mdata.obsm["X_mmae"].shape
    (500, 16)
    """
    modalities = check_modalities(mdata, modalities)
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {latent_dim}.")
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}.")
    splits = split_indices(mdata.obs)
    snapshot = _snapshot_uns(mdata)
    try:
        scvi.settings.seed = random_state
        MultimodalAE.setup_mudata(mdata, modalities=modalities, layer=layer)
        model = MultimodalAE(
            mdata,
            losses=losses,
            loss_weights=loss_weights,
            latent_dim=latent_dim,
            hidden_dim=hidden_dim,
            n_layers=n_layers,
            dropout=dropout,
            input_dropout=input_dropout,
            modality_dropout=modality_dropout,
        )
        datasplitter_kwargs = dict(train_kwargs.pop("datasplitter_kwargs", None) or {})
        if splits is not None:
            datasplitter_kwargs["external_indexing"] = split_to_external_indexing(
                splits, n_obs=mdata.n_obs, validation_size=0.0, random_state=random_state
            )
        start = time.perf_counter()
        model.train(
            max_epochs=max_epochs,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            accelerator=accelerator,
            devices=devices,
            datasplitter_kwargs=datasplitter_kwargs or None,
            **train_kwargs,
        )
        seconds = time.perf_counter() - start
        latent = model.get_latent_representation(mdata)
    except Exception:
        _restore_uns(mdata, snapshot)
        raise
    history = _history_frame(model.history)
    n_epochs = max(len(history), 1)
    params = {
        "modalities": list(model.modalities_),
        "losses": dict(model.likelihoods_),
        "loss_weights": {m: float((loss_weights or {}).get(m, 1.0)) for m in model.modalities_},
        "latent_dim": int(latent_dim),
        "hidden_dim": int(hidden_dim),
        "n_layers": int(n_layers),
        "dropout": float(dropout),
        "input_dropout": float(input_dropout),
        "modality_dropout": float(modality_dropout),
        "max_epochs": int(max_epochs),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "batch_size": int(batch_size),
        "random_state": int(random_state),
        "layer": layer if isinstance(layer, str) else {m: v or "X" for m, v in model._layers().items()},
    }
    write_obsm(mdata, f"X_{key_added}", np.asarray(latent, dtype=np.float32))
    write_uns(mdata, key_added, {"params": params, "history": history, "seconds_per_epoch": seconds / n_epochs})
    return model
