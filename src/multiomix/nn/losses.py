"""Losses and loss terms shared by the models."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy with optional class weights; labels may be a float column (scvi-tools style).

    Examples
    --------
    >>> cross_entropy(torch.zeros(2, 3), torch.tensor([[0.0], [2.0]]), None)
    tensor(1.0986)
    """
    return F.cross_entropy(logits, labels.view(-1).long(), weight=weight)


def depth_offset(x: torch.Tensor, typical_depth: torch.Tensor | float | None = None) -> torch.Tensor:
    """Per-cell logit offset ``log(depth / typical_depth)`` of binary data, depth = the cell's number of ones.

    Added to a Bernoulli decoder's logits, it scales every feature's odds with the cell's depth (for rare
    events, its probability), as the library factor of count models does (Ashuach et al., PeakVI, Cell Systems
    2022), so that a latent need not spend dimensions on depth. ``typical_depth=None``: the geometric mean depth
    of the rows of ``x`` (the offsets then average 0). Depths below 1 count as 1.

    Examples
    --------
    >>> depth_offset(torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]), 2.0).flatten()
    tensor([ 0.0000, -0.6931])
    >>> depth_offset(torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])).flatten()
    tensor([ 0.6931, -0.6931])
    """
    log_depth = torch.log(x.sum(-1, keepdim=True).clamp(min=1.0))
    if typical_depth is None:
        return log_depth - log_depth.mean()
    return log_depth - torch.log(torch.as_tensor(typical_depth, dtype=x.dtype, device=x.device).clamp(min=1.0))
