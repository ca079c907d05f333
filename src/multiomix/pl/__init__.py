"""Plots that read what the ``tl`` functions wrote."""

from ._attention import attention_maps, track_prediction
from ._benchmark import benchmark, embedding
from ._crossattomics import interaction_importance, training_history
from ._relevance import relevance_dotplot, relevance_heatmap, relevance_network
from ._tile_attention import tile_attention

__all__ = [
    "attention_maps",
    "benchmark",
    "embedding",
    "interaction_importance",
    "relevance_dotplot",
    "relevance_heatmap",
    "relevance_network",
    "tile_attention",
    "track_prediction",
    "training_history",
]
