"""Multimodal autoencoder: one encoder per modality, a joint latent, one decoder per modality.

The layout follows the bimodal autoencoder of Ngiam et al. (ICML 2011), reviewed as the "joint representation"
family by Guo, Wang & Wang (IEEE Access 7, 2019): modality-specific encoders feed a **shared joint layer**
whose output is the embedding, and every modality is decoded from that **joint** latent. Training with whole
modalities masked out (modality dropout) teaches the joint layer to place a cell from any subset of its
modalities, which is what makes cross-modal translation (encode RNA, decode ATAC) possible.

The joint layer is a masked mean of per-modality linear projections: with every modality present it equals
one linear layer over the concatenated encoder outputs; with some masked out it averages the remaining ones,
so its scale does not depend on how many modalities a cell has.

Pure torch; no AnnData here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = [
    "LIKELIHOODS",
    "ModalityDecoder",
    "ModalityEncoder",
    "MultimodalAutoencoder",
    "nb_nll",
    "reconstruction_loss",
]

LIKELIHOODS = ("mse", "bce", "nb")

# helpers


def nb_nll(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative log-likelihood of counts ``x`` under a negative binomial (mean ``mu``, inverse dispersion ``theta``).

    Parameters
    ----------
    x
        Observed counts, shape ``(batch, features)``.
    mu
        Means, same shape.
    theta
        Inverse dispersion, broadcastable to ``x``.
    eps
        Numerical floor inside the logarithms.

    Returns
    -------
    Element-wise negative log-likelihood, same shape as ``x``.

    Examples
    --------
    >>> x = torch.tensor([[0.0, 3.0]])
    >>> nb_nll(x, torch.tensor([[1.0, 3.0]]), torch.tensor([10.0, 10.0])).shape
    torch.Size([1, 2])
    """
    log_theta_mu = torch.log(theta + mu + eps)
    log_lik = (
        theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )
    return -log_lik


def reconstruction_loss(x: torch.Tensor, output: Mapping[str, torch.Tensor], likelihood: str) -> torch.Tensor:
    """Per-cell reconstruction loss, averaged over features (so modalities of different widths are comparable).

    Parameters
    ----------
    x
        Observed values, shape ``(batch, features)``.
    output
        A :class:`ModalityDecoder` output.
    likelihood
        ``"mse"``, ``"bce"`` or ``"nb"``.

    Returns
    -------
    Tensor of shape ``(batch,)``.

    Examples
    --------
    >>> dec = ModalityDecoder(dim_latent=4, dim_out=6, likelihood="bce")
    >>> out = dec(torch.randn(3, 4))
    >>> reconstruction_loss(torch.ones(3, 6), out, "bce").shape
    torch.Size([3])
    """
    if likelihood == "mse":
        loss = F.mse_loss(output["mean"], x, reduction="none")
    elif likelihood == "bce":
        loss = F.binary_cross_entropy_with_logits(output["logits"], x, reduction="none")
    elif likelihood == "nb":
        library = x.sum(-1, keepdim=True)
        loss = nb_nll(x, output["scale"] * library, output["theta"])
    else:
        raise ValueError(f"Unknown likelihood {likelihood!r}; expected one of {LIKELIHOODS}.")
    return loss.mean(-1)


# classes


class DenseBlock(nn.Module):
    """Linear -> LayerNorm -> GELU -> Dropout."""

    def __init__(self, *, dim_in: int, dim_out: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_in, dim_out), nn.LayerNorm(dim_out), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResidualBlock(nn.Module):
    """Pre-norm residual feed-forward block ``x + FF(LN(x))``."""

    def __init__(self, *, dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(self.norm(x)) + x


class ModalityEncoder(nn.Module):
    """Encoder of one modality: optional feature dropout, a dense block, ``depth - 1`` residual blocks.

    Parameters
    ----------
    dim_in
        Number of input features.
    dim_hidden
        Hidden width (the encoder's output width).
    depth
        Number of blocks (1 = a single dense layer).
    dropout
        Dropout inside the blocks.
    input_dropout
        Dropout on the input features (a denoising autoencoder when > 0).

    Examples
    --------
    >>> enc = ModalityEncoder(dim_in=100, dim_hidden=32)
    >>> enc(torch.randn(8, 100)).shape
    torch.Size([8, 32])
    """

    def __init__(
        self, *, dim_in: int, dim_hidden: int = 256, depth: int = 1, dropout: float = 0.1, input_dropout: float = 0.0
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}.")
        self.input_dropout = nn.Dropout(input_dropout)
        self.stem = DenseBlock(dim_in=dim_in, dim_out=dim_hidden, dropout=dropout)
        self.blocks = nn.Sequential(*[ResidualBlock(dim=dim_hidden, dropout=dropout) for _ in range(depth - 1)])
        self.norm = nn.LayerNorm(dim_hidden) if depth > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.norm(self.blocks(self.stem(self.input_dropout(x))))


class ModalityDecoder(nn.Module):
    """Decoder of one modality from the joint latent.

    Parameters
    ----------
    dim_latent
        Width of the joint latent.
    dim_out
        Number of features of the modality.
    dim_hidden
        Hidden width.
    depth
        Number of hidden blocks (0 = a linear decoder).
    dropout
        Dropout inside the blocks.
    likelihood
        ``"mse"`` (returns ``mean``), ``"bce"`` (returns ``logits`` and ``mean`` = probabilities) or ``"nb"``
        (returns ``scale``, a softmax over features that is multiplied by the library size, and ``theta``, the
        feature-wise inverse dispersion).

    Examples
    --------
    >>> dec = ModalityDecoder(dim_latent=10, dim_out=50, likelihood="nb")
    >>> out = dec(torch.randn(4, 10))
    >>> out["scale"].sum(-1)  # doctest: +SKIP
    tensor([1., 1., 1., 1.])
    """

    def __init__(
        self,
        *,
        dim_latent: int,
        dim_out: int,
        dim_hidden: int = 256,
        depth: int = 1,
        dropout: float = 0.1,
        likelihood: str = "mse",
    ):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"Unknown likelihood {likelihood!r}; expected one of {LIKELIHOODS}.")
        self.likelihood = likelihood
        layers: list[nn.Module] = []
        dim = dim_latent
        for _ in range(depth):
            layers.append(DenseBlock(dim_in=dim, dim_out=dim_hidden, dropout=dropout))
            dim = dim_hidden
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(dim, dim_out)
        if likelihood == "nb":
            self.log_theta = nn.Parameter(torch.full((dim_out,), math.log(10.0)))

    @torch.no_grad()
    def init_output(self, feature_mean: torch.Tensor) -> None:
        """Start the output at the data's per-feature mean (mean values, open-peak rates or count shares).

        Saves the first hundreds of steps that would otherwise be spent learning per-feature offsets.
        """
        mean = torch.as_tensor(feature_mean, dtype=self.head.bias.dtype).flatten()
        if mean.shape != self.head.bias.shape:
            raise ValueError(f"feature_mean has {mean.numel()} values, the decoder {self.head.bias.numel()} features.")
        if self.likelihood == "mse":
            self.head.bias.copy_(mean)
        elif self.likelihood == "bce":
            self.head.bias.copy_(torch.logit(mean.clamp(1e-4, 1 - 1e-4)))
        else:
            share = mean.clamp(min=0) + 1e-8
            self.head.bias.copy_(torch.log(share / share.sum()))

    def forward(self, z: torch.Tensor, offset: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Decode ``z``; ``offset`` (``(batch, 1)``, ``"bce"`` only) is added to every logit of a cell."""
        out = self.head(self.hidden(z))
        if self.likelihood == "mse":
            return {"mean": out}
        if self.likelihood == "bce":
            out = out if offset is None else out + offset
            return {"logits": out, "mean": torch.sigmoid(out)}
        scale = torch.softmax(out, dim=-1)
        return {"scale": scale, "theta": self.log_theta.exp(), "mean": scale}


class MultimodalAutoencoder(nn.Module):
    """Per-modality encoders -> joint latent -> per-modality decoders that all read the joint latent.

    Parameters
    ----------
    dims
        Number of input features per modality, e.g. ``{"rna": 2000, "atac": 5000}``.
    likelihoods
        Reconstruction loss per modality: ``"mse"``, ``"bce"`` (binary data such as ATAC peaks) or ``"nb"``
        (raw counts; encoded as ``log1p``).
    dim_latent
        Width of the joint latent (the embedding).
    dim_hidden
        Hidden width of encoders and decoders.
    depth
        Number of blocks in each encoder and decoder.
    dropout
        Dropout inside the blocks.
    input_dropout
        Dropout on the input features.
    modality_dropout
        Probability, per training cell, of hiding all but one randomly chosen modality from the encoder; the
        decoders still reconstruct every modality, so the latent learns to be complete from one modality alone.

    Examples
    --------
    >>> model = MultimodalAutoencoder(dims={"rna": 100, "atac": 300}, likelihoods={"rna": "mse", "atac": "bce"})
    >>> x = {"rna": torch.randn(8, 100), "atac": torch.randint(0, 2, (8, 300)).float()}
    >>> z, outputs = model(x)
    >>> z.shape, outputs["atac"]["logits"].shape
    (torch.Size([8, 20]), torch.Size([8, 300]))
    >>> model.encode({"rna": x["rna"]}).shape  # one modality alone
    torch.Size([8, 20])
    """

    def __init__(
        self,
        *,
        dims: Mapping[str, int],
        likelihoods: Mapping[str, str],
        dim_latent: int = 20,
        dim_hidden: int = 256,
        depth: int = 1,
        dropout: float = 0.1,
        input_dropout: float = 0.0,
        modality_dropout: float = 0.0,
    ):
        super().__init__()
        if set(dims) != set(likelihoods):
            raise ValueError(
                f"`dims` {sorted(dims)} and `likelihoods` {sorted(likelihoods)} must name the same modalities."
            )
        if not 0.0 <= modality_dropout <= 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1], got {modality_dropout}.")
        self.modalities = list(dims)
        self.likelihoods = dict(likelihoods)
        self.modality_dropout = modality_dropout
        self.encoders = nn.ModuleDict(
            {
                m: ModalityEncoder(
                    dim_in=dims[m], dim_hidden=dim_hidden, depth=depth, dropout=dropout, input_dropout=input_dropout
                )
                for m in self.modalities
            }
        )
        # joint layer: one projection per modality, averaged over the modalities present
        self.to_joint = nn.ModuleDict({m: nn.Linear(dim_hidden, dim_latent) for m in self.modalities})
        self.decoders = nn.ModuleDict(
            {
                m: ModalityDecoder(
                    dim_latent=dim_latent,
                    dim_out=dims[m],
                    dim_hidden=dim_hidden,
                    depth=depth,
                    dropout=dropout,
                    likelihood=self.likelihoods[m],
                )
                for m in self.modalities
            }
        )

    def transform_input(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Return the encoder input of a modality: ``log1p`` of counts for ``"nb"``, the values otherwise."""
        return torch.log1p(x) if self.likelihoods[modality] == "nb" else x

    def sample_mask(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """Random modality mask ``(batch, n_modalities)`` for modality dropout (at least one modality kept)."""
        n_mod = len(self.modalities)
        mask = torch.ones(batch_size, n_mod, device=device)
        if n_mod < 2 or self.modality_dropout == 0:
            return mask
        drop = torch.rand(batch_size, device=device) < self.modality_dropout
        keep = torch.randint(n_mod, (batch_size,), device=device)
        single = F.one_hot(keep, n_mod).float()
        return torch.where(rearrange(drop, "b -> b 1"), single, mask)

    def encode(self, inputs: Mapping[str, torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """Joint latent from any non-empty subset of modalities.

        Parameters
        ----------
        inputs
            Tensors per modality; modalities absent from the dict are treated as missing.
        mask
            Optional ``(batch, n_modalities)`` 0/1 mask over ``self.modalities`` (columns of absent modalities
            are ignored).
        """
        unknown = sorted(set(inputs) - set(self.modalities))
        if unknown:
            raise ValueError(f"Unknown modalities {unknown}; the model knows {self.modalities}.")
        present = [m for m in self.modalities if m in inputs]
        if not present:
            raise ValueError(f"No inputs given; expected some of {self.modalities}.")
        batch = inputs[present[0]].shape[0]
        device = inputs[present[0]].device
        if mask is None:
            mask = torch.ones(batch, len(self.modalities), device=device)
        parts, weights = [], []
        for m in present:
            j = self.modalities.index(m)
            h = self.encoders[m](self.transform_input(m, inputs[m]))
            parts.append(self.to_joint[m](h))
            weights.append(mask[:, j])
        parts = torch.stack(parts, dim=1)  # (b, m, d)
        weights = rearrange(torch.stack(weights, dim=1), "b m -> b m 1")
        return (parts * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def decode(
        self,
        z: torch.Tensor,
        modalities: list[str] | None = None,
        offsets: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Decode every (or the given) modality from the joint latent.

        ``offsets`` maps ``"bce"`` modalities to a per-cell ``(batch, 1)`` logit offset, e.g. the log of the
        cell's open-peak count over a typical count (``multiomix.nn.losses.depth_offset``), so that sequencing
        depth need not be encoded in ``z``; without one a cell is decoded at the typical depth.
        """
        modalities = self.modalities if modalities is None else modalities
        offsets = offsets or {}
        return {m: self.decoders[m](z, offsets.get(m)) for m in modalities}

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:  # noqa: D102
        mask = self.sample_mask(next(iter(inputs.values())).shape[0], next(iter(inputs.values())).device)
        mask = mask if self.training else torch.ones_like(mask)
        z = self.encode(inputs, mask)
        return z, self.decode(z)

    def loss(
        self,
        inputs: Mapping[str, torch.Tensor],
        outputs: Mapping[str, Mapping[str, torch.Tensor]],
        weights: Mapping[str, float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Weighted per-cell reconstruction loss of each modality (shape ``(batch,)`` each)."""
        weights = weights or {}
        return {
            m: weights.get(m, 1.0) * reconstruction_loss(inputs[m], outputs[m], self.likelihoods[m])
            for m in self.modalities
        }
