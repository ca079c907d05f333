"""The foundation of every multiomix model: base class, data registration, feature matching."""

from ._data import (
    class_weights,
    feature_mean_std,
    feature_positions,
    matched_input,
    modality_key,
    register_mudata_fields,
    resolve_layers,
)
from ._ensemble import SeedEnsemble, check_n_models
from ._model import MultimodalInputMixin, MultiomixModel, adata_alias
from ._translation import translate_blocks

__all__ = [
    "MultimodalInputMixin",
    "MultiomixModel",
    "SeedEnsemble",
    "adata_alias",
    "check_n_models",
    "class_weights",
    "feature_mean_std",
    "feature_positions",
    "matched_input",
    "modality_key",
    "register_mudata_fields",
    "resolve_layers",
    "translate_blocks",
]
