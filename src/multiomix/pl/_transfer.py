"""Plots of an annotation transfer written by :func:`multiomix.tl.transfer_labels`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from mudata import MuData

from .._utils import keep_torch_threads, label_text
from ._utils import LAPTOP_WIDTH, SMALL_FONT, category_colors, finish, min_font, new_axes, style

__all__ = ["reliability", "transfer", "transfer_embedding"]

_SOURCE_COLORS = {"reference": "#1f77b4", "query": "#ff7f0e"}
_UNKNOWN = "unknown"


def _result(query: MuData | AnnData, key: str) -> dict:
    if key not in query.uns or "temperature" not in query.uns[key]:
        stored = [k for k, v in query.uns.items() if isinstance(v, Mapping) and "temperature" in v]
        run = f"run mx.tl.transfer_labels(reference, query, key_added={key!r}) first"
        hint = f"transfers stored here: {stored} (or {run})" if stored else run
        raise KeyError(f"No annotation transfer under uns[{key!r}]; {hint}.")
    return query.uns[key]


@keep_torch_threads()
def transfer_embedding(query: MuData | AnnData, key: str, *, n_neighbors: int = 15, random_state: int = 0) -> AnnData:
    """Return an AnnData of reference + query cells on the transfer's joint latent, with a UMAP.

    ``obs['source']`` is ``reference`` or ``query``; ``obs['label']`` holds the reference labels and the
    transferred labels (``unknown`` where the query cell is flagged); ``obsm['X_umap']`` the UMAP of the latent.
    Needs the reference latent that :func:`multiomix.tl.transfer_labels` stores with ``store_reference=True``.

    Parameters
    ----------
    query
        The query the transfer wrote to.
    key
        ``key_added`` of the transfer.
    n_neighbors
        Neighbours of the kNN graph the UMAP is computed on.
    random_state
        Seed of the UMAP.

    Returns
    -------
    joint : anndata.AnnData
        Reference and query cells (``obs['source']``, ``obs['label']``, ``obsm['X_umap']``).

    Examples
    --------
    >>> import multiomix as mx
    >>> cite = mx.datasets.bmmc_cite()
    >>> reference, query = cite[cite.obs["batch"] == "s1d1"].copy(), cite[cite.obs["batch"] == "s1d2"].copy()
    >>> mx.tl.transfer_labels(reference, query, label_key="cell_type")
    >>> joint = mx.pl.transfer_embedding(query, "cell_type_transferred")
    >>> sc.pl.umap(joint, color=["source", "label"])  # doctest: +SKIP
    """
    import scanpy as sc

    uns = _result(query, key)
    if "reference_latent" not in uns:
        raise KeyError(f"uns[{key!r}] has no reference latent; run transfer_labels with store_reference=True.")
    ref_latent = np.asarray(uns["reference_latent"], dtype=np.float32)
    latent = np.asarray(query.obsm[f"X_{key}"], dtype=np.float32)
    transferred = query.obs[key].astype(str).to_numpy().astype(object)
    transferred[query.obs[f"{key}_unknown"].to_numpy().astype(bool)] = _UNKNOWN
    labels = np.concatenate([np.asarray(uns["reference_labels"]).astype(str), transferred.astype(str)])
    # the reference's classes in its own order (numeric labels stay in numeric order), then the rest, unknown last
    classes = [str(c) for c in uns.get("classes", [])]
    others = sorted(set(labels) - set(classes) - {_UNKNOWN})
    order = [c for c in classes if c in set(labels)] + others + ([_UNKNOWN] if _UNKNOWN in set(labels) else [])
    obs = pd.DataFrame({"source": pd.Categorical(["reference"] * len(ref_latent) + ["query"] * len(latent),
                                                 categories=["reference", "query"]),
                        "label": pd.Categorical(labels, categories=order)},
                       index=[f"reference-{i}" for i in range(len(ref_latent))] + list(map(str, query.obs_names)))
    joint = AnnData(X=np.vstack([ref_latent, latent]), obs=obs)
    sc.pp.neighbors(joint, n_neighbors=min(n_neighbors, joint.n_obs - 1), use_rep="X", random_state=random_state)
    sc.tl.umap(joint, random_state=random_state)
    return joint


def _scatter_categories(ax: Axes, coords: np.ndarray, values: pd.Series, colors: dict[str, str], size: float) -> None:
    for cat in values.cat.categories:
        sel = (values == cat).to_numpy()
        ax.scatter(coords[sel, 0], coords[sel, 1], s=size, color=colors[cat], label=str(cat), linewidths=0,
                   rasterized=len(coords) > 5000)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP1")
    ax.set_ylabel("UMAP2")


def transfer(
    query: MuData | AnnData,
    key: str,
    *,
    truth_key: str | None = None,
    joint: AnnData | None = None,
    n_neighbors: int = 15,
    random_state: int = 0,
    panel_size: float = 3.6,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Figure | None:
    """Draw reference and query on the joint embedding, and where the transfer disagrees with the query's labels.

    Panels: a UMAP of the reference and query cells on the transfer's latent coloured by source, the same
    coloured by label (reference labels, transferred labels for the query, ``unknown`` in grey where a query
    cell is flagged), and, when the query has labels of its own (``truth_key``), a heatmap of the share of each
    query label (rows) assigned to each transferred label (columns, ``unknown`` last). Colours are scanpy's
    palettes. The UMAP is computed at each call (about 20 s for 10,000 reference + query cells on one thread)
    unless ``joint`` passes one computed once with :func:`transfer_embedding`.

    Parameters
    ----------
    query
        Query written by :func:`multiomix.tl.transfer_labels`.
    key
        Its ``key_added`` (e.g. ``'cell_type_transferred'``).
    truth_key
        Column of ``query.obs`` with labels the query already has (default: the transfer's ``label_key`` when the
        query has that column; none: no heatmap).
    joint
        The output of :func:`transfer_embedding` for this transfer, to reuse its UMAP (default: computed here).
    n_neighbors, random_state
        UMAP neighbours and seed (without ``joint``).
    panel_size
        Height of a panel in inches.
    show
        Show the figure; default: when pyplot's backend is interactive.
    save
        Write the figure to this path (format from its suffix).

    Returns
    -------
    ``None`` when shown; otherwise the Figure.

    Examples
    --------
    >>> import multiomix as mx
    >>> cite = mx.datasets.bmmc_cite()
    >>> reference, query = cite[cite.obs["batch"] == "s1d1"].copy(), cite[cite.obs["batch"] == "s1d2"].copy()
    >>> mx.tl.transfer_labels(reference, query, label_key="cell_type")
    >>> mx.pl.transfer(query, "cell_type_transferred", truth_key="cell_type", save="transfer.png")
    >>> joint = mx.pl.transfer_embedding(query, "cell_type_transferred")  # once, for several plots
    >>> mx.pl.transfer(query, "cell_type_transferred", joint=joint, show=False)
    """
    uns = _result(query, key)
    if truth_key is None:
        label_key = str(uns["params"].get("label_key", ""))
        truth_key = label_key if label_key in query.obs.columns else None
    elif truth_key not in query.obs.columns:
        raise KeyError(f"Column {truth_key!r} not found in query.obs; available: {list(query.obs.columns)}.")
    if joint is None:
        joint = transfer_embedding(query, key, n_neighbors=n_neighbors, random_state=random_state)
    elif ("X_umap" not in joint.obsm or "label" not in joint.obs
          or joint.n_obs != len(uns.get("reference_labels", [])) + query.n_obs):
        raise ValueError(f"`joint` is not this transfer's embedding: pass mx.pl.transfer_embedding(query, {key!r}) "
                         "(reference + query cells, obsm['X_umap']).")
    coords = joint.obsm["X_umap"]
    labels = joint.obs["label"]
    palette = dict(zip(labels.cat.categories, category_colors(joint, "label"), strict=True))
    palette.update(_stored_label_colors(query, str(uns["params"].get("label_key", "")), palette))
    if _UNKNOWN in palette:
        palette[_UNKNOWN] = "#bbbbbb"
    size = float(np.clip(6000 / max(joint.n_obs, 1), 2, 40))
    n_cat = len(labels.cat.categories)
    legend_cols = 1 if n_cat <= 14 else 2 if n_cat <= 32 else 3
    longest = max(len(str(c)) for c in labels.cat.categories)
    legend_width = legend_cols * (0.35 + 0.075 * min(longest, 32))
    heat_rows = 0
    if truth_key is not None:
        heat_rows = query.obs[truth_key].dropna().astype(str).nunique()
    heat_height = max(2.5, 0.17 * heat_rows) if truth_key is not None else 0.0
    width = min(2 * panel_size + legend_width + 0.6, LAPTOP_WIDTH)
    top = max(panel_size, 0.25 * int(np.ceil(n_cat / legend_cols)) + 0.4)  # the legend's column fits in the row
    with style():
        fig = plt.figure(figsize=(width, top + (heat_height + 2.2 if truth_key is not None else 0)))
        grid = fig.add_gridspec(2 if truth_key is not None else 1, 3, width_ratios=[panel_size, panel_size,
                                                                                       legend_width],
                                height_ratios=[top, heat_height + 2.2] if truth_key is not None else None,
                                hspace=0.12, wspace=0.08)
        ax_source, ax_label = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
        _scatter_categories(ax_source, coords, joint.obs["source"], _SOURCE_COLORS, size)
        # the legend stands in for the title, above the points rather than on them
        legend = ax_source.legend(frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                                  ncols=2 if panel_size >= 3 else 1,  # two entries side by side need the width
                                  handletextpad=0.2, borderaxespad=0.2)
        for handle in legend.legend_handles:
            handle.set_sizes([30])
        _scatter_categories(ax_label, coords, labels, palette, size)
        ax_label.set_title("label (query: transferred)")
        ax_label.set_ylabel("")
        legend = ax_label.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncols=legend_cols,
                                 handletextpad=0.2, columnspacing=0.6, borderaxespad=0.0)
        for handle in legend.legend_handles:
            handle.set_sizes([30])
        if truth_key is not None:
            # the heatmap sits under the UMAPs; the space for its rotated column labels is part of its row
            heat = grid[1, :].subgridspec(2, 2, height_ratios=[heat_height, 2.2], width_ratios=[1, 0.03],
                                          hspace=0.0, wspace=0.02)
            ax_heat = fig.add_subplot(heat[0, 0])
            _confusion(ax_heat, query, key, truth_key, cax=fig.add_subplot(heat[0, 1]))
        min_font(fig)
    return finish(fig, None, show=show, save=save)


def _stored_label_colors(query: MuData | AnnData, label_key: str, palette: dict[str, str]) -> dict[str, str]:
    """Return the query's stored label colours (``uns['<label_key>_colors']``, as scanpy writes them) by name.

    Only when they cover every label drawn; else none (the plot's own palette stays, without clashes).
    """
    from matplotlib.colors import is_color_like, to_hex

    column = query.obs[label_key] if label_key in query.obs.columns else None
    stored = query.uns.get(f"{label_key}_colors")
    if column is None or stored is None or not isinstance(column.dtype, pd.CategoricalDtype):
        return {}
    names = [str(c) for c in column.cat.categories]
    stored = [str(c) for c in list(stored)]
    if len(stored) < len(names) or not all(is_color_like(c) for c in stored):
        return {}
    colors = {n: to_hex(c) for n, c in zip(names, stored, strict=False)}
    drawn = [c for c in palette if c != _UNKNOWN]
    return {c: colors[c] for c in drawn} if all(c in colors for c in drawn) else {}


def _confusion(ax: Axes, query: MuData | AnnData, key: str, truth_key: str, *, cax: Axes | None = None) -> None:
    labelled = query.obs[truth_key].notna().to_numpy()  # cells without a label of their own are left out
    truth = label_text(query.obs[truth_key][labelled])
    pred = query.obs[key].astype(str).to_numpy().astype(object)
    pred[query.obs[f"{key}_unknown"].to_numpy().astype(bool)] = _UNKNOWN
    pred = pred[labelled]
    table = pd.crosstab(truth.to_numpy(), pred, normalize="index")
    # a column for every reference label, received or not: the rows below the diagonal block are then exactly
    # the query labels absent from the reference
    classes = [str(c) for c in _result(query, key)["classes"]]
    shared = [r for r in table.index if r in classes]
    rows = shared + [r for r in table.index if r not in shared]
    cols = shared + [c for c in classes if c not in shared]
    cols += sorted(c for c in table.columns if c not in cols and c != _UNKNOWN)
    cols += [_UNKNOWN] if _UNKNOWN in table.columns else []
    table = table.reindex(index=rows, columns=cols, fill_value=0.0)
    image = ax.imshow(table.to_numpy(), aspect="auto", cmap="Reds", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=90)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(f"{key} (transferred)")
    ax.set_ylabel(f"{truth_key} (query)")
    agree = float((truth.to_numpy() == pred).mean())  # as drawn: a cell flagged unknown does not agree
    left_out = f"; {int((~labelled).sum())} cells without a label left out" if not labelled.all() else ""
    ax.set_title(f"share of each query label (agreement {agree:.2f}; unknown cells count as misses{left_out})")
    bar = ax.figure.colorbar(image, cax=cax, ticks=[0, 1]) if cax is not None else ax.figure.colorbar(
        image, ax=ax, fraction=0.04, pad=0.02, ticks=[0, 1])
    bar.set_label("share of row")


def reliability(
    query: MuData | AnnData,
    key: str,
    *,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Reliability diagram of a transfer's confidence on the held-out reference cells, before and after scaling.

    Each point is one confidence bin (10 equal-width bins): mean confidence against accuracy, its area growing
    with the bin's share of the cells (a floor keeps near-empty bins visible); the diagonal is perfect
    calibration. Grey: the probabilities before the final temperature scaling (where the transfer averages the
    model with a kNN vote, that average); colour: after it (the temperature and the expected calibration errors
    are in the legend).
    Where the unknown flag thresholds the confidence (``unknown_score='confidence'``), a dotted vertical line
    marks that threshold.

    Parameters
    ----------
    query
        Query written by :func:`multiomix.tl.transfer_labels`.
    key
        Its ``key_added``.
    ax
        Axes to draw in (default: a new figure).
    show
        Show the figure; default: when pyplot's backend is interactive and no ``ax`` was given.
    save
        Write the figure to this path (format from its suffix).
    return_fig
        Return the Figure instead of the Axes.

    Returns
    -------
    ``None`` when shown; otherwise the Axes, or the Figure with ``return_fig=True``.

    Examples
    --------
    >>> import multiomix as mx
    >>> cite = mx.datasets.bmmc_cite()
    >>> reference, query = cite[cite.obs["batch"] == "s1d1"].copy(), cite[cite.obs["batch"] == "s1d2"].copy()
    >>> mx.tl.transfer_labels(reference, query, label_key="cell_type")
    >>> mx.pl.reliability(query, "cell_type_transferred", save="reliability.png")
    """
    uns = _result(query, key)
    cal = uns["calibration"]
    with style():
        fig, ax_ = new_axes(ax, (4.4, 4.0))
        ax_.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--", label="perfect calibration")
        for table, color, label in (
            (uns["reliability_uncalibrated"], "#999999", f"before scaling (ECE {cal['ece_before']:.3f})"),
            (uns["reliability"], "#d62728", f"T = {uns['temperature']:.2f} (ECE {cal['ece_after']:.3f})"),
        ):
            t = pd.DataFrame(table)
            t = t[t["n"] > 0]
            ax_.plot(t["confidence"], t["accuracy"], color=color, lw=1.2, label=label)
            ax_.scatter(t["confidence"], t["accuracy"], s=12 + 200 * t["n"] / max(t["n"].sum(), 1), color=color,
                        zorder=3, linewidths=0)
        if str(uns.get("unknown_score", "confidence")) == "confidence":  # else the threshold is on the match score
            ax_.axvline(float(uns["unknown_threshold"]), color="#555555", ls=":", lw=1,
                        label=f"unknown below {float(uns['unknown_threshold']):.2f}")
        ax_.set_xlim(-0.03, 1.03)  # bins at 0 or 1 drawn whole
        ax_.set_ylim(-0.03, 1.03)
        ax_.set_xlabel("confidence (mean per bin)")
        ax_.set_ylabel("accuracy")
        ax_.set_title(f"held-out reference cells (n = {int(cal['n_cells'])})")
        ax_.legend(frameon=False, loc="best", fontsize=SMALL_FONT)  # not over the bins of an underconfident model
        min_font(fig, axes=[ax_])  # a given Axes: the user's other panels keep their fonts
    return finish(fig, ax_, show=show, save=save, ax_given=ax is not None, return_fig=return_fig)
