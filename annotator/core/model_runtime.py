"""The models this server embeds with, loaded per process (a small LRU of model versions),
and their decoder ONNX files.

Web processes need a model only to export its decoder; workers to embed images with the
version of each image's project.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from .models import ModelVersion

log = logging.getLogger(__name__)


class UnknownModel(LookupError):
    """A model id that this server does not serve."""


class ModelUnavailable(RuntimeError):
    """A registered model version whose weights cannot be loaded as registered (the file is
    gone, or changed since: its SHA-256 no longer gives the version's model id)."""


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


# Loaded versions, least recently used first. A ViT-H is 2.5 GB of weights: a worker keeps
# ANNOTATOR_MODEL_CACHE_SIZE of them (projects on different versions share a worker).
_versions: OrderedDict[str, object] = OrderedDict()
_versions_lock = threading.Lock()


def model_for_version(version: "ModelVersion"):
    """The ``engine.LoadedModel`` of a registered version, on the GPU when one is present.

    The configured default goes through :func:`current_model` (reloaded when its file
    changes); other versions are built from ``version.checkpoint`` and kept in an LRU of
    ``ANNOTATOR_MODEL_CACHE_SIZE`` models.

    Raises:
        ModelUnavailable: the weights file is missing or unreadable, or its SHA-256 is not
            the one the version was registered with.
    """
    if version.model_id == current_model_id():
        return current_model()
    with _versions_lock:
        loaded = _versions.get(version.model_id)
        if loaded is not None:
            _versions.move_to_end(version.model_id)
            return loaded
    loaded = _build_version(version)
    with _versions_lock:
        _versions[version.model_id] = loaded
        _versions.move_to_end(version.model_id)
        while len(_versions) > max(1, settings.ANNOTATOR_MODEL_CACHE_SIZE):
            evicted, _ = _versions.popitem(last=False)
            log.info("model cache: dropped %s", evicted)
    return loaded


def _build_version(version: "ModelVersion"):
    import torch

    import engine

    try:
        loaded = engine.build_model(version.architecture, version.checkpoint or None, allow_untrained=False)
    except (engine.CheckpointError, KeyError) as exc:
        raise ModelUnavailable(f"model version {version.model_id}: {exc}") from exc
    if loaded.model_id != version.model_id:
        raise ModelUnavailable(
            f"model version {version.model_id}: the weights at {version.checkpoint or 'the shipped path'} are now "
            f"{loaded.model_id} (the file changed since it was registered)")
    if torch.cuda.is_available():
        loaded.sam.to("cuda")
    log.info("loaded model version %s (%s)", version.model_id, version.name)
    return loaded


def models_cache_clear() -> None:
    """Forget every loaded version (tests; a worker that must free its GPU memory)."""
    with _versions_lock:
        _versions.clear()


def decoder_dir(model_id: str) -> Path:
    """Where the decoder ONNX files of ``model_id`` live (``MEDIA_ROOT/models/<model_id>``)."""
    return Path(settings.MEDIA_ROOT) / "models" / model_id


DECODER_GRAPHS = ("contract", "browser")


def decoder_filename(*, quantized: bool, graph: str = "contract") -> str:
    """File name of one decoder variant: ``decoder[.browser][.quant].onnx``.

    ``contract``: DESIGN.md's decoder contract (full-size ``masks`` output, for API users and
    other tools); ``browser``: :mod:`engine.onnx_browser` (low-res outputs, cheaper order of
    operations; what the annotate page loads).

    Raises:
        ValueError: an unknown graph name.
    """
    if graph not in DECODER_GRAPHS:
        raise ValueError(f"graph must be one of {', '.join(DECODER_GRAPHS)}, not {graph!r}")
    return "decoder" + (".browser" if graph == "browser" else "") + (".quant" if quantized else "") + ".onnx"


def decoder_export(loaded, *, quantized: bool, graph: str = "contract") -> Path:
    """Export one decoder variant of a loaded model into :func:`decoder_dir`, unless it is there.

    Several processes may ask at once: one exports, the others wait on a file lock.
    """
    import engine

    out_dir = decoder_dir(loaded.model_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / decoder_filename(quantized=quantized, graph=graph)
    if path.exists():
        return path
    export = engine.export_browser_decoder if graph == "browser" else engine.export_decoder
    with open(out_dir / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            tmp = path.with_name(path.name + ".tmp.onnx")
            export(loaded, tmp, quantize=quantized)
            tmp.replace(path)
            log.info("exported decoder for %s to %s", loaded.model_id, path)
    return path


def decoder_path(model_id: str, quantized: bool = False, graph: str = "contract") -> Path:
    """Path of a decoder ONNX for ``model_id`` (see :func:`decoder_filename`), exported on first use.

    Raises:
        ValueError: an unknown graph name.
        UnknownModel: ``model_id`` is neither the configured default nor a registered version.
        ModelUnavailable: the version's weights cannot be loaded to export its decoder.
    """
    from .models import ModelVersion

    path = decoder_dir(model_id) / decoder_filename(quantized=quantized, graph=graph)
    if model_id == current_model_id():
        return path if path.exists() else decoder_export(current_model(), quantized=quantized, graph=graph)
    version = ModelVersion.objects.filter(model_id=model_id).first()
    if version is None:
        raise UnknownModel(model_id)
    return path if path.exists() else decoder_export(model_for_version(version), quantized=quantized, graph=graph)
