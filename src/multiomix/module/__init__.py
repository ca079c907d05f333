"""scvi-tools modules (``BaseModuleClass``): one file per model, each wrapping its network from :mod:`multiomix.nn`."""

from ._crossattomics import CrossAttOmicsModule

__all__ = ["CrossAttOmicsModule"]
