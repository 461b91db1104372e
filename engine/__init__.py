"""The engine: SAM models (official checkpoints and the shipped default), embedding,
decoder export to ONNX. Plain PyTorch/ONNX; never imports Django.

Names load lazily (PEP 562): ``import engine.rle`` must not pull in torch (~780 MB RSS),
so that processes that only handle masks (exports, imports, the web server's RLE checks)
stay small.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DEFAULT_WEIGHTS": "build", "MODEL_REGISTRY": "build", "CheckpointError": "build",
    "LoadedModel": "build", "build_model": "build", "load_default": "build",
    "DecoderOnnxModel": "onnx_export", "export_decoder": "onnx_export", "decoder_agreement": "onnx_export",
    "BrowserDecoderOnnxModel": "onnx_browser", "export_browser_decoder": "onnx_browser",
    "EMBEDDING_SHAPE": "predictor", "ImageError": "predictor", "coords_to_1024": "predictor",
    "decoder_feeds": "predictor", "embed": "predictor", "embedding_from_bytes": "predictor",
    "embedding_to_bytes": "predictor", "load_image": "predictor", "predict": "predictor",
    "resized_shape": "predictor",
    "Click": "clicks", "next_click": "clicks", "load_dataset": "evaluate",
    "AutomaticMaskParams": "automatic_params", "generate_masks": "automatic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .automatic import generate_masks  # noqa: F401
    from .automatic_params import AutomaticMaskParams  # noqa: F401
    from .build import (DEFAULT_WEIGHTS, MODEL_REGISTRY, CheckpointError, LoadedModel,  # noqa: F401
                        build_model, load_default)
    from .clicks import Click, next_click  # noqa: F401
    from .evaluate import load_dataset  # noqa: F401
    from .onnx_browser import BrowserDecoderOnnxModel, export_browser_decoder  # noqa: F401
    from .onnx_export import DecoderOnnxModel, decoder_agreement, export_decoder  # noqa: F401
    from .predictor import (EMBEDDING_SHAPE, ImageError, coords_to_1024, decoder_feeds, embed,  # noqa: F401
                            embedding_from_bytes, embedding_to_bytes, load_image, predict, resized_shape)
