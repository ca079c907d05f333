"""Loaders of real public datasets and synthetic generators with planted truth."""

from ._cache import DATA_DIR_ENV, default_cache_dir
from ._sequences import oct4_mafk, planted_motif_pairs
from ._single_cell import bmmc_cite, bmmc_multiome, patchseq
from ._synthetic import synthetic_interaction_mudata
from ._synthetic_tiles import synthetic_tile_bags
from ._tcga import tcga, tcga_brca

__all__ = [
    "bmmc_cite",
    "bmmc_multiome",
    "DATA_DIR_ENV",
    "default_cache_dir",
    "oct4_mafk",
    "patchseq",
    "planted_motif_pairs",
    "synthetic_interaction_mudata",
    "synthetic_tile_bags",
    "tcga",
    "tcga_brca",
]
