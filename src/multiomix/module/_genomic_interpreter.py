"""scvi-tools module of the Genomic Interpreter: a sequence backbone, a track head, and a Poisson / BCE / MSE loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from ..nn.sequence_cnn import BACKBONES
from ..nn.swin1d import Swin1D, TrackHead

#: registry keys of the one-hot DNA and the targets
DNA_KEY = "dna"
TARGET_KEY = "tracks"
LOSSES = ("poisson", "bce", "mse")
BACKBONE_NAMES = ("swin1d", *BACKBONES)

#: Backbone settings sized for a few-hundred-bp input on a CPU; override with ``backbone_kwargs``.
# swin1d: 64 channels in the stem and in every stage, as wide as the CNN baselines' convolutions. Chosen on the
# Oct4/Mafk validation split only (benchmarks/genomic_interpreter.py --parts screen, 10 epochs): validation BCE
# 0.039 / 0.043 (seeds 0 / 1) against 0.053 / 0.052 for the earlier dims (32, 48, 64); dropout 0.1, no transformer
# layer and a 96-channel first stage were worse. Stochastic depth up to 0.1 with 20 epochs (the default of
# ``train``): 0.034 / 0.032 (seeds 0 / 1), against 0.040 for 20 epochs without it and 0.045 with 0.2 (seed 0).
# full_attention is the same network with one window per stage.
DEFAULT_BACKBONE_KWARGS: dict[str, dict[str, Any]] = {
    "swin1d": {"dims": (64, 64, 64), "depths": (1, 1, 1), "window": 16, "heads": 4, "dim_head": 16,
               "transformer_depth": 1, "stem_kernel": 15, "stem_layers": 2, "stem_pool": 4, "merge": "max",
               "drop_path": 0.1},
    "full_attention": {"dims": (64, 64, 64), "depths": (1, 1, 1), "window": None, "heads": 4, "dim_head": 16,
                       "transformer_depth": 1, "stem_kernel": 15, "stem_layers": 2, "stem_pool": 4, "merge": "max",
                       "drop_path": 0.1},
    "cnn_maxpool": {"dims": (64, 64, 64), "kernels": (15, 5, 5), "pool": 2},
    "cnn_attpool": {"dims": (64, 64, 64), "kernels": (15, 5, 5), "pool": 2},
    "cnn_dilated": {"dim": 64, "stem_kernel": 15, "pool": 4, "n_dilated": 4},
    "enformer_like": {"dims": (48, 64), "stem_kernel": 15, "transformer_depth": 2, "heads": 4, "dim_head": 16},
}


def build_backbone(name: str, **kwargs: Any) -> torch.nn.Module:
    """Instantiate a sequence backbone by name (``swin1d``, ``full_attention`` or a CNN baseline).

    Examples
    --------
    >>> build_backbone("cnn_maxpool", dims=(8,), kernels=5).out_dim
    8
    """
    if name not in DEFAULT_BACKBONE_KWARGS:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {list(DEFAULT_BACKBONE_KWARGS)}.")
    params = {**DEFAULT_BACKBONE_KWARGS[name], **kwargs}
    if name in ("swin1d", "full_attention"):
        return Swin1D(**params)
    return BACKBONES[name](**params)


def infer_loss(targets) -> str:
    """``"bce"`` for 0/1 targets, ``"poisson"`` for non-negative integers, else ``"mse"``.

    Examples
    --------
    >>> infer_loss(np.array([0, 1, 1])), infer_loss(np.array([0, 3, 7])), infer_loss(np.array([-0.5, 1.0]))
    ('bce', 'poisson', 'mse')
    """
    values = np.asarray(targets.data if sparse.issparse(targets) else targets)
    if values.size == 0:
        return "mse"
    if np.isin(values, (0, 1)).all():
        return "bce"
    if values.min() >= 0 and np.allclose(values, np.round(values)):
        return "poisson"
    return "mse"


def _rate(output: torch.Tensor) -> torch.Tensor:
    # log link: the network predicts log-rates, so a 10-fold change is a shift of 2.3 rather than a
    # rescaling of every weight (a softplus link learned far more slowly on count tracks)
    return torch.exp(output.clamp(max=20.0))


class GenomicInterpreterModule(BaseModuleClass):
    """scvi-tools module: sequence backbone + track head, with a Poisson, BCE or MSE loss.

    Parameters
    ----------
    backbone
        Backbone name (one of ``DEFAULT_BACKBONE_KWARGS``).
    backbone_kwargs
        Backbone settings.
    n_tracks
        Number of tracks.
    n_bins
        Bins per region for profile targets, ``None`` for one value per region.
    loss
        ``"poisson"`` (counts; log-rate output), ``"bce"`` (binary; logits) or ``"mse"``.
    reverse_complement
        Whether the training plan may augment with reverse complements (profiles are flipped with the DNA).
    head_pool
        Pooling of the tokens for one value per region (see :class:`~multiomix.nn.TrackHead`).
    strand_permutation
        Track order on the reverse strand: ``strand_permutation[i]`` is the track that track ``i`` becomes when the
        region is reverse-complemented (e.g. a plus-strand and a minus-strand track swap); default: each stays.

    Examples
    --------
    >>> module = GenomicInterpreterModule(backbone="cnn_maxpool", backbone_kwargs={"dims": (8,)}, n_tracks=1,
    ...                                   n_bins=None, loss="bce")
    >>> module.inference(torch.zeros(2, 40, 4))["output"].shape
    torch.Size([2, 1])
    """

    def __init__(self, *, backbone: str, backbone_kwargs: dict, n_tracks: int, n_bins: int | None,
                 loss: str, reverse_complement: bool = True, head_pool: str = "meanmax",
                 strand_permutation: list[int] | None = None):
        super().__init__()
        self.backbone_name, self.loss_name = backbone, loss
        self.backbone = build_backbone(backbone, **backbone_kwargs)
        self.head = TrackHead(dim=self.backbone.out_dim, n_tracks=n_tracks, n_bins=n_bins, pool=head_pool)
        self.n_bins, self.reverse_complement = n_bins, reverse_complement
        permutation = list(range(n_tracks)) if strand_permutation is None else list(strand_permutation)
        if sorted(permutation) != list(range(n_tracks)):
            raise ValueError(f"strand_permutation must order the {n_tracks} tracks, got {permutation}.")
        # derived from the init parameters, so not saved with the weights (earlier saves load unchanged)
        self.register_buffer("strand_permutation", torch.as_tensor(permutation, dtype=torch.long), persistent=False)

    def reverse_strand_tracks(self, values: torch.Tensor) -> torch.Tensor:
        """Reorder the tracks (last axis) of values seen on the reverse strand to the forward strand's order."""
        return values.index_select(-1, self.strand_permutation.to(values.device))

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"x": tensors[DNA_KEY]}

    def pad_to_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Pad a profile model's input with ``N`` on both sides to a whole number of backbone tokens.

        The backbones pool by ``reduction`` base pairs, padding the last token at the end only; for a region whose
        length is not a multiple of it, the token grids of the two strands would then be offset (the reverse
        strand, flipped back, puts the short token at the start), and the bins of a profile would not line up
        between the strands averaged by :meth:`predict_mean`. Padding half before and half after keeps the grid
        symmetric (to within one base pair when the padding is odd). One value per region needs no alignment and
        is left unpadded.
        """
        extra = (-x.shape[1]) % int(getattr(self.backbone, "reduction", 1))
        if self.n_bins is None or extra == 0:
            return x
        before = extra // 2
        return F.pad(x, (0, 0, before, extra - before))

    @auto_move_data
    def inference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs (log-space rate parameter, logits or values) for one-hot ``x`` ``(b, L, 4)``."""
        return {"output": self.head(self.backbone(self.pad_to_tokens(x.float())))}

    def _get_generative_input(self, tensors, inference_outputs) -> dict:
        return {}

    def generative(self) -> dict:
        """No generative part (a discriminative model)."""
        return {}

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        """Predictions on the target scale: Poisson rate, probability, or value."""
        if self.loss_name == "poisson":
            return _rate(output)
        if self.loss_name == "bce":
            return torch.sigmoid(output)
        return output

    def predict_mean(self, x: torch.Tensor, *, reverse_complement_average: bool = True) -> torch.Tensor:
        """Predictions on the target scale for one-hot ``x``, averaged over both strands when asked."""
        pred = self.mean(self.inference(x)["output"])
        if reverse_complement_average:
            rc = self.reverse_strand_tracks(self.mean(self.inference(x.flip(-2).flip(-1))["output"]))
            pred = 0.5 * (pred + (rc.flip(1) if rc.dim() == 3 else rc))  # profiles are flipped back
        return pred

    def loss(self, tensors, inference_outputs, generative_outputs=None) -> LossOutput:
        """Poisson negative log-likelihood (``rate - y log rate``, log link), BCE on logits, or MSE (entry mean)."""
        output, target = inference_outputs["output"], tensors[TARGET_KEY].to(inference_outputs["output"].dtype)
        target = target.view_as(output)
        if self.loss_name == "poisson":
            per_obs = (_rate(output) - target * output.clamp(max=20.0)).flatten(1).mean(1)
        elif self.loss_name == "bce":
            per_obs = F.binary_cross_entropy_with_logits(output, target, reduction="none").flatten(1).mean(1)
        else:
            per_obs = (output - target).pow(2).flatten(1).mean(1)
        loss = per_obs.mean()
        return LossOutput(loss=loss, reconstruction_loss=per_obs, n_obs_minibatch=target.shape[0])

    def sample(self, *args, **kwargs):
        """Not defined (discriminative model)."""
        raise NotImplementedError("GenomicInterpreter is discriminative; it has no generative sampling.")
