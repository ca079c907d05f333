"""scvi-tools modules (``BaseModuleClass``): one file per model, each wrapping its network from :mod:`multiomix.nn`."""

from ._crossattomics import CrossAttOmicsModule
from ._multimodal_ae import MultimodalAEModule

__all__ = ["CrossAttOmicsModule", "MultimodalAEModule"]
from ._unitednet import UnitedNetModule  # noqa: E402
__all__ += ["UnitedNetModule"]
