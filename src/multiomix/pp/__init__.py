"""Preprocessing: splits, feature selection and grouping, normalisation, sequence encoding."""

from ._features import binarize, normalize, select_features, tfidf, variability_score
from ._groups import group_features
from ._sequence import one_hot_encode, one_hot_sequences, reverse_complement, sequences_from_genome
from ._split import split

__all__ = [
    "binarize",
    "group_features",
    "normalize",
    "one_hot_encode",
    "one_hot_sequences",
    "reverse_complement",
    "select_features",
    "sequences_from_genome",
    "split",
    "tfidf",
    "variability_score",
]
