"""Attribution: relevance propagation through attention models, SHAP and gradient methods."""

from ._lrp import interaction_relevance

__all__ = ["interaction_relevance"]
