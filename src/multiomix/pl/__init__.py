"""multiomix.pl"""

from ._tile_attention import tile_attention  # noqa: E402, F401
