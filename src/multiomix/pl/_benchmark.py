"""Plots of the joint-embedding benchmark written by :func:`multiomix.tl.benchmark_embeddings`."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from mudata import MuData

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


def benchmark(
    mdata: MuData | AnnData,
    *,
    key: str = "embedding_benchmark",
    metrics: Sequence[str] | None = None,
    ax: Axes | None = None,
    save: str | None = None,
) -> Axes:
    """Draw the table in ``uns[key]`` as a grouped bar chart (one group per metric, one bar per embedding).

    Parameters
    ----------
    mdata
        Object on which :func:`multiomix.tl.benchmark_embeddings` was run.
    key
        ``uns`` key of the table.
    metrics
        Metrics to show (default: NMI, ARI, cell-type ASW and, when present, batch ASW and graph connectivity).
    ax
        Axes to draw on (default: a new figure).
    save
        Path to save the figure to.

    Returns
    -------
    The axes.

    Examples
    --------
    >>> mx.tl.benchmark_embeddings(mdata, keys=["X_mmae", "X_pca_concat"], label_key="cell_type")
    >>> mx.pl.benchmark(mdata)
    """
    if key not in mdata.uns:
        raise KeyError(f"uns[{key!r}] not found; run mx.tl.benchmark_embeddings first.")
    table = pd.DataFrame(mdata.uns[key])
    metrics = [m for m in _METRIC_ORDER if m in table.columns] if metrics is None else list(metrics)
    missing = [m for m in metrics if m not in table.columns]
    if missing:
        raise KeyError(f"Metrics {missing} not in uns[{key!r}]; it has {list(table.columns)}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.3 + 1.4 * len(metrics), 3.4))
    n = len(table.index)
    width = 0.8 / max(n, 1)
    x = np.arange(len(metrics))
    colors = plt.get_cmap("tab10")
    for i, name in enumerate(table.index):
        values = table.loc[name, metrics].to_numpy(dtype=float)
        bars = ax.bar(x + (i - (n - 1) / 2) * width, values, width, label=str(name), color=colors(i % 10))
        for bar, value in zip(bars, values):
            if np.isfinite(value):
                ax.text(bar.get_x() + bar.get_width() / 2, value + 0.01, f"{value:.2f}", ha="center", va="bottom",
                        fontsize=7, rotation=90)
    ax.set_xticks(x)
    ax.set_xticklabels([_METRIC_LABELS.get(m, m) for m in metrics])
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("score (higher is better)")
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    if save is not None:
        ax.figure.savefig(save, dpi=150, bbox_inches="tight")
    return ax


def embedding(
    mdata: MuData | AnnData,
    *,
    keys: Sequence[str],
    color: str,
    titles: Sequence[str] | None = None,
    point_size: float = 8.0,
    ncols: int | None = None,
    save: str | None = None,
) -> Figure:
    """UMAPs of several embeddings side by side, coloured by an ``obs`` column.

    Reads ``obsm['<key>_umap']`` written by ``mx.tl.benchmark_embeddings(..., umap=True)``.

    Parameters
    ----------
    mdata
        Object with the UMAP coordinates.
    keys
        Embedding keys (e.g. ``["X_mmae", "X_pca_concat"]``).
    color
        Categorical ``obs`` column.
    titles
        Panel titles (default: the keys).
    point_size
        Marker size.
    ncols
        Panels per row (default: all in one row).
    save
        Path to save the figure to.

    Returns
    -------
    The figure.

    Examples
    --------
    >>> mx.tl.benchmark_embeddings(mdata, keys=["X_mmae", "X_pca_concat"], label_key="cell_type", umap=True)
    >>> mx.pl.embedding(mdata, keys=["X_mmae", "X_pca_concat"], color="cell_type")
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    missing = [f"{k}_umap" for k in keys if f"{k}_umap" not in mdata.obsm]
    if missing:
        raise KeyError(f"{missing} not found in .obsm; run mx.tl.benchmark_embeddings(..., umap=True) first.")
    if color not in mdata.obs.columns:
        raise KeyError(f"Column {color!r} not found in .obs; available: {list(mdata.obs.columns)}.")
    titles = list(keys) if titles is None else list(titles)
    values = mdata.obs[color].astype("category")
    categories = list(values.cat.categories)
    cmap = plt.get_cmap("tab20" if len(categories) > 10 else "tab10")
    codes = values.cat.codes.to_numpy()
    ncols = len(keys) if ncols is None else ncols
    nrows = int(np.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols + 2.5, 4.0 * nrows), squeeze=False)
    for ax, key, title in zip(axes.ravel(), keys, titles):
        coords = np.asarray(mdata.obsm[f"{key}_umap"])
        for c, cat in enumerate(categories):
            sel = codes == c
            ax.scatter(coords[sel, 0], coords[sel, 1], s=point_size, color=cmap(c % cmap.N), label=str(cat),
                       linewidths=0)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("UMAP1")
        ax.set_ylabel("UMAP2")
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=7,
               markerscale=2, title=color)
    fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=150, bbox_inches="tight")
    return fig
