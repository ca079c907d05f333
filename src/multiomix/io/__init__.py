"""multiomix.io"""

from ._fasta import read_fasta  # noqa: E402, F401

from ._tile_bags import read_tile_bags, sample_tile_bags  # noqa: E402, F401
