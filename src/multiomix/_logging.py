"""Package logger; one line per output written to a data object."""

from __future__ import annotations

import logging

logger = logging.getLogger("multiomix")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
