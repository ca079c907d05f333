"""UnitedNet building blocks: multi-task network for paired multi-modal data (Tang et al., Nat Commun 2023).

One encoder per modality maps into a shared latent size; one decoder per modality reads *any* modality's
latent, so decoder ``t`` applied to the latent of modality ``s`` is a reconstruction (``s == t``) or a
cross-modal prediction. Group identification runs ``n_heads`` parallel heads, each a fuser (softmax weights
per modality or per latent dimension) -> projector -> cosine-prototype classifier. The heads are stored as
batched parameters and evaluated with one ``einsum`` each, so adding heads costs almost nothing.

Pure torch; no AnnData. Losses: :func:`reconstruction_translation_loss`, :func:`contrastive_loss`,
:func:`self_entropy_loss`, :func:`ddc_loss` (Cauchy-Schwarz divergence terms of Kampffmeyer et al. 2019)
and :func:`lsgan_losses`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .losses import depth_offset

__all__ = [
    "CosinePrototypeHeads",
    "UnitedNetwork",
    "contrastive_loss",
    "ddc_loss",
    "lsgan_losses",
    "mlp",
    "reconstruction_translation_loss",
    "refine_prototypes",
    "ridge_fit",
    "self_entropy_loss",
]

# helpers


def exists(value) -> bool:
    """``value is not None``."""
    return value is not None


def mlp(dims: Sequence[int], *, dropout: float = 0.0, input_dropout: float = 0.0, last_activation: bool = False):
    """Stack of ``Linear -> LayerNorm -> ReLU -> Dropout`` layers; the last layer is a plain ``Linear``.

    Parameters
    ----------
    dims
        Widths ``[in, hidden..., out]``.
    dropout
        Dropout after each hidden activation.
    input_dropout
        Dropout applied to the input (feature masking, a regulariser for wide inputs).
    last_activation
        Also normalise and activate the last layer.

    Examples
    --------
    >>> net = mlp([100, 64, 8], dropout=0.1)
    >>> net(torch.randn(4, 100)).shape
    torch.Size([4, 8])
    """
    layers: list[nn.Module] = [nn.Dropout(input_dropout)] if input_dropout > 0 else []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2 or last_activation:
            layers += [nn.LayerNorm(d_out), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def ridge_fit(
    x: torch.Tensor,
    y: torch.Tensor | Sequence[torch.Tensor],
    alphas: Sequence[float] = tuple(10.0 ** (k / 4) for k in range(-8, 25)),
):
    """Multi-output ridge regression with an intercept; one penalty per target matrix chosen by leave-one-out error.

    The leave-one-out residuals come in closed form from one thin SVD of the centred ``x`` (the same criterion as
    scikit-learn's ``RidgeCV``), so trying many penalties costs little, and several target matrices share the
    SVD. Computed in float64; above 2,000 cells and 2,000 features the SVD comes from the smaller Gram matrix.

    Parameters
    ----------
    x
        Inputs ``(cells, p)``.
    y
        Targets ``(cells, q)``, or a sequence of such matrices (each gets its own penalty).
    alphas
        Candidate penalties (default ``10 ** (k / 4)`` for ``k = -8 ... 24``, on standardised data).

    Returns
    -------
    ``(weight (p, q), bias (q,), alpha)`` with predictions ``x @ weight + bias``; a list of them when ``y`` is a
    sequence.

    Examples
    --------
    >>> x = torch.randn(50, 5)
    >>> w, b, alpha = ridge_fit(x, x[:, :2] * 3 + 1)
    >>> torch.allclose(x @ w + b, x[:, :2] * 3 + 1, atol=0.1)
    True
    """
    if isinstance(y, torch.Tensor):
        return ridge_fit(x, [y], alphas)[0]
    dtype = x.dtype
    x = x.double()
    x_mean = x.mean(0)
    u, s, vt = _thin_svd(x - x_mean)
    out = []
    for target in y:
        target = target.double()
        y_mean = target.mean(0)
        yc = target - y_mean
        uty = u.T @ yc
        errors = _loo_errors(u, s.pow(2), yc, uty, alphas)
        best_alpha = float(alphas[errors.index(min(errors))])
        weight = vt.T @ ((s / (s.pow(2) + best_alpha))[:, None] * uty)
        bias = y_mean - x_mean @ weight
        out.append((weight.to(dtype), bias.to(dtype), best_alpha))
    return out


def _thin_svd(xc: torch.Tensor, gram_above: int = 2000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD ``(u, s, vt)`` of ``xc``, through its smaller Gram matrix when both sides exceed ``gram_above``.

    The Gram route is the eigendecomposition of ``xc @ xc.T`` or ``xc.T @ xc``: at 5,000 x 5,000 in float64 it
    takes about 40 s against 67 s for LAPACK's SVD (1 thread). It squares the condition number, so components
    below ``1e-12`` of the largest squared singular value are dropped (ridge shrinks them to nothing anyway: the
    smallest penalty tried is ``0.01`` on standardised data).
    """
    n, p = xc.shape
    if min(n, p) <= gram_above:
        return torch.linalg.svd(xc, full_matrices=False)
    wide = p >= n
    squared, vectors = torch.linalg.eigh(xc @ xc.T if wide else xc.T @ xc)
    keep = torch.flip(torch.nonzero(squared > squared.max() * 1e-12).ravel(), [0])  # largest first, as in the SVD
    s, vectors = squared[keep].sqrt(), vectors[:, keep]
    if wide:
        return vectors, s, (xc.T @ vectors / s).T
    return xc @ vectors / s, s, vectors.T


def _loo_errors(
    u: torch.Tensor, s2: torch.Tensor, yc: torch.Tensor, uty: torch.Tensor, alphas: Sequence[float]
) -> list[float]:
    """Mean squared leave-one-out residual of ridge regression with an intercept, for each penalty in ``alphas``.

    ``u`` and ``s2`` are the left singular vectors and squared singular values of the centred inputs, ``yc`` the
    centred targets ``(cells, q)`` and ``uty = u.T @ yc``. A row's squared residual norm comes either from the
    fitted values (``cells x rank x q`` operations per penalty) or, when the targets outnumber the rank, from the
    ``rank x rank`` Gram matrix of ``uty`` (``cells x rank^2``), whichever is cheaper.
    """
    n, q = yc.shape
    u2 = u.pow(2)
    through_gram = u.shape[1] < q
    if through_gram:
        row_norms, cross, gram = yc.pow(2).sum(1), yc @ uty.T, uty @ uty.T
    errors = []
    for alpha in alphas:
        shrink = s2 / (s2 + alpha)
        leverage = (u2 @ shrink + 1.0 / n).clamp_max(1 - 1e-6)  # + 1/n: the intercept
        if through_gram:
            w = u * shrink
            squared = (row_norms - 2 * (w * cross).sum(1) + ((w @ gram) * w).sum(1)).clamp_min(0)
        else:
            squared = (yc - u @ (shrink[:, None] * uty)).pow(2).sum(1)
        errors.append(float((squared / (1 - leverage).pow(2)).sum()) / (n * q))
    return errors


# classes


class CosinePrototypeHeads(nn.Module):
    """``n_heads`` group-identification heads evaluated in parallel.

    Each head fuses the modality latents with learned softmax weights (one per modality, ``fuser="modality"``,
    or one per modality and latent dimension, ``fuser="feature"``), projects the fused latent
    (``Linear -> LayerNorm -> ReLU``) and scores it against ``n_classes`` prototypes whose rows are
    L2-normalised at every forward pass (cosine prototypes, no bias).

    Parameters
    ----------
    n_modalities
        Number of modality latents fused.
    latent_dim
        Latent width.
    projection_dim
        Width of the projector output.
    n_classes
        Number of classes (supervised) or clusters (unsupervised).
    n_heads
        Number of parallel heads.
    fuser
        ``"modality"`` or ``"feature"``.
    temperature
        Logits are ``<h, w/|w|> / temperature``.
    fusion_init
        ``"uniform"``: every head starts with equal fusion weights. ``"diverse"``: head ``i`` (for ``i`` below
        the number of modalities, keeping at least one head uniform) starts favouring modality ``i`` (softmax
        weight about 0.8 of 3), so the heads start from different views and the choice among them matters.
    fusion_init_logit
        Initial fusion logit of the favoured modality of a ``"diverse"`` head (the others start at 0).

    Examples
    --------
    >>> heads = CosinePrototypeHeads(n_modalities=2, latent_dim=16, projection_dim=32, n_classes=5, n_heads=3)
    >>> out = heads(torch.randn(2, 10, 16))
    >>> out["logits"].shape
    torch.Size([3, 10, 5])
    """

    def __init__(
        self,
        *,
        n_modalities: int,
        latent_dim: int,
        projection_dim: int,
        n_classes: int,
        n_heads: int = 1,
        fuser: Literal["modality", "feature"] = "modality",
        temperature: float = 1.0,
        fusion_init: Literal["uniform", "diverse"] = "uniform",
        fusion_init_logit: float = 2.0,
    ):
        super().__init__()
        if fuser not in ("modality", "feature"):
            raise ValueError(f"`fuser` must be 'modality' or 'feature', got {fuser!r}.")
        if fusion_init not in ("uniform", "diverse"):
            raise ValueError(f"`fusion_init` must be 'uniform' or 'diverse', got {fusion_init!r}.")
        if int(n_heads) < 1:
            raise ValueError(f"`n_heads` must be at least 1, got {n_heads}.")
        self.fuser, self.n_heads, self.temperature = fuser, n_heads, temperature
        fuse_shape = (n_heads, n_modalities) if fuser == "modality" else (n_heads, n_modalities, latent_dim)
        fuse_logits = torch.zeros(fuse_shape)  # softmax -> 1/n_modalities at start
        if fusion_init == "diverse":
            for head in range(min(n_modalities, n_heads - 1)):
                fuse_logits[head, head] = fusion_init_logit
        self.fuse_logits = nn.Parameter(fuse_logits)
        bound = 1 / math.sqrt(latent_dim)
        self.proj_weight = nn.Parameter(torch.empty(n_heads, latent_dim, projection_dim).uniform_(-bound, bound))
        self.proj_bias = nn.Parameter(torch.zeros(n_heads, projection_dim))
        self.norm_weight = nn.Parameter(torch.ones(n_heads, projection_dim))
        self.norm_bias = nn.Parameter(torch.zeros(n_heads, projection_dim))
        self.prototypes = nn.Parameter(torch.randn(n_heads, n_classes, projection_dim) / math.sqrt(projection_dim))

    def fusion_weights(self, available: torch.Tensor | None = None) -> torch.Tensor:
        """Softmax fusion weights, ``(heads, modalities)`` or ``(heads, modalities, latent)``.

        ``available`` (bool, per modality) renormalises the weights over the modalities present.
        """
        logits = self.fuse_logits
        if exists(available):
            shape = (1, -1) if self.fuser == "modality" else (1, -1, 1)
            logits = logits.masked_fill(~available.view(shape), float("-inf"))
        return logits.softmax(dim=1)

    def forward(self, z: torch.Tensor, available: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Score stacked latents ``z`` of shape ``(modalities, batch, latent)``.

        Returns ``fused`` (heads, batch, latent), ``hidden`` (heads, batch, projection) and ``logits``
        (heads, batch, classes).
        """
        w = self.fusion_weights(available)
        if exists(available):
            z = torch.where(available.view(-1, 1, 1), z, torch.zeros((), dtype=z.dtype, device=z.device))
        if self.fuser == "modality":
            fused = torch.einsum("hm,mbd->hbd", w, z)
        else:
            fused = torch.einsum("hmd,mbd->hbd", w, z)
        hidden = torch.einsum("hbd,hdp->hbp", fused, self.proj_weight) + self.proj_bias[:, None]
        hidden = F.layer_norm(hidden, hidden.shape[-1:]) * self.norm_weight[:, None] + self.norm_bias[:, None]
        hidden = F.relu(hidden)
        prototypes = F.normalize(self.prototypes, dim=-1)
        logits = torch.einsum("hbp,hkp->hbk", hidden, prototypes) / self.temperature
        return {"fused": fused, "hidden": hidden, "logits": logits}


class UnitedNetwork(nn.Module):
    """Encoders, all-to-all decoders, discriminators, contrastive projector and prototype heads.

    Parameters
    ----------
    in_features
        ``{modality: n_features}``; the order fixes the modality order.
    latent_dim
        Shared latent width of every modality.
    hidden
        Hidden widths of encoders (decoders use the reverse).
    n_classes
        Classes or clusters of the heads (0: no heads, translation only).
    n_heads
        Parallel heads.
    projection_dim
        Projector width of the heads.
    fuser
        ``"modality"`` (softmax weight per modality) or ``"feature"`` (per modality and latent dimension).
    dropout
        Dropout in hidden layers.
    input_dropout
        Dropout on the encoder inputs.
    discriminators
        Add one LSGAN discriminator per modality (real input vs its reconstruction).
    contrastive_projector
        Add a small MLP on the latents for the contrastive loss (else identity).
    temperature
        Temperature of the cosine-prototype logits.
    fusion_init
        Initial fusion weights of the heads, ``"uniform"`` or ``"diverse"`` (see :class:`CosinePrototypeHeads`).
    linear_skip
        Keep a linear map (buffers ``skip_weight_<i>_<j>``, ``skip_bias_<i>_<j>``) from every other modality to
        each target modality next to the encoder-decoder path: ``True`` for all targets, or a sequence of target
        modality names (e.g. the continuous ones; a name stands for the maps from every other modality) and
        ``(source, target)`` pairs. :meth:`translate` returns
        ``blend * decoder(encoder(x)) + (1 - blend) * (x @ W + b)`` with one ``blend`` per target feature
        (buffers ``skip_blend_<i>_<j>``, read with :meth:`skip_blend`). The maps are not trained by gradient:
        set them with :meth:`set_linear_skip` (e.g. from ``ridge_fit``) and the blend with
        :meth:`set_skip_blend`; until then the maps are zero and ``blend`` is 1.

    Examples
    --------
    >>> net = UnitedNetwork(in_features={"rna": 50, "adt": 10}, latent_dim=8, hidden=(32,), n_classes=4)
    >>> x = {"rna": torch.randn(6, 50), "adt": torch.randn(6, 10)}
    >>> z = net.encode(x)
    >>> net.decode(z)["adt"].shape  # (sources, batch, features)
    torch.Size([2, 6, 10])
    """

    def __init__(
        self,
        *,
        in_features: Mapping[str, int],
        latent_dim: int = 64,
        hidden: Sequence[int] = (256,),
        n_classes: int = 0,
        n_heads: int = 1,
        projection_dim: int = 100,
        fuser: Literal["modality", "feature"] = "modality",
        dropout: float = 0.1,
        input_dropout: float = 0.0,
        discriminators: bool = False,
        contrastive_projector: bool = True,
        temperature: float = 1.0,
        fusion_init: Literal["uniform", "diverse"] = "uniform",
        linear_skip: bool | Sequence[str] = False,
    ):
        super().__init__()
        self.modalities = list(in_features)
        self.in_features = dict(in_features)
        #: ordered ``(source, target)`` pairs that have a linear map
        self.skip_pairs = self._skip_pairs(linear_skip)
        #: target modalities with a linear map from at least one other modality
        self.skip_targets = [m for m in self.modalities if any(t == m for _, t in self.skip_pairs)]
        self.linear_skip = bool(self.skip_pairs)
        for source, target in self.skip_pairs:
            i, j = self.modalities.index(source), self.modalities.index(target)
            d_in, d_out = self.in_features[source], self.in_features[target]
            self.register_buffer(f"skip_weight_{i}_{j}", torch.zeros(d_in, d_out))
            self.register_buffer(f"skip_bias_{i}_{j}", torch.zeros(d_out))
            self.register_buffer(f"skip_blend_{i}_{j}", torch.ones(d_out))
        self.latent_dim = latent_dim
        hidden = list(hidden)
        self.encoders = nn.ModuleDict(
            {m: mlp([d, *hidden, latent_dim], dropout=dropout, input_dropout=input_dropout)
             for m, d in in_features.items()}
        )
        self.decoders = nn.ModuleDict(
            {m: mlp([latent_dim, *hidden[::-1], d], dropout=dropout) for m, d in in_features.items()}
        )
        self.latent_projector = (
            mlp([latent_dim, latent_dim, latent_dim]) if contrastive_projector else nn.Identity()
        )
        self.discriminators = (
            nn.ModuleDict({m: mlp([d, hidden[-1] if hidden else 64, 1]) for m, d in in_features.items()})
            if discriminators else None
        )
        self.heads = (
            CosinePrototypeHeads(n_modalities=len(self.modalities), latent_dim=latent_dim,
                                 projection_dim=projection_dim, n_classes=n_classes, n_heads=n_heads,
                                 fuser=fuser, temperature=temperature, fusion_init=fusion_init)
            if n_classes > 0 else None
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def _skip_pairs(self, linear_skip: bool | Sequence[str | tuple[str, str]]) -> list[tuple[str, str]]:
        """Ordered ``(source, target)`` pairs named by ``linear_skip`` (a target name stands for all its sources)."""
        if linear_skip is True:
            linear_skip = self.modalities
        pairs = set()
        for entry in linear_skip or []:
            named = [entry] if isinstance(entry, str) else list(entry)
            unknown = sorted(set(named) - set(self.modalities))
            if unknown or len(named) not in (1, 2):
                raise KeyError(
                    f"`linear_skip` entry {entry!r} must be a target modality or a (source, target) pair of modalities "
                    f"among {self.modalities}."
                )
            sources = self.modalities if len(named) == 1 else named[:1]
            pairs |= {(s, named[-1]) for s in sources if s != named[-1]}
        return [(s, t) for s in self.modalities for t in self.modalities if (s, t) in pairs]

    def encode(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Latent of each modality present in ``x``."""
        return {m: self.encoders[m](v) for m, v in x.items()}

    def decode(self, z: Mapping[str, torch.Tensor], targets: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Decode every target from every source latent in one call per decoder.

        Returns ``{target: tensor (sources, batch, target features)}`` with sources in the order of ``z``.
        """
        stacked = torch.cat(list(z.values()), dim=0)
        n = len(z)
        return {t: rearrange(self.decoders[t](stacked), "(s b) f -> s b f", s=n) for t in (targets or self.modalities)}

    def set_linear_skip(self, source: str, target: str, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Set the linear map ``source -> target`` (input and output in the units the network sees)."""
        if not self.has_linear_map(source, target):
            raise ValueError(f"This network has no linear map {source} -> {target} (see `linear_skip`).")
        i, j = self.modalities.index(source), self.modalities.index(target)
        getattr(self, f"skip_weight_{i}_{j}").copy_(weight)
        getattr(self, f"skip_bias_{i}_{j}").copy_(bias)

    def has_linear_map(self, source: str, target: str) -> bool:
        """Whether ``source -> target`` has a linear map (see ``linear_skip``)."""
        return (source, target) in self.skip_pairs

    def skip_blend(self, source: str, target: str) -> torch.Tensor:
        """Weight of the decoder path per target feature in ``source -> target`` (1 = decoder only, 0 = linear only).

        Ones for a pair without a linear map (a binary target, or ``linear_skip`` off).
        """
        if not self.has_linear_map(source, target):
            return torch.ones(self.in_features[target], device=next(self.parameters()).device)
        i, j = self.modalities.index(source), self.modalities.index(target)
        return getattr(self, f"skip_blend_{i}_{j}")

    def set_skip_blend(self, source: str, target: str, blend: torch.Tensor | float) -> None:
        """Set the decoder-path weight of ``source -> target``: one value, or one per target feature, in [0, 1]."""
        if not self.has_linear_map(source, target):
            raise ValueError(f"This network has no linear map {source} -> {target} (see `linear_skip`).")
        buffer = self.skip_blend(source, target)
        blend = torch.as_tensor(blend, dtype=buffer.dtype, device=buffer.device)
        if bool(((blend < 0) | (blend > 1)).any()):
            raise ValueError("Blend weights must lie in [0, 1].")
        buffer.copy_(blend.expand_as(buffer))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved when the blend was one value per pair (a modalities x modalities ``skip_blend``)
        old = state_dict.pop(prefix + "skip_blend", None)
        if old is not None and self.linear_skip:
            for i, s in enumerate(self.modalities):
                for j, t in enumerate(self.modalities):
                    if self.has_linear_map(s, t):
                        width = getattr(self, f"skip_blend_{i}_{j}").shape[0]
                        state_dict[prefix + f"skip_blend_{i}_{j}"] = old[i, j].expand(width).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def linear_translate(self, x: torch.Tensor, source: str, target: str) -> torch.Tensor:
        """Prediction of the linear map ``source -> target``."""
        i, j = self.modalities.index(source), self.modalities.index(target)
        return torch.addmm(getattr(self, f"skip_bias_{i}_{j}"), x, getattr(self, f"skip_weight_{i}_{j}"))

    def translate(self, x: torch.Tensor, source: str, target: str) -> torch.Tensor:
        """Predict ``target`` from ``source`` input ``x`` (decoder of the source latent, blended with the linear map).

        Outputs are in the units of the decoder (standardised values, or logits for binary modalities).
        """
        out = self.decoders[target](self.encoders[source](x))
        if self.has_linear_map(source, target):
            blend = self.skip_blend(source, target)
            out = blend * out + (1 - blend) * self.linear_translate(x, source, target)
        return out

    def stack(self, z: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack latents in model order ``(modalities, batch, latent)``; missing modalities are zero and masked."""
        ref = next(iter(z.values()))
        available = torch.tensor([m in z for m in self.modalities], device=ref.device)
        zeros = torch.zeros_like(ref)
        return torch.stack([z.get(m, zeros) for m in self.modalities]), available

    def classify(self, z: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run all heads on the (possibly partial) set of modality latents."""
        if self.heads is None:
            raise RuntimeError("This network has no group-identification heads (translation-only).")
        stacked, available = self.stack(z)
        return self.heads(stacked, None if bool(available.all()) else available)


def refine_prototypes(hidden: torch.Tensor, prototypes: torch.Tensor, *, n_iter: int = 30) -> torch.Tensor:
    """Spherical k-means on each head's projected cells, started from its prototypes.

    A cell belongs to the prototype with the largest ``<h, w/|w|>`` (the head's own assignment); each
    prototype moves to the mean direction of its cells; repeated until no assignment changes. A prototype
    that loses all its cells keeps its direction.

    Parameters
    ----------
    hidden
        Projected cells, ``(heads, cells, projection_dim)``.
    prototypes
        Prototype rows, ``(heads, clusters, projection_dim)`` (any norm).
    n_iter
        Most assignment / update rounds (it stops earlier once no assignment changes).

    Returns
    -------
    The refined prototypes, same shape as ``prototypes`` (unit rows where a prototype has cells).

    Examples
    --------
    >>> h = torch.tensor([[[1.0, 0.1], [0.9, 0.0], [0.0, 1.0], [0.1, 0.8]]])
    >>> refine_prototypes(h, torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])).round(decimals=2)
    tensor([[[1.0000, 0.0500],
             [0.0600, 1.0000]]])
    """
    if hidden.dim() != 3 or prototypes.dim() != 3 or hidden.shape[::2] != prototypes.shape[::2]:
        raise ValueError(
            f"Expected hidden (heads, cells, dim) and prototypes (heads, clusters, dim) with the same heads and dim, "
            f"got {tuple(hidden.shape)} and {tuple(prototypes.shape)}."
        )
    unit = F.normalize(hidden, dim=-1)
    refined, assign = prototypes.clone(), None
    for _ in range(n_iter):
        new_assign = torch.einsum("hnp,hkp->hnk", unit, F.normalize(refined, dim=-1)).argmax(-1)
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        members = F.one_hot(assign, prototypes.shape[1]).to(unit.dtype)  # (heads, cells, clusters)
        sums = torch.einsum("hnk,hnp->hkp", members, unit)
        refined = torch.where(members.sum(1)[..., None] > 0, F.normalize(sums, dim=-1), refined)
    return refined


# losses


def reconstruction_translation_loss(
    x: Mapping[str, torch.Tensor], decoded: Mapping[str, torch.Tensor], sources: Sequence[str],
    binary: Mapping[str, bool],
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Reconstruction (source == target) and translation (source != target) losses.

    MSE for continuous modalities, BCE on logits for binary ones; both averaged over features and cells.
    Translation is averaged over the ``n (n - 1)`` ordered pairs. A binary target's logits get each cell's log
    depth (number of ones) minus the minibatch's mean log depth as an offset, so that the latents need not
    encode depth (``multiomix.nn.losses.depth_offset``); decoded without it, a cell is at a typical
    depth.

    Returns
    -------
    ``(reconstruction, translation, per_pair)`` where ``per_pair`` maps ``"source->target"`` to its loss.

    Examples
    --------
    >>> x = {"a": torch.randn(4, 3), "b": torch.randn(4, 2)}
    >>> dec = {"a": torch.randn(2, 4, 3), "b": torch.randn(2, 4, 2)}
    >>> rec, tr, pairs = reconstruction_translation_loss(x, dec, ["a", "b"], {"a": False, "b": False})
    >>> sorted(pairs)
    ['a->a', 'a->b', 'b->a', 'b->b']
    """
    per_pair = {}
    for t, out in decoded.items():
        target = x[t].unsqueeze(0).expand_as(out)
        if binary[t]:
            loss = F.binary_cross_entropy_with_logits(out + depth_offset(x[t]), target, reduction="none")
        else:
            loss = F.mse_loss(out, target, reduction="none")
        loss = loss.mean(dim=(1, 2))
        for i, s in enumerate(sources):
            per_pair[f"{s}->{t}"] = loss[i]
    zero = next(iter(decoded.values())).new_zeros(())
    rec = [v for k, v in per_pair.items() if k.split("->")[0] == k.split("->")[1]]
    tra = [v for k, v in per_pair.items() if k.split("->")[0] != k.split("->")[1]]
    reconstruction = torch.stack(rec).mean() if rec else zero
    translation = torch.stack(tra).mean() if tra else zero
    return reconstruction, translation, per_pair


def contrastive_loss(
    z: torch.Tensor, *, temperature: float = 0.1, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-modal InfoNCE on stacked latents ``(modalities, batch, dim)``.

    For every ordered pair of modalities ``(i, j)`` the positive of cell ``b`` in modality ``i`` is the same
    cell in modality ``j``; negatives are the other cells of the batch in modality ``j``, restricted to cells of
    a different (predicted) group when ``groups`` is given. Similarities are cosine / ``temperature``.

    Examples
    --------
    >>> z = torch.randn(2, 8, 4)
    >>> contrastive_loss(torch.cat([z[:1], z[:1]]), temperature=0.1) < contrastive_loss(z, temperature=0.1)
    tensor(True)
    """
    n_mod, n = z.shape[:2]
    if n_mod < 2 or n < 2:
        return z.new_zeros(())
    z = F.normalize(z, dim=-1)
    sim = torch.einsum("ibd,jcd->ijbc", z, z) / temperature
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    if exists(groups):
        same = (groups[:, None] == groups[None, :]) & ~eye
        sim = sim.masked_fill(same, float("-inf"))
    pairs = ~torch.eye(n_mod, dtype=torch.bool, device=z.device)
    logits = sim[pairs]  # (pairs, batch, batch)
    target = torch.arange(n, device=z.device).expand(logits.shape[0], n)
    return F.cross_entropy(rearrange(logits, "p b c -> (p b) c"), target.reshape(-1))


def self_entropy_loss(proba: torch.Tensor) -> torch.Tensor:
    """``sum_k pbar_k log pbar_k`` of the batch-mean cluster probabilities (minimising it balances clusters).

    Works on ``(batch, k)`` or batched ``(heads, batch, k)`` input (one value per head).

    Examples
    --------
    >>> self_entropy_loss(torch.full((4, 2), 0.5)) < self_entropy_loss(torch.tensor([[1.0, 0.0]] * 4))
    tensor(True)
    """
    mean = proba.mean(dim=-2).clamp_min(1e-8)
    return (mean * mean.log()).sum(dim=-1)


def _kernel(hidden: torch.Tensor, rel_sigma: float) -> torch.Tensor:
    dist = torch.cdist(hidden, hidden).pow(2).clamp_min(0)
    n = dist.shape[-1]
    off = dist[..., ~torch.eye(n, dtype=torch.bool, device=dist.device)]
    sigma2 = (rel_sigma * off.median(dim=-1).values).clamp_min(1e-6).detach()
    return torch.exp(-dist / (2 * sigma2[..., None, None]))


def _cauchy_schwarz(a: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    # mean over cluster pairs of <a_i, K a_j> / sqrt(<a_i, K a_i><a_j, K a_j>)
    k = a.shape[-1]
    nom = a.transpose(-1, -2) @ kernel @ a
    diag = torch.diagonal(nom, dim1=-2, dim2=-1).clamp_min(1e-9)
    ratio = nom / torch.sqrt(diag[..., :, None] * diag[..., None, :])
    upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=a.device), diagonal=1)
    return ratio[..., upper].sum(-1) * 2 / (k * (k - 1))


def ddc_loss(hidden: torch.Tensor, proba: torch.Tensor, *, rel_sigma: float = 0.15) -> torch.Tensor:
    """Deep divergence-based clustering loss (Kampffmeyer et al. 2019), terms 1 + 3.

    Term 1: Cauchy-Schwarz divergence between cluster assignment vectors under a Gaussian kernel on the
    hidden representation (``sigma^2 = rel_sigma * median squared distance``). Term 3: the same divergence
    on ``exp(-|p_i - e_k|^2)``, pulling assignments towards simplex corners. Works batched over heads.

    Examples
    --------
    >>> h = torch.cat([torch.randn(8, 4) - 5, torch.randn(8, 4) + 5])
    >>> good = torch.cat([torch.tensor([[1.0, 0.0]] * 8), torch.tensor([[0.0, 1.0]] * 8)])
    >>> ddc_loss(h, good) < ddc_loss(h, good.flip(0).roll(4, 0))
    tensor(True)
    """
    kernel = _kernel(hidden, rel_sigma)
    k = proba.shape[-1]
    eye = torch.eye(k, dtype=proba.dtype, device=proba.device)
    corners = torch.exp(-(proba[..., :, None, :] - eye).pow(2).sum(-1))
    return _cauchy_schwarz(proba, kernel) + _cauchy_schwarz(corners, kernel)


def lsgan_losses(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares GAN losses ``(discriminator, generator)`` from discriminator scores.

    The discriminator loss pushes real scores to 1 and fake to 0; the generator loss pushes fake to 1.
    Detach the fake input for the discriminator update.

    Examples
    --------
    >>> d, g = lsgan_losses(torch.ones(4, 1), torch.zeros(4, 1))
    >>> float(d), float(g)
    (0.0, 1.0)
    """
    d = 0.5 * (F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake)))
    g = F.mse_loss(fake, torch.ones_like(fake))
    return d, g
