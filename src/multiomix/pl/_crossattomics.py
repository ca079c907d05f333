"""Plots of what :func:`multiomix.tl.fit_crossattomics` and :func:`multiomix.tl.interaction_importance` wrote."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mudata import MuData

from .._docs import fill_doc
from ..tl import get_result
from ._utils import LAPTOP_WIDTH, SMALL_FONT, finish, min_font, new_axes, style

__all__ = ["interaction_importance", "training_history"]


@fill_doc
def interaction_importance(
    mdata: MuData,
    key: str = "crossattomics_interactions",
    *,
    value: str = "share",
    kind: str = "heatmap",
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
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
        Figure size in inches (default: sized to the table).
    %(show_save_figure)s

    Returns
    -------
    ``None`` when shown; otherwise the Figure (it sizes its own figure to the table, so no ``ax``).

    Examples
    --------
    >>> mx.tl.interaction_importance(mdata, model)
    >>> mx.pl.interaction_importance(mdata, kind="bar", save="interactions.png")
    """
    if value not in ("share", "mean"):
        raise ValueError(f"value must be 'share' or 'mean', got {value!r}.")
    if kind not in ("heatmap", "bar"):
        raise ValueError(f"kind must be 'heatmap' or 'bar', got {kind!r}.")
    result = get_result(mdata, key, kind="interaction_importance")
    table = pd.DataFrame(result[value])
    rows_label = str(result.get("params", {}).get("groupby") or table.index.name or "class")  # what tl grouped by
    label = "share of |relevance|" if value == "share" else "mean LRP relevance"
    with style():
        if kind == "heatmap":
            size = (min(LAPTOP_WIDTH, 2.6 + 0.95 * table.shape[1]), 1.6 + 0.42 * table.shape[0])
            fig, ax = plt.subplots(figsize=figsize or size)
            limit = float(np.nanmax(np.abs(table.to_numpy()))) or 1.0
            cmap, vmin = ("Reds", 0.0) if value == "share" else ("RdBu_r", -limit)
            image = ax.imshow(table.to_numpy(), cmap=cmap, vmin=vmin, vmax=limit, aspect="auto")
            ax.set_xticks(range(table.shape[1]), table.columns, rotation=35, ha="right")
            ax.set_yticks(range(table.shape[0]), table.index)
            for (i, j), v in np.ndenumerate(table.to_numpy()):
                colour = "white" if abs(v) > 0.6 * limit else "black"
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=SMALL_FONT, color=colour)
            fig.colorbar(image, ax=ax, label=label, shrink=0.85, pad=0.02)
            ax.set_ylabel(rows_label)
        else:
            size = (min(LAPTOP_WIDTH, 3.4 + 0.25 * table.size), 3.8)
            fig, ax = plt.subplots(figsize=figsize or size)
            table.plot.bar(ax=ax, width=0.8)
            ax.set_ylabel(label)
            ax.axhline(0, color="black", lw=0.6)
            ax.legend(title="interaction / branch", bbox_to_anchor=(1.01, 1), loc="upper left", frameon=False)
            long_names = max((len(str(c)) for c in table.index), default=0) > 8
            ax.set_xticks(range(table.shape[0]), [str(c) for c in table.index], rotation=35 if long_names else 0,
                          ha="right" if long_names else "center")
            ax.set_xlabel(rows_label)
            ax.spines[["top", "right"]].set_visible(False)
        params = result.get("params", {})
        alone = bool(params.get("linear_path_only", False))
        note = "\nthe kept model is its fitted linear path alone" if alone else ""
        ax.set_title(f"Interaction importance (LRP){note}")
        fig.tight_layout()
    min_font(fig)
    return finish(fig, None, show=show, save=save)


@fill_doc
def training_history(
    data: AnnData | MuData,
    key: str,
    *,
    metrics: list[str] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Training curves stored by a ``tl.fit_*`` function in ``uns[key]['history']``.

    Parameters
    ----------
    data
        Object with ``uns[key]['history']`` (a DataFrame indexed by epoch).
    key
        The model key (e.g. ``'crossattomics'``).
    metrics
        Columns to draw (default: every loss column, and accuracies on a second axis). Where the fit recorded the
        epoch whose weights it kept (``uns[key]['best_epoch']``, CrossAttOmics), a dotted line marks it and the
        title names it. CrossAttOmics' validation curves are labelled as rows its fitted linear path saw (it is
        fitted on the training and validation rows), so they read optimistic: the test metrics are the honest
        figure.
    %(ax)s
    %(plot_axes_end)s

    Examples
    --------
    >>> mx.pl.training_history(mdata, "crossattomics", save="history.png")
    """
    if key not in data.uns or not isinstance(data.uns[key], dict) or "history" not in data.uns[key]:
        raise KeyError(f"uns[{key!r}]['history'] not found; fit a model with key_added={key!r} first "
                       "(mx.tl.fit_crossattomics, fit_multimodal_ae, fit_unitednet, ...).")
    entry = get_result(data, key, kind="history")
    history = pd.DataFrame(entry["history"])
    if len(history) == 0:
        raise ValueError(f"uns[{key!r}]['history'] is empty: no epoch was trained (max_epochs=0?).")
    chosen = metrics is not None  # then only these are drawn (no accuracy axis added)
    metrics = [metrics] if isinstance(metrics, str) else metrics or [c for c in history.columns if "loss" in c]
    unknown = [m for m in metrics if m not in history.columns]
    if unknown:
        raise KeyError(f"{unknown} not in the history of uns[{key!r}]; it holds {list(history.columns)}.")
    ax_given = ax is not None
    with style():
        fig, ax = new_axes(ax, (5.6, 3.8))
        seen = _validation_seen(entry)
        _history(ax, history, metrics, key, seen=seen, legend_inside=ax_given, accuracies=not chosen)
        _mark_kept_epoch(ax, entry.get("best_epoch"),
                         before="the fitted linear path alone" if seen else "the weights before training")
        if not ax_given:
            fig.tight_layout()
    min_font(fig, axes=ax.get_shared_x_axes().get_siblings(ax))  # the Axes and its accuracy twin
    return finish(fig, ax, show=show, save=save, ax_given=ax_given, return_fig=return_fig)


def _mark_kept_epoch(ax: Axes, best_epoch, *, before: str = "the weights before training") -> None:
    """Draw a dotted line at the epoch whose weights the fit kept (CrossAttOmics records it; -1: before training)."""
    if best_epoch is None or isinstance(best_epoch, str) or int(best_epoch) < -1:
        return
    best = int(best_epoch)
    if best >= 0:
        ax.axvline(best, color="0.4", ls=":", lw=1)
    ax.set_title(ax.get_title() + (f" (kept: epoch {best})" if best >= 0 else f" (kept: {before})"))


def _validation_seen(entry: dict) -> bool:
    """Whether the fit's linear path was fitted on the validation rows (CrossAttOmics' ``linear_path="fitted"``)."""
    params = entry.get("params", {})
    return isinstance(params, dict) and str(params.get("linear_path", "")) == "fitted"


def _history(ax: Axes, history: pd.DataFrame, metrics: list[str], key: str, *, seen: bool = False,
             legend_inside: bool = False, accuracies: bool = True) -> None:
    """Loss curves (and accuracies, dashed, on a second axis); ``seen``: validation rows also fitted the linear path.

    The legend goes below the axes on a figure of its own, inside them in an Axes the user gave (the panel below
    would cover it).
    """
    for column in metrics:  # each at the epochs it was logged at (validation may run every n epochs)
        values = history[column].dropna()
        ax.plot(values.index, values, label=column, marker="o" if len(values) < len(history) else None, ms=3)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_ylabel("loss")
    handles, labels = ax.get_legend_handles_labels()
    accuracies = [c for c in history.columns if "accuracy" in c] if accuracies else []
    top = ax  # the Axes drawn last (an inside legend goes there, above every curve)
    if accuracies and not any("accuracy" in m for m in metrics):
        twin = top = ax.twinx()
        colours = {line.get_label().replace("_loss", ""): line.get_color() for line in ax.get_lines()}
        spare = (f"C{i}" for i in range(len(colours), len(colours) + len(accuracies)))  # colours no loss has
        for column in accuracies:
            colour = colours.get(column.replace("_accuracy", "")) or next(spare)
            values = history[column].dropna()
            twin.plot(values.index, values, ls="--", color=colour, label=column,
                      marker="o" if len(values) < len(history) else None, ms=3)
        low, high = twin.get_ylim()
        twin.set_ylim(max(low, 0.0), min(high, 1.02))  # an accuracy: no ticks above 1 (or below 0) for flat curves
        twin.set_ylabel("accuracy (dashed)")
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if seen:  # CrossAttOmics' frozen linear path was fitted on these rows too: the curve reads optimistic
        labels = [f"{label} (rows the linear path saw)" if label.startswith("validation") else label
                  for label in labels]
    ncol = 2 if max(map(len, labels), default=0) <= 26 else 1  # long labels in one column stay within the figure
    if legend_inside:
        top.legend(handles, labels, loc="best", ncol=1, frameon=True, framealpha=0.8, fontsize="small")
    else:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False)
    ax.set_title(f"{key} training")
