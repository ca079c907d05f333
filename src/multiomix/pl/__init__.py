"""multiomix.pl"""

from ._tile_attention import tile_attention  # noqa: E402, F401
from ._attention import attention_maps, track_prediction  # noqa: E402, F401
