"""Loaders of real public datasets and synthetic generators with planted truth."""

from ._cache import DATA_DIR_ENV, default_cache_dir
from ._single_cell import bmmc_cite, bmmc_multiome, patchseq
from ._synthetic import synthetic_interaction_mudata
from ._tcga import tcga_brca

__all__ = [
    "DATA_DIR_ENV",
    "bmmc_cite",
    "bmmc_multiome",
    "default_cache_dir",
    "patchseq",
    "synthetic_interaction_mudata",
    "tcga_brca",
]

from ._sequences import oct4_mafk, planted_motif_pairs  # noqa: E402, F401

from ._synthetic_tiles import synthetic_tile_bags  # noqa: E402, F401
