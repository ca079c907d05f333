"""Plot which tiles and genes the Med-CrossViT CLS tokens weigh most, per class."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mudata import MuData

from .._docs import fill_doc
from ..models._med_crossvit import real_tiles
from ..tl import get_result
from ._utils import LAPTOP_WIDTH, SMALL_FONT, finish, min_font, style

__all__ = ["tile_attention"]


@fill_doc
def tile_attention(
    mdata: MuData,
    key: str = "medcrossvit",
    *,
    groupby: str | None = None,
    n_top: int = 10,
    coords_key: str = "coords",
    panel_size: float = 3.3,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Figure | None:
    """Top genes and an example slide's tile attention per class, from :func:`multiomix.tl.fit_med_crossvit`.

    Top row: per class, the ``n_top`` genes with the largest mean CLS -> gene attention over the class's
    patients. Bottom row: per class, the patient predicted with the highest confidence; its tiles are
    drawn at their slide coordinates (``obsm[coords_key]`` of the tile modality, as
    :func:`multiomix.io.read_tile_bags` stores them) coloured by CLS -> tile attention, or, without
    coordinates, as its tile weights sorted from largest to smallest.

    Parameters
    ----------
    mdata
        MuData on which :func:`multiomix.tl.fit_med_crossvit` was run.
    key
        ``key_added`` of that run.
    groupby
        Column of ``mdata.obs`` defining the classes (default: the run's predictions).
    n_top
        Genes shown per class.
    coords_key
        ``obsm`` key of the tile coordinates in the tile modality.
    panel_size
        Width of one class's column of panels in inches; classes wrap onto further rows beyond
        ``mx.pl.LAPTOP_WIDTH`` (10.5 inches).
    %(plot_figure_end)s

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata, truth = mx.datasets.synthetic_tile_bags(200)
    >>> model = mx.tl.fit_med_crossvit(mdata, label_key="label", max_epochs=40)
    >>> mx.pl.tile_attention(mdata, n_top=8, save="tile_attention.png")
    """
    if key not in mdata.uns or not isinstance(mdata.uns[key], dict) or "attention" not in mdata.uns[key]:
        raise KeyError(
            f"mdata.uns[{key!r}]['attention'] not found; run mx.tl.fit_med_crossvit(mdata, key_added={key!r})."
        )
    result = get_result(mdata, key, kind="med_crossvit")
    params = result["params"]
    attention = result["attention"]
    groupby = groupby or f"{key}_prediction"
    if groupby not in mdata.obs.columns:
        raise KeyError(f"Column {groupby!r} not found in mdata.obs.")
    groups = mdata.obs[groupby].astype("category")
    classes = [c for c in groups.cat.categories if (groups == c).any()]
    genes = attention["genes"]
    if not isinstance(genes, pd.DataFrame):
        genes = pd.DataFrame(np.asarray(genes), index=mdata.obs_names)
    tiles = np.asarray(attention["tiles"])
    if len(tiles) != len(genes):
        raise ValueError(f"uns[{key!r}]['attention'] holds {len(tiles)} tile rows but {len(genes)} gene rows; run "
                         f"mx.tl.predict(mdata, model, key_added={key!r}) on this object again.")
    # the maps are stored for the patients they were computed on: take this object's patients, by name
    position = genes.index.get_indexer(mdata.obs_names)
    if (position < 0).any():
        missing = mdata.obs_names[position < 0]
        raise ValueError(f"{len(missing)} patients of mdata (e.g. {missing[0]!r}) have no attention in "
                         f"uns[{key!r}]['attention']; run mx.tl.predict(mdata, model, key_added={key!r}) on it.")
    genes, tiles = genes.iloc[position], tiles[position]
    wsi = mdata.mod[str(params["tiles_modality"])]
    coords = np.asarray(wsi.obsm[coords_key]) if coords_key in wsi.obsm else None
    mask_key = str(params.get("mask_key", ""))
    mask = real_tiles(wsi.obsm[mask_key]) if mask_key and mask_key in wsi.obsm else tiles > 0
    confidence_key = f"{key}_confidence"
    confidence = mdata.obs[confidence_key].to_numpy() if confidence_key in mdata.obs else np.ones(mdata.n_obs)
    prediction_key = f"{key}_prediction"
    predicted = (mdata.obs[prediction_key].astype(str).to_numpy() if prediction_key in mdata.obs
                 else np.full(mdata.n_obs, None))

    n = len(classes)
    ncols = max(1, min(n, int(LAPTOP_WIDTH // panel_size)))  # classes per row: the figure stays laptop-wide
    nrows = int(np.ceil(n / ncols))
    with style():
        fig, grid = plt.subplots(2 * nrows, ncols, figsize=(panel_size * ncols, 2 * panel_size * nrows),
                                 squeeze=False)
        pairs = [(grid[2 * (j // ncols), j % ncols], grid[2 * (j // ncols) + 1, j % ncols]) for j in range(n)]
        for j in range(n, nrows * ncols):  # the last row's empty slots
            grid[2 * (j // ncols), j % ncols].set_visible(False)
            grid[2 * (j // ncols) + 1, j % ncols].set_visible(False)
        _panels(fig, pairs, classes, groups, genes, tiles, mask, coords, confidence, predicted, n_top,
                mdata.obs_names)
        if bool(params.get("wide_path_only", False)):
            fig.suptitle("the kept model is its wide path alone: these maps do not explain its predictions",
                         fontsize=SMALL_FONT + 1, color="tab:red")
        fig.tight_layout()
    min_font(fig)
    return finish(fig, None, show=show, save=save)


def _panels(fig, pairs, classes, groups, genes, tiles, mask, coords, confidence, predicted, n_top,
            obs_names) -> None:
    """Draw each class's (genes, slide) pair of panels.

    The slide shown is the class's most confident patient among those predicted as the class (a patient of the
    class predicted as another would show what the model attends to for that other class); where none is, the
    most confident of the class, and the title says it was predicted otherwise.
    """
    for (top, bottom), cls in zip(pairs, classes, strict=True):
        rows = np.flatnonzero((groups == cls).to_numpy())
        mean = genes.iloc[rows].mean(0).sort_values(ascending=False).iloc[:n_top]
        ax = top
        ax.barh(np.arange(len(mean))[::-1], mean.to_numpy(), color="tab:blue")
        ax.set_yticks(np.arange(len(mean))[::-1], [str(g) for g in mean.index])
        ax.axvline(1.0 / genes.shape[1], color="grey", ls="--", lw=0.8)
        ax.set_title(f"{cls}: CLS → genes (n={len(rows)})", fontsize=SMALL_FONT + 1)
        ax.set_xlabel("mean attention (dashed: uniform)")  # in the label, not a legend over the bars

        agreeing = rows[predicted[rows] == str(cls)]
        candidates = agreeing if len(agreeing) else rows
        best = candidates[np.argmax(confidence[candidates])]
        weights = tiles[best][mask[best]]
        ax = bottom
        if coords is not None:
            xy = coords[best][mask[best]]
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=weights, cmap="viridis", s=28, marker="s", vmin=0)
            ax.invert_yaxis()
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.04, label="CLS → tile attention")
        else:
            ax.bar(np.arange(len(weights)), np.sort(weights)[::-1], color="tab:green")
            ax.set_xlabel("tile rank")
            ax.set_ylabel("CLS → tile attention")
        called = "" if predicted[best] in (None, str(cls)) else f", predicted {predicted[best]}"
        ax.set_title(f"{obs_names[best]} ({cls}{called}, {len(weights)} tiles)", fontsize=SMALL_FONT + 1)
