"""Plots of what :func:`multiomix.tl.fit_genomic_interpreter` and :func:`multiomix.tl.attention_maps` wrote."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._docs import fill_doc
from ..tl import get_result
from ._utils import LAPTOP_WIDTH, SMALL_FONT, finish, min_font, new_axes, style

__all__ = ["attention_maps", "track_prediction"]


@fill_doc
def attention_maps(
    adata: AnnData,
    key: str = "genomic_interpreter",
    *,
    region: int | str = 0,
    layers: Sequence[str] | None = None,
    heads: Sequence[int] | None = None,
    marks: Mapping[str, int] | None = None,
    panel_size: float | None = None,
    cmap: str = "viridis",
    show: bool | None = None,
    save: str | Path | None = None,
) -> Figure | None:
    """Hierarchical attention maps of one region: one row per layer (fine to coarse), one column per head.

    The last column is the head average. Window layers show the regular and the shifted pass summed, so the
    two offset tilings of windows are both visible; the transformer rows show full maps. Axes are in base
    pairs, so the growing token size up the hierarchy is visible. The panels of a row share one colour scale
    (from 0 to the 99th percentile of the row's weights, on its colour bar), so heads compare within a layer;
    layers differ in token count, hence in typical weight, and keep their own scales.

    Parameters
    ----------
    adata
        AnnData with ``.uns[key]['attention']`` from :func:`multiomix.tl.attention_maps`.
    key
        ``.uns`` key.
    region
        Position within the regions extracted, or a region name.
    layers
        Layers to show (default: all, window passes merged per layer).
    heads
        Heads to show (default: all).
    marks
        ``{label: position in bp}`` to draw as lines (e.g. planted motif positions).
    panel_size
        Size of one panel in inches (default: at most 2.2, smaller when the grid would not fit a laptop screen).
    cmap
        Colour map.
    %(plot_figure_end)s

    Examples
    --------
    >>> mx.tl.attention_maps(adata, model, regions=[0])
    >>> mx.pl.attention_maps(adata, region=0, marks={"A": 100, "B": 148}, save="attention.png")
    """
    entry = get_result(adata, key, kind="attention_maps")
    maps, resolution = entry["attention"], entry["attention_resolution"]
    names = [str(n) for n in entry["attention_regions"]]
    length_bp = entry.get("attention_length_bp")  # absent in results written before it was stored
    if isinstance(region, str):
        if region not in names:
            raise KeyError(f"Region {region!r} has no stored attention; stored: {names[:5]}.")
        region = names.index(region)
    if not 0 <= region < len(names):
        raise IndexError(f"region={region} is not one of the {len(names)} stored maps: `region` is a position in the "
                         f"list mx.tl.attention_maps stored (0 to {len(names) - 1}: {names[:5]}), or a region name "
                         "from that list; obs positions go to mx.tl.attention_maps(regions=...).")
    grouped: dict[str, list[str]] = {}
    for name in maps:
        grouped.setdefault(name.rsplit(".", 1)[0] if name.startswith("stage") else name, []).append(name)
    layer_names = list(grouped) if layers is None else list(layers)
    unknown = [layer for layer in layer_names if layer not in grouped]
    if unknown:
        raise KeyError(f"Unknown layers {unknown}; available: {list(grouped)}.")
    n_heads = np.asarray(maps[grouped[layer_names[0]][0]]).shape[1]
    head_idx = list(range(n_heads)) if heads is None else list(heads)
    wrong = [h for h in head_idx if not isinstance(h, int | np.integer) or not 0 <= h < n_heads]
    if wrong:
        raise IndexError(f"heads {wrong} are not heads of these maps: they have {n_heads} (0 to {n_heads - 1}).")
    ncols, nrows = len(head_idx) + 1, len(layer_names)
    if panel_size is None:
        panel_size = float(max(1.4, min(2.2, (LAPTOP_WIDTH - 1.0) / ncols, 8.0 / nrows - 0.25)))
    with style():
        fig, axes = plt.subplots(nrows, ncols, squeeze=False, layout="constrained",
                                 figsize=(panel_size * ncols + 1.6, panel_size * nrows + 0.25 * nrows + 0.6))
    for r, layer in enumerate(layer_names):
        stack = sum(np.asarray(maps[p])[region] for p in grouped[layer])  # (heads, n, n)
        bp = int(resolution[grouped[layer][0]])
        extent = (0, stack.shape[-1] * bp, stack.shape[-1] * bp, 0)
        panels = [stack[h] for h in head_idx] + [stack.mean(0)]
        titles = [f"head {h}" for h in head_idx] + ["mean"]
        # one scale per layer, so that its heads compare; the 99th percentile, so that a token alone in its window
        # (its whole attention on itself) does not darken the rest
        vmax = float(np.percentile(np.stack(panels), 99)) or float(np.max(panels))
        for c, (panel, title) in enumerate(zip(panels, titles)):
            ax = axes[r, c]
            image = ax.imshow(panel, cmap=cmap, extent=extent, interpolation="nearest", vmin=0.0, vmax=vmax)
            if length_bp is not None:  # the last token of a coarse layer may reach into padding: show the region
                ax.set_xlim(0, int(length_bp))
                ax.set_ylim(int(length_bp), 0)
            if r == 0:
                ax.set_title(title, fontsize=SMALL_FONT + 1)
            ax.tick_params(labelsize=SMALL_FONT)
            ax.locator_params(nbins=3)
            if c == 0:
                ax.set_ylabel(f"{layer}\n{bp} bp/token", fontsize=SMALL_FONT)
            for label, pos in (marks or {}).items():
                ax.axvline(pos, color="w", lw=0.6, ls="--")
                ax.axhline(pos, color="w", lw=0.6, ls="--")
                if r == 0 and c == ncols - 1:
                    ax.text(pos, 0.03 * extent[1], f" {label}", color="white", fontsize=SMALL_FONT, ha="left",
                            va="top", fontweight="bold")
            ax.label_outer()
        bar = fig.colorbar(image, ax=list(axes[r]), shrink=0.85, aspect=12, pad=0.02, extend="max")
        bar.ax.tick_params(labelsize=SMALL_FONT)
        bar.ax.locator_params(nbins=3)
        bar.set_label("attention", fontsize=SMALL_FONT)
    fig.suptitle(f"Attention maps of {names[region]} (query rows x key columns, bp)", fontsize=SMALL_FONT + 1)
    return finish(fig, None, show=show, save=save)


@fill_doc
def track_prediction(
    adata: AnnData,
    key: str = "genomic_interpreter",
    *,
    region: int | str | None = None,
    track: int | str = 0,
    split: str | None = "test",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Predicted vs observed track values.

    For profile targets (``obsm[tracks_key]``) and a ``region``: the observed and predicted profile along the
    bins. For a binary track (observed values 0 and 1, e.g. bound or not): the predicted values of each observed
    class as boxes and points, titled with the AUROC. Otherwise: a scatter of predicted against observed values,
    titled with the Pearson correlation. Both over the regions of ``split`` in the fit's split column
    (``params['split_key']``, ``obs['split']`` by default; all regions when ``split`` is ``None`` or the column is
    absent).

    Parameters
    ----------
    adata
        AnnData with ``.obsm['<key>_prediction']`` and ``.uns[key]`` from :func:`multiomix.tl.fit_genomic_interpreter`.
    key
        Key used at fitting.
    region
        Region position or name (profile plot).
    track
        Track index or name.
    split
        Split to scatter.
    %(ax)s
    %(plot_axes_end)s

    Examples
    --------
    >>> mx.pl.track_prediction(adata, split="test", save="prediction.png")
    """
    entry = get_result(adata, key, kind="genomic_interpreter")
    pred_key = f"{key}_prediction"
    if pred_key not in adata.obsm:
        raise KeyError(f".obsm[{pred_key!r}] not found; run mx.tl.fit_genomic_interpreter first.")
    pred = np.asarray(adata.obsm[pred_key])
    params = entry["params"]
    tracks_key, layer = params["tracks_key"] or None, params["layer"] or None
    names = [str(n) for n in entry["track_names"]]
    observed = _observed_tracks(adata, tracks_key, layer, names, pred.shape)
    if isinstance(track, str) and track not in names:
        raise KeyError(f"Track {track!r} not found; tracks: {names}.")
    t = names.index(track) if isinstance(track, str) else int(track)
    if not -len(names) <= t < len(names):
        raise IndexError(f"track={track} is out of range for {len(names)} track(s): {names}.")
    if region is not None and pred.ndim != 3:
        raise ValueError(f"region={region!r} draws a profile along the bins, but this model predicts one value per "
                         "region; leave region out for the predicted-vs-observed plot over a split.")
    split_key = str(params.get("split_key") or "split")  # the column the fit split by
    if split is not None and split_key in adata.obs.columns:
        splits = sorted(adata.obs[split_key].astype(str).unique())
        if split not in splits:
            raise ValueError(f"split={split!r} matches no region; obs[{split_key!r}] holds {splits} (None: all "
                             "regions).")
    ax_given = ax is not None
    with style():
        fig, ax = new_axes(ax, (6.5 if pred.ndim == 3 and region is not None else 4.8, 4.0))
        _track_panel(ax, adata, pred, observed, names, t, region, split, params, split_key)
    min_font(fig, axes=[ax])
    return finish(fig, ax, show=show, save=save, ax_given=ax_given, return_fig=return_fig)


def _observed_tracks(adata: AnnData, tracks_key: str | None, layer: str | None, names: list[str],
                     shape: tuple[int, ...]) -> np.ndarray:
    """Return the observed tracks in the predictions' layout (a clear error when these regions have none)."""
    if tracks_key is not None:
        if tracks_key not in adata.obsm:
            raise KeyError(f"These regions have no observed tracks (.obsm[{tracks_key!r}]) to compare the predictions "
                           "with.")
        observed = np.asarray(adata.obsm[tracks_key])
    else:
        if layer is not None and layer not in adata.layers:
            raise KeyError(f"These regions have no observed tracks (.layers[{layer!r}]) to compare the predictions "
                           "with.")
        missing = [n for n in names if n not in set(map(str, adata.var_names))]
        if missing:  # matched by name only, as model.evaluate does: columns by position could be other assays
            raise KeyError(f"These regions have no observed tracks {missing[:5]} (the columns of .X"
                           f"{'' if layer is None else f' / .layers[{layer!r}]'}, matched by name) to compare the "
                           f"predictions with; they have {list(map(str, adata.var_names[:5]))}.")
        matrix = adata.X if layer is None else adata.layers[layer]
        matrix = matrix[:, pd.Index(map(str, adata.var_names)).get_indexer(names)]
        observed = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
    if observed.shape != tuple(shape):
        raise ValueError(f"The observed tracks have shape {observed.shape}, the predictions {tuple(shape)}.")
    return observed


def _track_panel(ax, adata, pred, observed, names, t, region, split, params, split_key) -> None:
    if pred.ndim == 3 and region is not None:
        row = adata.obs_names.get_loc(region) if isinstance(region, str) else int(region)
        bins = np.arange(pred.shape[1])
        ax.plot(bins, observed[row, :, t], label="observed", color="0.3")
        ax.plot(bins, pred[row, :, t], label="predicted", color="C1")
        ax.set_xlabel("bin")
        ax.set_ylabel(names[t])
        ax.set_title(f"{adata.obs_names[row]}")
        ax.legend(frameon=False)
    else:
        rows, used = np.arange(adata.n_obs), None
        if split is not None and split_key in adata.obs.columns:
            rows, used = np.flatnonzero(adata.obs[split_key].astype(str).to_numpy() == split), split
        o, p = observed[rows][..., t].ravel(), pred[rows][..., t].ravel()
        where = f"{used or 'all regions'}, n={len(rows)}"  # without the split column: every region, said so
        if len(o) and np.isin(o, (0, 1)).all() and len(np.unique(o)) == 2:
            _binary_panel(ax, o.astype(int), p, names[t], params["backbone"], where)
        else:
            r = np.corrcoef(o, p)[0, 1] if len(o) > 1 and o.std() > 0 and p.std() > 0 else np.nan
            ax.scatter(o, p, s=8, alpha=0.5, linewidths=0)
            ax.set_xlabel(f"observed {names[t]}")
            ax.set_ylabel(f"predicted {names[t]}")
            ax.set_title(f"{params['backbone']}: Pearson r = {r:.3f} ({where})")
        ax.spines[["top", "right"]].set_visible(False)


def _binary_panel(ax, observed: np.ndarray, predicted: np.ndarray, name: str, backbone: str, where: str) -> None:
    """Predicted probability of each observed class (box and points), titled with the AUROC."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    groups = [predicted[observed == k] for k in (0, 1)]
    ax.boxplot(groups, positions=[0, 1], widths=0.5, showfliers=False, medianprops={"color": "black"})
    for k, values in enumerate(groups):
        ax.scatter(k + rng.uniform(-0.18, 0.18, len(values)), values, s=8, alpha=0.45, linewidths=0,
                   color=("0.45", "C1")[k])
    ax.set_xticks([0, 1], [f"not {name} (0)\nn={len(groups[0])}", f"{name} (1)\nn={len(groups[1])}"])
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylabel(f"predicted {name}")
    ax.set_title(f"{backbone}: AUROC = {roc_auc_score(observed, predicted):.3f} ({where})")
