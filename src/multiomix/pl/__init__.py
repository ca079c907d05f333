"""multiomix.pl"""

from ._attention import attention_maps, track_prediction  # noqa: E402, F401

from ._tile_attention import tile_attention  # noqa: E402, F401

from ._crossattomics import interaction_importance, training_history  # noqa: E402, F401

from ._relevance import relevance_dotplot, relevance_heatmap, relevance_network  # noqa: E402, F401

from ._benchmark import benchmark, embedding  # noqa: E402, F401
