"""Losses shared by the classifiers."""

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
