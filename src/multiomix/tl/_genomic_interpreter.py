"""Scanpy-style functions over :class:`~multiomix.models.GenomicInterpreter`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._baseline import logistic_baseline
from .._docs import fill_doc
from .._logging import logger
from .._metrics import track_metrics
from .._utils import (
    SPLIT_VALUES,
    check_output_columns,
    check_whole,
    history_frame,
    restore_on_error,
    split_indices,
    to_uns,
    write_obs,
    write_obsm,
    write_uns,
)
from ..models import GenomicInterpreter
from ..models._genomic_interpreter import region_input
from ..module._genomic_interpreter import DEFAULT_BACKBONE_KWARGS
from ..train._runner import check_fit_kwargs
from ._fit import _hold_out, options_for, stored_params
from ._results import check_replaceable

__all__ = ["attention_maps", "attention_pair_hit_rate", "fit_genomic_interpreter", "kmer_counts"]

_NO_TEST = "no test rows (test_size=0 or no 'test' rows in the split column)"


def region_rows(
    adata: AnnData, *, split_key: str = "split", test_size: float = 0.2, validation_size: float = 0.15,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.Categorical | None]:
    """Train, validation and test rows of regions, and the new split column (``None`` when ``obs[split_key]`` exists).

    ``obs[split_key]`` decides when present (rows in no split are predicted, not trained on); else a random
    ``test_size`` of the regions is held out for testing. Validation rows, when none are given, are a random
    ``validation_size`` of the train rows (the hold-outs of :func:`~multiomix.tl._fit.prepare_fit`).

    Examples
    --------
    >>> train, validation, test, new = region_rows(AnnData(np.zeros((20, 1))), random_state=0)
    >>> len(train), len(validation), len(test)
    (14, 2, 4)
    """
    if not 0 <= test_size < 1 or not 0 <= validation_size < 1:
        raise ValueError(f"Need 0 <= test_size < 1 and 0 <= validation_size < 1; got {test_size}, {validation_size}.")
    if not adata.obs_names.is_unique:
        duplicated = list(adata.obs_names[adata.obs_names.duplicated()].unique()[:5])
        raise ValueError(f"adata.obs_names has duplicates (e.g. {duplicated}); run `adata.obs_names_make_unique()`.")
    same = pd.Series("region", index=adata.obs_names)  # regions have no classes: plain random hold-outs
    splits = split_indices(adata.obs, split_key)
    new_split = None
    if splits is not None:
        train, validation, test = (splits[k] for k in SPLIT_VALUES)
    else:
        train, test = _hold_out(np.arange(adata.n_obs), same, test_size, what="a test set", random_state=random_state)
        validation = np.array([], dtype=int)
        assignment = np.full(adata.n_obs, "train", dtype=object)
        assignment[test] = "test"
        new_split = pd.Categorical(assignment, categories=list(SPLIT_VALUES))
    if len(validation) == 0:
        train, validation = _hold_out(train, same, validation_size, what="a validation set", random_state=random_state)
        if new_split is not None:  # the split written says which rows were validated on, so a refit reuses them
            new_split[validation] = "validation"
    return train, validation, test, new_split


def kmer_counts(onehot: np.ndarray, k: int = 4) -> np.ndarray:
    """Count every k-mer per region (``4**k`` columns, lexicographic over ACGT; k-mers with an N are skipped).

    Examples
    --------
    >>> kmer_counts(np.eye(4, dtype=np.uint8)[None], k=2)[0].nonzero()[0]  # AC, CG, GT
    array([ 1,  6, 11])
    """
    index, valid = onehot.argmax(-1).astype(np.int64), onehot.max(-1) > 0
    n, length = index.shape
    width = length - k + 1
    codes, ok = np.zeros((n, width), dtype=np.int64), np.ones((n, width), dtype=bool)
    for j in range(k):
        codes, ok = codes * 4 + index[:, j : j + width], ok & valid[:, j : j + width]
    flat = (np.arange(n)[:, None] * 4**k + codes)[ok]
    return np.bincount(flat, minlength=n * 4**k).reshape(n, 4**k).astype(np.float32)


def _mean_auroc(table) -> str:
    """Mean AUROC over the tracks that have both classes among the test rows, formatted; ``n/a`` where none has."""
    values = np.asarray(table["auroc"], dtype=float)
    return f"{np.nanmean(values):.3f}" if np.isfinite(values).any() else "n/a (one class in every test track)"


def _kmer_baseline(dna, observed, train, test, names, *, random_state: int) -> dict[str, Any]:
    """Logistic regression on 4-mer counts per binary track, trained on ``train`` rows, scored on ``test`` rows."""
    x_train, x_test = kmer_counts(dna[train]), kmer_counts(dna[test])
    pred = np.full((len(test), observed.shape[1]), np.nan)
    for t in range(observed.shape[1]):
        y = observed[train, t].astype(int)
        if len(np.unique(y)) == 2:
            search = logistic_baseline(x_train, y, random_state=random_state)
            pred[:, t] = search.predict_proba(x_test)[:, list(search.classes_).index("1")]
        else:  # one class among the training rows: the baseline is its (constant) training rate
            pred[:, t] = y.mean()
    return {"name": "logistic_regression_kmer", "k": 4, "test_metrics": track_metrics(
        pred, observed[test], binary=True, track_names=names), "description": "standardised logistic regression on "
            "4-mer counts per binary track, class-weighted, C by inner CV, trained on the train + validation rows"}


@fill_doc
def fit_genomic_interpreter(
    adata: AnnData,
    *,
    backbone: str = "swin1d",
    sequence_key: str = "dna_onehot",
    tracks_key: str | None = None,
    layer: str | None = None,
    loss: Literal["auto", "poisson", "bce", "mse"] = "auto",
    backbone_kwargs: dict | None = None,
    reverse_complement: bool = True,
    head_pool: Literal["meanmax", "attention"] = "meanmax",
    strand_pairs: Sequence[Sequence[str]] | None = None,
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
    key_added: str = "genomic_interpreter",
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    progress_bar: bool | None = None,
    **trainer_kwargs: Any,
) -> GenomicInterpreter:
    """Train a Genomic Interpreter on regions and write its predictions and metrics into ``adata``.

    Follows the fit contract: with ``obs[split_key]`` (``train``/``validation``/``test``) only ``'train'``
    regions are trained on and the weights of the best ``'validation'`` epoch are kept (or of a random
    ``validation_size`` of the train regions when there are none); without it, a random ``test_size`` of the
    regions is held out for testing and a ``validation_size`` of the rest for early stopping, and the split is
    written to ``obs[split_key]``. The model is set up on a new AnnData
    around ``adata``'s arrays, so ``adata`` is never registered; every output is written at the end.

    Writes

    - ``.obsm['<key_added>_prediction']``: predicted tracks of every region (target scale, strand-averaged,
      as :meth:`~multiomix.models.GenomicInterpreter.predict` by default);
    - ``.uns['<key_added>']``: ``params``, ``history`` (per-epoch losses and validation metrics),
      ``test_metrics`` (per-track Pearson, and AUROC/AUPRC for binary targets, on the test regions),
      ``metrics`` (the same per split), ``baseline`` (binary tracks: logistic regression on 4-mer counts, its
      ``test_metrics``), ``track_names``, ``n_train``/``n_validation``/``n_test``;
    - ``.obs[split_key]`` when the split was made here.

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
    reverse_complement
        Reverse-complement augmentation during training.
    strand_pairs
        Pairs of stranded track names that swap on the reverse strand, e.g. ``[("cage_plus", "cage_minus")]``
        (see :class:`~multiomix.models.GenomicInterpreter`).
    head_pool
        Token pooling of the track head for one value per region, ``"meanmax"`` or ``"attention"``
        (see :class:`~multiomix.models.GenomicInterpreter`).
    max_epochs, lr, weight_decay, batch_size, early_stopping_patience
        Training options (defaults: the model's: 20 epochs, 1e-3, 1e-4, 64, 20).
    split_key
        Column of ``adata.obs`` with ``train``/``validation``/``test``.
    test_size
        Share of the regions held out for testing when there is no split column (0: none, no test metrics).
    validation_size
        Share of the train regions held out for model selection when there are no validation rows.
    baseline
        For binary tracks (one value per region), also fit a logistic regression on 4-mer counts on the same
        rows and store its test metrics.
    %(fit_random_state)s
    %(fit_key_added)s
    %(accelerator_devices)s
    %(progress_bar)s
    **trainer_kwargs
        Passed to :meth:`~multiomix.models.base.MultiomixModel.train` and the Lightning trainer (e.g.
        ``plan_kwargs={"lr_decay": "cosine"}``, ``early_stopping=False``, ``strategy="ddp_notebook"``).

    Returns
    -------
    The trained :class:`~multiomix.models.GenomicInterpreter`.

    Examples
    --------
    >>> import multiomix as mx
    >>> adata = mx.datasets.oct4_mafk()
    >>> model = mx.tl.fit_genomic_interpreter(adata, backbone="swin1d", max_epochs=10)  # doctest: +SKIP
    >>> adata.uns["genomic_interpreter"]["test_metrics"]  # doctest: +SKIP
    """
    arguments = dict(locals())
    check_fit_kwargs(trainer_kwargs, GenomicInterpreter)
    check_replaceable(adata, key_added, "fit")
    check_output_columns(adata, key_added, [], obsm=[f"{key_added}_prediction"])  # the user's own is kept
    if backbone not in DEFAULT_BACKBONE_KWARGS:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {list(DEFAULT_BACKBONE_KWARGS)}.")
    train, validation, test, new_split = region_rows(adata, split_key=split_key, test_size=test_size,
                                                     validation_size=validation_size, random_state=random_state)
    if len(train) == 0:
        raise ValueError(f"No training rows: the AnnData has {adata.n_obs} regions"
                         + (f", none of them with .obs[{split_key!r}] == 'train'." if adata.n_obs else "."))
    view = region_input(adata, sequence_key=sequence_key, tracks_key=tracks_key, layer=layer)
    GenomicInterpreter.setup_anndata(view, sequence_key=sequence_key, tracks_key=tracks_key, layer=layer)
    model = GenomicInterpreter(view, **options_for(GenomicInterpreter.__init__, arguments))
    model.train(train_indices=train, validation_indices=validation, **options_for(model.train, arguments),
                **trainer_kwargs)
    pred = model.predict()
    observed = model.observed().reshape(pred.shape)
    binary, names = model.loss_ == "bce", model.track_names
    metrics = {name: track_metrics(pred[rows], observed[rows], binary=binary, track_names=names)
               for name, rows in (("train", train), ("validation", validation), ("test", test)) if len(rows) > 1}
    params = {
        **stored_params(arguments, exclude=("adata", "baseline", "backbone_kwargs"), defaults=model._train_defaults),
        "loss": model.loss_, "split_key": split_key,
        "tracks_key": "" if tracks_key is None else tracks_key, "layer": "" if layer is None else layer,
        "backbone_kwargs": json.dumps({**DEFAULT_BACKBONE_KWARGS[backbone], **(backbone_kwargs or {})}),
        "n_parameters": int(sum(p.numel() for p in model.module.parameters())),
    }
    info: dict[str, Any] = {
        "params": to_uns(params), "history": history_frame(model.history), "metrics": metrics,
        "track_names": np.array(names, dtype=object),
        "n_train": len(train), "n_validation": len(validation), "n_test": len(test),
    }
    if "test" in metrics:
        info["test_metrics"] = metrics["test"]
    else:
        info["test_metrics_missing"] = _NO_TEST
        logger.info("no test rows: test metrics are missing")
    if baseline and binary and pred.ndim == 2 and "test" in metrics:
        peer = _kmer_baseline(view.obsm[sequence_key], observed, np.concatenate([train, validation]), test, names,
                              random_state=random_state)
        info["baseline"] = peer
        logger.info(f"{key_added} vs baseline (4-mer logistic regression) on {len(test)} test regions: mean AUROC "
                    f"{_mean_auroc(metrics['test'])} vs {_mean_auroc(peer['test_metrics'])}")
    with restore_on_error(adata):  # the user's object is written only now
        write_obsm(adata, f"{key_added}_prediction", pred.astype(np.float32))
        if new_split is not None:
            write_obs(adata, split_key, new_split)
        write_uns(adata, key_added, info)
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
    ``['attention_resolution']`` (``{layer: bp per token}``), ``['attention_regions']`` (region names) and
    ``['attention_length_bp']`` (the region length; a coarse layer's last token may cover padding beyond it).

    Parameters
    ----------
    adata
        Regions with one-hot DNA under the model's ``sequence_key``, of the training length (targets not needed).
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
    if not (hasattr(model, "get_attention") and hasattr(model, "layer_resolutions")):
        raise TypeError(f"attention_maps reads a fitted GenomicInterpreter (what mx.tl.fit_genomic_interpreter "
                        f"returns), got {type(model).__name__}.")
    check_replaceable(adata, key_added, "attention_maps")  # a fit's or a scoring's record, or earlier maps
    rows = _resolve_regions(adata, regions)
    maps = model.get_attention(adata, indices=rows, max_tokens=max_tokens)  # new regions are matched
    entry = dict(adata.uns.get(key_added, {}))
    entry["attention"] = {name: m.astype(np.float32) for name, m in maps.items()}
    entry["attention_resolution"] = {k: int(v) for k, v in model.layer_resolutions().items()}
    entry["attention_regions"] = np.array(adata.obs_names[rows], dtype=object)
    entry["attention_length_bp"] = int(model.sequence_length_)
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
    check_whole("motif_length", motif_length, 1)
    check_whole("tolerance", tolerance, 0)
    for col in (pos_a_key, pos_b_key):
        if col not in adata.obs.columns:
            raise KeyError(f"Position column {col!r} not found in .obs.")
    names = list(entry["attention_regions"])
    rows = adata.obs_names.get_indexer(names)
    if (rows < 0).any():  # e.g. a subset that carried uns along: the maps are of regions it no longer holds
        absent = [n for n, r in zip(names, rows) if r < 0]
        raise KeyError(f"{len(absent)} of the {len(names)} regions whose attention is stored in uns[{key!r}] are not "
                       f"in adata.obs_names (e.g. {absent[:3]}); run mx.tl.attention_maps on this object again.")
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
