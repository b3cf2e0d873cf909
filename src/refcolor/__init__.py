"""refcolor: exemplar-based video colorization with long-term spatiotemporal dependency.

    import refcolor
    refcolor.colorize("film.mp4", "photo.jpg", "film_color.mp4")

Heavy modules load lazily, so ``import refcolor`` stays cheap.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["colorize", "Colorizer", "load_model", "save_model", "ModelConfig", "get_config", "RefcolorError"]


def __getattr__(name: str) -> Any:
    if name == "colorize":
        from .pipeline import colorize

        return colorize
    if name == "Colorizer":
        from .inference import Colorizer

        return Colorizer
    if name in ("load_model", "save_model"):
        from . import checkpoint

        return getattr(checkpoint, name)
    if name in ("ModelConfig", "get_config"):
        from . import config

        return getattr(config, name)
    if name == "RefcolorError":
        from .errors import RefcolorError

        return RefcolorError
    raise AttributeError(name)
