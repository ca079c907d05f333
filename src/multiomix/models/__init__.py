"""scvi-tools model classes."""

from ._crossattomics import CrossAttOmics, default_interaction_graph

__all__ = ["CrossAttOmics", "default_interaction_graph"]


from ._genomic_interpreter import GenomicInterpreter, GenomicInterpreterModule  # noqa: E402, F401

from ._med_crossvit import MedCrossViT, MedCrossViTModule  # noqa: E402, F401
from ._unitednet import UnitedNet, UnitedNetModule, UnitedNetTrainingPlan  # noqa: E402, F401

from ._multimodal_ae import MultimodalAE, MultimodalAEModule, MultimodalAETrainingPlan  # noqa: E402, F401
