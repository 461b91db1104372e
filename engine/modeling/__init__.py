"""nn.Modules of the engine: the shipped default image encoder (SAM's prompt encoder and
mask decoder come unchanged from the ``segment-anything`` package)."""

from .lite_encoder import LiteImageEncoder

__all__ = ["LiteImageEncoder"]
