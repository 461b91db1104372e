"""The engine: SAM models (official checkpoints and the shipped default), embedding,
decoder export to ONNX. Plain PyTorch/ONNX; never imports Django."""

from .build import (
    DEFAULT_WEIGHTS,
    MODEL_REGISTRY,
    CheckpointError,
    LoadedModel,
    build_model,
    load_default,
)
from .onnx_export import DecoderOnnxModel, export_decoder
from .predictor import (
    EMBEDDING_SHAPE,
    ImageError,
    coords_to_1024,
    decoder_feeds,
    embed,
    embedding_from_bytes,
    embedding_to_bytes,
    load_image,
    predict,
    resized_shape,
)

__all__ = [
    "DEFAULT_WEIGHTS", "MODEL_REGISTRY", "CheckpointError", "LoadedModel", "build_model",
    "load_default", "DecoderOnnxModel", "export_decoder", "EMBEDDING_SHAPE", "ImageError",
    "coords_to_1024", "decoder_feeds", "embed", "embedding_from_bytes", "embedding_to_bytes",
    "load_image", "predict", "resized_shape",
]
