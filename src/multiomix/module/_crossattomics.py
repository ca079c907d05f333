"""scvi-tools module of CrossAttOmics: the network, its standardiser and a class-weighted cross-entropy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from ..nn.crossattomics import CrossAttOmicsNet
from ..nn.losses import cross_entropy
from ..nn.standardizer import Standardizer


class CrossAttOmicsModule(BaseModuleClass):
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

    def _get_generative_input(self, tensors, inference_outputs) -> dict:
        return {}

    def generative(self) -> dict:
        """No generative part (a discriminative model)."""
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Class-weighted cross-entropy."""
        logits = inference_outputs["logits"]
        labels = tensors[REGISTRY_KEYS.LABELS_KEY]
        ce = cross_entropy(logits, labels, self.class_weight)
        return LossOutput(
            loss=ce, classification_loss=ce, logits=logits, true_labels=labels, n_obs_minibatch=labels.shape[0]
        )

    def sample(self, *args, **kwargs):
        """Not defined for a classifier."""
        raise NotImplementedError("CrossAttOmics is discriminative; it has no generative sampling.")
