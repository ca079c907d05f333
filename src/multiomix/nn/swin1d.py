"""1D-Swin: hierarchical shifted-window transformer for DNA sequences (Genomic Interpreter).

Li, Das, Beardall, Zhao, Stan, "Genomic Interpreter: A Hierarchical Genomic Deep Neural Network with 1D Shifted
Window Transformer", ICML 2023 Computational Biology workshop, arXiv:2306.05143. Window attention follows Swin
(Liu et al., ICCV 2021) in one dimension; relative positions follow Enformer (Avsec et al., Nat Methods 2021):
an exponential and a central-mask basis of the signed distance, projected to per-head keys, with content and
position biases (Transformer-XL style).

Shapes: tokens are ``(batch, length, dim)`` throughout; one-hot DNA enters as ``(batch, length, 4)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

# helpers


def exists(value) -> bool:
    """Whether ``value`` is not ``None``."""
    return value is not None


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int]:
    """Zero-pad ``(b, n, d)`` tokens at the end so that ``n`` is a multiple of ``multiple``."""
    pad = (-x.shape[1]) % multiple
    return (F.pad(x, (0, 0, 0, pad)) if pad else x), pad


def check_odd_kernel(name: str, kernel: int) -> None:
    """Refuse an even convolution width: 'same' padding ``k // 2`` then adds a position and shifts by half a base.

    Examples
    --------
    >>> check_odd_kernel("stem_kernel", 9)
    >>> check_odd_kernel("stem_kernel", 16)
    Traceback (most recent call last):
    ...
    ValueError: stem_kernel must be an odd width ...
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"{name} must be an odd width >= 1 (a convolution centred on each position), got {kernel}; "
                         f"an even width would add one position and shift the outputs by half a base.")


def relative_distance_basis(distances: torch.Tensor, *, max_distance: int, n_basis: int = 8) -> torch.Tensor:
    """Enformer-style features of signed relative distances (exponential + central mask, and sign copies).

    Parameters
    ----------
    distances
        Integer tensor of signed distances ``j - i``.
    max_distance
        Largest distance the basis should resolve (half-lives and mask widths reach up to it).
    n_basis
        Number of features per basis function family (the output has ``4 * n_basis`` features).

    Returns
    -------
    ``(*distances.shape, 4 * n_basis)`` float tensor.

    Examples
    --------
    >>> relative_distance_basis(torch.arange(-3, 4), max_distance=4).shape
    torch.Size([7, 32])
    """
    d = distances.abs().float()[..., None]
    max_distance = max(int(max_distance), 2)
    half_life = torch.logspace(math.log10(3.0), math.log10(max_distance), n_basis, device=d.device)
    exponential = torch.exp(-math.log(2.0) / half_life * d)
    widths = torch.logspace(0, math.log2(max_distance), n_basis, base=2.0, device=d.device)
    central = (d <= widths).float()
    symmetric = torch.cat([exponential, central], dim=-1)
    sign = torch.sign(distances.float())[..., None]
    return torch.cat([symmetric, sign * symmetric], dim=-1)


def stochastic_depth_rates(n_layers: int, max_rate: float) -> list[float]:
    """Per-layer drop-path rates growing linearly from 0 (first layer) to ``max_rate`` (last), as in Swin.

    Examples
    --------
    >>> stochastic_depth_rates(3, 0.2)
    [0.0, 0.1, 0.2]
    """
    if n_layers <= 1:
        return [0.0] * n_layers
    return [max_rate * k / (n_layers - 1) for k in range(n_layers)]


# classes


class DropPath(nn.Module):
    """Stochastic depth (Huang et al., ECCV 2016): zero a residual branch for whole samples while training.

    Each sample's branch output is kept with probability ``1 - p`` and then scaled by ``1 / (1 - p)``, so the
    expectation is unchanged; in evaluation mode the branch passes through untouched.

    Examples
    --------
    >>> drop = DropPath(0.5).train()
    >>> out = drop(torch.ones(1000, 3, 2))
    >>> sorted(out[:, 0, 0].unique().tolist())
    [0.0, 2.0]
    >>> bool((DropPath(0.5).eval()(torch.ones(4, 3)) == 1).all())
    True
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {p}.")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop ``x`` ``(b, ...)`` per sample with probability ``p`` (training mode only)."""
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Attention(nn.Module):
    """Multi-head self-attention with Enformer-style relative positions over the whole input.

    ``logits = (q + u) k^T + gather((q + v) r^T)``, where ``r`` are per-head keys for each signed distance.
    Window attention runs this module on each window (windows folded into the batch).

    Parameters
    ----------
    dim
        Token width.
    heads
        Number of heads.
    dim_head
        Width of each head.
    max_distance
        Largest distance the relative-position basis resolves (the window size for window attention).
    dropout
        Dropout on the attention weights.

    Examples
    --------
    >>> attn = Attention(dim=16, heads=2, dim_head=8, max_distance=8)
    >>> out, weights = attn(torch.randn(3, 8, 16), return_attention=True)
    >>> out.shape, weights.shape
    (torch.Size([3, 8, 16]), torch.Size([3, 2, 8, 8]))
    """

    def __init__(self, *, dim: int, heads: int = 4, dim_head: int = 32, max_distance: int = 64, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dim_head, self.max_distance = heads, dim_head, max_distance
        self.scale = dim_head**-0.5
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.n_basis = 8
        self.to_rel_k = nn.Linear(4 * self.n_basis, heads * dim_head, bias=False)
        self.content_bias = nn.Parameter(torch.zeros(heads, dim_head))
        self.position_bias = nn.Parameter(torch.zeros(heads, dim_head))
        self.dropout = nn.Dropout(dropout)
        self.to_out = nn.Linear(heads * dim_head, dim)

    def relative_logits(self, q: torch.Tensor) -> torch.Tensor:
        """``(b, h, n, n)`` position logits for queries ``q`` of shape ``(b, h, n, dim_head)``."""
        n = q.shape[-2]
        distances = torch.arange(-(n - 1), n, device=q.device)
        basis = relative_distance_basis(distances, max_distance=self.max_distance, n_basis=self.n_basis)
        rel_k = rearrange(self.to_rel_k(basis.to(q.dtype)), "r (h d) -> h r d", h=self.heads)
        logits = torch.einsum("b h i d, h r d -> b h i r", q + self.position_bias[:, None], rel_k)
        idx = torch.arange(n, device=q.device)
        index = (idx[None, :] - idx[:, None] + n - 1).expand(*logits.shape[:2], n, n)
        return logits.gather(-1, index)

    def forward(
        self, x: torch.Tensor, *, key_mask: torch.Tensor | None = None, pair_mask: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend over ``x`` ``(b, n, dim)``.

        ``key_mask`` ``(b, n)`` or ``(n,)`` marks the real (non-pad) keys; ``pair_mask`` ``(b, n, n)`` the
        allowed query-key pairs (both optional, combined with a logical and).
        """
        q, k, v = rearrange(self.to_qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        q = q * self.scale
        logits = torch.einsum("b h i d, b h j d -> b h i j", q + self.content_bias[:, None], k)
        logits = logits + self.relative_logits(q)
        if exists(key_mask):
            mask = key_mask if key_mask.dim() == 2 else key_mask[None].expand(x.shape[0], -1)
            logits = logits.masked_fill(~mask[:, None, None, :], torch.finfo(logits.dtype).min)
        if exists(pair_mask):
            logits = logits.masked_fill(~pair_mask[:, None], torch.finfo(logits.dtype).min)
        attn = logits.softmax(dim=-1)
        out = torch.einsum("b h i j, b h j d -> b h i d", self.dropout(attn), v)
        out = self.to_out(rearrange(out, "b h n d -> b n (h d)"))
        return (out, attn) if return_attention else out


class FeedForward(nn.Module):
    """Pre-norm feed-forward with a depthwise convolution: LN -> Linear(d, 2d) -> dwConv3 -> ReLU -> Linear(2d, d)."""

    def __init__(self, *, dim: int, mult: int = 2, dropout: float = 0.0):
        super().__init__()
        hidden = dim * mult
        self.norm = nn.LayerNorm(dim)
        self.proj_in = nn.Linear(dim, hidden)
        self.dw_conv = nn.Conv1d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.proj_out = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``(b, n, dim)`` tokens (the residual is added by the caller)."""
        h = self.proj_in(self.norm(x))
        h = rearrange(self.dw_conv(rearrange(h, "b n c -> b c n")), "b c n -> b n c")
        return self.dropout(self.proj_out(F.relu(self.dropout(h))))


@dataclass
class WindowAttentionWeights:
    """Attention weights of one window-attention pass, kept compact as per-window blocks.

    Attributes
    ----------
    weights
        ``(batch, n_windows, heads, window, window)`` softmax weights.
    window
        Window size (tokens).
    shift
        Circular shift applied before windowing (0 for the regular pass).
    length
        Number of real tokens (the padded length is ``n_windows * window``).
    """

    weights: torch.Tensor
    window: int
    shift: int
    length: int

    def dense(self) -> torch.Tensor:
        """``(batch, heads, length, length)`` map in original token coordinates (zero outside the windows)."""
        b, n_windows, h, w, _ = self.weights.shape
        n_pad = n_windows * w
        dense = self.weights.new_zeros(b, h, n_pad, n_pad)
        for k in range(n_windows):
            dense[:, :, k * w : (k + 1) * w, k * w : (k + 1) * w] = self.weights[:, k]
        if self.shift:
            dense = torch.roll(dense, shifts=(self.shift, self.shift), dims=(-2, -1))
        return dense[:, :, : self.length, : self.length]


class SwinLayer(nn.Module):
    """One 1D-Swin layer: window attention + FFN, then the same on shifted windows.

    The sequence is zero-padded to a multiple of the window (pad keys are masked). The second pass rolls the
    tokens by ``-window // 2`` so that its windows straddle those of the first, and rolls back; as in Swin, the
    window that the roll wraps around is split by a mask, so a token never attends across the sequence ends.
    When the whole sequence fits in one window, the second pass runs unshifted.

    Parameters
    ----------
    dim
        Token width.
    window
        Window size in tokens (``None``: one window over the whole sequence, i.e. full attention).
    heads, dim_head, dropout
        Attention settings.
    drop_path
        Stochastic-depth probability of each residual branch (attention and feed-forward, both passes).

    Examples
    --------
    >>> layer = SwinLayer(dim=16, window=4, heads=2, dim_head=8)
    >>> out, weights = layer(torch.randn(2, 10, 16), return_attention=True)
    >>> out.shape, weights[1].dense().shape
    (torch.Size([2, 10, 16]), torch.Size([2, 2, 10, 10]))
    """

    def __init__(self, *, dim: int, window: int | None, heads: int = 4, dim_head: int = 32, dropout: float = 0.0,
                 drop_path: float = 0.0):
        super().__init__()
        self.window = window
        self.drop_path = DropPath(drop_path)
        self.blocks = nn.ModuleList([])
        for _ in range(2):
            self.blocks.append(
                nn.ModuleList(
                    [
                        nn.LayerNorm(dim),
                        Attention(dim=dim, heads=heads, dim_head=dim_head, max_distance=window or 1024,
                                  dropout=dropout),
                        FeedForward(dim=dim, dropout=dropout),
                    ]
                )
            )
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def window_masks(n: int, n_pad: int, window: int, shift: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Key and pair masks of one pass, in the rolled coordinates of that pass.

        Returns ``(key_mask, pair_mask)``: ``(n_windows, window)`` real (non-pad) tokens and
        ``(n_windows, window, window)`` allowed pairs (within a window, and for the shifted pass not across the
        wrap-around: the last rolled window holds the sequence's end and its start).
        """
        idx = torch.arange(n_pad, device=device)
        original = (idx + shift) % n_pad  # original position of each rolled token
        key_mask = rearrange(original < n, "(nw w) -> nw w", w=window)
        segment = rearrange((idx >= n_pad - shift).long() if shift else torch.zeros_like(idx), "(nw w) -> nw w",
                            w=window)
        pair_mask = segment[:, :, None] == segment[:, None, :]
        return key_mask, pair_mask

    def window_pass(
        self, x: torch.Tensor, *, block: int, shift: int, n: int, return_attention: bool = False
    ) -> tuple[torch.Tensor, WindowAttentionWeights | None]:
        """Window attention of pass ``block`` over padded tokens ``(b, n_pad, dim)`` (``n`` real), rolled by ``-shift``.

        Returns the attention output in original coordinates (the residual is added by the caller) and, with
        ``return_attention=True``, the weights.
        """
        norm, attn, _ = self.blocks[block]
        b, n_pad = x.shape[:2]
        window = self._window_size(n)
        key_mask, pair_mask = self.window_masks(n, n_pad, window, shift, device=x.device)
        h = torch.roll(x, -shift, dims=1) if shift else x
        windows = rearrange(norm(h), "b (nw w) d -> (b nw) w d", w=window)
        out = attn(windows, key_mask=key_mask.repeat(b, 1), pair_mask=pair_mask.repeat(b, 1, 1),
                   return_attention=return_attention)
        kept = None
        if return_attention:
            out, weights = out
            weights = rearrange(weights, "(b nw) h i j -> b nw h i j", b=b)
            kept = WindowAttentionWeights(weights.detach(), window, shift, n)
        out = rearrange(out, "(b nw) w d -> b (nw w) d", b=b)
        return (torch.roll(out, shift, dims=1) if shift else out), kept

    def _window_size(self, n: int) -> int:
        return n if self.window is None else min(self.window, n)

    def forward(
        self, x: torch.Tensor, *, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[WindowAttentionWeights]]:
        """Regular then shifted window pass over ``(b, n, dim)``; optionally the weights of both passes."""
        n = x.shape[1]
        window = self._window_size(n)
        x, _ = pad_to_multiple(x, window)
        n_pad = x.shape[1]
        shift = window // 2 if n_pad > window else 0
        kept = []
        for block, pass_shift in enumerate((0, shift)):
            out, weights = self.window_pass(x, block=block, shift=pass_shift, n=n, return_attention=return_attention)
            if return_attention:
                kept.append(weights)
            # pad queries (all keys masked) attend uniformly, real tokens of the wrapped-around start included: their
            # output is dropped, and the feed-forward's convolution sees only the real tokens (zeros past the end)
            tokens = (x + self.drop_path(self.dropout(out)))[:, :n]
            tokens = tokens + self.drop_path(self.blocks[block][2](tokens))
            x = F.pad(tokens, (0, 0, 0, n_pad - n))
        x = x[:, :n]
        return (x, kept) if return_attention else x


class TokenMerge(nn.Module):
    """Halve the length: pool neighbouring tokens (an odd last token is paired with itself) -> LN -> Linear.

    Parameters
    ----------
    dim, dim_out
        Token width in and out.
    mode
        ``"max"`` (default): element-wise maximum of each pair of tokens, which keeps a motif detector's peak
        wherever it falls in the pair; ``"concat"``: Swin's patch merging (concatenate the pair, so that the
        projection depends on whether a feature sits in the even or the odd token).

    Examples
    --------
    >>> TokenMerge(dim=8, dim_out=12)(torch.randn(2, 7, 8)).shape
    torch.Size([2, 4, 12])
    >>> TokenMerge(dim=8, dim_out=12, mode="concat")(torch.randn(2, 7, 8)).shape
    torch.Size([2, 4, 12])
    """

    def __init__(self, *, dim: int, dim_out: int, mode: str = "max"):
        super().__init__()
        if mode not in ("max", "concat"):
            raise ValueError(f"mode must be 'max' or 'concat', got {mode!r}.")
        self.mode = mode
        width = dim if mode == "max" else 2 * dim
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Merge ``(b, n, dim)`` into ``(b, ceil(n / 2), dim_out)``."""
        if x.shape[1] % 2:  # an odd last token is paired with itself (a zero token would clamp it at 0 under max)
            x = torch.cat((x, x[:, -1:]), dim=1)
        if self.mode == "max":
            merged = rearrange(x, "b (n two) d -> b n two d", two=2).amax(dim=2)
        else:
            merged = rearrange(x, "b (n two) d -> b n (two d)", two=2)
        return self.proj(self.norm(merged))


class Transformer(nn.Module):
    """Pre-norm transformer with full relative-position attention (the block after the 1D-Swin stages).

    Examples
    --------
    >>> Transformer(dim=16, depth=2, heads=2, dim_head=8)(torch.randn(2, 5, 16)).shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, *, dim: int, depth: int, heads: int = 4, dim_head: int = 32, max_distance: int = 1024,
                 dropout: float = 0.0, drop_path: float | Sequence[float] = 0.0):
        super().__init__()
        rates = list(drop_path) if isinstance(drop_path, list | tuple) else [drop_path] * depth
        if len(rates) != depth:
            raise ValueError(f"drop_path needs one rate per layer ({depth}), got {len(rates)}.")
        self.drop_paths = nn.ModuleList([DropPath(rate) for rate in rates])
        self.layers = nn.ModuleList(
            [
                nn.ModuleList(
                    [
                        nn.LayerNorm(dim),
                        Attention(dim=dim, heads=heads, dim_head=dim_head, max_distance=max_distance,
                                  dropout=dropout),
                        FeedForward(dim=dim, dropout=dropout),
                    ]
                )
                for _ in range(depth)
            ]
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, *, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Transform ``(b, n, dim)``; optionally also return each layer's ``(b, heads, n, n)`` weights."""
        kept = []
        for (norm, attn, ff), drop_path in zip(self.layers, self.drop_paths):
            out = attn(norm(x), return_attention=return_attention)
            if return_attention:
                out, weights = out
                kept.append(weights.detach())
            x = x + drop_path(self.dropout(out))
            x = x + drop_path(ff(x))
        return (x, kept) if return_attention else x


class Swin1D(nn.Module):
    """Genomic Interpreter backbone: conv stem -> 1D-Swin stages (each later stage halves the length) -> transformer.

    Parameters
    ----------
    dims
        Token width of each stage. Stage 0 runs at the stem's resolution; every later stage starts with a
        ``TokenMerge`` that halves the length and maps to its width.
    depths
        Number of ``SwinLayer`` per stage (each layer = regular + shifted window pass).
    window
        Window size in tokens, one for all stages or one per stage; ``None`` means full attention (used to
        measure what the windows save).
    heads, dim_head
        Attention heads and head width.
    transformer_depth
        Number of full-attention transformer layers after the last stage (0 for none).
    max_distance
        Largest token distance the transformer's relative-position basis resolves (the Swin layers use their
        window).
    stem_kernel
        Width of the first stem convolution, which scans the one-hot bases for motifs (odd).
    stem_layers
        Convolutions in the stem (Conv -> BatchNorm -> ReLU each; the later ones have width 5).
    merge
        Token merging between stages: ``"max"`` or ``"concat"`` (see ``TokenMerge``).
    stem_pool
        Max-pool factor after the stem (1 = nucleotide resolution in stage 0).
    in_channels
        Channels of the input (4 for one-hot DNA).
    dropout
        Dropout in attention and feed-forward blocks.
    drop_path
        Largest stochastic-depth probability: as in Swin, the rate grows linearly from 0 at the first layer to
        this value at the last (Swin layers, then transformer layers); 0 turns it off.

    Examples
    --------
    >>> net = Swin1D(dims=(16, 24), depths=(1, 1), window=8, heads=2, dim_head=8, transformer_depth=1)
    >>> tokens = net(torch.randn(3, 64, 4))
    >>> tokens.shape, net.reduction
    (torch.Size([3, 32, 24]), 2)
    >>> tokens, attn = net(torch.randn(3, 64, 4), return_attention=True)
    >>> sorted(attn)[:2]
    ['stage0.layer0.regular', 'stage0.layer0.shifted']
    """

    def __init__(
        self,
        *,
        dims: Sequence[int] = (32, 48, 64, 96),
        depths: Sequence[int] = (1, 1, 1, 1),
        window: int | None | Sequence[int | None] = 16,
        heads: int = 4,
        dim_head: int = 16,
        transformer_depth: int = 1,
        stem_kernel: int = 9,
        stem_layers: int = 2,
        merge: str = "max",
        stem_pool: int = 1,
        in_channels: int = 4,
        dropout: float = 0.0,
        max_distance: int = 1024,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if len(dims) != len(depths):
            raise ValueError(f"dims ({len(dims)}) and depths ({len(depths)}) need one entry per stage.")
        windows = list(window) if isinstance(window, list | tuple) else [window] * len(dims)
        if len(windows) != len(dims):
            raise ValueError(f"window needs one entry per stage ({len(dims)}), got {len(windows)}.")
        if stem_layers < 1:
            raise ValueError(f"stem_layers must be at least 1, got {stem_layers}.")
        check_odd_kernel("stem_kernel", stem_kernel)
        # a motif scanner with batch-normalised convolutions, as in Enformer-style stems: a single conv + ReLU
        # (no normalisation) feeding LayerNorm-ed tokens learned motifs several times more slowly than the
        # CNN baselines on the Oct4/Mafk peaks
        stem: list[nn.Module] = []
        for k in range(stem_layers):
            width = stem_kernel if k == 0 else 5
            stem += [nn.Conv1d(in_channels if k == 0 else dims[0], dims[0], kernel_size=width, padding=width // 2),
                     nn.BatchNorm1d(dims[0]), nn.ReLU()]
        self.stem = nn.Sequential(*stem)
        self.stem_pool = stem_pool
        self.windows = windows
        rates = iter(stochastic_depth_rates(sum(depths) + transformer_depth, drop_path))
        self.stages = nn.ModuleList([])
        for i, (dim, depth, win) in enumerate(zip(dims, depths, windows)):
            merger = TokenMerge(dim=dims[i - 1], dim_out=dim, mode=merge) if i > 0 else nn.Identity()
            layers = nn.ModuleList(
                [SwinLayer(dim=dim, window=win, heads=heads, dim_head=dim_head, dropout=dropout,
                           drop_path=next(rates)) for _ in range(depth)]
            )
            self.stages.append(nn.ModuleList([merger, layers]))
        self.transformer = (
            Transformer(dim=dims[-1], depth=transformer_depth, heads=heads, dim_head=dim_head,
                        max_distance=max_distance, dropout=dropout, drop_path=list(rates))
            if transformer_depth > 0
            else None
        )
        self.norm = nn.LayerNorm(dims[-1])
        self.out_dim = dims[-1]
        self.reduction = stem_pool * 2 ** (len(dims) - 1)

    def stage_resolutions(self) -> list[int]:
        """Return the base pairs per token of each stage."""
        return [self.stem_pool * 2**i for i in range(len(self.stages))]

    def forward(
        self, x: torch.Tensor, *, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, WindowAttentionWeights | torch.Tensor]]:
        """Map one-hot DNA ``(b, L, 4)`` to tokens ``(b, L / reduction, dims[-1])``.

        With ``return_attention=True`` also returns a dict of attention weights per layer: window passes as
        ``WindowAttentionWeights`` (``stage{i}.layer{j}.regular|shifted``), transformer layers as
        ``(b, heads, n, n)`` tensors (``transformer.layer{j}``).
        """
        h = self.stem(rearrange(x, "b n c -> b c n"))
        if self.stem_pool > 1:
            h = F.max_pool1d(h, self.stem_pool, ceil_mode=True)
        h = rearrange(h, "b c n -> b n c")
        kept: dict[str, WindowAttentionWeights | torch.Tensor] = {}
        for i, (merge, layers) in enumerate(self.stages):
            h = merge(h)
            for j, layer in enumerate(layers):
                if return_attention:
                    h, weights = layer(h, return_attention=True)
                    for name, w in zip(("regular", "shifted"), weights):
                        kept[f"stage{i}.layer{j}.{name}"] = w
                else:
                    h = layer(h)
        if exists(self.transformer):
            if return_attention:
                h, weights = self.transformer(h, return_attention=True)
                kept.update({f"transformer.layer{j}": w for j, w in enumerate(weights)})
            else:
                h = self.transformer(h)
        h = self.norm(h)
        return (h, kept) if return_attention else h


class TrackHead(nn.Module):
    """Linear track heads on backbone tokens.

    One value per region (``n_bins=None``): pool the tokens (``pool="meanmax"``: mean and max;
    ``pool="attention"``: a learned softmax-weighted sum per feature, started as the mean, and max), then an
    MLP to the tracks. A profile (``n_bins`` set): average-pool (or crop when the token count already matches)
    the tokens to ``n_bins``, then a per-bin MLP.

    Examples
    --------
    >>> TrackHead(dim=8, n_tracks=3)(torch.randn(2, 10, 8)).shape
    torch.Size([2, 3])
    >>> TrackHead(dim=8, n_tracks=3, pool="attention")(torch.randn(2, 10, 8)).shape
    torch.Size([2, 3])
    >>> TrackHead(dim=8, n_tracks=3, n_bins=5)(torch.randn(2, 10, 8)).shape
    torch.Size([2, 5, 3])
    """

    def __init__(self, *, dim: int, n_tracks: int, n_bins: int | None = None, hidden: int | None = None,
                 pool: str = "meanmax"):
        super().__init__()
        if pool not in ("meanmax", "attention"):
            raise ValueError(f"pool must be 'meanmax' or 'attention', got {pool!r}.")
        self.n_bins, self.pool = n_bins, pool
        # zero weights: uniform softmax, so attention pooling starts as mean pooling
        self.pool_logits = nn.Linear(dim, dim) if pool == "attention" and n_bins is None else None
        if exists(self.pool_logits):
            nn.init.zeros_(self.pool_logits.weight)
            nn.init.zeros_(self.pool_logits.bias)
        in_dim = dim if exists(n_bins) else 2 * dim
        hidden = hidden or in_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, n_tracks))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map ``(b, n, dim)`` tokens to ``(b, n_tracks)`` or ``(b, n_bins, n_tracks)``."""
        if self.n_bins is None:
            if exists(self.pool_logits):
                summary = (tokens * self.pool_logits(tokens).softmax(dim=1)).sum(dim=1)
            else:
                summary = tokens.mean(dim=1)
            return self.net(torch.cat([summary, tokens.amax(dim=1)], dim=-1))
        if tokens.shape[1] != self.n_bins:
            pooled = F.adaptive_avg_pool1d(rearrange(tokens, "b n d -> b d n"), self.n_bins)
            tokens = rearrange(pooled, "b d n -> b n d")
        return self.net(tokens)
