"""What every ``mx.pl`` function shares: figure sizes, fonts, and one show / ``ax`` / save / return behaviour.

The convention (scanpy's):

* ``show=None`` shows the figure when pyplot's backend is interactive (a notebook, a desktop window) and no
  ``ax`` was given (the caller is then still composing a larger figure); ``show=True`` / ``False`` force it.
* ``save`` is a path; the figure is written there (format from the suffix) at ``SAVE_DPI`` with a tight
  bounding box.
* When the figure is shown the function returns ``None``. Otherwise, plots drawn in one ``Axes`` (they accept
  ``ax``) return that Axes, or the Figure when ``return_fig=True``; plots that lay out a figure of several
  panels themselves (they accept ``figsize`` but no ``ax``) return the Figure.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: Resolution of files written with ``save=``.
SAVE_DPI = 120
#: The widest figure the plots choose on their own, in inches: 1260 px at ``SAVE_DPI``, which fits a laptop
#: screen (1280-1440 px wide) at 100 % zoom. Plots of many rows or columns grow beyond it only when asked.
LAPTOP_WIDTH = 10.5
#: The tallest figure the plots choose on their own (840 px at ``SAVE_DPI``).
LAPTOP_HEIGHT = 7.0
#: Base font size (points); tick labels and legends use ``SMALL_FONT``, never less.
FONT_SIZE = 10.0
SMALL_FONT = 9.0

_RC = {
    "font.size": FONT_SIZE,
    "axes.titlesize": FONT_SIZE + 1,
    "axes.labelsize": FONT_SIZE,
    "xtick.labelsize": SMALL_FONT,
    "ytick.labelsize": SMALL_FONT,
    "legend.fontsize": SMALL_FONT,
    "legend.title_fontsize": SMALL_FONT,
    "figure.titlesize": FONT_SIZE + 1,
}

_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


@contextmanager
def style() -> Iterator[None]:
    """Fonts of at least ``SMALL_FONT`` points while a plot is drawn."""
    with plt.rc_context(_RC):
        yield


def interactive_backend() -> bool:
    """Whether pyplot draws on screen (a notebook or a window) rather than only into files."""
    backend = str(matplotlib.get_backend()).lower()
    return backend not in _NON_INTERACTIVE and not backend.startswith("module://matplotlib.backends.backend_agg")


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """Return the caller's ``ax`` (and its figure), or a new figure of ``figsize`` with one Axes."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def check_save_path(save: object) -> None:
    """Refuse a ``save=`` that is not a file path: scanpy's ``save=True`` or a suffix alone (``'.png'``).

    Examples
    --------
    >>> check_save_path("figures/importance.png")
    >>> check_save_path(".png")
    Traceback (most recent call last):
    ...
    ValueError: save='.png' is a suffix alone: ...
    """
    if isinstance(save, bool):
        raise TypeError(f"save={save} is not a path: save= takes the file to write, e.g. save='figures/plot.png' "
                        "(the format comes from its suffix); scanpy's save=True shortcut is not supported.")
    if not isinstance(save, str | os.PathLike):
        raise TypeError(f"save= takes a file path (str or os.PathLike), got {type(save).__name__}.")
    name = Path(os.fspath(save)).name
    if name.startswith(".") and name.count(".") == 1:
        raise ValueError(f"save={str(save)!r} is a suffix alone: save= takes the file to write, e.g. "
                         f"save='figures/plot{name}' (scanpy's suffix shortcut is not supported).")


def finish(
    fig: Figure,
    axes: Axes | None,
    *,
    show: bool | None,
    save: str | Path | None,
    ax_given: bool = False,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Save, show and return following the module's convention (``axes=None`` marks a figure-level plot).

    ``save`` may name a folder that does not exist yet: it is created (as scanpy creates its figure folder). As
    in scanpy, a figure this call made (no ``ax=`` given) is closed once it is saved or shown, so that plots made
    in a loop do not pile up open figures; the returned figure or axes can still be saved or displayed.
    """
    if save is not None:
        try:
            check_save_path(save)
            save = os.fspath(save)
            Path(save).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(save, dpi=SAVE_DPI, bbox_inches="tight")
        except Exception:
            plt.close(fig)  # a refused or failed call leaves no open figure behind
            raise
    if show is None:
        show = interactive_backend() and not ax_given
    if show:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*non-interactive.*")
            plt.show()
        if not ax_given:
            plt.close(fig)
        return None
    if save is not None and not ax_given:
        plt.close(fig)
    if return_fig or axes is None:
        return fig
    return axes


def health_note(lines: Sequence[str]) -> str:
    """One short caution line for a figure (empty when there is nothing to say)."""
    return ("Caution: " + "; ".join(lines)) if lines else ""


def min_font(fig: Figure, size: float = SMALL_FONT, *, axes: Sequence[Axes] | None = None) -> None:
    """Raise every text of ``fig`` (or only of ``axes``), tick labels included, to at least ``size`` points."""
    owners = list(fig.axes) if axes is None else list(axes)
    for ax in owners:
        for axis in (ax.xaxis, ax.yaxis):
            labels = axis.get_ticklabels(which="both")
            if labels and min(t.get_fontsize() for t in labels) < size:
                ax.tick_params(axis="x" if axis is ax.xaxis else "y", which="both", labelsize=size)
    for owner in [fig] if axes is None else owners:
        for text in owner.findobj(matplotlib.text.Text):
            if text.get_text() and text.get_fontsize() < size:
                text.set_fontsize(size)


def fit_figure(fig: Figure, *, title: str | None = None, note: str = "", pad: float = 0.12) -> None:
    """Resize a figure the plot created itself so that every label lies inside it, then add a title.

    Labels that overhang the axes (long tick labels, rotated group names) are measured, the figure grows (or
    shrinks) by what they need plus ``pad`` inches, and the axes keep their size in inches. The title and a
    caution ``note`` (red, under the title) go above everything.
    """
    renderer = fig.canvas.get_renderer()
    width, height = fig.get_size_inches()
    box = fig.get_tightbbox(renderer)  # inches
    title_lines = title.count("\n") + 1 if title else 0
    note_lines = note.count("\n") + 1 if note else 0
    head = (title_lines * (FONT_SIZE + 1) + note_lines * SMALL_FONT) * 1.45 / 72 if (title or note) else 0.0
    left, bottom = pad - box.x0, pad - box.y0
    right, top = pad + box.x1 - width, pad + box.y1 - height + head
    new_w, new_h = width + left + right, height + bottom + top
    for ax in fig.axes:
        p = ax.get_position()
        ax.set_position([(p.x0 * width + left) / new_w, (p.y0 * height + bottom) / new_h,
                         p.width * width / new_w, p.height * height / new_h])
    for text in fig.texts:
        x, y = text.get_position()
        text.set_position(((x * width + left) / new_w, (y * height + bottom) / new_h))
    fig.set_size_inches(new_w, new_h)
    y = 1 - pad / new_h
    centre = (box.x0 + box.x1) / 2 + left
    if title:
        fig.text(centre / new_w, y, title, ha="center", va="top", fontsize=FONT_SIZE + 1)
        y -= title_lines * (FONT_SIZE + 1) * 1.45 / 72 / new_h
    if note:
        fig.text(centre / new_w, y, note, ha="center", va="top", fontsize=SMALL_FONT, color="firebrick",
                 gid="health-note")


def category_colors(data, key: str) -> list[str]:
    """Colours of the categories of ``data.obs[key]``, as scanpy chooses and stores them.

    ``data.uns['<key>_colors']`` is used when it holds a valid colour for every category; otherwise scanpy's
    default is written there: the matplotlib colour cycle when it has enough colours, else scanpy's
    ``default_20``, ``default_28`` or ``default_102`` palette (grey beyond 102 categories).
    """
    from matplotlib.colors import is_color_like, to_hex
    from scanpy.plotting import palettes

    categories = data.obs[key].astype("category").cat.categories
    n = len(categories)
    color_key = f"{key}_colors"
    stored = data.uns.get(color_key)
    if stored is not None:
        stored = [str(c) for c in list(stored)]
        if len(stored) >= n and all(is_color_like(c) for c in stored):
            return [to_hex(c) for c in stored[:n]]
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key().get("color", [])
    if len(cycle) >= n:
        palette = list(cycle)
    elif n <= 20:
        palette = list(palettes.default_20)
    elif n <= 28:
        palette = list(palettes.default_28)
    elif n <= len(palettes.default_102):
        palette = list(palettes.default_102)
    else:
        palette = ["grey"] * n
    colors = [to_hex(c) for c in palette[:n]]
    data.uns[color_key] = colors
    return colors
