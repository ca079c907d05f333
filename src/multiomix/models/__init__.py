"""scvi-tools model classes, each on :class:`~multiomix.models.base.MultiomixModel`."""

from . import base

from ..module import CrossAttOmicsModule
from ._crossattomics import CrossAttOmics, default_interaction_graph
from .base import MultiomixModel
from ..module import GenomicInterpreterModule
from ._genomic_interpreter import GenomicInterpreter
from ._med_crossvit import MedCrossViT, MedCrossViTModule
from ..module import MultimodalAEModule
from ..train import MultimodalAETrainingPlan
from ._multimodal_ae import MultimodalAE
from ._unitednet import UnitedNet
from ..module import UnitedNetModule
from ..train import UnitedNetTrainingPlan

__all__ = [
    "CrossAttOmics",
    "CrossAttOmicsModule",
    "MultiomixModel",
    "base",
    "default_interaction_graph",
    "GenomicInterpreter",
    "GenomicInterpreterModule",
    "MedCrossViT",
    "MedCrossViTModule",
    "MultimodalAE",
    "MultimodalAEModule",
    "MultimodalAETrainingPlan",
    "UnitedNet",
    "UnitedNetModule",
    "UnitedNetTrainingPlan",
]
