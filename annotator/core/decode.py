"""Server-side decoding of prompts (``POST /api/images/<id>/decode``): prompts in, onnxruntime
in this process, masks back — the design other annotation tools use, kept next to the
in-browser decoder so that both can be measured on the same prompts (issue 7).

Feeds are built exactly as the browser builds them (``frontend/src/lib/feeds.ts``, DESIGN.md
"Decoder ONNX contract"). numpy and onnxruntime only: the web process never imports torch
for this (only a decoder that was never exported needs it, once, through
:func:`model_runtime.decoder_path`).
"""

from __future__ import annotations

import base64
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Generic, Hashable, TypeVar

import numpy as np

from .model_runtime import decoder_path
from .model_versions import project_model_id
from .models import Embedding, Image

EMBEDDING_SHAPE = (1, 256, 64, 64)
EMBEDDING_BYTES = 2 * 256 * 64 * 64  # little-endian fp16 on disk and on the wire
LOW_RES = 256
LOW_RES_BYTES = 2 * LOW_RES * LOW_RES  # one candidate's logits as fp16 (mask_input)
MAX_POINTS = 100
FP16_MAX = 65504.0

# Memory cost, per web process:
# - decoder sessions: measured with the shipped default's decoder (12 MB fp32 file, a
#   full-size SAM decoder is 16 MB): 58 MB RSS once loaded, 122 MB after a few runs on a
#   481x321 photo (onnxruntime's arena keeps the largest intermediates, and the `masks`
#   output is 1x4xHxW float32, so it grows with the image). 2 entries (a version's fp32
#   and quantized decoders, or two versions) ~ 250 MB; the arena is kept for speed (without
#   it the same runs took ~40% longer here).
# - embeddings: float32 1x256x64x64 = 4 MiB each; 8 entries = 32 MiB (the images annotators
#   are on now; an evicted one costs one 2 MiB read and an fp16 -> fp32 cast, a few ms).
SESSION_CACHE_ENTRIES = 2
EMBEDDING_CACHE_ENTRIES = 8

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A small thread-safe LRU (Django serves requests on threads). A value is built outside
    the lock: two threads missing the same key at once both build it, the last one stays."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_build(self, key: K, build: Callable[[], V]) -> tuple[V, bool]:
        """(value, hit)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key], True
        value = build()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value, False

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


_sessions: _Lru[str, Any] = _Lru(SESSION_CACHE_ENTRIES)
_embeddings: _Lru[tuple[int, str], np.ndarray] = _Lru(EMBEDDING_CACHE_ENTRIES)


def caches_clear() -> None:
    """Forget every cached session and embedding (tests; a process that must free memory)."""
    _sessions.clear()
    _embeddings.clear()


class ModelMismatch(Exception):
    """The client decodes for another model than the project's: its mask would be wrong."""

    def __init__(self, *, asked: str, project_model: str) -> None:
        super().__init__(f"This project now uses model {project_model}, not {asked}: reload the page.")
        self.asked = asked
        self.project_model = project_model


class EmbeddingNotReady(Exception):
    """The image has no stored embedding of the project's model yet."""

    def __init__(self, *, image: Image, model_id: str) -> None:
        super().__init__(f"The embedding is not ready (status: {image.embedding_status}).")
        self.image = image
        self.model_id = model_id


def mask_input_from_base64(value: str) -> np.ndarray:
    """base64 of little-endian fp16 256x256 logits -> 1x1x256x256 float32.

    Raises:
        ValueError: not base64, the wrong number of bytes, or non-finite values.
    """
    try:
        raw = base64.b64decode(value, validate=True)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"mask_input is not valid base64 ({exc}).") from exc
    if len(raw) != LOW_RES_BYTES:
        raise ValueError(f"mask_input is {len(raw)} bytes, expected {LOW_RES_BYTES} "
                         f"(float16 little-endian {LOW_RES}x{LOW_RES}).")
    logits = np.frombuffer(raw, "<f2").astype(np.float32)
    if not np.isfinite(logits).all():
        raise ValueError("mask_input has non-finite values (NaN or infinity).")
    return logits.reshape(1, 1, LOW_RES, LOW_RES)


def fp16_base64(logits: np.ndarray) -> str:
    """float32 logits -> base64 of little-endian fp16 (clipped to fp16's finite range)."""
    return base64.b64encode(np.clip(logits, -FP16_MAX, FP16_MAX).astype("<f2").tobytes()).decode("ascii")


def decoder_feeds(*, embedding: np.ndarray, height: int, width: int, point_coords: list[list[float]],
                  point_labels: list[int], mask_input: np.ndarray | None) -> dict[str, np.ndarray]:
    """The decoder's inputs, as ``buildFeeds`` (frontend/src/lib/feeds.ts) makes them.

    Args:
        embedding: 1x256x64x64 float32.
        height, width: the original image's size in pixels (after EXIF orientation).
        point_coords: N (x, y) in original image pixels, box corners included.
        point_labels: N labels: 1 foreground, 0 background, 2 box top-left, 3 box bottom-right.
        mask_input: 1x1x256x256 low-res logits of the previous step, or None.

    Returns:
        ``image_embeddings``, ``point_coords`` (1xMx2 in the 1024 frame: pixels times
        1024 / max(H, W)), ``point_labels`` (1xM), ``mask_input``, ``has_mask_input``,
        ``orig_im_size``, all float32. Without a box one padding point (0, 0) labelled -1
        is appended (M = N + 1); with a box, none (M = N).
    """
    coords = np.asarray(point_coords, np.float64).reshape(-1, 2)
    labels = np.asarray(point_labels, np.float64).reshape(-1)
    if not np.isin(labels, (2, 3)).any():
        coords = np.concatenate([coords, [[0.0, 0.0]]])
        labels = np.concatenate([labels, [-1.0]])
    # The browser multiplies in float64 (JS numbers) and stores in a Float32Array: same here.
    scale = 1024 / max(height, width)
    has_mask = mask_input is not None
    return {
        "image_embeddings": embedding,
        "point_coords": (coords * scale).astype(np.float32)[None],
        "point_labels": labels.astype(np.float32)[None],
        "mask_input": (mask_input.astype(np.float32).reshape(1, 1, LOW_RES, LOW_RES) if has_mask
                       else np.zeros((1, 1, LOW_RES, LOW_RES), np.float32)),
        "has_mask_input": np.array([1.0 if has_mask else 0.0], np.float32),
        "orig_im_size": np.array([height, width], np.float32),
    }


def decoder_session(path) -> Any:
    """The onnxruntime session of a decoder file, from the LRU (loaded on first use).

    Keyed by the file's path: a path is ``<model_id>/decoder[.quant].onnx`` and a model id
    names its weights' SHA-256, so a file under one path never changes.
    """
    import onnxruntime as ort

    def build():
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    return _sessions.get_or_build(str(path), build)[0]


def embedding_load(*, image: Image, model_id: str) -> np.ndarray:
    """The image's stored embedding of ``model_id`` as 1x256x64x64 float32, from the LRU.

    Raises:
        EmbeddingNotReady: none is stored yet.
        ValueError: the stored file is not 2 MiB of fp16.
    """
    # image_get prefetches the image's embeddings: no query here.
    emb = next((e for e in image.embeddings.all() if e.model_id == model_id), None)
    if emb is None:
        raise EmbeddingNotReady(image=image, model_id=model_id)

    def build() -> np.ndarray:
        with emb.file.open("rb") as fh:
            data = fh.read()
        if len(data) != EMBEDDING_BYTES:
            raise ValueError(f"stored embedding {emb.pk} is {len(data)} bytes, expected {EMBEDDING_BYTES}")
        out = np.frombuffer(data, "<f2").astype(np.float32).reshape(EMBEDDING_SHAPE)
        out.flags.writeable = False  # shared between requests
        return out

    return _embeddings.get_or_build((emb.pk, emb.sha256), build)[0]


@dataclass(frozen=True)
class DecodeOutput:
    masks: list[dict[str, Any]]
    iou_predictions: list[float]
    low_res_masks: str
    timing_ms: dict[str, float]


def prompts_decode(*, image: Image, model_id: str, point_coords: list[list[float]], point_labels: list[int],
                   mask_input: np.ndarray | None = None, quantized: bool = False) -> DecodeOutput:
    """Decode one prompt on the server: the image's stored embedding, the project's decoder.

    Args:
        image: from ``selectors.image_get`` (membership checked, embeddings prefetched).
        model_id: the model the client decodes for; must be the project's.
        point_coords, point_labels: validated prompt (original pixels; see
            :func:`decoder_feeds`).
        mask_input: 1x1x256x256 float32 previous low-res logits, or None.
        quantized: run the QUInt8 decoder instead of the fp32 one.

    Returns:
        ``masks``: 4 COCO compressed RLEs (``counts`` str, ``size`` [H, W]) of the logits
        thresholded at 0, index 0 = the single-mask token, 1..3 the multimask candidates;
        ``iou_predictions``: 4 floats; ``low_res_masks``: base64 of fp16 4x256x256;
        ``timing_ms``: ``embedding_load``, ``run`` (session.run only), ``encode`` (RLE and
        base64).

    Raises:
        ModelMismatch: ``model_id`` is not the project's model.
        EmbeddingNotReady: no stored embedding of the project's model yet.
        model_runtime.UnknownModel, model_runtime.ModelUnavailable: no decoder to run.
    """
    from pycocotools import mask as mask_utils

    project_model = project_model_id(image.project)
    if model_id != project_model:
        raise ModelMismatch(asked=model_id, project_model=project_model)
    t0 = time.perf_counter()
    embedding = embedding_load(image=image, model_id=project_model)
    t1 = time.perf_counter()
    session = decoder_session(decoder_path(project_model, quantized=quantized))
    feeds = decoder_feeds(embedding=embedding, height=image.height, width=image.width, point_coords=point_coords,
                          point_labels=point_labels, mask_input=mask_input)
    t2 = time.perf_counter()
    masks, iou, low_res = session.run(["masks", "iou_predictions", "low_res_masks"], feeds)
    t3 = time.perf_counter()
    if masks.shape != (1, 4, image.height, image.width):
        raise RuntimeError(f"decoder returned masks of shape {masks.shape}, expected 1x4x{image.height}x{image.width}")
    # One pycocotools call for the 4 candidates: HxWx4 uint8 in column-major order, made
    # with one copy (4xWxH C order is HxWx4 Fortran order; bool and uint8 share a layout).
    binary = np.ascontiguousarray((masks[0] > 0).transpose(0, 2, 1)).view(np.uint8).transpose(2, 1, 0)
    rles = mask_utils.encode(binary)
    out = DecodeOutput(
        masks=[{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles],
        iou_predictions=[float(v) for v in iou.reshape(-1)],
        low_res_masks=fp16_base64(low_res.reshape(4, LOW_RES, LOW_RES)),
        timing_ms={},
    )
    t4 = time.perf_counter()
    out.timing_ms.update(embedding_load=round((t1 - t0) * 1000, 3), run=round((t3 - t2) * 1000, 3),
                         encode=round((t4 - t3) * 1000, 3))
    return out
