"""Plots of what :func:`multiomix.tl.fit_crossattomics` and :func:`multiomix.tl.interaction_importance` wrote."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from mudata import MuData


def _finish(fig: Figure, show: bool | None, save: str | None) -> Figure | None:
    if save is not None:
        fig.savefig(save, dpi=150, bbox_inches="tight")
    if show:
        plt.show()
        return None
    return fig


def interaction_importance(
    mdata: MuData,
    *,
    key: str = "crossattomics_interactions",
    value: str = "share",
    kind: str = "heatmap",
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | None = None,
) -> Figure | None:
    """Relevance of every interaction and unimodal branch per class, as a heatmap or grouped bars.

    Parameters
    ----------
    mdata
        MuData with ``uns[key]`` from :func:`multiomix.tl.interaction_importance`.
    key
        Key in ``uns``.
    value
        ``'share'`` (share of the class's total absolute relevance, rows sum to 1) or ``'mean'`` (signed
        mean relevance).
    kind
        ``'heatmap'`` or ``'bar'``.
    figsize
        Figure size.
    show
        Show the figure (returns ``None``).
    save
        Path to save the figure to.

    Returns
    -------
    The figure, unless ``show``.

    Examples
    --------
    >>> mx.tl.interaction_importance(mdata, model)
    >>> mx.pl.interaction_importance(mdata, kind="bar", save="interactions.png")
    """
    if key not in mdata.uns:
        raise KeyError(f"uns[{key!r}] not found; run mx.tl.interaction_importance first.")
    if value not in ("share", "mean"):
        raise ValueError(f"value must be 'share' or 'mean', got {value!r}.")
    table: pd.DataFrame = mdata.uns[key][value]
    label = "share of |relevance|" if value == "share" else "mean LRP relevance"
    if kind == "heatmap":
        fig, ax = plt.subplots(figsize=figsize or (1.2 + 1.1 * table.shape[1], 1.0 + 0.45 * table.shape[0]))
        limit = float(np.nanmax(np.abs(table.to_numpy()))) or 1.0
        cmap, vmin = ("Reds", 0.0) if value == "share" else ("RdBu_r", -limit)
        image = ax.imshow(table.to_numpy(), cmap=cmap, vmin=vmin, vmax=limit, aspect="auto")
        ax.set_xticks(range(table.shape[1]), table.columns, rotation=35, ha="right")
        ax.set_yticks(range(table.shape[0]), table.index)
        for (i, j), v in np.ndenumerate(table.to_numpy()):
            colour = "white" if abs(v) > 0.6 * limit else "black"
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color=colour)
        fig.colorbar(image, ax=ax, label=label, shrink=0.8)
    elif kind == "bar":
        fig, ax = plt.subplots(figsize=figsize or (1.5 + 0.9 * table.shape[0], 3.5))
        table.plot.bar(ax=ax, width=0.8)
        ax.set_ylabel(label)
        ax.axhline(0, color="black", lw=0.6)
        ax.legend(title="interaction / branch", bbox_to_anchor=(1.01, 1), loc="upper left", frameon=False)
        ax.tick_params(axis="x", rotation=0)
    else:
        raise ValueError(f"kind must be 'heatmap' or 'bar', got {kind!r}.")
    ax.set_title("Interaction importance (LRP)")
    fig.tight_layout()
    return _finish(fig, show, save)


def training_history(
    data: AnnData | MuData,
    key: str,
    *,
    metrics: list[str] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | None = None,
) -> Figure | None:
    """Training curves stored by a ``tl.fit_*`` function in ``uns[key]['history']``.

    Parameters
    ----------
    data
        Object with ``uns[key]['history']`` (a DataFrame indexed by epoch).
    key
        The model key (e.g. ``'crossattomics'``).
    metrics
        Columns to draw (default: every loss column, and accuracies on a second axis).
    ax
        Axes to draw into.
    show, save
        Show the figure / save it to a path.

    Returns
    -------
    The figure, unless ``show``.

    Examples
    --------
    >>> mx.pl.training_history(mdata, "crossattomics")
    """
    if key not in data.uns or "history" not in data.uns[key]:
        raise KeyError(f"uns[{key!r}]['history'] not found; fit a model with key_added={key!r} first.")
    history = pd.DataFrame(data.uns[key]["history"])
    metrics = metrics or [c for c in history.columns if "loss" in c]
    fig = ax.figure if ax is not None else plt.subplots(figsize=(5, 3.2))[1].figure
    ax = ax or fig.axes[0]
    for column in metrics:
        ax.plot(history.index, history[column], label=column)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    handles, labels = ax.get_legend_handles_labels()
    accuracies = [c for c in history.columns if "accuracy" in c]
    if accuracies and not any("accuracy" in m for m in metrics):
        twin = ax.twinx()
        colours = {line.get_label().replace("_loss", ""): line.get_color() for line in ax.get_lines()}
        for column in accuracies:
            colour = colours.get(column.replace("_accuracy", ""))
            twin.plot(history.index, history[column], ls="--", color=colour, label=column)
        twin.set_ylabel("accuracy (dashed)")
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False, fontsize=8)
    ax.set_title(f"{key} training")
    fig.tight_layout()
    return _finish(fig, show, save)
