"""Preprocessing: splits, feature selection, normalisation, sequence encoding."""

from ._split import split

__all__ = ["split"]

from ._sequence import one_hot_encode, one_hot_sequences, reverse_complement  # noqa: E402, F401

from ._features import binarize, normalize, select_features, tfidf, variability_score  # noqa: E402, F401
