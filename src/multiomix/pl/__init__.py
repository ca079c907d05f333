"""Plots that read what the ``tl`` functions wrote.

Every function follows scanpy's convention:

* ``show=None`` shows the figure when pyplot's backend is interactive (a notebook, a desktop window) and no
  ``ax`` was given; ``show=True`` / ``False`` force it.
* ``save=`` writes the figure to a path (format from its suffix) at ``SAVE_DPI`` with a tight bounding box
  (a path, unlike scanpy's ``save=True`` / ``save='.png'`` shortcuts, which are refused with a clear error).
* When shown, the function returns ``None``. Otherwise plots drawn in one Axes (they accept ``ax``) return that
  Axes, or the Figure with ``return_fig=True``; plots that lay out their own figure (several panels; they accept
  ``figsize`` or ``panel_size`` instead of ``ax``) return the Figure. ``relevance_dotplot`` and
  ``relevance_heatmap`` are drawn by scanpy, which divides a given ``ax`` into the plot and its legends: they
  return the Axes of the plot itself.
* The key of the ``tl`` result to read is the second argument, by position or by name.

``transfer_embedding`` is the one function here that draws nothing: it returns the joint reference + query
AnnData (with its UMAP) that :func:`transfer` plots, for drawing it another way.

Figures are sized to their content, at most ``LAPTOP_WIDTH`` inches wide for the default numbers of rows and
columns (readable at 100 % zoom on a laptop screen when saved at ``SAVE_DPI``), with fonts of at least 9 points.
"""

from ._attention import attention_maps, track_prediction
from ._benchmark import benchmark, embedding
from ._crossattomics import interaction_importance, training_history
from ._relevance import relevance_dotplot, relevance_heatmap, relevance_network
from ._tile_attention import tile_attention
from ._transfer import reliability, transfer, transfer_embedding
from ._utils import LAPTOP_WIDTH, SAVE_DPI

__all__ = [
    "LAPTOP_WIDTH",
    "SAVE_DPI",
    "attention_maps",
    "benchmark",
    "embedding",
    "interaction_importance",
    "reliability",
    "relevance_dotplot",
    "relevance_heatmap",
    "relevance_network",
    "tile_attention",
    "track_prediction",
    "training_history",
    "transfer",
    "transfer_embedding",
]
