"""Plots of :func:`multiomix.tl.feature_relevance` results (they only read ``mdata.uns[key]``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from mudata import MuData

from ..tl._relevance import _entry, _group_key, rank_relevant_features

__all__ = ["relevance_dotplot", "relevance_heatmap", "relevance_network"]


def _groups(entry: dict, groups: str | Sequence[str] | None) -> list[str]:
    names = [str(g) for g in np.atleast_1d(entry["params"]["groups"])]
    if groups is None:
        return names
    groups = [groups] if isinstance(groups, str) else [str(g) for g in groups]
    for g in groups:
        _group_key(entry, g)
    return groups


def _top_features(mdata, key, groups, n_top, modality) -> tuple[list[str], list[tuple[str, int, int]]]:
    """Union of each group's top features (in group order) and the (group, start, stop) column spans."""
    features, spans = [], []
    for g in groups:
        top = rank_relevant_features(mdata, key, g, n_top, modality=modality)["feature"].tolist()
        new = [f for f in top if f not in features]
        if new:
            spans.append((g, len(features), len(features) + len(new)))
        features += new
    return features, spans


def _matrix(entry: dict, group: str, scale: str | None) -> tuple[pd.DataFrame, str]:
    """Return a group's target x source matrix, in target units or divided by each target's SD."""
    mat = entry["matrices"][_group_key(entry, group)]
    if scale is None:
        return mat, "mean |relevance|"
    if scale != "target_std":
        raise ValueError(f"`scale` must be 'target_std' or None, got {scale!r}.")
    std = entry["target_std"]["std"].reindex(mat.index).to_numpy(float)
    return mat / np.maximum(std, 1e-12)[:, None], "mean |relevance| / target SD"


def _finish(ax: Axes, save: str | Path | None) -> Axes:
    if save is not None:
        ax.figure.savefig(save, dpi=150, bbox_inches="tight")
    return ax


def _pad(spans: list[tuple[str, int, int]]) -> float:
    """Title padding that clears the rotated group labels of :func:`_brackets`."""
    if not spans or len(spans) > 40:
        return 6
    return 22 + 4.5 * max(len(str(g)) for g, _, _ in spans)


def _brackets(ax: Axes, spans: list[tuple[str, int, int]], y: float) -> None:
    for g, start, stop in spans:
        ax.plot([start - 0.35, stop - 0.65], [y, y], color="0.2", lw=1, clip_on=False,
                transform=ax.get_xaxis_transform())
        ax.text(start - 0.35, y + 0.01, g, ha="left", va="bottom", rotation=45, fontsize=8,
                transform=ax.get_xaxis_transform())


def relevance_heatmap(
    mdata: MuData,
    key: str = "relevance",
    *,
    group: str | None = None,
    groups: str | Sequence[str] | None = None,
    n_top: int = 5,
    modality: str | None = None,
    standard_scale: str | None = "auto",
    scale: str | None = "target_std",
    cmap: str = "viridis",
    ax: Axes | None = None,
    save: str | Path | None = None,
) -> Axes:
    """Heatmap of mean absolute relevance: groups x their top features, or one group's target x source matrix.

    Parameters
    ----------
    mdata
        MuData with :func:`multiomix.tl.feature_relevance` results.
    key
        Key in ``mdata.uns``.
    group
        Cross-modal results: show this group's matrix (top ``n_top`` targets x top ``n_top`` sources).
    groups
        Groups (rows) to show; default all.
    n_top
        Top features per group (or targets/sources of ``group``).
    modality
        Only features of this modality.
    standard_scale
        ``"var"`` scales each column to [0, 1] (as in scanpy); ``None`` shows raw values; ``"auto"``: ``"var"``
        for groups x features, ``None`` for a cross-modal matrix.
    scale
        With ``group``: ``"target_std"`` divides each target feature's row by its standard deviation (targets
        of different units become comparable); ``None`` keeps target units.
    cmap
        Colormap.
    ax
        Axes to draw on.
    save
        Write the figure to this file.

    Returns
    -------
    The Axes.

    Examples
    --------
    >>> mx.pl.relevance_heatmap(mdata, "relevance", n_top=3, modality="rna")
    >>> mx.pl.relevance_heatmap(mdata, "relevance_rna_to_morph", group="Sst-MET-1")
    """
    entry = _entry(mdata, key)
    if group is not None:
        if "matrices" not in entry:
            raise ValueError(f"`group=` shows a cross-modal matrix, but uns[{key!r}] holds group relevance.")
        mat, label = _matrix(entry, group, scale)
        rows = mat.sum(1).nlargest(n_top).index
        cols = mat.loc[rows].sum(0).nlargest(n_top).index
        data = mat.loc[rows, cols]
        title = f"{group}: {entry['params']['source']} -> {entry['params']['target']}"
        spans: list = []
    else:
        groups = _groups(entry, groups)
        features, spans = _top_features(mdata, key, groups, n_top, modality)
        data = pd.DataFrame({g: entry["groups"][_group_key(entry, g)].loc[features, "mean_abs"] for g in groups}).T
        title = f"mean |relevance| ({entry['params']['kind']})"
        label = "mean |relevance|"
    values = data.to_numpy(dtype=float)
    if standard_scale == "auto":
        standard_scale = None if group is not None else "var"
    if standard_scale == "var":
        values = values / np.maximum(values.max(0, keepdims=True), 1e-12)
        label += " (scaled per column)"
    elif standard_scale is not None:
        raise ValueError(f"`standard_scale` must be 'var' or None, got {standard_scale!r}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4, 0.28 * values.shape[1] + 2), max(2.5, 0.3 * values.shape[0] + 1.5)))
    im = ax.imshow(values, aspect="auto", cmap=cmap)
    ax.set_xticks(range(values.shape[1]), [str(c) for c in data.columns], rotation=90, fontsize=7)
    ax.set_yticks(range(values.shape[0]), [str(r) for r in data.index], fontsize=7)
    ax.figure.colorbar(im, ax=ax, label=label, shrink=0.8)
    if group is not None:
        ax.set_xlabel(f"source feature ({entry['params']['source']})")
        ax.set_ylabel(f"target feature ({entry['params']['target']})")
    ax.set_title(title, fontsize=9, pad=_pad(spans))
    if spans and len(spans) <= 40:
        _brackets(ax, spans, 1.01)
    return _finish(ax, save)


def relevance_dotplot(
    mdata: MuData,
    key: str = "relevance",
    *,
    groups: str | Sequence[str] | None = None,
    n_top: int = 3,
    modality: str | None = None,
    cmap: str = "RdBu_r",
    ax: Axes | None = None,
    save: str | Path | None = None,
) -> Axes:
    """Dot plot of each group's top features (scanpy look): size = mean absolute relevance, colour = signed mean.

    Dot sizes are scaled per feature (column) to its largest mean absolute relevance across groups; colours show the
    signed mean relevance on a symmetric scale (red: the feature raises the explained output).

    Parameters
    ----------
    mdata
        MuData with :func:`multiomix.tl.feature_relevance` results.
    key
        Key in ``mdata.uns``.
    groups
        Groups (rows) to show; default all.
    n_top
        Top features per group.
    modality
        Only features of this modality.
    cmap
        Diverging colormap of the signed mean.
    ax
        Axes to draw on.
    save
        Write the figure to this file.

    Returns
    -------
    The Axes.

    Examples
    --------
    >>> mx.pl.relevance_dotplot(mdata, "relevance", n_top=2, modality="rna")
    """
    entry = _entry(mdata, key)
    groups = _groups(entry, groups)
    features, spans = _top_features(mdata, key, groups, n_top, modality)
    frames = [entry["groups"][_group_key(entry, g)].loc[features] for g in groups]
    size = np.stack([f["mean_abs"].to_numpy(float) for f in frames])
    color = np.stack([f["mean"].to_numpy(float) for f in frames])
    frac = size / np.maximum(size.max(0, keepdims=True), 1e-12)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4, 0.3 * len(features) + 2.5), max(2.5, 0.32 * len(groups) + 1.8)))
    yy, xx = np.meshgrid(np.arange(len(groups)), np.arange(len(features)), indexing="ij")
    vmax = float(np.abs(color).max()) or 1.0
    sc = ax.scatter(xx.ravel(), yy.ravel(), s=(frac.ravel() * 14) ** 2, c=color.ravel(), cmap=cmap, vmin=-vmax,
                    vmax=vmax, edgecolors="0.3", linewidths=0.4)
    ax.set_xticks(range(len(features)), features, rotation=90, fontsize=7)
    ax.set_yticks(range(len(groups)), groups, fontsize=7)
    ax.set_xlim(-0.7, len(features) - 0.3)
    ax.set_ylim(len(groups) - 0.5, -0.5)
    ax.grid(False)
    ax.figure.colorbar(sc, ax=ax, label="mean relevance (signed)", shrink=0.7)
    for frac_value in (0.25, 0.5, 1.0):
        ax.scatter([], [], s=(frac_value * 14) ** 2, c="0.6", edgecolors="0.3", label=f"{int(frac_value * 100)} %")
    ax.legend(title="|relevance| / column max", fontsize=7, title_fontsize=7, loc="upper left",
              bbox_to_anchor=(1.32, 1.0), frameon=False, labelspacing=1.2)
    if len(spans) <= 40:
        _brackets(ax, spans, 1.01)
    ax.set_title(f"top features per {entry['params']['groupby']}", fontsize=9, pad=_pad(spans))
    return _finish(ax, save)


def relevance_network(
    mdata: MuData,
    key: str,
    group: str,
    *,
    n_top: int = 20,
    scale: str | None = "target_std",
    cmap: str = "viridis",
    ax: Axes | None = None,
    save: str | Path | None = None,
) -> Axes:
    """Top source -> target feature links of one group as a bipartite network.

    Parameters
    ----------
    mdata
        MuData with cross-modal :func:`multiomix.tl.feature_relevance` results.
    key
        Key in ``mdata.uns`` (e.g. ``"relevance_rna_to_morph"``).
    group
        Group (cell type) whose matrix is drawn.
    n_top
        Number of strongest links drawn.
    scale
        ``"target_std"`` ranks links by relevance divided by the target feature's standard deviation (targets
        of different units become comparable); ``None`` uses target units.
    cmap
        Colormap of the link strength.
    ax
        Axes to draw on.
    save
        Write the figure to this file.

    Returns
    -------
    The Axes.

    Examples
    --------
    >>> mx.pl.relevance_network(mdata, "relevance_rna_to_morph", "Sst-MET-1", n_top=15)
    """
    entry = _entry(mdata, key)
    if "matrices" not in entry:
        raise ValueError(f"relevance_network needs cross-modal results; uns[{key!r}] holds group relevance.")
    mat, label = _matrix(entry, group, scale)
    links = mat.stack().rename("value").reset_index()
    links.columns = ["target", "source", "value"]
    links = links.nlargest(n_top, "value")
    sources = links.groupby("source")["value"].sum().sort_values(ascending=False).index.tolist()
    targets = links.groupby("target")["value"].sum().sort_values(ascending=False).index.tolist()
    ys = {s: 1 - i / max(len(sources) - 1, 1) for i, s in enumerate(sources)}
    yt = {t: 1 - i / max(len(targets) - 1, 1) for i, t in enumerate(targets)}
    if ax is None:
        _, ax = plt.subplots(figsize=(6 + 0.06 * max(len(str(t)) for t in targets),
                                      max(3, 0.25 * max(len(sources), len(targets)) + 1)))
    vmax = float(links["value"].max()) or 1.0
    vmin = float(links["value"].min()) if len(links) > 1 and links["value"].min() < vmax else 0.0
    colormap = plt.get_cmap(cmap)
    for row in links.sort_values("value").itertuples():
        w = (row.value - vmin) / (vmax - vmin)
        ax.plot([0, 1], [ys[row.source], yt[row.target]], color=colormap(w), lw=0.5 + 3.5 * w, alpha=0.4 + 0.6 * w)
    ax.scatter([0] * len(ys), list(ys.values()), s=30, c="tab:blue", zorder=3)
    ax.scatter([1] * len(yt), list(yt.values()), s=30, c="tab:orange", zorder=3)
    for s, y in ys.items():
        ax.text(-0.04, y, s, ha="right", va="center", fontsize=7)
    for t, y in yt.items():
        ax.text(1.04, y, t, ha="left", va="center", fontsize=7)
    longest = max(len(str(t)) for t in yt)
    ax.set_xlim(-0.6, 1.1 + 0.028 * longest)
    ax.set_ylim(-0.08, 1.08)
    ax.axis("off")
    params = entry["params"]
    ax.set_title(f"{group}: top {len(links)} links {params['source']} -> {params['target']}", fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=colormap, norm=plt.Normalize(vmin, vmax))
    ax.figure.colorbar(sm, ax=ax, label=label, shrink=0.6, pad=0.02)
    return _finish(ax, save)
