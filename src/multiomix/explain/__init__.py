"""Attribution: relevance propagation through attention models, SHAP and gradient methods."""

from ._lrp import interaction_relevance

__all__ = ["interaction_relevance"]

from ._adapters import FunctionModule, RelevanceAdapter, get_adapter, register_adapter  # noqa: F401
from ._relevance import cross_modal_relevance, deep_supported, group_prototypes, group_relevance  # noqa: F401
