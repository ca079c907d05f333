"""Scanpy-style tools: fit models, explain them, and write the results into the data object."""

from ._consensus import consensus_clusters
from ._crossattomics import fit_crossattomics, interaction_importance
from ._embedding import benchmark_embeddings, pca_concat
from ._genomic_interpreter import attention_maps, attention_pair_hit_rate, fit_genomic_interpreter
from ._med_crossvit import fit_med_crossvit
from ._multimodal_ae import fit_multimodal_ae
from ._predict import predict
from ._predict_modality import predict_modality
from ._relevance import feature_relevance, rank_relevant_features
from ._results import get_result
from ._transfer import transfer_labels
from ._unitednet import fit_unitednet

__all__ = [
    "attention_maps",
    "attention_pair_hit_rate",
    "benchmark_embeddings",
    "consensus_clusters",
    "feature_relevance",
    "fit_crossattomics",
    "fit_genomic_interpreter",
    "fit_med_crossvit",
    "fit_multimodal_ae",
    "fit_unitednet",
    "get_result",
    "interaction_importance",
    "pca_concat",
    "predict",
    "predict_modality",
    "rank_relevant_features",
    "transfer_labels",
]
