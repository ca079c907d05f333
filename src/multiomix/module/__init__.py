"""scvi-tools modules (``BaseModuleClass``): one file per model, each wrapping its network from :mod:`multiomix.nn`."""

from ._crossattomics import CrossAttOmicsModule
from ._med_crossvit import MedCrossViTModule
from ._multimodal_ae import MultimodalAEModule

__all__ = ["CrossAttOmicsModule", "MedCrossViTModule", "MultimodalAEModule"]
from ._unitednet import UnitedNetModule

__all__ += ["UnitedNetModule"]
from ._genomic_interpreter import GenomicInterpreterModule  # noqa: E402

__all__ += ["GenomicInterpreterModule"]
