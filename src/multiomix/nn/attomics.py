"""AttOmics encoder: feature groups -> grouped projections -> self-attention across group tokens.

Beaude et al., "AttOmics: attention-based architecture for diagnosis and prognosis from omics data",
Bioinformatics 2023; used as the per-modality encoder of CrossAttOmics (Beaude et al., Bioinformatics 2025).

Two forms of the same computation live here: :class:`AttOmicsEncoder`, one modality with one module per
layer, and the batched blocks :class:`BatchedAttentionBlock` and :class:`MultiAttOmicsEncoder`, which run the
attention blocks of several modalities (or of several interactions) as single calls over one token axis.
The networks use the batched form: the tokens are few and narrow, so calls, not arithmetic, set the pace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ._lrp import LRPMixin, add_bias, layer_norm


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
        outside = [j for j in g if not 0 <= int(j) < n_features]
        if outside:
            raise ValueError(f"Group {i} holds feature indices {outside[:5]} outside [0, {n_features}).")
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
        if not self.lrp:  # one batched product over groups, bias included; (G, N, ·) views avoid copies
            return torch.baddbmm(self.bias.unsqueeze(1), x.transpose(0, 1), weight).transpose(0, 1)
        linear = torch.bmm(x.transpose(0, 1), weight).transpose(0, 1)
        return add_bias(linear, linear + self.bias)


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


# ----------------------------------------------------------------------------- batched blocks


def kind_linear(x: torch.Tensor, weight: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """Per-token linear maps drawn from a few weight matrices, in one batched product.

    Token ``t`` of ``x`` (N, T, i) is multiplied by ``weight[kind[t]]`` (``weight``: K, i, o).

    Examples
    --------
    >>> w = torch.randn(2, 4, 3)
    >>> x = torch.randn(5, 3, 4)
    >>> y = kind_linear(x, w, torch.tensor([0, 0, 1]))
    >>> torch.allclose(y[:, 2], x[:, 2] @ w[1])
    True
    """
    if weight.shape[0] == 1:
        return x @ weight[0]
    return torch.bmm(x.transpose(0, 1), weight.index_select(0, kind)).transpose(0, 1)


def kind_layer_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, kind: torch.Tensor, *, eps: float, lrp: bool
) -> torch.Tensor:
    """LayerNorm over the last axis with the affine map of each token's kind (``weight``, ``bias``: K, dim).

    In LRP mode the standard deviation is a constant and the bias a constant input
    (see :func:`~multiomix.nn._lrp.layer_norm`).
    """
    single = weight.shape[0] == 1
    scale = weight[0] if single else weight.index_select(0, kind)
    shift = bias[0] if single else bias.index_select(0, kind)
    if not lrp:
        if single:
            return F.layer_norm(x, x.shape[-1:], scale, shift, eps)
        return torch.addcmul(shift, F.layer_norm(x, x.shape[-1:], eps=eps), scale)
    centred = x - x.mean(-1, keepdim=True)
    scaled = centred / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps).detach() * scale
    return add_bias(scaled, scaled + shift)


def _kinds(counts: Sequence[int]) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(counts)), torch.as_tensor(list(counts), dtype=torch.long))


def _uniform(*shape: int, fan_in: int) -> nn.Parameter:
    """Parameter drawn as :class:`torch.nn.Linear` draws its weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = fan_in**-0.5
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class BatchedAttentionBlock(nn.Module, LRPMixin):
    """Several independent attention blocks ``LayerNorm(attention(target, source) + target)`` in one call.

    Block ``b`` owns ``query_counts[b]`` consecutive target tokens and ``key_counts[b]`` consecutive source
    tokens; its queries attend only to its own keys (a block-diagonal mask), with its own projections and
    LayerNorm. With one block this is :class:`AttentionBlock`; with several it replaces a loop over modalities
    (self-attention of each modality's group tokens) or over interactions (cross-attention of each
    ``source -> target`` edge) by one batched product per step. Projections are bias-free, as in
    :class:`SelfAttention`; in LRP mode the softmax weights and normalisation scales are constants, the biases
    constant inputs.

    Parameters
    ----------
    query_counts
        Target tokens of each block, in order along the token axis.
    dim
        Width of the target tokens (and of the output).
    key_counts
        Source tokens of each block; ``None``: self-attention (the source is the target).
    context_dim
        Width of the source tokens (default ``dim``).
    heads
        Attention heads (must divide ``dim``).
    eps
        LayerNorm epsilon.

    Examples
    --------
    >>> block = BatchedAttentionBlock(query_counts=[3, 2], key_counts=[4, 1], dim=8, context_dim=6)
    >>> block(torch.randn(5, 5, 8), torch.randn(5, 5, 6)).shape
    torch.Size([5, 5, 8])
    """

    def __init__(
        self,
        *,
        query_counts: Sequence[int],
        dim: int,
        key_counts: Sequence[int] | None = None,
        context_dim: int | None = None,
        heads: int = 1,
        eps: float = 1e-5,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"Attention width {dim} is not divisible by heads={heads}.")
        self.self_attention = key_counts is None
        key_counts = list(query_counts) if key_counts is None else list(key_counts)
        if len(key_counts) != len(query_counts) or min([*query_counts, *key_counts]) < 1:
            raise ValueError("query_counts and key_counts need one positive count per block.")
        n_blocks, context_dim = len(query_counts), context_dim or dim
        self.heads, self.dim, self.eps = heads, dim, eps
        self.scale = (dim // heads) ** -0.5
        self.register_buffer("query_kind", _kinds(query_counts), persistent=False)
        self.register_buffer("key_kind", _kinds(key_counts), persistent=False)
        mask = None
        if n_blocks > 1:
            same = self.query_kind[:, None] == self.key_kind[None, :]
            mask = torch.zeros(same.shape).masked_fill(~same, float("-inf"))
        self.register_buffer("mask", mask, persistent=False)
        if self.self_attention:
            self.to_qkv = _uniform(n_blocks, dim, 3 * dim, fan_in=dim)
            qkv_scale = torch.cat([torch.full((dim,), self.scale), torch.ones(2 * dim)])
            self.register_buffer("qkv_scale", qkv_scale, persistent=False)
        else:
            self.to_q = _uniform(n_blocks, dim, dim, fan_in=dim)
            self.to_kv = _uniform(n_blocks, context_dim, 2 * dim, fan_in=context_dim)
        self.to_out = _uniform(n_blocks, dim, dim, fan_in=dim)
        self.norm_weight = nn.Parameter(torch.ones(n_blocks, dim))
        self.norm_bias = nn.Parameter(torch.zeros(n_blocks, dim))
        self.keep_attention = False
        self.last_attention: torch.Tensor | None = None

    @property
    def n_blocks(self) -> int:
        """Number of independent blocks."""
        return self.to_out.shape[0]

    def message(self, target: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """Compute what the blocks add to ``target`` (N, Tq, dim): attention of its queries over ``source``."""
        if self.self_attention:  # the query scale is folded into the (small) projection weights
            q, k, v = kind_linear(target, self.to_qkv * self.qkv_scale, self.query_kind).chunk(3, dim=-1)
        else:
            q = kind_linear(target, self.to_q * self.scale, self.query_kind)
            k, v = kind_linear(source, self.to_kv, self.key_kind).chunk(2, dim=-1)
        if self.heads > 1:
            q, k, v = (rearrange(t, "n t (h d) -> (n h) t d", h=self.heads) for t in (q, k, v))
        if self.mask is None:
            scores = torch.bmm(q, k.transpose(1, 2))
        else:
            scores = torch.baddbmm(self.mask, q, k.transpose(1, 2))
        weights = torch.softmax(scores, dim=-1)
        if self.keep_attention:
            self.last_attention = rearrange(weights.detach(), "(n h) q k -> n h q k", h=self.heads)
        out = torch.bmm(weights.detach() if self.lrp else weights, v)
        if self.heads > 1:
            out = rearrange(out, "(n h) t d -> n t (h d)", h=self.heads)
        return kind_linear(out, self.to_out, self.query_kind)

    def combine(self, message: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Residual + LayerNorm (each block its own affine map) of a message onto the target tokens."""
        return kind_layer_norm(
            message + target, self.norm_weight, self.norm_bias, self.query_kind, eps=self.eps, lrp=self.lrp
        )

    def forward(self, target: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """Update the target tokens with attention over the source tokens (self-attention without a source)."""
        return self.combine(self.message(target, source), target)


class MultiAttOmicsEncoder(nn.Module):
    """AttOmics encoders of several modalities with the same token widths, computed together.

    The group tokens of all modalities lie along one token axis (modality after modality, in the order of
    ``in_features``): one gather builds every group's feature vector, one batched product projects every
    group (:class:`GroupedLinear` over all groups), and one :class:`BatchedAttentionBlock` lets each
    modality's tokens attend to each other (never across modalities). Equal to one :class:`AttOmicsEncoder`
    per modality.

    Parameters
    ----------
    in_features
        Number of features per modality.
    groups
        Feature indices of each group, per modality (features may be in several groups or in none).
    group_sizes
        Token width after each layer, shared by the modalities.
    heads
        Attention heads (must divide every width).

    Examples
    --------
    >>> enc = MultiAttOmicsEncoder(
    ...     in_features={"rna": 20, "meth": 12},
    ...     groups={"rna": random_groups(20, 4), "meth": random_groups(12, 2)},
    ...     group_sizes=[8, 6],
    ... )
    >>> tokens = enc({"rna": torch.randn(3, 20), "meth": torch.randn(3, 12)})
    >>> tokens.shape, [t.shape[1] for t in enc.split(tokens).values()]
    (torch.Size([3, 6, 6]), [4, 2])
    """

    def __init__(
        self,
        *,
        in_features: Mapping[str, int],
        groups: Mapping[str, Sequence[Sequence[int]]],
        group_sizes: Sequence[int],
        heads: int = 1,
    ):
        super().__init__()
        if len(group_sizes) == 0:
            raise ValueError("group_sizes must name at least one token width.")
        self.modalities = list(in_features)
        self.n_groups = {m: len(groups[m]) for m in self.modalities}
        total = sum(in_features[m] for m in self.modalities)
        indices, offset = [], 0
        self.group_width = {}  # widest group of each modality (its own padded width)
        for m in self.modalities:
            index = group_index(groups[m], in_features[m])
            self.group_width[m] = index.shape[1]
            indices.append(torch.where(index < in_features[m], index + offset, total))
            offset += in_features[m]
        width = max(i.shape[1] for i in indices)
        index = torch.cat([nn.functional.pad(i, (0, width - i.shape[1]), value=total) for i in indices])
        self.in_features = dict(in_features)
        self.total_features = total  # ``index`` points here (a zero column) for padding
        self.register_buffer("index", index, persistent=True)
        widths = [width, *group_sizes]
        self.projections = nn.ModuleList(
            GroupedLinear(n_groups=index.shape[0], in_dim=a, out_dim=b) for a, b in zip(widths[:-1], widths[1:])
        )
        with torch.no_grad():  # padded inputs are zeros: their weights start (and, without gradient, stay) zero
            self.projections[0].weight.mul_((index < total).float().unsqueeze(-1))
        counts = [self.n_groups[m] for m in self.modalities]
        self.interactions = nn.ModuleList(
            BatchedAttentionBlock(query_counts=counts, dim=w, heads=heads) for w in group_sizes
        )

    @property
    def out_dim(self) -> int:
        """Width of the output tokens."""
        return self.projections[-1].weight.shape[-1]

    @property
    def offsets(self) -> dict[str, int]:
        """Position of each modality's first token along the token axis."""
        starts, position = {}, 0
        for m in self.modalities:
            starts[m], position = position, position + self.n_groups[m]
        return starts

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Encode a dict of (N, features) tensors into the tokens (N, total groups, group_sizes[-1])."""
        first = x[self.modalities[0]]
        flat = torch.cat([*(x[m] for m in self.modalities), first.new_zeros(first.shape[0], 1)], dim=1)
        tokens = flat.index_select(1, self.index.flatten()).view(first.shape[0], *self.index.shape)
        for projection, interaction in zip(self.projections, self.interactions):
            tokens = interaction(projection(tokens))
        return tokens

    def split(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tokens of each modality (views of the output)."""
        return {m: tokens.narrow(1, start, self.n_groups[m]) for m, start in self.offsets.items()}
