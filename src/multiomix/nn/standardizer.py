"""Per-modality feature standardisation as a module (statistics saved with the model)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Standardizer(nn.Module):
    """Standardise every modality with per-feature means and standard deviations held as buffers.

    Parameters
    ----------
    in_features
        Width of each modality, ``{name: n_features}``.

    Examples
    --------
    >>> scaler = Standardizer({"rna": 3})
    >>> scaler.set("rna", np.zeros(3), np.full(3, 2.0))
    >>> scaler({"rna": torch.ones(1, 3)})["rna"]
    tensor([[0.5000, 0.5000, 0.5000]])
    """

    def __init__(self, in_features: dict[str, int]):
        super().__init__()
        self.names = list(in_features)
        for i, n in enumerate(in_features.values()):
            self.register_buffer(f"mean{i}", torch.zeros(n))
            self.register_buffer(f"std{i}", torch.ones(n))

    def set(self, name: str, mean: np.ndarray, std: np.ndarray) -> None:
        """Store the statistics of modality ``name``."""
        i = self.names.index(name)
        getattr(self, f"mean{i}").copy_(torch.as_tensor(mean))
        getattr(self, f"std{i}").copy_(torch.as_tensor(std))

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Standardise the modalities of ``x`` (any subset of the known ones)."""
        return {
            n: (x[n] - getattr(self, f"mean{i}")) / getattr(self, f"std{i}")
            for i, n in enumerate(self.names) if n in x
        }
