"""The model this server embeds with, loaded once per process, and its decoder ONNX file.

Web processes need the model only to export its decoder; workers to embed images.
"""

from __future__ import annotations

import fcntl
import functools
import logging
from pathlib import Path

from django.conf import settings

log = logging.getLogger(__name__)


class UnknownModel(LookupError):
    """A model id that this server does not serve."""


def current_model():
    """The configured model (``engine.LoadedModel``), on the GPU when one is present.

    Reloaded when its weights file changes (a new model version installed in place), so
    that a long-running worker never embeds with a model the web server no longer serves.
    """
    loaded = _load_model()
    if loaded.model_id != current_model_id():
        _load_model.cache_clear()
        loaded = _load_model()
    return loaded


@functools.lru_cache(maxsize=1)
def _load_model():
    import torch

    import engine

    loaded = engine.build_model(
        settings.ANNOTATOR_MODEL_NAME,
        settings.ANNOTATOR_MODEL_CHECKPOINT,
        allow_untrained=settings.ANNOTATOR_ALLOW_UNTRAINED,
    )
    if torch.cuda.is_available():
        loaded.sam.to("cuda")
    return loaded


def current_model_id() -> str:
    """Id of the configured model, computed from its weights file without loading torch."""
    from engine.identity import model_id_for

    if settings.ANNOTATOR_MODEL_NAME == "default" and not settings.ANNOTATOR_ALLOW_UNTRAINED:
        from engine.identity import DEFAULT_WEIGHTS

        if not DEFAULT_WEIGHTS.exists():
            return _load_model().model_id  # raises the loader's clear error
    return model_id_for(settings.ANNOTATOR_MODEL_NAME, settings.ANNOTATOR_MODEL_CHECKPOINT)


def decoder_path(model_id: str, quantized: bool = False) -> Path:
    """Path of the decoder ONNX for ``model_id``, exported on first use.

    Raises:
        UnknownModel: ``model_id`` is not the model this server runs.
    """
    if model_id != current_model_id():
        raise UnknownModel(model_id)
    out_dir = Path(settings.MEDIA_ROOT) / "models" / model_id
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("decoder.quant.onnx" if quantized else "decoder.onnx")
    if path.exists():
        return path
    # Several processes may ask at once: one exports, the others wait on the lock.
    with open(out_dir / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            import engine

            tmp = path.with_name(path.name + ".tmp.onnx")
            engine.export_decoder(current_model(), tmp, quantize=quantized)
            tmp.replace(path)
            log.info("exported decoder for %s to %s", model_id, path)
    return path
