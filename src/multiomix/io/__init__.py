"""Readers: FASTA sequences (indexed genome access), BED regions and whole-slide-image tile-embedding bags."""

from ._fasta import open_fasta, read_bed, read_fasta
from ._tile_bags import read_tile_bags, sample_tile_bags

__all__ = [
    "open_fasta",
    "read_bed",
    "read_fasta",
    "read_tile_bags",
    "sample_tile_bags",
]
