"""Pure torch building blocks (no AnnData)."""

from ._lrp import lrp_mode
from .attomics import (
    AttentionBlock,
    AttOmicsEncoder,
    BatchedAttentionBlock,
    GroupedLinear,
    MultiAttOmicsEncoder,
    SelfAttention,
    kind_linear,
    random_groups,
)
from .autoencoder import ModalityDecoder, ModalityEncoder, MultimodalAutoencoder
from .crossattomics import CrossAttOmicsNet, interaction_name, validate_graph
from .mlp import MLPHead
from .sequence_cnn import AttentionPoolCNN, DilatedResidualCNN, EnformerLike, MaxPoolCNN
from .swin1d import DropPath, Swin1D, TrackHead
from .unitednet import CosinePrototypeHeads, UnitedNetwork
from .wide import WidePath, fit_wide_path

__all__ = [
    "AttentionBlock",
    "AttentionPoolCNN",
    "AttOmicsEncoder",
    "BatchedAttentionBlock",
    "CosinePrototypeHeads",
    "CrossAttOmicsNet",
    "DilatedResidualCNN",
    "DropPath",
    "EnformerLike",
    "fit_wide_path",
    "GroupedLinear",
    "interaction_name",
    "kind_linear",
    "lrp_mode",
    "MaxPoolCNN",
    "MLPHead",
    "ModalityDecoder",
    "ModalityEncoder",
    "MultiAttOmicsEncoder",
    "MultimodalAutoencoder",
    "random_groups",
    "SelfAttention",
    "Swin1D",
    "TrackHead",
    "UnitedNetwork",
    "validate_graph",
    "WidePath",
]
