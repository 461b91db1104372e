"""onnxruntime image encoder for CPU embedding (7x faster than eager torch for the default model, 3x for ViT-B, on 2 cores).

The encoder of a model is exported once to ONNX into a cache directory keyed by the
model id (``<name>-<weights sha>``), checked against torch right after export, and its
session kept per process. ``engine.embed`` uses it on CPU for the shipped default model and
ViT-B (``engine.predictor.ONNX_ENCODER_MODELS``: 3x faster than eager torch for ViT-B on 2
cores, bench/encoder_throughput.py); ViT-L/H stay on torch.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

_SESSIONS: dict[str, object] = {}
_LOCK = threading.Lock()


def cache_dir() -> Path:
    """``$ENGINE_CACHE_DIR`` or ``~/.cache/sam-annotator/onnx``."""
    env = os.environ.get("ENGINE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "sam-annotator" / "onnx"


def export_encoder(encoder: torch.nn.Module, path: Path) -> Path:
    """Export ``encoder`` (1x3x1024x1024 preprocessed image -> 1x256x64x64) to ONNX and
    check onnxruntime against torch on a random input.

    Raises:
        RuntimeError: onnxruntime and torch differ by more than 1e-2 (max abs).
    """
    import onnxruntime as ort

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder = encoder.eval()
    dummy = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder, (dummy,), str(tmp), input_names=["image"], output_names=["image_embeddings"],
                          opset_version=17, dynamo=False)
        ref = encoder(dummy).numpy()
    sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    err = float(np.abs(sess.run(None, {"image": dummy.numpy()})[0] - ref).max())
    if err > 1e-2:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"exported encoder differs from torch by {err:.2e}")
    os.replace(tmp, path)
    return path


def encoder_session(model_id: str, encoder: torch.nn.Module, threads: int | None = None):
    """The cached onnxruntime session for ``model_id``'s encoder (exported on first use).

    Args:
        model_id: ``LoadedModel.model_id``; ``*-untrained`` models are exported to a
            per-process temp name, never cached on disk.
        encoder: the torch encoder, exported when the cache has no graph for ``model_id``.
        threads: onnxruntime intra-op threads (None: onnxruntime's default).
    """
    import onnxruntime as ort

    with _LOCK:
        if model_id in _SESSIONS:
            return _SESSIONS[model_id]
        path = cache_dir() / f"{model_id}.encoder.onnx"
        if model_id.endswith("-untrained"):
            path = cache_dir() / f"{model_id}-{os.getpid()}.encoder.onnx"
        if not path.exists():
            log.info("exporting the image encoder of %s to %s", model_id, path)
            export_encoder(encoder, path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        _SESSIONS[model_id] = sess
        return sess
