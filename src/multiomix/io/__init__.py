"""Readers: FASTA sequences and whole-slide-image tile-embedding bags."""

from ._fasta import read_fasta
from ._tile_bags import read_tile_bags, sample_tile_bags

__all__ = [
    "read_fasta",
    "read_tile_bags",
    "sample_tile_bags",
]
