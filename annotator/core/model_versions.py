"""Model versions (issue 9): registering versions, which version a project uses, switching
it (its images are embedded again in the background) and the progress of that.

A project with no ``model_version`` follows the server's configured default model
(``ANNOTATOR_MODEL_NAME`` / ``ANNOTATOR_MODEL_CHECKPOINT``; the shipped default unless an
admin configured another), which is registered as a version the first time it is needed.
Following, not pinning, keeps such projects working when the shipped weights are replaced
(a new default gets a new ``model_id``; pinning would leave the project on weights that
no longer exist).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from .models import Embedding, Image, ModelVersion, Project

log = logging.getLogger(__name__)

INSTALLABLE = ("vit_b", "vit_l", "vit_h")
_NAMES = {"default": "Shipped default model", "vit_b": "SAM ViT-B", "vit_l": "SAM ViT-L", "vit_h": "SAM ViT-H"}


# ---------------------------------------------------------------- reads

def model_version_default() -> ModelVersion:
    """The version of the server's configured model, registered on first use (torch-free:
    its id comes from the weights file's SHA-256)."""
    from engine.identity import weights_sha256

    from .model_runtime import current_model_id

    model_id = current_model_id()
    name = settings.ANNOTATOR_MODEL_NAME
    checkpoint = settings.ANNOTATOR_MODEL_CHECKPOINT
    version, created = ModelVersion.objects.get_or_create(model_id=model_id, defaults={
        "name": _NAMES.get(name, name) + ("" if name == "default" else " (configured)"),
        "architecture": name,
        "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else "",
        "sha256": weights_sha256(name, checkpoint),
        "source": ModelVersion.Source.SHIPPED if name == "default" else ModelVersion.Source.INSTALLED,
        "promoted": True,
    })
    if created:
        # Shipped weights replaced in place: the earlier shipped versions' file is gone, so
        # they can be neither embedded with nor chosen any more.
        ModelVersion.objects.filter(source=ModelVersion.Source.SHIPPED, checkpoint="").exclude(pk=version.pk).update(
            promoted=False)
        log.info("registered the configured model as version %s", model_id)
    return version


def project_model_version(project: Project) -> ModelVersion:
    """The version ``project`` embeds and decodes with (its own, or the configured default)."""
    if project.model_version_id is None:
        return model_version_default()
    return project.model_version


def project_model_id(project: Project) -> str:
    """The ``model_id`` of :func:`project_model_version`, without a query when the project
    follows the default (what image and embedding responses report)."""
    if project.model_version_id is None:
        from .model_runtime import current_model_id

        return current_model_id()
    return project_model_version(project).model_id


def model_versions_list() -> list[ModelVersion]:
    """Promoted versions the server can serve: the configured default first, then the others
    by id (``GET /api/models/``)."""
    default = model_version_default()
    others = ModelVersion.objects.filter(promoted=True).exclude(pk=default.pk).order_by("id")
    return [default, *others]


def model_version_choosable(*, version_id: int | None) -> ModelVersion | None:
    """The version a project may be set to by id (``POST /api/projects/``, ``PATCH
    .../model``): None stays None (follow the configured default).

    Raises:
        services.ValidationError: no such version, or one that is not promoted.
    """
    from .services import ValidationError

    if version_id is None:
        return None
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        raise ValidationError({"model_version": [f"No model version {version_id}."]})
    if not version.promoted:
        raise ValidationError({"model_version": [f"Version {version.pk} ({version.model_id}) is not promoted."]})
    return version


def project_embedding_progress(*, project: Project) -> dict[str, Any]:
    """How far the project's images are embedded with its current version:
    ``{"model_id", "images", "embedded", "pending", "failed", "done"}`` (``embedded``:
    images that have an embedding of that version; ``done``: every image has one or failed)."""
    model_id = project_model_id(project)
    counts = Image.objects.filter(project=project).aggregate(
        images=Count("id"),
        pending=Count("id", filter=Q(embedding_status=Image.EmbeddingStatus.PENDING)),
        failed=Count("id", filter=Q(embedding_status=Image.EmbeddingStatus.FAILED)),
    )
    embedded = Embedding.objects.filter(image__project=project, model_id=model_id).count()
    return {"model_id": model_id, **counts, "embedded": embedded,
            "done": embedded + counts["failed"] >= counts["images"]}


# ---------------------------------------------------------------- writes

def model_version_register(*, model_id: str, architecture: str, checkpoint: str | Path | None, sha256: str,
                           source: str, name: str = "", parent: ModelVersion | None = None,
                           metrics: dict[str, Any] | None = None, promoted: bool = True,
                           user=None) -> tuple[ModelVersion, bool]:
    """Register a version (idempotent by ``model_id``: the same weights are one version).

    For retraining: pass ``parent``, ``source="retrained"``, the evaluation ``metrics`` and
    ``promoted=False`` until it has beaten its parent (then :func:`model_version_promote`).

    Returns:
        (the version, whether it was created).
    """
    if source not in ModelVersion.Source.values:
        raise ValueError(f"source must be one of {ModelVersion.Source.values}")
    defaults = {"name": name or _NAMES.get(architecture, architecture), "architecture": architecture,
                "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else "", "sha256": sha256,
                "source": source, "parent": parent, "metrics": metrics or {}, "promoted": promoted,
                "created_by": user}
    return ModelVersion.objects.get_or_create(model_id=model_id, defaults=defaults)


def model_version_promote(*, version: ModelVersion, metrics: dict[str, Any] | None = None) -> ModelVersion:
    """Mark a version choosable for projects, merging ``metrics`` into its metrics."""
    version.promoted = True
    if metrics:
        version.metrics = {**version.metrics, **metrics}
    version.save(update_fields=["promoted", "metrics"])
    return version


def project_model_switch(*, project: Project, user, version: ModelVersion | None) -> dict[str, Any]:
    """Make ``project`` use ``version`` (None: follow the configured default) and embed its
    images again with it in the background.

    Images that already have an embedding of that version are ready at once (switching back
    costs nothing); the others become pending and are queued on commit. Embedding tasks of
    the previous version still in the queue do the new version's work when they run (the
    task reads the project's version then), and one that finishes late does not mark its
    image ready (``services.embedding_compute``).

    Returns:
        :func:`project_embedding_progress` after the switch.

    Raises:
        permissions.NotAllowed: the role may not change the project's model.
        services.ValidationError: the version is not promoted.
    """
    from .permissions import Action, require
    from .services import ValidationError

    require(user=user, project=project, action=Action.MODEL)
    if version is not None and not version.promoted:
        raise ValidationError({"model_version": [f"Version {version.pk} ({version.model_id}) is not promoted."]})
    _switch(project=project, version=version)
    return project_embedding_progress(project=project)


def _switch(*, project: Project, version: ModelVersion | None) -> list[int]:
    """The switch itself, no permission check (a retrain job switches for the manager who
    started it): returns the ids of the images queued for embedding."""
    from .services import _enqueue_embeddings

    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        locked.model_version = version
        locked.save(update_fields=["model_version"])
        project.model_version = version
        model_id = project_model_id(locked)
        images = Image.objects.filter(project=locked)
        have = Embedding.objects.filter(image__project=locked, model_id=model_id).values("image_id")
        images.filter(pk__in=have).update(embedding_status=Image.EmbeddingStatus.READY, embedding_error="",
                                          embedding_unfinished_runs=0)
        todo = list(images.exclude(pk__in=have).values_list("pk", flat=True))
        images.filter(pk__in=todo).update(embedding_status=Image.EmbeddingStatus.PENDING, embedding_error="",
                                          embedding_queued_at=timezone.now(), embedding_unfinished_runs=0)
        if todo:
            transaction.on_commit(lambda: _enqueue_embeddings(todo), robust=True)
    log.info("project %s now uses model %s: %d image(s) to embed", project.pk, model_id, len(todo))
    return todo


def model_version_install(*, architecture: str, checkpoint: str | Path, name: str = "",
                          user=None) -> tuple[ModelVersion, bool]:
    """Install an official SAM checkpoint as a model version (``manage.py model_install``).

    Loads the file strictly into the ``architecture``'s modeling classes (no missing or
    unexpected keys, every shape equal), exports its decoder ONNX fp32 and QUInt8 (each
    checked in onnxruntime; the quantized one measured against fp32, in ``metrics``) and
    registers the version with the file's SHA-256. Idempotent: installing the same file
    again re-exports missing decoders and returns the existing version.

    The file stays where it is: every worker that embeds with this version must be able to
    read the same path (a shared volume on GPU workers).

    Returns:
        (the version, whether it was created).

    Raises:
        ValueError: an architecture that is not an official one.
        engine.CheckpointError: the file is missing, unreadable or not of that architecture.
    """
    import engine

    from .model_runtime import decoder_export

    if architecture not in INSTALLABLE:
        raise ValueError(f"architecture must be one of {', '.join(INSTALLABLE)}, not {architecture!r}")
    path = Path(checkpoint).resolve()
    loaded = engine.build_model(architecture, path)  # strict: raises CheckpointError
    fp32 = decoder_export(loaded, quantized=False)
    quant = decoder_export(loaded, quantized=True)
    for quantized in (False, True):  # the page's graph, exported now rather than on the first page load
        decoder_export(loaded, quantized=quantized, graph="browser")
    metrics = {"decoder_quantized_vs_fp32": engine.decoder_agreement(fp32, quant),
               "decoder_bytes": {"fp32": fp32.stat().st_size, "quantized": quant.stat().st_size}}
    version, created = model_version_register(
        model_id=loaded.model_id, architecture=architecture, checkpoint=path, sha256=loaded.weights_sha256,
        source=ModelVersion.Source.INSTALLED, name=name or f"{_NAMES[architecture]} ({path.name})",
        metrics=metrics, user=user)
    if not created and version.checkpoint != str(path):
        log.warning("model %s is already installed from %s; %s is the same file", version.model_id,
                    version.checkpoint, path)
    return version, created
