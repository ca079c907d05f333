"""Plots of the joint-embedding benchmark written by :func:`multiomix.tl.benchmark_embeddings`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from mudata import MuData

from .._docs import fill_doc
from .._logging import logger
from ..tl import get_result
from ._utils import LAPTOP_WIDTH, SMALL_FONT, category_colors, finish, min_font, new_axes, style

__all__ = ["benchmark", "embedding"]

_METRIC_ORDER = ("nmi", "ari", "asw_label", "asw_batch", "graph_connectivity")
_METRIC_LABELS = {
    "nmi": "NMI",
    "ari": "ARI",
    "ari_best": "ARI (best)",
    "asw_label": "cell-type ASW",
    "asw_batch": "batch ASW",
    "graph_connectivity": "graph conn.",
}


@fill_doc
def benchmark(
    mdata: MuData | AnnData,
    key: str = "embedding_benchmark",
    *,
    metrics: Sequence[str] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Draw the table in ``uns[key]`` as a grouped bar chart (one group per metric, one bar per embedding).

    Parameters
    ----------
    mdata
        Object on which :func:`multiomix.tl.benchmark_embeddings` was run.
    key
        ``uns`` key of the table.
    metrics
        Metrics to show (default: NMI, ARI, cell-type ASW and, when present, batch ASW and graph connectivity).
    %(ax)s
    %(plot_axes_end)s

    Examples
    --------
    >>> mx.tl.benchmark_embeddings(mdata, keys=["X_mmae", "X_pca_concat"], label_key="cell_type")
    >>> mx.pl.benchmark(mdata, save="benchmark.png")
    """
    table = pd.DataFrame(get_result(mdata, key, kind="embedding_benchmark"))
    metrics = [m for m in _METRIC_ORDER if m in table.columns] if metrics is None else list(metrics)
    missing = [m for m in metrics if m not in table.columns or not pd.api.types.is_numeric_dtype(table[m])]
    if missing:
        raise KeyError(f"Metrics {missing} not in uns[{key!r}]; it has {list(table.columns)}.")
    n = len(table.index)
    values = table[metrics].to_numpy(dtype=float)
    if not np.isfinite(values).any():
        raise ValueError(f"uns[{key!r}] holds no finite value for the metrics {metrics}.")
    if not np.isfinite(values).all():
        absent = [f"{name}: {m}" for name, row in zip(table.index, values) for m, v in zip(metrics, row)
                  if not np.isfinite(v)]
        logger.warning(f"no value (drawn as 'n/a') for {absent}")
    with style():
        fig, ax_ = new_axes(ax, (min(LAPTOP_WIDTH, 2.6 + (0.45 + 0.3 * n) * len(metrics)), 3.6))
        width = 0.8 / max(n, 1)
        x = np.arange(len(metrics))
        colors = _embedding_colors(n)
        for i, name in enumerate(table.index):
            values = table.loc[name, metrics].to_numpy(dtype=float)
            bars = ax_.bar(x + (i - (n - 1) / 2) * width, values, width * 0.95, label=str(name), color=colors[i])
            for bar, value in zip(bars, values):
                if not np.isfinite(value):  # a metric that could not be computed: marked, not an empty slot
                    ax_.text(bar.get_x() + bar.get_width() / 2, 0.015, "n/a", ha="center", va="bottom",
                             fontsize=SMALL_FONT - 1, rotation=90, color="0.4")
            if n <= 6:
                for bar, value in zip(bars, values):
                    if np.isfinite(value):
                        ax_.text(bar.get_x() + bar.get_width() / 2, max(value, 0) + 0.015, f"{value:.2f}",
                                 ha="center", va="bottom", fontsize=SMALL_FONT - 1 if n > 3 else SMALL_FONT,
                                 rotation=90)
        ax_.set_xticks(x)
        names = [_METRIC_LABELS.get(m, m) for m in metrics]
        inches_per_metric = ax_.get_position().width * fig.get_size_inches()[0] / max(len(metrics), 1)
        if inches_per_metric < 0.09 * max(map(len, names), default=0):  # a narrow Axes: two-word names on two lines
            names = [name.replace(" ", "\n", 1) for name in names]
        ax_.set_xticklabels(names)
        ax_.set_ylim(min(0.0, float(np.nanmin(table[metrics].to_numpy(float))) - 0.05), 1.18)
        ax_.set_ylabel("score (higher is better)")
        ax_.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="embedding")
        ax_.spines[["top", "right"]].set_visible(False)
    return finish(fig, ax_, show=show, save=save, ax_given=ax is not None, return_fig=return_fig)


def _plane(mdata: MuData | AnnData, key: str) -> np.ndarray:
    """2-D coordinates of ``key``: ``obsm['<key>_umap']`` when there, else ``obsm[key]`` itself if it is 2-D."""
    for name in (f"{key}_umap", key):
        if name in mdata.obsm and np.asarray(mdata.obsm[name]).ndim == 2 and mdata.obsm[name].shape[1] == 2:
            return np.asarray(mdata.obsm[name])
    width = np.asarray(mdata.obsm[key]).shape[1] if key in mdata.obsm else None
    found = f"obsm[{key!r}] has {width} dimensions" if width is not None else f"obsm has no {key!r}"
    raise KeyError(f"{found} and no obsm[{key + '_umap'!r}]: run mx.tl.benchmark_embeddings(..., umap=True), or "
                   f"`sc.pp.neighbors(mdata, use_rep={key!r}); sc.tl.umap(mdata)` and plot 'X_umap'.")


def _continuous(mdata, coordinates: dict[str, np.ndarray], column: pd.Series, titles: list[str], *,
                point_size: float | None, ncols: int | None, panel_size: float, show, save) -> Figure | None:
    """Panels coloured by a numeric column (one colour scale, one colour bar); nothing is written to ``uns``."""
    values = column.to_numpy(dtype=float)
    missing = ~np.isfinite(values)
    if missing.all():
        raise ValueError(f"Column {column.name!r} has no finite value to colour by.")
    point_size = float(np.clip(6000 / max(mdata.n_obs, 1), 2, 40)) if point_size is None else point_size
    ncols = min(len(coordinates), 3) if ncols is None else ncols
    nrows = int(np.ceil(len(coordinates) / ncols))
    order = np.flatnonzero(~missing)[np.argsort(values[~missing])]  # high values on top, as scanpy draws them
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols + 0.8, panel_size * nrows), squeeze=False,
                                 layout="constrained")
        for ax, coords, title in zip(axes.ravel(), coordinates.values(), titles):
            if missing.any():  # as scanpy's na_color, underneath
                ax.scatter(coords[missing, 0], coords[missing, 1], s=point_size, color="lightgray", linewidths=0,
                           rasterized=mdata.n_obs > 5000)
            points = ax.scatter(coords[order, 0], coords[order, 1], c=values[order], s=point_size, cmap="viridis",
                                vmin=values[order].min(), vmax=values[order].max(), linewidths=0,
                                rasterized=mdata.n_obs > 5000)
            ax.set_title(title)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("UMAP1")
            ax.set_ylabel("UMAP2")
        for ax in axes.ravel()[len(coordinates):]:
            ax.axis("off")
        label = str(column.name) + (f" ({missing.sum()} NaN in grey)" if missing.any() else "")
        fig.colorbar(points, ax=list(axes.ravel()), shrink=0.6, label=label)
        min_font(fig)
    return finish(fig, None, show=show, save=save)


@fill_doc
def embedding(
    mdata: MuData | AnnData,
    keys: str | Sequence[str],
    *,
    color: str,
    titles: Sequence[str] | None = None,
    point_size: float | None = None,
    ncols: int | None = None,
    panel_size: float = 3.4,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Figure | None:
    """UMAPs of several embeddings side by side, coloured by an ``obs`` column.

    Reads ``obsm['<key>_umap']`` written by ``mx.tl.benchmark_embeddings(..., umap=True)``, or ``obsm[key]``
    itself when it is 2-D (e.g. scanpy's ``'X_umap'``). A numeric column is drawn on one colour scale with a
    colour bar. For a categorical one, colours are
    scanpy's: ``uns['<color>_colors']`` when it holds a colour per category, otherwise scanpy's default palette
    for that many categories (``default_20``, ``default_28``, ``default_102``: every category its own colour
    up to 102), written to ``uns['<color>_colors']`` as scanpy does so that later scanpy plots agree.

    Parameters
    ----------
    mdata
        Object with the UMAP coordinates.
    keys
        Embedding keys (e.g. ``["X_mmae", "X_pca_concat"]``).
    color
        ``obs`` column: categorical (a legend) or numeric (a colour bar).
    titles
        Panel titles (default: the keys).
    point_size
        Marker size in points squared (default: from the number of cells, as scanpy does).
    ncols
        Panels per row (default: up to 3).
    panel_size
        Width and height of one panel in inches.
    %(plot_figure_end)s

    Examples
    --------
    >>> mx.tl.benchmark_embeddings(mdata, keys=["X_mmae", "X_pca_concat"], label_key="cell_type", umap=True)
    >>> mx.pl.embedding(mdata, keys=["X_mmae", "X_pca_concat"], color="cell_type", save="umaps.png")
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    coordinates = {k: _plane(mdata, k) for k in keys}
    if color not in mdata.obs.columns:
        raise KeyError(f"Column {color!r} not found in .obs; available: {list(mdata.obs.columns)}.")
    titles = list(keys) if titles is None else [titles] if isinstance(titles, str) else list(titles)
    if len(titles) != len(keys):
        raise ValueError(f"Got {len(titles)} titles for {len(keys)} embeddings; pass one title per key.")
    column = mdata.obs[color]
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return _continuous(mdata, coordinates, column, titles, point_size=point_size, ncols=ncols,
                           panel_size=panel_size, show=show, save=save)
    values = column.astype("category")
    categories = list(values.cat.categories)
    palette = category_colors(mdata, color)
    codes = values.cat.codes.to_numpy()
    point_size = float(np.clip(6000 / max(mdata.n_obs, 1), 2, 40)) if point_size is None else point_size
    ncols = min(len(keys), 3) if ncols is None else ncols
    nrows = int(np.ceil(len(keys) / ncols))
    used = [cat for c, cat in enumerate(categories) if (codes == c).any()]
    below = len(used) > 20 and ncols > 1  # a long legend goes under a row of panels, beside a single one
    width = panel_size * ncols
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, panel_size * nrows), squeeze=False)
        for ax, key, title in zip(axes.ravel(), keys, titles):
            coords = coordinates[key]
            if (codes < 0).any():
                ax.scatter(coords[codes < 0, 0], coords[codes < 0, 1], s=point_size, color="lightgray",
                           linewidths=0, label="NA")
            for c, cat in enumerate(categories):
                sel = codes == c
                if not sel.any():  # an unused category: no legend entry (its colour stays its own)
                    continue
                ax.scatter(coords[sel, 0], coords[sel, 1], s=point_size, color=palette[c], label=str(cat),
                           linewidths=0, rasterized=mdata.n_obs > 5000)
            ax.set_title(title)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("UMAP1")
            ax.set_ylabel("UMAP2")
        for ax in axes.ravel()[len(keys):]:
            ax.axis("off")
        fig.tight_layout()
        handles, labels = axes.ravel()[0].get_legend_handles_labels()
        if (codes < 0).any():  # NA last, as scanpy lists it
            handles, labels = handles[1:] + handles[:1], labels[1:] + labels[:1]
        if below:
            longest = max(len(str(c)) for c in used)
            per_row = max(1, int(width / (0.45 + 0.075 * min(longest, 32))))
            legend = fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False,
                       ncols=per_row, title=color, columnspacing=0.8, handletextpad=0.2)
        else:
            legend = fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                       ncols=int(np.ceil(len(used) / 20)) if len(used) > 14 else 1, title=color,
                       handletextpad=0.2)
        for handle in legend.legend_handles:
            handle.set_sizes([40])
        min_font(fig)
    return finish(fig, None, show=show, save=save)


def _embedding_colors(n: int) -> list[str]:
    """One distinct colour per embedding: tab10 up to 10, then scanpy's ``default_20`` / ``default_102``."""
    from scanpy.plotting import palettes

    if n <= 10:
        return [to_hex(plt.get_cmap("tab10")(i)) for i in range(n)]
    palette = palettes.default_20 if n <= 20 else palettes.default_102
    return [palette[i % len(palette)] for i in range(n)]
