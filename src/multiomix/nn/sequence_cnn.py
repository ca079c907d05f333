"""Convolutional baselines for sequence -> track models (the peers of the 1D-Swin backbone).

- :class:`MaxPoolCNN`: conv + max-pool tower (DeepBind/Basset-like; Alipanahi et al. 2015, Kelley et al. 2016).
- :class:`AttentionPoolCNN`: the same tower with softmax attention pooling (Enformer's pooling).
- :class:`DilatedResidualCNN`: conv stem + residual dilated convolutions (Basenji; Kelley et al. 2018).
- :class:`EnformerLike`: conv tower with attention pooling + relative-position transformer (a small Enformer;
  Avsec et al. 2021).

Every backbone maps one-hot DNA ``(batch, length, 4)`` to tokens ``(batch, length / reduction, out_dim)``, so the
same :class:`~multiomix.nn.swin1d.TrackHead` sits on any of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .swin1d import Transformer, check_odd_kernel

# helpers


def conv_block(dim_in: int, dim_out: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    """BatchNorm -> GELU -> Conv1d with 'same' padding (an odd ``kernel``)."""
    check_odd_kernel("kernel", kernel)
    return nn.Sequential(
        nn.BatchNorm1d(dim_in),
        nn.GELU(),
        nn.Conv1d(dim_in, dim_out, kernel, padding=dilation * (kernel // 2), dilation=dilation),
    )


class AttentionPool(nn.Module):
    """Softmax-weighted pooling over non-overlapping windows of ``pool`` positions (channels-first input).

    Examples
    --------
    >>> AttentionPool(dim=8, pool=2)(torch.randn(2, 8, 9)).shape
    torch.Size([2, 8, 5])
    """

    def __init__(self, *, dim: int, pool: int = 2):
        super().__init__()
        self.pool = pool
        self.to_logits = nn.Conv1d(dim, dim, 1, bias=False)
        nn.init.zeros_(self.to_logits.weight)  # starts as average pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``(b, dim, n)`` to ``(b, dim, ceil(n / pool))``."""
        pad = (-x.shape[-1]) % self.pool
        mask = torch.zeros(1, 1, x.shape[-1] + pad, dtype=torch.bool, device=x.device)
        if pad:
            x = F.pad(x, (0, pad))
            mask[..., -pad:] = True
        x = rearrange(x, "b d (n p) -> b d n p", p=self.pool)
        logits = rearrange(self.to_logits(rearrange(x, "b d n p -> b d (n p)")), "b d (n p) -> b d n p", p=self.pool)
        logits = logits.masked_fill(rearrange(mask, "b d (n p) -> b d n p", p=self.pool), torch.finfo(x.dtype).min)
        return (x * logits.softmax(dim=-1)).sum(dim=-1)


class _Backbone(nn.Module):
    out_dim: int
    reduction: int

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b n c -> b c n")


# classes


class MaxPoolCNN(_Backbone):
    """Convolution + max-pool tower.

    Parameters
    ----------
    dims
        Channels of each conv layer.
    kernels
        Kernel width of each conv layer (one int for all).
    pool
        Max-pool factor after each layer.
    dropout
        Dropout after each layer.
    in_channels
        Channels of the input (4 for one-hot DNA).

    Examples
    --------
    >>> MaxPoolCNN(dims=(16, 16))(torch.randn(2, 40, 4)).shape
    torch.Size([2, 10, 16])
    """

    def __init__(self, *, dims: Sequence[int] = (64, 64, 64), kernels: int | Sequence[int] = (15, 5, 5),
                 pool: int = 2, dropout: float = 0.1, in_channels: int = 4):
        super().__init__()
        kernels = [kernels] * len(dims) if isinstance(kernels, int) else list(kernels)
        layers, dim_in = [], in_channels
        for dim, k in zip(dims, kernels):
            check_odd_kernel("kernels", k)
            conv = nn.Conv1d(dim_in, dim, k, padding=k // 2)
            layers += [conv, nn.BatchNorm1d(dim), nn.ReLU(), self._pool(dim, pool), nn.Dropout(dropout)]
            dim_in = dim
        self.net = nn.Sequential(*layers)
        self.out_dim, self.reduction = dims[-1], pool ** len(dims)

    def _pool(self, dim: int, pool: int) -> nn.Module:
        return nn.MaxPool1d(pool, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map one-hot ``(b, L, 4)`` to tokens ``(b, L / reduction, out_dim)``."""
        return rearrange(self.net(self.stem_forward(x)), "b c n -> b n c")


class AttentionPoolCNN(MaxPoolCNN):
    """Convolution tower with softmax attention pooling instead of max pooling (same arguments as MaxPoolCNN).

    Examples
    --------
    >>> AttentionPoolCNN(dims=(16, 16))(torch.randn(2, 40, 4)).shape
    torch.Size([2, 10, 16])
    """

    def _pool(self, dim: int, pool: int) -> nn.Module:
        return AttentionPool(dim=dim, pool=pool)


class DilatedResidualCNN(_Backbone):
    """Basenji-like: conv stem + max-pool, then residual blocks of dilated convolutions (dilation doubling).

    Parameters
    ----------
    dim
        Channels throughout.
    stem_kernel
        Width of the first convolution.
    pool
        Max-pool factor after the stem.
    n_dilated
        Number of residual dilated blocks (dilations 1, 2, 4, ...).
    dropout
        Dropout inside each residual block.
    in_channels
        Channels of the input (4 for one-hot DNA).

    Examples
    --------
    >>> DilatedResidualCNN(dim=16, n_dilated=3)(torch.randn(2, 40, 4)).shape
    torch.Size([2, 10, 16])
    """

    def __init__(self, *, dim: int = 64, stem_kernel: int = 15, pool: int = 4, n_dilated: int = 4,
                 dropout: float = 0.1, in_channels: int = 4):
        super().__init__()
        check_odd_kernel("stem_kernel", stem_kernel)
        self.stem = nn.Sequential(nn.Conv1d(in_channels, dim, stem_kernel, padding=stem_kernel // 2),
                                  nn.MaxPool1d(pool, ceil_mode=True))
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(conv_block(dim, dim, 3, dilation=2**i), conv_block(dim, dim, 1), nn.Dropout(dropout))
                for i in range(n_dilated)
            ]
        )
        self.norm = nn.BatchNorm1d(dim)
        self.out_dim, self.reduction = dim, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map one-hot ``(b, L, 4)`` to tokens ``(b, L / reduction, out_dim)``."""
        h = self.stem(self.stem_forward(x))
        for block in self.blocks:
            h = h + block(h)
        return rearrange(F.gelu(self.norm(h)), "b c n -> b n c")


class EnformerLike(_Backbone):
    """A small Enformer: conv stem with residual conv + attention pooling, a conv tower, a transformer.

    Parameters
    ----------
    dims
        Channels of the stem (first entry) and of each conv-tower block (each halves the length).
    stem_kernel
        Width of the first convolution.
    transformer_depth, heads, dim_head
        Relative-position transformer settings.
    dropout
        Dropout in the transformer.
    in_channels
        Channels of the input (4 for one-hot DNA).
    max_distance
        Largest token distance the transformer's relative-position basis resolves (longer ones share its end).

    Examples
    --------
    >>> EnformerLike(dims=(16, 24), transformer_depth=1, heads=2, dim_head=8)(torch.randn(2, 40, 4)).shape
    torch.Size([2, 10, 24])
    """

    def __init__(self, *, dims: Sequence[int] = (48, 64), stem_kernel: int = 15, transformer_depth: int = 2,
                 heads: int = 4, dim_head: int = 16, dropout: float = 0.1, in_channels: int = 4,
                 max_distance: int = 1024):
        super().__init__()
        check_odd_kernel("stem_kernel", stem_kernel)
        self.stem = nn.Conv1d(in_channels, dims[0], stem_kernel, padding=stem_kernel // 2)
        self.stem_res = conv_block(dims[0], dims[0], 1)
        self.stem_pool = AttentionPool(dim=dims[0], pool=2)
        tower, dim_in = [], dims[0]
        for dim in dims[1:]:
            tower.append(nn.ModuleList([conv_block(dim_in, dim, 5), conv_block(dim, dim, 1),
                                        AttentionPool(dim=dim, pool=2)]))
            dim_in = dim
        self.tower = nn.ModuleList(tower)
        self.transformer = Transformer(dim=dims[-1], depth=transformer_depth, heads=heads, dim_head=dim_head,
                                       max_distance=max_distance, dropout=dropout)
        self.norm = nn.LayerNorm(dims[-1])
        self.out_dim, self.reduction = dims[-1], 2 ** len(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map one-hot ``(b, L, 4)`` to tokens ``(b, L / reduction, out_dim)``."""
        h = self.stem(self.stem_forward(x))
        h = self.stem_pool(h + self.stem_res(h))
        for conv, res, pool in self.tower:
            h = conv(h)
            h = pool(h + res(h))
        h = self.transformer(rearrange(h, "b c n -> b n c"))
        return self.norm(h)


BACKBONES = {
    "cnn_maxpool": MaxPoolCNN,
    "cnn_attpool": AttentionPoolCNN,
    "cnn_dilated": DilatedResidualCNN,
    "enformer_like": EnformerLike,
}
