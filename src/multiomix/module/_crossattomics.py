"""scvi-tools module of CrossAttOmics: the network, its standardiser and a class-weighted cross-entropy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from scvi.module.base import auto_move_data

from ..nn.crossattomics import CrossAttOmicsNet
from ..nn.standardizer import Standardizer
from ._classifier import ClassifierModule


class CrossAttOmicsModule(ClassifierModule):
    """scvi-tools module wrapping :class:`~multiomix.nn.CrossAttOmicsNet` with a cross-entropy loss.

    Parameters
    ----------
    modalities
        Modality names (registry keys ``X_<modality>``).
    class_weighting
        Weight the cross-entropy by class (the weights are set from the training rows when training starts).
    **net_kwargs
        Passed to :class:`~multiomix.nn.CrossAttOmicsNet`.

    Examples
    --------
    >>> module = CrossAttOmicsModule(modalities=["rna", "mirna"], in_features={"rna": 40, "mirna": 20},
    ...     groups={"rna": [[0, 1]], "mirna": [[0]]}, group_sizes={"rna": [4], "mirna": [4]},
    ...     interaction_graph={"rna": ["mirna"]}, hidden=[8], n_classes=2)  # doctest: +SKIP
    """

    _model_name = "CrossAttOmics"

    def __init__(self, *, modalities: Sequence[str], class_weighting: bool = True, **net_kwargs: Any):
        super().__init__()
        self.modalities = list(modalities)
        self.net = CrossAttOmicsNet(**net_kwargs)
        self.standardizer = Standardizer(net_kwargs["in_features"])
        weight = torch.ones(net_kwargs["n_classes"]) if class_weighting else None
        self.register_buffer("class_weight", weight)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"x": {m: tensors[f"X_{m}"] for m in self.modalities}}

    @auto_move_data
    def inference(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fused representation and class logits."""
        x = self.standardizer(x)
        fused = self.net.fuse(x)
        return {"latent": fused, "logits": self.net.classify(fused, x)}
