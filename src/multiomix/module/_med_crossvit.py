"""scvi-tools module of Med-CrossViT: the network over tile bags and expression, with a cross-entropy loss."""

from __future__ import annotations

from typing import Any

import torch
from scvi.module.base import auto_move_data

from .._logging import logger
from ..nn.crossvit import MedCrossViT as MedCrossViTNet
from ..nn.crossvit import sample_bag_indices
from ._classifier import ClassifierModule

#: registry keys of the tile bags and of the tile mask (``obsm`` fields of the tiles modality)
TILES_KEY = "tiles"
TILE_MASK_KEY = "tile_mask"
#: CLS attention maps returned by ``inference`` (see :meth:`multiomix.nn.crossvit.MedCrossViT.encode`)
ATTENTION_KEYS = ("tiles_self", "tiles_cross", "genes_self", "genes_cross")


class MedCrossViTModule(ClassifierModule):
    """scvi-tools module around :class:`multiomix.nn.crossvit.MedCrossViT` with a cross-entropy loss.

    Parameters
    ----------
    rna_key
        Registry key of the expression field (``X_<rna modality>``).
    has_mask
        Whether a tile mask is registered.
    bag_size
        During training, draw this many real tiles per bag at every step (``None``: use all).
    class_weighting
        Weight the cross-entropy by class (the weights are set from the training rows when training starts).
    **net_kwargs
        Passed to :class:`multiomix.nn.crossvit.MedCrossViT` (``num_classes``, ``tile_dim``, ``n_genes``, ...).

    Examples
    --------
    >>> module = MedCrossViTModule(rna_key="X_rna", has_mask=True, num_classes=2, tile_dim=16,
    ...                            n_genes=20)  # doctest: +SKIP
    """

    _model_name = "MedCrossViT"

    def __init__(
        self,
        *,
        rna_key: str,
        has_mask: bool,
        bag_size: int | None = None,
        class_weighting: bool = True,
        **net_kwargs: Any,
    ):
        super().__init__()
        self.rna_key, self.has_mask, self.bag_size = rna_key, has_mask, bag_size
        self.net = MedCrossViTNet(**net_kwargs)
        weight = torch.ones(net_kwargs["num_classes"]) if class_weighting else None
        self.register_buffer("class_weight", weight)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load weights; weights saved before the wide path existed load into a network without one."""
        if self.net.wide is not None and not any(k.startswith("net.wide.") for k in state_dict):
            logger.info("the saved weights have no wide path (saved by an earlier version): loaded without one")
            self.net.wide = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {
            "tiles": tensors[TILES_KEY],
            "genes": tensors[self.rna_key],
            "tile_mask": tensors[TILE_MASK_KEY] if self.has_mask else None,
        }

    @auto_move_data
    def inference(
        self, tiles: torch.Tensor, genes: torch.Tensor, tile_mask: torch.Tensor | None = None
    ) -> dict[str, Any]:
        """Logits, embedding (both pooled vectors) and CLS attention weights (a dict, see ``ATTENTION_KEYS``)."""
        mask = tile_mask > 0.5 if tile_mask is not None else torch.ones(tiles.shape[:2], dtype=torch.bool,
                                                                          device=tiles.device)
        full_tiles, full_mask = tiles, mask  # the frozen wide path reads the whole bag, as it was fitted
        if self.training and self.bag_size is not None:
            index, mask = sample_bag_indices(mask, self.bag_size)
            tiles = torch.gather(tiles, 1, index.unsqueeze(-1).expand(-1, -1, tiles.shape[-1]))
        wsi, rna, attention = self.net.encode(tiles, genes, tile_mask=mask)
        logits = self.net.classify(wsi, rna, full_tiles, genes, full_mask)
        return {"logits": logits, "embedding": torch.cat((wsi, rna), dim=-1), "attention": attention}
