"""Med-CrossViT: a bag of whole-slide-image tile embeddings and an expression vector, fused by CLS cross-attention.

Pure torch, no AnnData. Each modality becomes a token sequence with a learned CLS token in front:

* tiles: precomputed tile embeddings (any width) -> ``Linear`` to the model width. Bags are unordered sets,
  so no slot positions are added by default (``tile_positions=True`` adds learned slot positions);
* genes: ``"per_gene"`` tokens ``x_g * w_g + p_g`` (a value embedding scaled by the expression plus a
  per-gene identity/position embedding, ``G * d`` parameters each), or ``"dense"``, the map of the
  original model ``LayerNorm(G) -> Linear(G, G * d) -> LayerNorm(d)`` (``G^2 * d`` parameters).

A block runs a pre-norm transformer per modality, then a cross-transformer in which each CLS token
attends to ``[its own CLS; the other modality's tokens]``. Padded tiles are masked out of every
attention and of mean pooling. Each modality has its own head, and the logits are their sum; an optional wide
path (:class:`~multiomix.nn.WidePath`: a linear map and a low-rank tile x expression product of each bag's
mean tile and the expression) is added to them.

Differences to the original implementation (Med-CrossViT, adapted from lucidrains' CrossViT): the two
heads are separate (the original applied the WSI head twice), the cross-attention gets the number of
heads it is given (the original passed its depth), the tile width and the two model widths may differ
(``ProjectInOut`` maps each CLS token into the other modality's width and back), and the attention
weights themselves can be returned.
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange, repeat
from torch import nn

from .wide import WidePath

__all__ = [
    "Attention",
    "CrossTransformer",
    "GeneTokenizer",
    "MedCrossViT",
    "Transformer",
    "masked_mean",
    "sample_bag_indices",
]


# helpers


def exists(value) -> bool:
    """Return whether ``value`` is not ``None``."""
    return value is not None


def sample_bag_indices(tile_mask: torch.Tensor, bag_size: int, *, generator: torch.Generator | None = None):
    """Draw ``bag_size`` valid tiles per bag (without replacement when the bag is large enough).

    Parameters
    ----------
    tile_mask
        ``(batch, n_tiles)`` boolean, ``True`` for real tiles.
    bag_size
        Number of tiles in every sampled bag.
    generator
        Random generator (default: torch's global one).

    Returns
    -------
    ``(indices, mask)``: ``(batch, bag_size)`` tile indices and the mask of the sampled bag. Bags with fewer
    than ``bag_size`` real tiles keep all of them once, padded with masked slots.

    Examples
    --------
    >>> mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    >>> idx, m = sample_bag_indices(mask, 2)
    >>> idx.shape, m.tolist()
    (torch.Size([2, 2]), [[True, True], [True, False]])
    """
    scores = torch.rand(tile_mask.shape, generator=generator, device="cpu").to(tile_mask.device)
    scores = scores.masked_fill(~tile_mask, -1.0)  # real tiles first, in random order
    order = scores.argsort(dim=-1, descending=True)[:, :bag_size]
    mask = torch.gather(tile_mask, 1, order)
    if order.shape[1] < bag_size:
        pad = bag_size - order.shape[1]
        order = torch.cat([order, order[:, :1].expand(-1, pad)], dim=1)
        mask = torch.cat([mask, torch.zeros_like(mask[:, :1]).expand(-1, pad)], dim=1)
    return order, mask


def masked_mean(tiles: torch.Tensor, tile_mask: torch.Tensor) -> torch.Tensor:
    """Mean of each bag's real tiles: ``(batch, n_tiles, dim)``, ``(batch, n_tiles)`` -> ``(batch, dim)``.

    Examples
    --------
    >>> masked_mean(torch.tensor([[[1.0], [3.0], [float("nan")]]]), torch.tensor([[True, True, False]]))
    tensor([[2.]])
    """
    weights = tile_mask.unsqueeze(-1).to(tiles.dtype)
    total = tiles.masked_fill(~tile_mask.unsqueeze(-1), 0.0).sum(1)
    return total / weights.sum(1).clamp_min(1.0)


# classes


class FeedForward(nn.Module):
    """Pre-norm GELU MLP."""

    def __init__(self, *, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Attention(nn.Module):
    """Pre-norm multi-head (cross-)attention with a key padding mask.

    ``forward(x, context=None, kv_include_self=False, key_mask=None, return_attention=False)``: queries
    from ``x``, keys/values from ``context`` (default ``x``), with ``x`` prepended to the keys when
    ``kv_include_self``. ``key_mask`` is ``(batch, n_keys)`` boolean, ``True`` for keys to attend to.
    """

    def __init__(self, *, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head**-0.5
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        kv_include_self: bool = False,
        key_mask: torch.Tensor | None = None,
        return_attention: bool = False,
    ):
        """Attend; returns the output (and the ``(batch, heads, n_q, n_kv)`` weights on request)."""
        x = self.norm(x)
        context = x if context is None else context
        if kv_include_self:
            context = torch.cat((x, context), dim=1)
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)
        k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in self.to_kv(context).chunk(2, dim=-1))
        dots = torch.einsum("bhid,bhjd->bhij", q, k) * self.scale
        if exists(key_mask):
            dots = dots.masked_fill(~rearrange(key_mask, "b j -> b 1 1 j"), torch.finfo(dots.dtype).min)
        attn = dots.softmax(dim=-1)
        out = torch.einsum("bhij,bhjd->bhid", self.dropout(attn), v)
        out = self.to_out(rearrange(out, "b h n d -> b n (h d)"))
        return (out, attn) if return_attention else out


class Transformer(nn.Module):
    """Pre-norm transformer encoder (attention + MLP, residuals, final LayerNorm)."""

    def __init__(self, *, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    Attention(dim=dim, heads=heads, dim_head=dim_head, dropout=dropout),
                    FeedForward(dim=dim, hidden_dim=mlp_dim, dropout=dropout),
                ]
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, *, key_mask: torch.Tensor | None = None):
        """Encode ``x``; returns ``(x, attention of the last layer)``."""
        attn = None
        for attend, ff in self.layers:
            out, attn = attend(x, key_mask=key_mask, return_attention=True)
            x = out + x
            x = ff(x) + x
        return self.norm(x), attn


class ProjectInOut(nn.Module):
    """Run ``fn`` in another width: ``Linear(dim_in, dim_out) -> fn -> Linear(dim_out, dim_in)``."""

    def __init__(self, *, dim_in: int, dim_out: int, fn: nn.Module):
        super().__init__()
        self.fn = fn
        same = dim_in == dim_out
        self.project_in = nn.Identity() if same else nn.Linear(dim_in, dim_out)
        self.project_out = nn.Identity() if same else nn.Linear(dim_out, dim_in)

    def forward(self, x: torch.Tensor, *args, **kwargs):
        out, attn = self.fn(self.project_in(x), *args, return_attention=True, **kwargs)
        return self.project_out(out), attn


class CrossTransformer(nn.Module):
    """Each modality's CLS token attends to ``[own CLS; other modality's tokens]`` (only the CLS tokens change)."""

    def __init__(self, *, wsi_dim: int, rna_dim: int, depth: int, heads: int, dim_head: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    ProjectInOut(
                        dim_in=wsi_dim,
                        dim_out=rna_dim,
                        fn=Attention(dim=rna_dim, heads=heads, dim_head=dim_head, dropout=dropout),
                    ),
                    ProjectInOut(
                        dim_in=rna_dim,
                        dim_out=wsi_dim,
                        fn=Attention(dim=wsi_dim, heads=heads, dim_head=dim_head, dropout=dropout),
                    ),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, wsi: torch.Tensor, rna: torch.Tensor, *, tile_mask: torch.Tensor):
        """Update both CLS tokens; returns ``(wsi, rna, wsi_cls->genes, rna_cls->tiles)`` (last layer weights)."""
        wsi_cls, wsi_tiles = wsi[:, :1], wsi[:, 1:]
        rna_cls, rna_genes = rna[:, :1], rna[:, 1:]
        self_key = torch.ones_like(tile_mask[:, :1])
        tile_keys = torch.cat((self_key, tile_mask), dim=1)
        attn_to_genes = attn_to_tiles = None
        for wsi_attend, rna_attend in self.layers:
            out, attn_to_genes = wsi_attend(wsi_cls, context=rna_genes, kv_include_self=True)
            wsi_cls = out + wsi_cls
            out, attn_to_tiles = rna_attend(rna_cls, context=wsi_tiles, kv_include_self=True, key_mask=tile_keys)
            rna_cls = out + rna_cls
        wsi = torch.cat((wsi_cls, wsi_tiles), dim=1)
        rna = torch.cat((rna_cls, rna_genes), dim=1)
        return wsi, rna, attn_to_genes, attn_to_tiles


class GeneTokenizer(nn.Module):
    """Turn an expression vector ``(batch, G)`` into gene tokens ``(batch, G, dim)``.

    ``mode="per_gene"``: token ``x_g * w_g + p_g`` (value embedding times expression plus a gene identity
    embedding), then LayerNorm. ``mode="dense"``: the original model's ``LayerNorm(G) -> Linear(G, G*dim)
    -> reshape -> LayerNorm(dim)``.
    """

    def __init__(self, *, n_genes: int, dim: int, mode: Literal["per_gene", "dense"] = "per_gene"):
        super().__init__()
        if mode not in ("per_gene", "dense"):
            raise ValueError(f"gene_tokenizer must be 'per_gene' or 'dense', got {mode!r}.")
        self.mode, self.n_genes, self.dim = mode, n_genes, dim
        if mode == "per_gene":
            self.value = nn.Parameter(torch.randn(n_genes, dim) * 0.02)
            self.identity = nn.Parameter(torch.randn(n_genes, dim) * 0.02)
        else:
            self.pre = nn.LayerNorm(n_genes)
            self.dense = nn.Linear(n_genes, n_genes * dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokenise ``(batch, G)`` expression into ``(batch, G, dim)``."""
        if self.mode == "per_gene":
            tokens = x.unsqueeze(-1) * self.value + self.identity
        else:
            tokens = rearrange(self.dense(self.pre(x)), "b (g d) -> b g d", g=self.n_genes)
        return self.norm(tokens)


class MedCrossViT(nn.Module):
    """Tile-bag + expression classifier with per-modality transformers and CLS cross-attention.

    Parameters
    ----------
    num_classes
        Number of classes.
    tile_dim
        Width of the input tile embeddings (any; projected to ``wsi_dim``).
    n_genes
        Number of genes in the expression vector.
    wsi_dim, rna_dim
        Model widths of the tile and gene branches (may differ).
    depth
        Number of blocks (tile transformer, gene transformer, cross-transformer).
    enc_depth, enc_heads, enc_dim_head, enc_mlp_dim
        Per-modality transformer layers per block, heads, head width and MLP width.
    cross_depth, cross_heads, cross_dim_head
        Cross-transformer layers per block, heads and head width.
    gene_tokenizer
        ``"per_gene"`` (default) or ``"dense"`` (the original's map, ``G^2 * rna_dim`` parameters).
    pool
        ``"cls"`` (default; the classifier reads the CLS tokens, which the cross-attention updates) or
        ``"mean"`` (the original's default: mean over CLS and real tokens).
    tile_positions
        Add learned slot positions to the tiles (needs ``max_tiles``); off by default since bags are sets.
    max_tiles
        Largest bag, only for ``tile_positions=True``.
    dropout, emb_dropout
        Dropout inside the transformers and on the token embeddings.
    wide_path
        Add a :class:`~multiomix.nn.WidePath` of the bag's mean tile and the expression to the logits.
    wide_rank
        Rank of the wide path's tile x expression product.

    Examples
    --------
    >>> net = MedCrossViT(num_classes=2, tile_dim=48, n_genes=20, wsi_dim=32, rna_dim=16, enc_heads=2, cross_heads=2)
    >>> tiles, genes = torch.randn(4, 10, 48), torch.randn(4, 20)
    >>> mask = torch.ones(4, 10, dtype=torch.bool)
    >>> logits, attn = net(tiles, genes, tile_mask=mask, return_attention=True)
    >>> logits.shape, attn["tiles_cross"].shape, attn["genes_self"].shape
    (torch.Size([4, 2]), torch.Size([4, 10]), torch.Size([4, 20]))
    """

    def __init__(
        self,
        *,
        num_classes: int,
        tile_dim: int,
        n_genes: int,
        wsi_dim: int = 64,
        rna_dim: int = 64,
        depth: int = 1,
        enc_depth: int = 1,
        enc_heads: int = 4,
        enc_dim_head: int = 16,
        enc_mlp_dim: int = 128,
        cross_depth: int = 1,
        cross_heads: int = 4,
        cross_dim_head: int = 16,
        gene_tokenizer: Literal["per_gene", "dense"] = "per_gene",
        pool: Literal["cls", "mean"] = "cls",
        tile_positions: bool = False,
        max_tiles: int | None = None,
        dropout: float = 0.1,
        emb_dropout: float = 0.1,
        wide_path: bool = False,
        wide_rank: int = 1,
    ):
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}.")
        for name, value in (("depth", depth), ("enc_depth", enc_depth), ("cross_depth", cross_depth)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1 (the attention maps come from the last layer), "
                                 f"got {value}.")
        if tile_positions and not exists(max_tiles):
            raise ValueError("tile_positions=True needs max_tiles.")
        self.pool = pool
        self.tile_proj = nn.Sequential(nn.LayerNorm(tile_dim), nn.Linear(tile_dim, wsi_dim))
        self.wsi_cls = nn.Parameter(torch.randn(1, 1, wsi_dim) * 0.02)
        self.tile_pos = nn.Parameter(torch.randn(1, max_tiles, wsi_dim) * 0.02) if tile_positions else None
        self.gene_tokens = GeneTokenizer(n_genes=n_genes, dim=rna_dim, mode=gene_tokenizer)
        self.rna_cls = nn.Parameter(torch.randn(1, 1, rna_dim) * 0.02)
        self.gene_pos = nn.Parameter(torch.randn(1, n_genes + 1, rna_dim) * 0.02)
        self.emb_dropout = nn.Dropout(emb_dropout)
        enc = {"depth": enc_depth, "heads": enc_heads, "dim_head": enc_dim_head, "mlp_dim": enc_mlp_dim}
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                [
                    Transformer(dim=wsi_dim, dropout=dropout, **enc),
                    Transformer(dim=rna_dim, dropout=dropout, **enc),
                    CrossTransformer(
                        wsi_dim=wsi_dim,
                        rna_dim=rna_dim,
                        depth=cross_depth,
                        heads=cross_heads,
                        dim_head=cross_dim_head,
                        dropout=dropout,
                    ),
                ]
            )
            for _ in range(depth)
        )
        self.wsi_head = nn.Sequential(nn.LayerNorm(wsi_dim), nn.Linear(wsi_dim, num_classes))
        self.rna_head = nn.Sequential(nn.LayerNorm(rna_dim), nn.Linear(rna_dim, num_classes))
        self.wide = WidePath(a_dim=tile_dim, b_dim=n_genes, num_classes=num_classes, rank=wide_rank) if wide_path \
            else None

    def classify(self, wsi: torch.Tensor, rna: torch.Tensor, tiles: torch.Tensor, genes: torch.Tensor,
                 tile_mask: torch.Tensor) -> torch.Tensor:
        """Logits from the pooled vectors of :meth:`encode` (+ the wide path of the inputs, if any)."""
        logits = self.wsi_head(wsi) + self.rna_head(rna)
        if exists(self.wide):
            logits = logits + self.wide(masked_mean(tiles, tile_mask.bool()), genes)
        return logits

    def encode(self, tiles: torch.Tensor, genes: torch.Tensor, *, tile_mask: torch.Tensor | None = None):
        """Return ``(wsi_pooled, rna_pooled, attention)``; see :meth:`forward` for the attention keys."""
        b, n, _ = tiles.shape
        tile_mask = torch.ones(b, n, dtype=torch.bool, device=tiles.device) if tile_mask is None else tile_mask.bool()
        wsi = self.tile_proj(tiles.masked_fill(~tile_mask[..., None], 0.0))  # padded slots: anything, NaN included
        if exists(self.tile_pos):
            if n > self.tile_pos.shape[1]:
                raise ValueError(f"Bags have {n} tiles but the model was built for at most {self.tile_pos.shape[1]}.")
            wsi = wsi + self.tile_pos[:, :n]
        wsi = torch.cat((repeat(self.wsi_cls, "1 1 d -> b 1 d", b=b), wsi), dim=1)
        rna = self.gene_tokens(genes)
        rna = torch.cat((repeat(self.rna_cls, "1 1 d -> b 1 d", b=b), rna), dim=1) + self.gene_pos
        wsi, rna = self.emb_dropout(wsi), self.emb_dropout(rna)
        wsi_keys = torch.cat((torch.ones_like(tile_mask[:, :1]), tile_mask), dim=1)
        for wsi_enc, rna_enc, cross in self.blocks:
            wsi, wsi_attn = wsi_enc(wsi, key_mask=wsi_keys)
            rna, rna_attn = rna_enc(rna)
            wsi, rna, genes_cross, tiles_cross = cross(wsi, rna, tile_mask=tile_mask)
        attention = {
            # CLS rows, mean over heads, self key (column 0) dropped
            "tiles_self": wsi_attn[:, :, 0, 1:].mean(1),
            "genes_self": rna_attn[:, :, 0, 1:].mean(1),
            "tiles_cross": tiles_cross[:, :, 0, 1:].mean(1),
            "genes_cross": genes_cross[:, :, 0, 1:].mean(1),
        }
        if self.pool == "cls":
            return wsi[:, 0], rna[:, 0], attention
        weights = wsi_keys.unsqueeze(-1).to(wsi.dtype)
        wsi_pooled = (wsi * weights).sum(1) / weights.sum(1)
        return wsi_pooled, rna.mean(1), attention

    def forward(
        self,
        tiles: torch.Tensor,
        genes: torch.Tensor,
        *,
        tile_mask: torch.Tensor | None = None,
        return_attention: bool = False,
    ):
        """Classify.

        Parameters
        ----------
        tiles
            ``(batch, n_tiles, tile_dim)`` tile embeddings (padded slots arbitrary).
        genes
            ``(batch, n_genes)`` expression.
        tile_mask
            ``(batch, n_tiles)`` boolean, ``True`` for real tiles (default: all real).
        return_attention
            Also return a dict of CLS attention weights (mean over heads, last layer of the last block):
            ``tiles_self`` / ``genes_self`` (each CLS over its own tokens in its transformer) and
            ``tiles_cross`` / ``genes_cross`` (the other CLS over these tokens in the cross-attention,
            without the weight it keeps on itself). Padded tiles get weight 0.

        Returns
        -------
        Logits ``(batch, num_classes)`` = tile head + gene head (+ wide path), and the attention dict on request.
        """
        b, n, _ = tiles.shape
        tile_mask = torch.ones(b, n, dtype=torch.bool, device=tiles.device) if tile_mask is None else tile_mask.bool()
        wsi, rna, attention = self.encode(tiles, genes, tile_mask=tile_mask)
        logits = self.classify(wsi, rna, tiles, genes, tile_mask)
        return (logits, attention) if return_attention else logits
