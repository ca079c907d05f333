"""Scanpy-style tools: fit models, explain them, and write the results into the data object."""

from ._crossattomics import fit_crossattomics, interaction_importance

__all__ = ["fit_crossattomics", "interaction_importance"]

from ._genomic_interpreter import attention_maps, attention_pair_hit_rate, fit_genomic_interpreter  # noqa: E402, F401
from ._med_crossvit import fit_med_crossvit  # noqa: E402, F401
from ._predict_modality import predict_modality  # noqa: E402, F401
from ._relevance import feature_relevance, rank_relevant_features  # noqa: E402, F401
from ._unitednet import fit_unitednet, transfer_labels  # noqa: E402, F401

from ._embedding import benchmark_embeddings, pca_concat  # noqa: E402, F401
from ._multimodal_ae import fit_multimodal_ae  # noqa: E402, F401
