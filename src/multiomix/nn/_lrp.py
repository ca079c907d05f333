"""Switches that make blocks linear in their inputs for gradient x input (LRP in the style of CP-LRP).

In LRP mode every block keeps its forward value but is rewritten so that, in the backward pass,
softmax attention weights and normalisation scales are constants, and every bias (an affine layer's bias, a
LayerNorm's shift, a BatchNorm's running-mean shift and beta) is a constant input. With the ReLU gates of the
sample fixed, the network is then an affine function of any set of tensors that cuts every path from input to
output, so gradient x input at those tensors plus gradient x value at the biases downstream sums exactly to
the output. This is the "attention as constant" / LayerNorm-scale-as-constant rule of Ali et al. (ICML 2022)
with the biases as relevance sinks (LRP-0, which equals gradient x input for ReLU networks; Montavon et al.,
2019). Spreading a bias over the inputs in proportion to their contributions instead (the z-rule without a
bias term) divides by a unit's bias-free output, which can be near zero while the bias is not: a few samples
then get relevances thousands of times their logit, of opposite signs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class LRPMixin:
    """Adds an ``lrp`` flag a block consults in ``forward``."""

    lrp: bool = False


_BIAS_COLLECTORS: list[list[torch.Tensor]] = []


def add_bias(linear_part: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """Return ``full`` with its bias ``full - linear_part`` as a constant input (a relevance sink).

    Inside :func:`collect_biases` (and with gradients enabled) the bias tensor is recorded and requires a
    gradient, so that its relevance (gradient x value) can be read.
    """
    bias = (full - linear_part).detach()
    if _BIAS_COLLECTORS and torch.is_grad_enabled():
        bias.requires_grad_()
        _BIAS_COLLECTORS[-1].append(bias)
    return linear_part + bias


@contextmanager
def collect_biases() -> Iterator[list[torch.Tensor]]:
    """Record the bias inputs :func:`add_bias` creates in LRP mode while the context is open.

    Examples
    --------
    >>> with collect_biases() as biases:
    ...     out = add_bias(torch.ones(2, 3, requires_grad=True), torch.full((2, 3), 3.0))
    >>> len(biases), biases[0][0, 0].item()
    (1, 2.0)
    """
    biases: list[torch.Tensor] = []
    _BIAS_COLLECTORS.append(biases)
    try:
        yield biases
    finally:
        _BIAS_COLLECTORS.pop()


def layer_norm(x: torch.Tensor, norm: nn.LayerNorm, lrp: bool) -> torch.Tensor:
    """LayerNorm; in LRP mode the standard deviation is a constant and the bias a constant input."""
    if not lrp:
        return norm(x)
    centred = x - x.mean(-1, keepdim=True)
    std = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + norm.eps).detach()
    scaled = centred / std
    if norm.weight is not None:
        scaled = scaled * norm.weight
    full = scaled + norm.bias if norm.bias is not None else scaled
    return add_bias(scaled, full)


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
