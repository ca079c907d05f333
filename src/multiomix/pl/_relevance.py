"""Plots of :func:`multiomix.tl.feature_relevance` results (they only read ``mdata.uns[key]``).

The dot plot and the heatmap are drawn by scanpy's ``scanpy.pl.DotPlot`` and ``scanpy.pl.MatrixPlot``
(given the relevance as their colour / size tables), so they look and behave like ``sc.pl.dotplot`` and
``sc.pl.matrixplot``. Every relevance plot checks the results' ``health`` (when ``feature_relevance`` stored it)
and warns, in a ``UserWarning`` and in red under the title, when the shown results should not be trusted.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator
from mudata import MuData

from .._docs import fill_doc
from .._logging import logger
from .._settings import settings
from ..tl import get_result, rank_relevant_features
from ..tl._relevance import check_n_top
from ..tl._results import _group_key, _group_name
from ._utils import (
    FONT_SIZE,
    LAPTOP_WIDTH,
    SMALL_FONT,
    finish,
    fit_figure,
    health_note,
    min_font,
    new_axes,
    style,
)

__all__ = ["relevance_dotplot", "relevance_heatmap", "relevance_network"]

#: Groups with fewer cells than this are flagged: their mean relevance rests on too few cells.
MIN_CELLS = 10
#: Relative additivity errors above this are flagged: the attributions do not add up to the explained change.
MAX_ADDITIVITY_ERROR = 0.2
_LABEL_CHARS = 22  # group names above the columns are shortened to this many characters


# ----------------------------------------------------------------------------------------------------- reading
def _entry(mdata: MuData, key: str) -> dict:
    return get_result(mdata, key, kind="relevance")


def _all_groups(entry: dict) -> list[str]:
    return [str(g) for g in np.atleast_1d(entry["params"]["groups"])]


def _n_cells(entry: dict, *, health_only: bool = False) -> pd.Series | None:
    """Cells per group (index: group name), from ``health`` or else (unless ``health_only``) the summary."""
    health = entry.get("health")
    source = health.get("n_cells") if isinstance(health, dict) else None
    if source is None and not health_only and isinstance(entry.get("summary"), pd.DataFrame):
        source = entry["summary"].get("n_cells")
    if source is None:
        return None
    series = source.iloc[:, 0] if isinstance(source, pd.DataFrame) else pd.Series(source)
    names = _all_groups(entry)
    if not isinstance(series.index[0] if len(series) else "", str) and len(series) == len(names):
        series.index = names  # stored without names (e.g. as an array): in the order of the groups
    series.index = series.index.astype(str)
    keys = entry.get("params", {}).get("group_keys")
    if keys is not None:  # stored under the groups' keys: back to their names
        series = series.rename(index=dict(zip(map(str, np.atleast_1d(keys)), names)))
    return series.astype(float)


def _cells_of(counts: pd.Series | None, group: str) -> float | None:
    if counts is None:
        return None
    for name in (group, group.replace("/", "_")):  # the second: results stored without their keys
        if name in counts.index:
            return float(counts[name])
    return None


def _select_groups(mdata: MuData, key: str, entry: dict, groups: str | Sequence[str] | None,
                   max_groups: int | None) -> list[str]:
    """Return the groups to show: the given ones (checked), else all, or the ``max_groups`` with most cells."""
    names = _all_groups(entry)
    if groups is not None:
        chosen = [groups] if isinstance(groups, str) or np.isscalar(groups) else list(groups)
        # each as the name it is stored under (a float 1.0 of a float label column is group '1'); a KeyError
        # listing the groups when one is unknown
        return [_group_name(entry, _group_key(entry, g)) for g in chosen]
    if max_groups is None or len(names) <= max_groups:
        return names
    counts = _n_cells(entry)
    if counts is None:
        keep = set(names[:max_groups])
    else:
        size = pd.Series([_cells_of(counts, g) or 0.0 for g in names], index=names)
        keep = set(size.sort_values(ascending=False, kind="stable").index[:max_groups])
    logger.info(f"showing the {max_groups} groups with most cells of {len(names)}; pass `groups=` to choose others")
    return [g for g in names if g in keep]


def _top_features(mdata, key, groups, n_top, modality) -> tuple[list[str], dict[str, list[str]]]:
    """Union of each group's top features (in group order) and the features each group adds to it."""
    features: list[str] = []
    added: dict[str, list[str]] = {}
    for g in groups:
        top = rank_relevant_features(mdata, key, g, n_top, modality=modality)["feature"].tolist()
        new = [f for f in top if f not in features]
        if new:
            added[g] = new
        features += new
    return features, added


def _matrix(mdata: MuData, key: str, entry: dict, group: str, scale: str | None) -> tuple[pd.DataFrame, str]:
    """Return a group's target x source matrix, in target units or divided by each target's SD."""
    mat = get_result(mdata, key, group=group)["matrix"]
    if scale is None:
        return mat, "mean |relevance|"
    if scale != "target_std":
        raise ValueError(f"`scale` must be 'target_std' or None, got {scale!r}.")
    std = entry["target_std"]["std"].reindex(mat.index).to_numpy(float)
    return mat / np.maximum(std, 1e-12)[:, None], "mean |relevance| / target SD"


# ------------------------------------------------------------------------------------------------------ health
def _health(entry: dict, groups: Sequence[str]) -> str:
    """Warn about the shown results when ``entry['health']`` says they are weak; return the figure's note."""
    health = entry.get("health")
    if not isinstance(health, dict):
        return ""
    notes, messages = [], []
    counts = _n_cells(entry, health_only=True)
    if counts is not None:
        tiny = [g for g in groups if (n := _cells_of(counts, g)) is not None and n < MIN_CELLS]
        if tiny:
            shown = ", ".join(f"{g} ({int(_cells_of(counts, g))})" for g in tiny[:5])
            shown += " ..." if len(tiny) > 5 else ""
            messages.append(
                f"{len(tiny)} shown group(s) have fewer than {MIN_CELLS} cells: {shown}. Their mean relevance rests "
                "on too few cells to be trusted; leave them out (`groups=`) or pool cell types.")
            notes.append(f"{len(tiny)} group(s) < {MIN_CELLS} cells")
    error = health.get("additivity_error")
    if error is not None and np.isfinite(float(error)) and float(error) > MAX_ADDITIVITY_ERROR:
        messages.append(
            f"The relative additivity error is {float(error):.2f} (> {MAX_ADDITIVITY_ERROR}): the attributions do not "
            "add up to the explained change of the output, so the rankings are approximate; recompute with more "
            "`n_samples` in mx.tl.feature_relevance.")
        notes.append(f"additivity error {float(error):.2f}")
    if bool(health.get("linear_path", False)):
        messages.append(
            "The explained path is linear: its relevance is the same weights applied in every group, so it is not "
            "specific to a cell type (differences between groups only reflect their input values).")
        notes.append("linear path, not type-specific")
    if messages and settings.effective_verbosity() >= 1:  # verbosity 0: errors only
        warnings.warn("Relevance health: " + " ".join(messages), UserWarning, stacklevel=3)
    return health_note(notes)


# -------------------------------------------------------------------------------------------- scanpy drawings
def _holder(groups: list[str], features: list[str], groupby: str) -> ad.AnnData:
    """Build a one-cell-per-group AnnData with the names scanpy's plot classes need (values come as tables)."""
    index = [f"g{i}" for i in range(len(groups))]
    obs = pd.DataFrame({groupby: pd.Categorical(groups, categories=groups)}, index=index)
    return ad.AnnData(np.zeros((len(groups), len(features)), dtype=np.float32), obs=obs,
                      var=pd.DataFrame(index=pd.Index(features, dtype=str)))


def _short(name: str) -> str:
    return name if len(name) <= _LABEL_CHARS else name[: _LABEL_CHARS - 1] + "…"


def _short_labels(groups) -> list[str]:
    """Shortened group names, made unique: names that share their first characters keep their ends apart.

    Examples
    --------
    >>> _short_labels(["CD4-positive, alpha-beta memory T cell", "CD4-positive, alpha-beta T cell", "B"])
    ['CD4-positive,…y T cell', 'CD4-positive,…a T cell', 'B']
    """
    names = [str(g) for g in groups]
    short = [_short(n) for n in names]
    for label in set(short):
        clash = [i for i, other in enumerate(short) if other == label]
        if len(clash) < 2:
            continue
        for i in clash:  # the head and the shortest tail that no other name in the clash ends with
            tail = next((t for t in range(6, len(names[i]) + 1)
                         if all(names[j][-t:] != names[i][-t:] for j in clash if j != i)), len(names[i]))
            head = max(_LABEL_CHARS - 1 - tail, 4)
            short[i] = names[i] if len(names[i]) <= head + tail + 1 else f"{names[i][:head]}…{names[i][-tail:]}"
    if len(set(short)) < len(short):  # still alike: number them
        short = [f"{s} ({i + 1})" if short.count(s) > 1 else s for i, s in enumerate(short)]
    return short


def _column_width(n_columns: int, label_chars: int, smallest: float) -> float:
    """Inches per column: as wide as scanpy's 0.37 when there is room, never below ``smallest`` (9-pt labels)."""
    legends, labels = 1.8, 0.075 * min(label_chars, 40) + 0.3
    room = (LAPTOP_WIDTH - legends - labels) / max(n_columns, 1)
    return float(np.clip(room, smallest, 0.37))


def _scanpy_plot(cls, holder, var_names, groupby, groups, ax, *, width, height, **kwargs):
    plot = cls(holder, var_names, groupby, categories_order=groups, ax=ax, **kwargs)
    plot.DEFAULT_CATEGORY_WIDTH = width
    plot.DEFAULT_CATEGORY_HEIGHT = height
    if isinstance(var_names, dict):
        plot.var_group_rotation = 90 if max(len(k) for k in var_names) > 3 else 0
    return plot


def _nice(value: float) -> float:
    """Round ``value`` down to one significant digit (a colour-bar tick inside the range)."""
    if not np.isfinite(value) or value <= 0:
        return 0.0
    unit = 10 ** np.floor(np.log10(value))
    return float(np.floor(value / unit) * unit)


def colorbar_ticks(axis, vmin: float, vmax: float) -> None:
    """Few, short tick labels on a colour bar: ``-t, 0, t`` on a symmetric scale, else at most 3 ticks."""
    if np.isclose(vmin, -vmax) and vmax > 0:
        t = _nice(vmax)
        axis.set_ticks([-t, 0.0, t], [f"{-t:g}", "0", f"{t:g}"])
    else:
        # very small or large values share one exponent, written once under the bar: '1e-05' labels overlap
        top = max(abs(vmin), abs(vmax))
        exponent = int(np.floor(np.log10(top))) if top > 0 else 0
        scale = 10.0**exponent if not -3 < exponent < 4 else 1.0
        axis.set_major_locator(MaxNLocator(nbins=2, min_n_ticks=2))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / scale:.3g}"))
        if scale != 1.0:  # the exponent joins the bar's label (it replaced it)
            label = axis.get_label_text()
            axis.set_label_text(f"{label} (x 1e{exponent})" if label else f"x 1e{exponent}", fontsize=SMALL_FONT)


def _render(plot, ax: Axes | None, title: str, note: str, limits: tuple[float, float]) -> tuple[Figure, Axes]:
    # scanpy writes tick labels and legend titles "small" (0.83 x font.size): 10.8 pt makes that 9 pt
    with style(), plt.rc_context({"font.size": SMALL_FONT / 0.833}):
        plot.make_figure()
    if "color_legend_ax" in plot.ax_dict:
        colorbar_ticks(plot.ax_dict["color_legend_ax"].xaxis, *limits)
    for text in getattr(plot.ax_dict.get("gene_group_ax"), "texts", []):
        text.set_fontsize(SMALL_FONT)  # group labels over one-column brackets stay apart (a 9-pt line < a column)
    main = plot.ax_dict["mainplot_ax"]
    fig = main.figure
    min_font(fig, axes=None if ax is None else list(plot.ax_dict.values()))
    if ax is None:
        for other in fig.axes:  # scanpy's empty full-height holders would keep blank space in the figure
            if all(other is not a for a in plot.ax_dict.values()):
                other.set_visible(False)
        fit_figure(fig, title=title, note=note)
    else:
        # in the user's Axes: the title goes above the group labels over the brackets, however long they are
        y = 1.0
        labels = getattr(plot.ax_dict.get("gene_group_ax"), "texts", [])
        if labels:
            renderer = fig.canvas.get_renderer()
            top = max(t.get_window_extent(renderer).y1 for t in labels)
            y = max(1.0, float(main.transAxes.inverted().transform((0.0, top))[1]))
        main.set_title(title + (f"\n{note}" if note else ""), fontsize=FONT_SIZE, loc="left", y=y, pad=6)
    return fig, main


# ------------------------------------------------------------------------------------------------ the plots
@fill_doc
def relevance_heatmap(
    mdata: MuData,
    key: str = "relevance",
    group: str | None = None,
    *,
    groups: str | Sequence[str] | None = None,
    n_top: int | None = None,
    max_groups: int | None = 12,
    modality: str | None = None,
    standard_scale: str | None = "auto",
    scale: str | None = "target_std",
    cmap: str = "viridis",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Heatmap of mean absolute relevance: groups x their top features, or one group's target x source matrix.

    Drawn by ``scanpy.pl.MatrixPlot``: rows are groups (cell types), columns each group's ``n_top`` most
    relevant features, bracketed and labelled by the group that selected them (a feature already selected by
    an earlier group is not repeated). With ``group`` (cross-modal results), rows are that group's ``n_top``
    target features and columns their ``n_top`` source features.

    %(relevance_health)s

    Parameters
    ----------
    %(relevance_mdata_key)s
    group
        Cross-modal results: show this group's matrix.
    %(relevance_groups)s
    n_top
        Top features per group (default 5), or targets and sources of ``group`` (default 10).
    %(relevance_max_groups_modality)s
    standard_scale
        ``"var"`` scales each column to [0, 1] (as in scanpy); ``None`` shows raw values; ``"auto"``: ``"var"``
        for groups x features (``None`` when one group is shown), ``None`` for a cross-modal matrix.
    scale
        With ``group``: ``"target_std"`` divides each target feature's row by its standard deviation (targets
        of different units become comparable); ``None`` keeps target units.
    cmap
        Colormap.
    ax
        Axes to draw in (its area holds the heatmap, brackets and colour bar); default a new figure sized to
        the table, at most ``mx.pl.LAPTOP_WIDTH`` (10.5) inches wide for the default numbers of groups
        and features.
    %(show_save_return)s

    Returns
    -------
    ``None`` when shown; otherwise the Axes of the heatmap, or the Figure with ``return_fig=True``.

    Examples
    --------
    >>> mx.pl.relevance_heatmap(mdata, "relevance", n_top=3, modality="rna")
    >>> mx.pl.relevance_heatmap(mdata, "relevance_rna_to_morph", group="Sst-MET-1", save="matrix.png")
    """
    check_n_top(n_top)
    entry = _entry(mdata, key)
    params = entry["params"]
    auto_scale = standard_scale == "auto"
    if auto_scale:
        standard_scale = None if group is not None else "var"
    if standard_scale not in ("var", None):
        raise ValueError(f"`standard_scale` must be 'var', 'auto' or None, got {standard_scale!r}.")
    if group is not None:
        if "matrices" not in entry:
            raise ValueError(f"`group=` shows a cross-modal matrix, but uns[{key!r}] holds group relevance; "
                             "leave `group` out to show groups x features.")
        group = _group_name(entry, _group_key(entry, group))  # as stored: 2.0 of a float label column is '2'
        mat, label = _matrix(mdata, key, entry, group, scale)
        n_top = 10 if n_top is None else n_top
        rows = mat.sum(1).nlargest(n_top).index
        cols = mat.loc[rows].sum(0).nlargest(n_top).index
        data = mat.loc[rows, cols].astype(float)
        data.index, data.columns = data.index.astype(str), data.columns.astype(str)
        title = f"{group}: {params['source']} → {params['target']} relevance"
        row_name, var_names = f"target ({params['target']})", list(data.columns)
        shown = [group]
    else:
        n_top = 5 if n_top is None else n_top
        shown = _select_groups(mdata, key, entry, groups, max_groups)
        features, added = _top_features(mdata, key, shown, n_top, modality)
        data = pd.DataFrame({g: get_result(mdata, key, group=g)["features"].loc[features, "mean_abs"]
                             for g in shown}).T.astype(float)
        label = "mean |relevance|"
        title = f"Top {n_top} features per {params['groupby']} (mean |relevance|, {params['kind']})"
        row_name, var_names = str(params["groupby"]), dict(zip(_short_labels(added), added.values()))
    if auto_scale and len(data) == 1:  # one row scaled per column would be all ones
        standard_scale = None
    if standard_scale == "var":
        low = data.min(0)  # as scanpy's standard_scale="var": each column from its minimum (0) to its maximum (1)
        data = (data - low) / np.maximum(data.max(0) - low, 1e-12)
        label += "\n(scaled per column)"
    note = _health(entry, shown)
    holder = _holder(list(data.index), list(data.columns), row_name)
    labels = max(len(str(r)) for r in data.index)
    plot = _scanpy_plot(sc.pl.MatrixPlot, holder, var_names, row_name, list(data.index), ax,
                        width=_column_width(data.shape[1], labels, 0.17), height=0.3, values_df=data)
    plot.style(cmap=cmap, edge_color="none").legend(title=label.replace(" / ", "\n/ "))
    fig, main = _render(plot, ax, title, note, (float(np.nanmin(data.to_numpy())), float(np.nanmax(data.to_numpy()))))
    if group is not None:
        main.set_xlabel(f"source feature ({params['source']})")
        main.set_ylabel(f"target feature ({params['target']})")
    return finish(fig, main, show=show, save=save, ax_given=ax is not None, return_fig=return_fig)


@fill_doc
def relevance_dotplot(
    mdata: MuData,
    key: str = "relevance",
    *,
    groups: str | Sequence[str] | None = None,
    n_top: int = 3,
    max_groups: int | None = 12,
    modality: str | None = None,
    cmap: str = "RdBu_r",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Dot plot of each group's top features: size = mean absolute relevance, colour = signed mean.

    Drawn by ``scanpy.pl.DotPlot`` (the look of ``sc.pl.rank_genes_groups_dotplot``): rows are groups
    (cell types), columns each group's ``n_top`` most relevant features, bracketed and labelled by the group that
    selected them (a feature already selected by an earlier group is not repeated). Dot sizes are scaled per
    feature (column) to its largest mean absolute relevance across the shown groups; colours show the signed
    mean relevance on a symmetric scale (red: the feature's values in the group raise the explained output).

    %(relevance_health)s

    Parameters
    ----------
    %(relevance_mdata_key)s
    %(relevance_groups)s
    n_top
        Top features per group.
    %(relevance_max_groups_modality)s
    cmap
        Diverging colormap of the signed mean.
    ax
        Axes to draw in (its area holds the dots, brackets and legends); default a new figure sized to the
        table, at most ``mx.pl.LAPTOP_WIDTH`` (10.5) inches wide for the default numbers of groups and
        features.
    %(show_save_return)s

    Returns
    -------
    ``None`` when shown; otherwise the Axes of the dots, or the Figure with ``return_fig=True``.

    Examples
    --------
    >>> mx.pl.relevance_dotplot(mdata, "relevance", n_top=2, modality="rna")
    >>> mx.pl.relevance_dotplot(mdata, groups=["Sst-MET-1", "Pvalb-MET-2"], save="dotplot.png")
    """
    check_n_top(n_top)
    entry = _entry(mdata, key)
    params = entry["params"]
    shown = _select_groups(mdata, key, entry, groups, max_groups)
    features, added = _top_features(mdata, key, shown, n_top, modality)
    frames = [get_result(mdata, key, group=g)["features"].loc[features] for g in shown]
    size = pd.DataFrame([f["mean_abs"].to_numpy(float) for f in frames], index=shown, columns=features)
    color = pd.DataFrame([f["mean"].to_numpy(float) for f in frames], index=shown, columns=features)
    size = size / np.maximum(size.max(0), 1e-12)
    note = _health(entry, shown)
    groupby = str(params["groupby"])
    vmax = float(np.nanmax(np.abs(color.to_numpy()))) or 1.0
    holder = _holder(shown, features, groupby)
    var_names = dict(zip(_short_labels(added), added.values()))
    labels = max(len(g) for g in shown)
    plot = _scanpy_plot(sc.pl.DotPlot, holder, var_names, groupby, shown, ax,
                        width=_column_width(len(features), labels, 0.2), height=0.32,
                        dot_color_df=color, dot_size_df=size, vmin=-vmax, vmax=vmax)
    plot.style(cmap=cmap, dot_max=1.0, dot_min=0.0, largest_dot=160, dot_edge_color="0.35", dot_edge_lw=0.4)
    plot.legend(size_title="|relevance| / column\nmax (%)", colorbar_title="signed mean\nrelevance", width=1.7)
    title = f"Top {n_top} features per {groupby} ({params['kind']} relevance)"
    fig, main = _render(plot, ax, title, note, (-vmax, vmax))
    return finish(fig, main, show=show, save=save, ax_given=ax is not None, return_fig=return_fig)


def _draw_bipartite(ax: Axes, links: pd.DataFrame, left: list[str], right: list[str], *, color_values: pd.Series,
                    norm, width_from: float, cmap, left_color: str, right_color: str) -> None:
    """Links between two columns of labelled nodes; line width and alpha grow from ``width_from`` to the max."""
    yl = {s: 1 - i / max(len(left) - 1, 1) for i, s in enumerate(left)}
    yr = {t: 1 - i / max(len(right) - 1, 1) for i, t in enumerate(right)}
    vmax = float(links["value"].max())
    span = vmax - width_from if vmax > width_from else 1.0
    colormap = plt.get_cmap(cmap)
    for row in links.assign(c=color_values).sort_values("value").itertuples():
        w = float(np.clip((row.value - width_from) / span, 0, 1))
        ax.plot([0, 1], [yl[row.left], yr[row.right]], color=colormap(norm(row.c)), lw=0.6 + 3.4 * w,
                alpha=0.7 + 0.3 * w, solid_capstyle="round")
    ax.scatter([0] * len(yl), list(yl.values()), s=36, c=left_color, zorder=3, edgecolors="white", linewidths=0.5)
    ax.scatter([1] * len(yr), list(yr.values()), s=36, c=right_color, zorder=3, edgecolors="white", linewidths=0.5)
    for s, y in yl.items():
        ax.text(-0.04, y, s, ha="right", va="center", fontsize=SMALL_FONT)
    for t, y in yr.items():
        ax.text(1.04, y, t, ha="left", va="center", fontsize=SMALL_FONT)
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.06, 1.06)
    ax.axis("off")


@fill_doc
def relevance_network(
    mdata: MuData,
    key: str = "relevance",
    group: str | None = None,
    *,
    groups: str | Sequence[str] | None = None,
    n_top: int | None = None,
    max_groups: int | None = 12,
    modality: str | None = None,
    scale: str | None = "target_std",
    cmap: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Strongest relevance links as a bipartite network: source -> target features, or groups -> features.

    Cross-modal results (``kind="cross_modal"``) and a ``group``: the ``n_top`` strongest source feature ->
    target feature links of that group (default 20), coloured and sized by relevance. Group results
    (``kind="group"``, no ``group``): each shown group linked to its ``n_top`` most relevant features (default
    3), sized by mean absolute relevance and coloured by the signed mean, so features shared by several cell
    types stand out.

    %(relevance_health)s

    Parameters
    ----------
    mdata
        MuData with :func:`multiomix.tl.feature_relevance` results.
    key
        Key in ``mdata.uns`` (e.g. ``"relevance_rna_to_morph"``).
    group
        Cross-modal results: the group (cell type) whose matrix is drawn (required for them; not used with
        group results).
    groups
        Group results: groups to show; default: all, or the ``max_groups`` with most cells.
    n_top
        Cross-modal: links drawn (default 20). Group results: features per group (default 3).
    max_groups
        Group results: most groups shown when ``groups`` is not given (``None``: all).
    modality
        Group results: only features of this modality.
    scale
        Cross-modal: ``"target_std"`` ranks links by relevance divided by the target feature's standard
        deviation (targets of different units become comparable); ``None`` uses target units.
    cmap
        Colormap of the links (default ``"viridis"`` for link strength, ``"coolwarm"`` for the signed mean).
    ax
        Axes to draw in; default a new figure.
    %(plot_axes_end)s

    Raises
    ------
    ValueError
        For group results with a ``group``, or cross-modal results without one: a network of one group needs
        feature-to-feature (cross-modal) relevance.

    Examples
    --------
    >>> mx.pl.relevance_network(mdata, "relevance_rna_to_morph", "Sst-MET-1", n_top=15)
    >>> mx.pl.relevance_network(mdata, "relevance", modality="rna")
    """
    check_n_top(n_top)
    entry = _entry(mdata, key)
    params = entry["params"]
    cross = "matrices" in entry
    if cross and group is None:
        raise ValueError(f"uns[{key!r}] holds cross-modal relevance: pass `group=` (one of {_all_groups(entry)}) to "
                         "draw that group's source -> target feature links.")
    if not cross and group is not None:
        raise ValueError(
            f"A network of one group links source features to target features, which needs cross-modal results "
            f"(mx.tl.feature_relevance(mdata, model, groupby=..., kind='cross_modal', source=..., target=...)); "
            f"uns[{key!r}] holds group relevance (one value per feature and group). Leave `group` out to link each "
            "group to its top features, or use relevance_dotplot / relevance_heatmap.")
    if cross:
        n_top = 20 if n_top is None else n_top
        group = _group_name(entry, _group_key(entry, group))  # as stored: 2.0 of a float label column is '2'
        mat, label = _matrix(mdata, key, entry, group, scale)
        links = mat.stack().rename("value").reset_index()
        links.columns = ["right", "left", "value"]
        links = links.nlargest(n_top, "value").reset_index(drop=True)
        left = links.groupby("left")["value"].sum().sort_values(ascending=False).index.astype(str).tolist()
        right = links.groupby("right")["value"].sum().sort_values(ascending=False).index.astype(str).tolist()
        links[["left", "right"]] = links[["left", "right"]].astype(str)
        lo = float(links["value"].min()) if len(links) > 1 and links["value"].min() < links["value"].max() else 0.0
        norm = plt.Normalize(lo, float(links["value"].max()) or 1.0)
        color_values, cmap, width_from = links["value"], cmap or "viridis", lo
        title = f"{group}: top {len(links)} links {params['source']} → {params['target']}"
        heads = (f"source ({params['source']})", f"target ({params['target']})")
        shown = [group]
    else:
        n_top = 3 if n_top is None else n_top
        shown = _select_groups(mdata, key, entry, groups, max_groups)
        rows = []
        for g in shown:
            top = rank_relevant_features(mdata, key, g, n_top, modality=modality)
            rows += [{"left": g, "right": f, "value": a, "mean": m}
                     for f, a, m in zip(top["feature"], top["mean_abs"], top["mean"])]
        links = pd.DataFrame(rows)
        left = shown
        right = list(dict.fromkeys(links["right"]))
        vmax = float(np.abs(links["mean"]).max()) or 1.0
        norm = plt.Normalize(-vmax, vmax)
        color_values, cmap, label, width_from = links["mean"], cmap or "coolwarm", "signed mean relevance", 0.0
        title = f"Top {n_top} features per {params['groupby']} ({params['kind']} relevance)"
        heads = (str(params["groupby"]), "feature")
    note = _health(entry, shown)
    longest = max(len(s) for s in left + right)
    height = max(0.2 * max(len(left), len(right)) + 1.2, 3.0)  # taller than a screen rather than overlapping
    with style():
        fig, ax_ = new_axes(ax, (min(LAPTOP_WIDTH, 4.0 + 0.1 * longest), height))
        _draw_bipartite(ax_, links, left, right, color_values=color_values, norm=norm, width_from=width_from, cmap=cmap,
                        left_color="#1f77b4", right_color="#ff7f0e")
        ax_.text(0, 1.06, heads[0], ha="center", va="bottom", fontsize=FONT_SIZE, fontweight="bold")
        ax_.text(1, 1.06, heads[1], ha="center", va="bottom", fontsize=FONT_SIZE, fontweight="bold")
        sm = plt.cm.ScalarMappable(cmap=plt.get_cmap(cmap), norm=norm)
        bar = fig.colorbar(sm, ax=ax_, orientation="horizontal", fraction=0.04, pad=0.03, aspect=30, shrink=0.6)
        bar.set_label(label, fontsize=SMALL_FONT)
        colorbar_ticks(bar.ax.xaxis, norm.vmin, norm.vmax)
        bar.ax.tick_params(labelsize=SMALL_FONT)
    if ax is None:
        fit_figure(fig, title=title, note=note)
    else:
        ax_.set_title(title + (f"\n{note}" if note else ""), fontsize=FONT_SIZE, pad=24)
    return finish(fig, ax_, show=show, save=save, ax_given=ax is not None, return_fig=return_fig)
