"""scvi-tools model classes."""

from ._med_crossvit import MedCrossViT, MedCrossViTModule  # noqa: E402, F401
