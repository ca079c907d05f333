"""Readers: FASTA sequences (indexed genome access), BED regions, GMT gene sets, whole-slide-image tile-embedding bags.

Tile bags come from one h5 file per slide or from a table with one row per tile.
"""

from ._fasta import open_fasta, read_bed, read_fasta
from ._gmt import read_gmt
from ._tile_bags import read_tile_bags, sample_tile_bags, tile_bags_from_table

__all__ = [
    "open_fasta",
    "read_bed",
    "read_fasta",
    "read_gmt",
    "read_tile_bags",
    "sample_tile_bags",
    "tile_bags_from_table",
]
