"""Stateless inference: image loading, SAM preprocessing, embedding, and the torch
decoder path that the ONNX decoder must match.

Coordinates: pixel (x, y) in the EXIF-corrected original image unless a name says
``_1024`` (the frame resized so the longest side is 1024; DESIGN.md "Decoder ONNX contract").
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from .build import EMBED_DIM, EMBED_SIZE, IMAGE_SIZE, LoadedModel
from .images import to_rgb

EMBEDDING_SHAPE = (1, EMBED_DIM, EMBED_SIZE, EMBED_SIZE)


class ImageError(ValueError):
    """An image cannot be decoded or is not usable (corrupt, truncated, too large)."""


def load_image(source: str | Path | bytes | BinaryIO, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file to RGB, with its EXIF orientation applied (first frame of an
    animation; 16-bit samples scaled to 8 bits and alpha composited over black, as
    ``engine.images.to_rgb`` does, so the model sees what the browser shows).

    Args:
        source: a path, raw bytes, or a binary file object.
        max_pixels: refuse images with more pixels than this (None: Pillow's own
            decompression-bomb limit applies).

    Returns:
        HxWx3 uint8 array, H and W as the user sees the photo (after EXIF rotation).

    Raises:
        ImageError: not an image, truncated, or over the pixel limit.
    """
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ImageError(f"image is {img.width}x{img.height}, over the limit of {max_pixels} pixels")
            img = ImageOps.exif_transpose(img)
            rgb = to_rgb(img)  # 16-bit scaled, alpha composited: what the browser shows
            rgb.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot decode image: {exc}") from exc
    return np.asarray(rgb, dtype=np.uint8)


def resized_shape(height: int, width: int, long_side: int = IMAGE_SIZE) -> tuple[int, int]:
    """(h, w) after resizing so the longest side is ``long_side`` (SAM's ResizeLongestSide)."""
    return ResizeLongestSide.get_preprocess_shape(height, width, long_side)


def coords_to_1024(coords: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nx2 pixel (x, y) -> Nx2 (x, y) in the 1024 frame.

    One scale for both axes, ``1024 / max(H, W)``, as the decoder contract says and the
    browser computes it. (segment-anything's ``ResizeLongestSide.apply_coords`` scales each
    axis by its rounded resized length instead; the two differ by under a pixel.)
    """
    return np.asarray(coords, dtype=np.float64) * (IMAGE_SIZE / max(height, width))


def preprocess(sam: Sam, image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 1x3x1024x1024 float: resized longest side 1024, normalised, padded."""
    resized = ResizeLongestSide(IMAGE_SIZE).apply_image(image)
    tensor = torch.as_tensor(resized, device=sam.device).permute(2, 0, 1).contiguous()[None].float()
    return sam.preprocess(tensor)


# Models whose encoder runs in onnxruntime on a CPU (``embed(backend="auto")``), measured by
# bench/encoder_throughput.py on 2 cores: default 0.098 s per photo against 0.70 s in torch;
# ViT-B 3.1 s against 9.1 s (peak memory 5.5 GB against 3.8 GB). ViT-L/H stay on torch:
# not measured here, and ViT-H's 2.5 GB of weights exceed ONNX's 2 GB protobuf limit.
ONNX_ENCODER_MODELS = ("default", "vit_b")


@torch.inference_mode()
def embed(model: LoadedModel | Sam, image: np.ndarray, backend: str = "auto") -> torch.Tensor:
    """Image embedding of one photo (SAM §3, image encoder run once per image).

    Args:
        model: a built model.
        image: HxWx3 uint8 RGB (EXIF-corrected).
        backend: ``"auto"`` runs the encoders of :data:`ONNX_ENCODER_MODELS` (the shipped
            default model, ViT-B) in onnxruntime on CPU (exported once per model id into
            ``engine.onnx_encoder.cache_dir()``; 0.1 s per photo on 2 cores against 0.7 s in
            torch for the default model, 3.1 s against 9.1 s for ViT-B) and everything else
            in torch; ``"torch"`` forces torch; ``"onnx"`` forces onnxruntime.

    Returns:
        1x256x64x64 float32 tensor on the CPU.

    Raises:
        ImageError: the array is not HxWx3 uint8.
    """
    sam = model.sam if isinstance(model, LoadedModel) else model
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(f"expected HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")
    x = preprocess(sam, image)
    use_onnx = backend == "onnx" or (
        backend == "auto" and isinstance(model, LoadedModel) and model.name in ONNX_ENCODER_MODELS
        and sam.device.type == "cpu"
    )
    if use_onnx:
        try:
            from .onnx_encoder import encoder_session

            model_id = model.model_id if isinstance(model, LoadedModel) else f"sam-{id(sam)}-untrained"
            sess = encoder_session(model_id, sam.image_encoder)
            return torch.from_numpy(sess.run(None, {"image": x.cpu().numpy()})[0].astype(np.float32))
        except Exception as exc:  # no onnxruntime, unwritable cache, failed parity: torch still works
            if backend == "onnx":
                raise
            logging.getLogger(__name__).warning("onnxruntime encoder unavailable (%s); using torch", exc)
    return sam.image_encoder(x).float().cpu()


def embedding_to_bytes(embedding: torch.Tensor) -> bytes:
    """1x256x64x64 tensor -> little-endian fp16 bytes (2 MiB), the on-the-wire format."""
    if tuple(embedding.shape) != EMBEDDING_SHAPE:
        raise ValueError(f"embedding shape {tuple(embedding.shape)} != {EMBEDDING_SHAPE}")
    return embedding.detach().cpu().numpy().astype("<f2").tobytes()


def embedding_from_bytes(data: bytes) -> np.ndarray:
    """Inverse of :func:`embedding_to_bytes`: 1x256x64x64 float32 array."""
    expected = int(np.prod(EMBEDDING_SHAPE)) * 2
    if len(data) != expected:
        raise ValueError(f"embedding payload is {len(data)} bytes, expected {expected}")
    return np.frombuffer(data, dtype="<f2").astype(np.float32).reshape(EMBEDDING_SHAPE)


def decoder_feeds(
    embedding: np.ndarray,
    orig_size: tuple[int, int],
    point_coords: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    mask_input: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Inputs of the decoder ONNX graph, built exactly as the browser builds them.

    Args:
        embedding: 1x256x64x64 float32.
        orig_size: (H, W) of the original image in pixels.
        point_coords: Nx2 pixel (x, y); point_labels: N (1 positive, 0 negative).
        box: XYXY pixels (x0, y0, x1, y1) or None. With a box, its corners are sent with
            labels 2 and 3 and no padding point; without, one (0, 0) point labelled -1 is
            appended (segment-anything's ONNX convention).
        mask_input: 1x1x256x256 low-res logits of the previous step, or None.

    Returns:
        dict of ``image_embeddings``, ``point_coords`` (1xMx2, 1024 frame), ``point_labels``
        (1xM), ``mask_input``, ``has_mask_input``, ``orig_im_size`` (float32 arrays).

    Raises:
        ValueError: no prompt at all, or mismatched coordinate/label counts.
    """
    h, w = orig_size
    coords = np.zeros((0, 2), np.float64) if point_coords is None else np.asarray(point_coords, np.float64).reshape(-1, 2)
    labels = np.zeros((0,), np.float64) if point_labels is None else np.asarray(point_labels, np.float64).reshape(-1)
    if len(coords) != len(labels):
        raise ValueError(f"{len(coords)} point_coords but {len(labels)} point_labels")
    if box is not None:
        coords = np.concatenate([coords, np.asarray(box, np.float64).reshape(2, 2)])
        labels = np.concatenate([labels, [2.0, 3.0]])
    elif len(coords):
        coords = np.concatenate([coords, [[0.0, 0.0]]])
        labels = np.concatenate([labels, [-1.0]])
    else:
        raise ValueError("a prompt needs at least one point or a box")
    has_mask = mask_input is not None
    return {
        "image_embeddings": np.asarray(embedding, np.float32).reshape(EMBEDDING_SHAPE),
        "point_coords": coords_to_1024(coords, h, w).astype(np.float32)[None],
        "point_labels": labels.astype(np.float32)[None],
        "mask_input": (np.asarray(mask_input, np.float32).reshape(1, 1, 256, 256) if has_mask
                       else np.zeros((1, 1, 256, 256), np.float32)),
        "has_mask_input": np.array([1.0 if has_mask else 0.0], np.float32),
        "orig_im_size": np.array([h, w], np.float32),
    }


@torch.inference_mode()
def predict(
    model: LoadedModel | Sam,
    embedding: np.ndarray | torch.Tensor,
    orig_size: tuple[int, int],
    point_coords: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    mask_input: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Torch reference of the decoder ONNX graph (same inputs as :func:`decoder_feeds`).

    Uses segment-anything's own ``PromptEncoder.forward`` and ``Sam.postprocess_masks``,
    so it is an independent check of our export wrapper.

    Returns:
        ``masks`` 4xHxW logits at original size (index 0 = the single-mask token, 1..3 the
        multimask candidates; threshold at 0), ``iou_predictions`` (4,), ``low_res_masks``
        4x256x256 logits.
    """
    sam = model.sam if isinstance(model, LoadedModel) else model
    h, w = orig_size
    emb = torch.as_tensor(np.asarray(embedding, np.float32)).reshape(EMBEDDING_SHAPE).to(sam.device)
    points = None
    if point_coords is not None and len(point_coords):
        pc = torch.as_tensor(coords_to_1024(np.asarray(point_coords).reshape(-1, 2), h, w), dtype=torch.float32)
        pl = torch.as_tensor(np.asarray(point_labels, np.float32).reshape(-1))
        points = (pc[None].to(sam.device), pl[None].to(sam.device))
    boxes = None
    if box is not None:
        corners = coords_to_1024(np.asarray(box, np.float64).reshape(2, 2), h, w)
        boxes = torch.as_tensor(corners.reshape(1, 4), dtype=torch.float32, device=sam.device)
    masks_t = None
    if mask_input is not None:
        masks_t = torch.as_tensor(np.asarray(mask_input, np.float32).reshape(1, 1, 256, 256), device=sam.device)
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=masks_t)
    low_res, iou = sam.mask_decoder.predict_masks(
        image_embeddings=emb,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
    )
    masks = sam.postprocess_masks(low_res, resized_shape(h, w), (h, w))
    return {
        "masks": masks[0].cpu().numpy(),
        "iou_predictions": iou[0].cpu().numpy(),
        "low_res_masks": low_res[0].cpu().numpy(),
    }
