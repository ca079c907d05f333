"""Pure torch building blocks (no AnnData)."""

from ._lrp import lrp_mode
from .attomics import AttentionBlock, AttOmicsEncoder, GroupedLinear, SelfAttention, random_groups
from .crossattomics import CrossAttOmicsNet, interaction_name, validate_graph
from .mlp import MLPHead

__all__ = [
    "AttOmicsEncoder",
    "AttentionBlock",
    "CrossAttOmicsNet",
    "GroupedLinear",
    "MLPHead",
    "SelfAttention",
    "interaction_name",
    "lrp_mode",
    "random_groups",
    "validate_graph",
]


from .swin1d import Swin1D, TrackHead  # noqa: E402, F401
from .sequence_cnn import AttentionPoolCNN, DilatedResidualCNN, EnformerLike, MaxPoolCNN  # noqa: E402, F401
from .unitednet import CosinePrototypeHeads, UnitedNetwork  # noqa: E402, F401

from .autoencoder import ModalityDecoder, ModalityEncoder, MultimodalAutoencoder  # noqa: E402, F401
