"""scvi-tools module of the multimodal autoencoder: per-modality encoders, a joint latent, per-modality decoders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from ..nn.autoencoder import MultimodalAutoencoder
from ..nn.losses import depth_offset


def _key(modality: str) -> str:
    return f"X_{modality}"


class MultimodalAEModule(BaseModuleClass):
    """scvi-tools module around :class:`multiomix.nn.autoencoder.MultimodalAutoencoder`.

    Parameters
    ----------
    dims
        Features per modality.
    likelihoods
        Loss per modality (``"mse"``, ``"bce"``, ``"nb"``).
    loss_weights
        Weight of each modality's reconstruction loss.
    **kwargs
        Passed to :class:`~multiomix.nn.autoencoder.MultimodalAutoencoder`.

    Examples
    --------
    >>> module = MultimodalAEModule(dims={"rna": 50, "atac": 80}, likelihoods={"rna": "mse", "atac": "bce"})
    >>> module.net.modalities
    ['rna', 'atac']
    """

    def __init__(
        self,
        *,
        dims: Mapping[str, int],
        likelihoods: Mapping[str, str],
        loss_weights: Mapping[str, float] | None = None,
        **kwargs: Any,
    ):
        super().__init__()
        self.net = MultimodalAutoencoder(dims=dims, likelihoods=likelihoods, **kwargs)
        self.modalities = list(dims)
        self.loss_weights = {m: float((loss_weights or {}).get(m, 1.0)) for m in self.modalities}
        # per modality, set from the training rows: the median library size of count modalities (translated counts
        # are scaled to it) and the median number of ones per cell of binary ones (the depth of the logit offset)
        self.register_buffer("library_median", torch.ones(len(self.modalities)))

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"inputs": {m: tensors[_key(m)] for m in self.modalities if _key(m) in tensors}}

    @auto_move_data
    def inference(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor | None = None) -> dict[str, Any]:
        """Encode into the joint latent ``z`` (modality dropout applies in training mode only)."""
        if mask is None and self.training:
            ref = next(iter(inputs.values()))
            mask = self.net.sample_mask(ref.shape[0], ref.device)
        return {"z": self.net.encode(inputs, mask)}

    def depth_offsets(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logit offsets of the binary modalities present in ``tensors``: each cell's depth over the median."""
        return {
            m: depth_offset(tensors[_key(m)], self.library_median[j])
            for j, m in enumerate(self.modalities)
            if self.net.likelihoods[m] == "bce" and _key(m) in tensors
        }

    def _get_generative_input(self, tensors: dict[str, torch.Tensor], inference_outputs: dict[str, Any]):
        return {"z": inference_outputs["z"], "offsets": self.depth_offsets(tensors)}

    @auto_move_data
    def generative(
        self,
        z: torch.Tensor,
        modalities: list[str] | None = None,
        offsets: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, Any]:
        """Decode modalities from the joint latent (binary ones at each cell's own depth when ``offsets`` has it)."""
        return {"outputs": self.net.decode(z, modalities, offsets)}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Weighted sum over modalities of the per-cell reconstruction losses."""
        inputs = {m: tensors[_key(m)] for m in self.modalities}
        per_mod = self.net.loss(inputs, generative_outputs["outputs"], self.loss_weights)
        total = torch.stack(list(per_mod.values()), 0).sum(0)
        extra = {f"loss_{m}": v.mean().detach() for m, v in per_mod.items()}
        return LossOutput(loss=total.mean(), reconstruction_loss=per_mod, extra_metrics=extra)

    def sample(self, *args, **kwargs):
        raise NotImplementedError("MultimodalAE is deterministic; use translate() or the decoder outputs.")
