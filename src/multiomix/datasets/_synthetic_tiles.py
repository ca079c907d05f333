"""SYNTHETIC tile bags + expression with a planted class signal (no real slides involved)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from mudata import MuData

from .._utils import new_mudata

__all__ = ["synthetic_tile_bags"]


def synthetic_tile_bags(
    n_samples: int = 200,
    *,
    n_classes: int = 2,
    tile_dim: int = 32,
    n_tiles: tuple[int, int] = (24, 48),
    n_signal_tiles: int = 2,
    tile_signal: float = 4.0,
    n_genes: int = 40,
    n_signal_genes: int = 4,
    gene_signal: float = 0.6,
    interaction: bool = False,
    random_state: int = 0,
    signal_random_state: int | None = None,
) -> tuple[MuData, dict]:
    """Synthetic patients with a bag of tile embeddings and an expression vector; the class is planted.

    This is **synthetic data**, made to check that a tile/expression model finds a known signal; it
    contains no real slides or transcriptomes. Per patient of class ``c``:

    * a bag of ``n_tiles[0]..n_tiles[1]`` tiles (the size varies), each a standard normal vector of
      width ``tile_dim``, on random cells of a 32 x 32 grid (``coords``, 256-pixel steps). In
      ``n_signal_tiles`` random tiles, ``tile_signal`` times the class's unit direction ``u_c`` is
      added (the directions are orthonormal). Mean pooling dilutes this by ``n_signal_tiles / n_tiles``;
    * ``n_genes`` standard normal values (think log-expression, standardised). ``n_signal_genes`` genes
      (the same genes for all patients) are shifted by ``gene_signal`` times a class-specific ``+-1``
      pattern; all other genes carry no information.

    With ``interaction=True`` (two classes only) the label needs both modalities: each patient draws a tile
    state ``a`` and an expression state ``b`` (0 or 1, independent, balanced), the planted tiles point along
    ``u_a`` and the planted genes follow pattern ``b``, and the label is ``a XOR b``. Each modality alone is then
    independent of the label, and so is any linear function of the mean tile and the expression (the two
    classes have the same mean): a model must find the planted tiles, read the genes, and combine the two.

    Parameters
    ----------
    n_samples
        Number of patients.
    n_classes
        Number of classes (balanced; at most ``tile_dim``).
    tile_dim
        Width of the tile embeddings.
    n_tiles
        Smallest and largest bag.
    n_signal_tiles
        Planted tiles per bag.
    tile_signal
        Length of the planted class direction added to those tiles.
    n_genes
        Number of genes.
    n_signal_genes
        Planted genes.
    gene_signal
        Size of the class shift of the planted genes (in units of the noise SD).
    interaction
        Label = tile state XOR expression state (see above); needs ``n_classes=2``.
    random_state
        Seed of the patients (labels, tiles, expression).
    signal_random_state
        Seed of the planted signal (class directions, planted genes and their pattern); default
        ``random_state``. Keep it fixed and change ``random_state`` to draw new patients of the same task.

    Returns
    -------
    ``(mdata, truth)``. ``mdata`` has modalities ``wsi`` (``obsm['tiles']`` ``(n, max_tiles, tile_dim)``,
    ``obsm['tile_mask']``, ``obsm['coords']``, ``X`` = mean tile, as :func:`multiomix.io.read_tile_bags`
    writes) and ``rna`` (``X`` = expression), and ``obs['label']`` (categorical ``class0``...). ``truth``
    holds ``signal_tiles`` (``(n, max_tiles)`` bool), ``signal_genes`` (gene names), ``tile_directions``
    (``(n_classes, tile_dim)``), ``gene_patterns`` (``(n_classes, n_signal_genes)``), and ``tile_state`` and
    ``gene_state`` (per patient, the index of its tile direction and gene pattern; both equal the label unless
    ``interaction=True``).

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata, truth = mx.datasets.synthetic_tile_bags(100, random_state=0)
    >>> mdata.mod["wsi"].obsm["tiles"].shape[0], len(truth["signal_genes"])
    (100, 4)
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
    if not (np.isfinite(tile_signal) and np.isfinite(gene_signal)):
        raise ValueError(f"tile_signal and gene_signal must be finite, got {tile_signal} and {gene_signal}.")
    lo, hi = n_tiles
    if not 1 <= n_signal_tiles <= lo <= hi:
        raise ValueError(f"Need 1 <= n_signal_tiles <= n_tiles[0] <= n_tiles[1], got {n_signal_tiles}, {n_tiles}.")
    if not 2 <= n_classes <= tile_dim:
        raise ValueError(f"n_classes must be between 2 and tile_dim={tile_dim}, got {n_classes}.")
    if not 1 <= n_signal_genes <= n_genes:
        raise ValueError(f"n_signal_genes must be between 1 and n_genes={n_genes}, got {n_signal_genes}.")
    if interaction and n_classes != 2:
        raise ValueError(f"interaction=True needs n_classes=2 (label = tile state XOR expression state), "
                         f"got {n_classes}.")
    if hi > 32 * 32:
        raise ValueError("n_tiles[1] must be at most 1024 (the coordinate grid is 32 x 32).")
    signal_rng = np.random.default_rng(random_state if signal_random_state is None else signal_random_state)
    directions = np.linalg.qr(signal_rng.normal(size=(tile_dim, n_classes)))[0].T.astype(np.float32)
    signal_genes = np.sort(signal_rng.choice(n_genes, size=n_signal_genes, replace=False))
    patterns = signal_rng.choice([-1.0, 1.0], size=(n_classes, n_signal_genes))
    if n_classes > 2:  # class-specific patterns: a class that repeats another's is drawn again
        if n_classes > 2**n_signal_genes:
            raise ValueError(f"{n_classes} classes need {n_classes} distinct +-1 patterns of the planted genes; "
                             f"{n_signal_genes} planted genes give only {2**n_signal_genes}. Plant more genes.")
        while len(np.unique(patterns, axis=0)) < n_classes:
            _, first = np.unique(patterns, axis=0, return_index=True)
            repeated = np.setdiff1d(np.arange(n_classes), first)
            patterns[repeated] = signal_rng.choice([-1.0, 1.0], size=(len(repeated), n_signal_genes))
    rng = np.random.default_rng([random_state, 1])
    if interaction:  # four balanced (tile state, expression state) cells; the label is their XOR
        states = rng.permutation(np.arange(n_samples) % 4)
        tile_state, gene_state = states // 2, states % 2
        labels = tile_state ^ gene_state
    else:
        labels = rng.permutation(np.arange(n_samples) % n_classes)
        tile_state = gene_state = labels
    if n_classes == 2:
        patterns[1] = -patterns[0]

    sizes = rng.integers(lo, hi + 1, size=n_samples)
    tiles = np.zeros((n_samples, hi, tile_dim), dtype=np.float32)
    coords = np.zeros((n_samples, hi, 2), dtype=np.float32)
    mask = np.zeros((n_samples, hi), dtype=bool)
    planted = np.zeros((n_samples, hi), dtype=bool)
    for i, (size, label) in enumerate(zip(sizes, tile_state)):
        bag = rng.normal(size=(size, tile_dim)).astype(np.float32)
        hits = rng.choice(size, size=n_signal_tiles, replace=False)
        bag[hits] += tile_signal * directions[label]
        cells = rng.choice(32 * 32, size=size, replace=False)
        tiles[i, :size], mask[i, :size], planted[i, hits] = bag, True, True
        coords[i, :size] = np.stack([cells % 32, cells // 32], axis=1) * 256.0

    expr = rng.normal(size=(n_samples, n_genes)).astype(np.float32)
    expr[:, signal_genes] += (gene_signal * patterns[gene_state]).astype(np.float32)

    names = [f"patient{i:04d}" for i in range(n_samples)]
    wsi = ad.AnnData(
        X=tiles.sum(1) / sizes[:, None],
        obs=pd.DataFrame({"n_tiles": sizes}, index=names),
        var=pd.DataFrame(index=[f"features_{j}" for j in range(tile_dim)]),
    )
    wsi.obsm["tiles"], wsi.obsm["tile_mask"], wsi.obsm["coords"] = tiles, mask, coords
    gene_names = [f"gene{j:03d}" for j in range(n_genes)]
    rna = ad.AnnData(X=expr, obs=pd.DataFrame(index=names), var=pd.DataFrame(index=gene_names))
    mdata = new_mudata({"wsi": wsi, "rna": rna})
    categories = [f"class{c}" for c in range(n_classes)]
    mdata.obs["label"] = pd.Categorical.from_codes(labels, categories=categories)
    truth = {
        "signal_tiles": planted,
        "signal_genes": [gene_names[j] for j in signal_genes],
        "tile_directions": directions,
        "gene_patterns": patterns,
        "tile_state": np.asarray(tile_state),
        "gene_state": np.asarray(gene_state),
    }
    return mdata, truth
