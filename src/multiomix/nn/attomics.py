"""AttOmics encoder: feature groups -> grouped projections -> self-attention across group tokens.

Beaude et al., "AttOmics: attention-based architecture for diagnosis and prognosis from omics data",
Bioinformatics 2023; used as the per-modality encoder of CrossAttOmics (Beaude et al., Bioinformatics 2025).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from ._lrp import LRPMixin, absorb_bias, layer_norm


def random_groups(n_features: int, n_groups: int, *, generator: torch.Generator | None = None) -> list[list[int]]:
    """Split a random permutation of ``range(n_features)`` into ``n_groups`` nearly equal sorted groups.

    Examples
    --------
    >>> groups = random_groups(10, 3, generator=torch.Generator().manual_seed(0))
    >>> sorted(sum(groups, [])) == list(range(10))
    True
    """
    if not 1 <= n_groups <= n_features:
        raise ValueError(f"n_groups must be in [1, {n_features}], got {n_groups}.")
    perm = torch.randperm(n_features, generator=generator)
    return [sorted(chunk.tolist()) for chunk in torch.tensor_split(perm, n_groups)]


def group_index(groups: Sequence[Sequence[int]], n_features: int) -> torch.Tensor:
    """(G, max_group_size) index tensor into the features, padded with ``n_features`` (a zero column)."""
    width = max(len(g) for g in groups)
    index = torch.full((len(groups), width), n_features, dtype=torch.long)
    for i, g in enumerate(groups):
        if len(g) == 0:
            raise ValueError(f"Group {i} is empty.")
        index[i, : len(g)] = torch.as_tensor(list(g), dtype=torch.long)
    return index


class GroupedLinear(nn.Module, LRPMixin):
    """One independent linear map per group token, as a single einsum: (N, G, i) -> (N, G, o)."""

    def __init__(self, *, n_groups: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_groups, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(n_groups, out_dim))
        nn.init.uniform_(self.weight, -(in_dim**-0.5), in_dim**-0.5)

    def forward(self, x: torch.Tensor, in_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Map (N, G, in_dim) to (N, G, out_dim); ``in_mask`` (G, in_dim, 1) zeroes padded inputs' weights."""
        weight = self.weight if in_mask is None else self.weight * in_mask
        linear = torch.einsum("ngi,gio->ngo", x, weight)
        full = linear + self.bias
        return absorb_bias(linear, full) if self.lrp else full


class SelfAttention(nn.Module, LRPMixin):
    """Multi-head attention (bias-free projections); queries from ``x``, keys/values from ``context``.

    Token counts here are small (tens of groups), where an explicit softmax is faster than fused kernels.
    In LRP mode the softmax weights are constants. With ``keep_attention`` set, the last attention weights
    (N, heads, queries, keys) are kept in ``last_attention``.
    """

    def __init__(self, *, dim: int, context_dim: int | None = None, heads: int = 1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"Attention width {dim} is not divisible by heads={heads}.")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        self.keep_attention = False
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from the tokens ``x`` (N, T, dim) over ``context`` (N, S, context_dim; default ``x``)."""
        context = x if context is None else context
        q = rearrange(self.to_q(x), "n t (h d) -> n h t d", h=self.heads)
        k, v = rearrange(self.to_kv(context), "n t (two h d) -> two n h t d", two=2, h=self.heads)
        weights = torch.softmax((q * self.scale) @ k.transpose(-1, -2), dim=-1)
        if self.keep_attention:
            self.last_attention = weights.detach()
        out = (weights.detach() if self.lrp else weights) @ v
        return self.to_out(rearrange(out, "n h t d -> n t (h d)"))


class AttentionBlock(nn.Module, LRPMixin):
    """``LayerNorm(attention(target, source) + target)``: self-attention when ``source`` is None."""

    def __init__(self, *, dim: int, source_dim: int | None = None, heads: int = 1):
        super().__init__()
        self.attention = SelfAttention(dim=dim, context_dim=source_dim, heads=heads)
        self.norm = nn.LayerNorm(dim)

    def message(self, target: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """Compute what the block adds to ``target``: attention of the target's queries over ``source``."""
        return self.attention(target, source)

    def combine(self, message: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Residual + LayerNorm of a message onto the target tokens."""
        return layer_norm(message + target, self.norm, self.lrp)

    def forward(self, target: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """Update ``target`` tokens with attention over ``source`` (self-attention when ``None``)."""
        return self.combine(self.message(target, source), target)


class AttOmicsEncoder(nn.Module):
    """AttOmics encoder of one modality.

    Each feature group is projected to a token of width ``group_sizes[0]`` (one einsum for all groups),
    the group tokens attend to each other (residual + LayerNorm), and further grouped projections and
    attention layers follow for each entry of ``group_sizes``.

    Parameters
    ----------
    in_features
        Number of input features.
    groups
        Feature indices of each group (from :func:`~multiomix.nn.random_groups` or user-given gene sets).
        Features may be in several groups; features in none are ignored.
    group_sizes
        Token width after each layer, e.g. ``[64, 32]``.
    heads
        Attention heads (must divide every width).

    Examples
    --------
    >>> enc = AttOmicsEncoder(in_features=20, groups=random_groups(20, 4), group_sizes=[8, 6])
    >>> enc(torch.randn(3, 20)).shape
    torch.Size([3, 4, 6])
    """

    def __init__(
        self,
        *,
        in_features: int,
        groups: Sequence[Sequence[int]],
        group_sizes: Sequence[int],
        heads: int = 1,
    ):
        super().__init__()
        if len(group_sizes) == 0:
            raise ValueError("group_sizes must name at least one token width.")
        self.in_features = in_features
        index = group_index(groups, in_features)
        self.register_buffer("index", index, persistent=True)
        self.register_buffer("in_mask", (index < in_features).float().unsqueeze(-1), persistent=True)
        widths = [index.shape[1], *group_sizes]
        self.projections = nn.ModuleList(
            GroupedLinear(n_groups=len(groups), in_dim=a, out_dim=b) for a, b in zip(widths[:-1], widths[1:])
        )
        self.interactions = nn.ModuleList(AttentionBlock(dim=w, heads=heads) for w in group_sizes)

    @property
    def n_groups(self) -> int:
        """Number of group tokens."""
        return self.index.shape[0]

    @property
    def out_dim(self) -> int:
        """Width of the output tokens."""
        return self.projections[-1].weight.shape[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode (N, in_features) into group tokens (N, G, group_sizes[-1])."""
        padded = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1)
        tokens = padded[:, self.index]
        for i, (projection, interaction) in enumerate(zip(self.projections, self.interactions)):
            tokens = projection(tokens, self.in_mask if i == 0 else None)
            tokens = interaction(tokens)
        return tokens
