"""The torch module of UnitedNet for scvi-tools: standardisation, losses and their weighting.

The network itself (encoders, decoders, heads) is :class:`multiomix.nn.unitednet.UnitedNetwork`; this module
wraps it in scvi-tools' :class:`~scvi.module.base.BaseModuleClass` interface. Continuous modalities are
standardised by the package's one :class:`~multiomix.nn.standardizer.Standardizer`; binary ones pass through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from ..nn.standardizer import Standardizer
from ..nn.unitednet import (
    UnitedNetwork,
    contrastive_loss,
    ddc_loss,
    lsgan_losses,
    reconstruction_translation_loss,
    self_entropy_loss,
)

Mode = Literal["supervised", "unsupervised", "translation"]


class UnitedNetModule(BaseModuleClass):
    """scvi-tools module around :class:`~multiomix.nn.unitednet.UnitedNetwork`.

    Holds the per-feature standardisation of the continuous modalities (``standardizer``, fitted on training
    rows only, saved with the weights), the class weights and the index of the best head. Binary modalities are
    not standardised and use BCE.

    Parameters
    ----------
    modalities
        Modality names, in registry order.
    in_features
        Features per modality.
    binary
        Whether each modality is binary (BCE loss, sigmoid output).
    mode
        ``"supervised"``, ``"unsupervised"`` or ``"translation"``.
    n_classes
        Classes (supervised) or clusters (unsupervised).
    class_weight
        Cross-entropy class weights or ``None``.
    loss_weights
        Weights of ``reconstruction``, ``translation``, ``contrastive``, ``adversarial``, ``self_entropy``,
        ``ddc``.
    contrastive_temperature
        Temperature of the cross-modal contrastive loss.
    **net_kwargs
        Passed to :class:`~multiomix.nn.unitednet.UnitedNetwork`.
    """

    def __init__(
        self,
        *,
        modalities: Sequence[str],
        in_features: dict[str, int],
        binary: dict[str, bool],
        mode: Mode,
        n_classes: int,
        class_weight: Sequence[float] | None = None,
        loss_weights: dict[str, float] | None = None,
        contrastive_temperature: float = 0.1,
        **net_kwargs: Any,
    ):
        super().__init__()
        self.modalities = list(modalities)
        self.binary = dict(binary)
        self.mode = mode
        self.n_classes = n_classes
        self.contrastive_temperature = contrastive_temperature
        defaults = {"reconstruction": 1.0, "translation": 1.0, "contrastive": 1.0, "adversarial": 0.1,
                    "self_entropy": 1.0, "ddc": 1.0}
        unknown = sorted(set(loss_weights or {}) - set(defaults))
        if unknown:
            raise ValueError(f"`loss_weights` names unknown terms {unknown}; UnitedNet's terms are {list(defaults)}.")
        self.loss_weights = {**defaults, **(loss_weights or {})}
        self.net = UnitedNetwork(in_features=in_features, n_classes=0 if mode == "translation" else n_classes,
                                 **net_kwargs)
        self.standardizer = Standardizer({m: in_features[m] for m in self.modalities if not self.binary[m]})
        self.register_buffer("scaler_fitted", torch.tensor(False))
        self.register_buffer("best_head", torch.tensor(0))
        weight = torch.as_tensor(class_weight, dtype=torch.float32) if class_weight is not None else None
        self.register_buffer("class_weight", weight)

    # data handling -------------------------------------------------------------------------------------------
    def standardize(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Standardise continuous modalities with the stored training statistics."""
        x = {m: v.float() for m, v in x.items()}
        return {**x, **self.standardizer({m: v for m, v in x.items() if not self.binary[m]})}

    def to_data_scale(self, target: str, output: torch.Tensor) -> torch.Tensor:
        """Map a decoder output to the target's original scale (probabilities for binary modalities)."""
        if self.binary[target]:
            return torch.sigmoid(output)
        i = self.standardizer.names.index(target)
        return output * self.standardizer.get_buffer(f"std{i}") + self.standardizer.get_buffer(f"mean{i}")

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"x": {m: tensors[f"X_{m}"] for m in self.modalities if f"X_{m}" in tensors}}

    @auto_move_data
    def inference(self, x: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Standardised input, latents and (if any) head outputs."""
        xs = self.standardize(x)
        z = self.net.encode(xs)
        out = {"x": xs, "z": z}
        if self.net.heads is not None:
            out.update(self.net.classify(z))
        return out

    def _get_generative_input(self, tensors, inference_outputs) -> dict[str, Any]:
        return {"z": inference_outputs["z"]}

    @auto_move_data
    def generative(self, z: dict[str, torch.Tensor], targets: Sequence[str] | None = None) -> dict[str, Any]:
        """Decode every target from every source latent."""
        return {"decoded": self.net.decode(z, targets)}

    # losses ---------------------------------------------------------------------------------------------------
    def translation_losses(
        self, xs: dict[str, torch.Tensor], *, groups: torch.Tensor | None = None, generator: bool = False
    ) -> dict[str, torch.Tensor]:
        """Reconstruction, translation and contrastive terms (+ generator term) on standardised input."""
        z = self.net.encode(xs)
        decoded = self.net.decode(z)
        rec, tra, pairs = reconstruction_translation_loss(xs, decoded, list(z), self.binary)
        stacked = torch.stack([self.net.latent_projector(z[m]) for m in self.modalities])
        con = contrastive_loss(stacked, temperature=self.contrastive_temperature, groups=groups)
        w = self.loss_weights
        total = w["reconstruction"] * rec + w["translation"] * tra + w["contrastive"] * con
        out = {"reconstruction": rec, "translation": tra, "contrastive": con, "pairs": pairs, "decoded": decoded}
        if generator and self.net.discriminators is not None:
            gen = torch.stack([
                lsgan_losses(self.net.discriminators[m](xs[m]), self.net.discriminators[m](self._recon(decoded, m)))[1]
                for m in self.modalities
            ]).mean()
            out["generator"] = gen
            total = total + w["adversarial"] * gen
        out["loss"] = total
        return out

    def _recon(self, decoded: dict[str, torch.Tensor], m: str) -> torch.Tensor:
        out = decoded[m][self.modalities.index(m)]
        return torch.sigmoid(out) if self.binary[m] else out

    def discriminator_loss(self, xs: dict[str, torch.Tensor], decoded: dict[str, torch.Tensor]) -> torch.Tensor:
        """LSGAN discriminator loss: real input vs (detached) reconstruction."""
        return torch.stack([
            lsgan_losses(self.net.discriminators[m](xs[m]),
                         self.net.discriminators[m](self._recon(decoded, m).detach()))[0]
            for m in self.modalities
        ]).mean()

    def head_losses(
        self, xs: dict[str, torch.Tensor], labels: torch.Tensor | None = None, *, train_encoders: bool = True
    ) -> torch.Tensor:
        """Per-head group loss ``(heads,)``: class-weighted CE on labelled rows, or self-entropy + DDC."""
        if train_encoders:
            z = self.net.encode(xs)
        else:  # frozen encoders: deterministic latents (no dropout) for the heads
            was_training = self.net.encoders.training
            self.net.encoders.eval()
            with torch.no_grad():
                z = self.net.encode(xs)
            self.net.encoders.train(was_training)
        out = self.net.classify(z)
        logits = out["logits"]
        n_heads = logits.shape[0]
        if self.mode == "supervised":
            labels = labels.view(-1).long()
            keep = labels < self.n_classes  # rows of the unlabelled category are ignored
            if not bool(keep.any()):
                return logits.new_zeros(n_heads)
            logits, labels = logits[:, keep], labels[keep]
            ce = F.cross_entropy(logits.flatten(0, 1), labels.repeat(n_heads), reduction="none").view(n_heads, -1)
            w = self.class_weight[labels] if self.class_weight is not None else torch.ones_like(ce[0])
            return (ce * w).sum(-1) / w.sum().clamp_min(1e-8)
        proba = logits.softmax(-1)
        w = self.loss_weights
        if proba.shape[1] < 3:
            return w["self_entropy"] * self_entropy_loss(proba)
        return w["self_entropy"] * self_entropy_loss(proba) + w["ddc"] * ddc_loss(out["hidden"], proba)

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Validation-style total: reconstruction + translation (+ best head's group loss)."""
        xs = inference_outputs["x"]
        rec, tra, _ = reconstruction_translation_loss(xs, generative_outputs["decoded"], list(xs), self.binary)
        total = rec + tra
        logits = None
        if self.net.heads is not None:
            labels = tensors.get(REGISTRY_KEYS.LABELS_KEY)
            total = total + self.head_losses(xs, labels)[self.best_head]
            logits = inference_outputs["logits"][self.best_head]
        return LossOutput(loss=total, reconstruction_loss=rec + tra, logits=logits,
                          n_obs_minibatch=next(iter(xs.values())).shape[0])

    def sample(self, *args, **kwargs):
        """Not defined (UnitedNet is deterministic)."""
        raise NotImplementedError("UnitedNet is deterministic; use translate() for cross-modal predictions.")


__all__ = ["Mode", "UnitedNetModule"]
