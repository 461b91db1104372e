"""Pixel-mode conversions shared by the upload check (web) and the embedding (worker), so
the model sees what the browser shows. Pillow and numpy only: no torch.

Pillow's own ``convert("RGB")`` clips 16-bit samples at 255 (a 16-bit grey PNG turns
white) and drops alpha without compositing; these helpers scale and composite instead.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# What the annotate page draws transparent pixels over (its stage is near-black).
ALPHA_BACKGROUND = (0, 0, 0)


def _to_8bit(img: Image.Image) -> Image.Image:
    """A single-channel image of more than 8 bits per sample -> mode ``L``.

    ``I;16*`` and ``I`` are taken as 0..65535 (16-bit PNG/TIFF) and scaled by 255/65535 as
    browsers show them; ``F`` is stretched from its minimum to its maximum.
    """
    arr = np.asarray(img)
    if img.mode == "F":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scaled = (np.nan_to_num(arr, nan=lo) - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)
    else:
        scaled = np.clip(arr.astype(np.float64), 0, 65535) / 257.0
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")


def to_display_mode(img: Image.Image) -> Image.Image:
    """The image in a mode a browser-ready PNG can hold at 8 bits: ``L``, ``LA``, ``RGB``
    or ``RGBA`` (alpha kept: the browser composites it)."""
    if img.mode in ("1", "L", "LA", "RGB", "RGBA"):
        return img
    if img.mode.startswith("I") or img.mode == "F":
        return _to_8bit(img)
    if img.mode in ("P", "PA"):
        return img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    if img.mode in ("La", "RGBa"):
        return img.convert(img.mode.upper())
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...


def to_rgb(img: Image.Image) -> Image.Image:
    """The image as 8-bit ``RGB``: 16-bit samples scaled, alpha composited over
    :data:`ALPHA_BACKGROUND` (what the user sees under transparent pixels)."""
    img = to_display_mode(img)
    if img.mode in ("LA", "RGBA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
