"""Attribution: relevance propagation through attention models, SHAP and gradient methods."""

from ._adapter import FunctionModule, RelevanceAdapter, get_adapter
from ._lrp import interaction_relevance
from ._relevance import average_results, cross_modal_relevance, deep_supported, group_prototypes, group_relevance

__all__ = [
    "average_results",
    "cross_modal_relevance",
    "deep_supported",
    "FunctionModule",
    "get_adapter",
    "group_prototypes",
    "group_relevance",
    "interaction_relevance",
    "RelevanceAdapter",
]
