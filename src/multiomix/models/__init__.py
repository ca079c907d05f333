"""scvi-tools model classes, each on :class:`~multiomix.models.base.MultiomixModel`."""

from ..module import CrossAttOmicsModule, GenomicInterpreterModule, MultimodalAEModule, UnitedNetModule
from ..train import MultimodalAETrainingPlan, UnitedNetTrainingPlan
from . import base
from ._crossattomics import CrossAttOmics, default_interaction_graph
from ._genomic_interpreter import GenomicInterpreter
from ._med_crossvit import MedCrossViT, MedCrossViTModule
from ._multimodal_ae import MultimodalAE
from ._unitednet import UnitedNet
from .base import MultiomixModel, SeedEnsemble

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
    "SeedEnsemble",
    "UnitedNet",
    "UnitedNetModule",
    "UnitedNetTrainingPlan",
]
