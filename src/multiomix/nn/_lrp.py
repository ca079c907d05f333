"""Switches that make blocks relevance-conserving for gradient x input (LRP in the style of CP-LRP).

In LRP mode every block keeps its forward value but is rewritten so that, in the backward pass,
softmax attention weights, normalisation scales and the share of each affine output due to its bias are
constants. The network is then positively homogeneous in its input, so gradient x input at any set of
tensors that cuts every path from input to output sums to the output (Euler's theorem). This is the
"attention as constant" / LayerNorm-scale-as-constant rule of Ali et al. (ICML 2022) with biases absorbed
proportionally (the z-rule without a bias term).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

_EPS = 1e-9


class LRPMixin:
    """Adds an ``lrp`` flag a block consults in ``forward``."""

    lrp: bool = False


def absorb_bias(linear_part: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """Return ``full`` in the forward pass, but propagate gradients as through ``linear_part`` rescaled.

    ``linear_part * (full / linear_part).detach()`` is homogeneous in the input of ``linear_part``.
    """
    denominator = torch.where(linear_part >= 0, linear_part + _EPS, linear_part - _EPS)
    return linear_part * (full / denominator).detach()


def layer_norm(x: torch.Tensor, norm: nn.LayerNorm, lrp: bool) -> torch.Tensor:
    """LayerNorm; in LRP mode the standard deviation and the bias share are constants."""
    if not lrp:
        return norm(x)
    centred = x - x.mean(-1, keepdim=True)
    std = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + norm.eps).detach()
    scaled = centred / std
    if norm.weight is not None:
        scaled = scaled * norm.weight
    full = scaled + norm.bias if norm.bias is not None else scaled
    return absorb_bias(scaled, full)


@contextmanager
def lrp_mode(module: nn.Module):
    """Context manager switching every LRP-aware block of ``module`` into LRP mode (and eval mode).

    Examples
    --------
    >>> from multiomix.nn import CrossAttOmicsNet
    >>> from multiomix.nn import CrossAttOmicsNet, random_groups
    >>> net = CrossAttOmicsNet(
    ...     in_features={"a": 10, "b": 8}, groups={"a": random_groups(10, 2), "b": random_groups(8, 2)},
    ...     group_sizes={"a": [4], "b": [4]}, interaction_graph={"a": ["b"]}, hidden=[8], n_classes=2,
    ... )
    >>> with lrp_mode(net):
    ...     logits = net({"a": torch.randn(3, 10), "b": torch.randn(3, 8)})
    """
    was_training = module.training
    blocks = [m for m in module.modules() if isinstance(m, LRPMixin)]
    module.eval()
    for block in blocks:
        block.lrp = True
    try:
        yield module
    finally:
        for block in blocks:
            block.lrp = False
        module.train(was_training)
