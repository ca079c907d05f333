"""MLP classification head (Linear -> BatchNorm -> ReLU -> Dropout blocks, then a linear output)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._lrp import LRPMixin, add_bias


class MLPHead(nn.Module, LRPMixin):
    """Fully connected head; LRP-aware (batch-norm shift and output bias are constant inputs in LRP mode).

    Parameters
    ----------
    in_dim
        Input width.
    hidden
        Widths of the hidden layers.
    out_dim
        Output width (number of classes).
    dropout
        Dropout after each hidden layer.

    Examples
    --------
    >>> head = MLPHead(in_dim=16, hidden=[8, 4], out_dim=3)
    >>> head(torch.randn(5, 16)).shape
    torch.Size([5, 3])
    """

    def __init__(self, *, in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float = 0.0):
        super().__init__()
        widths = [in_dim, *hidden]
        self.linears = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in widths[1:])
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(widths[-1], out_dim)

    def _batch_norm(self, x: torch.Tensor, norm: nn.BatchNorm1d) -> torch.Tensor:
        full = norm(x)
        if not self.lrp:
            return full
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        return add_bias(x * scale, full)

    def without_bias(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in_dim) to the output before its bias is added (hidden layers LRP-aware in LRP mode)."""
        for linear, norm in zip(self.linears, self.norms):
            x = self.dropout(torch.relu(self._batch_norm(linear(x), norm)))
        return x @ self.out.weight.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in_dim) to (N, out_dim)."""
        linear_part = self.without_bias(x)
        full = linear_part + self.out.bias
        return add_bias(linear_part, full) if self.lrp else full
