"""Writes: every domain operation as a plain function with keyword-only arguments.

Rows are written in ``transaction.atomic``; work for a worker is enqueued with
``transaction.on_commit`` so that a worker never sees a row that was rolled back.
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterable

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from PIL import Image as PILImage
from PIL import ImageOps

from engine.rle import RLEError, rle_area, rle_bbox, validate_rle

from .models import (Annotation, AnnotationEvent, Category, Embedding, ExportJob, Image, Membership, ModelVersion,
                     Project)
from .permissions import EXPORT_ROLES, IMPORT_ROLES, REVIEW_ROLES, require_role

log = logging.getLogger(__name__)

PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075"]
# MPO: a JPEG with extra images after the first (many phone and stereo cameras); browsers
# show its first image, as a JPEG.
ALLOWED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"}
HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")  # a category's colour, as <input type=color> gives it


class ValidationError(ValueError):
    """Input that the service refuses; ``errors`` maps a field (or file name) to messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


class VersionConflict(Exception):
    """An edit based on an old version of an annotation."""

    def __init__(self, current: Annotation):
        super().__init__(f"annotation {current.pk} is at version {current.version}")
        self.current = current


# ---------------------------------------------------------------- projects

@transaction.atomic
def project_create(*, name: str, user, categories: Iterable[str | dict[str, str]] = (),
                   model_version: ModelVersion | None = None, prefill_enabled: bool | None = None) -> Project:
    """Create a project owned by ``user`` (admin role) with its label categories.

    Args:
        categories: names, or ``{"name": ..., "color": "#rrggbb"}``; a category without a
            colour gets the next one of ``PALETTE``. Blank and repeated names are skipped.
        model_version: the version its images are embedded with (a promoted one, see
            ``model_versions.model_version_choosable``); None: follow the configured default.
        prefill_enabled: generate pre-fill proposals for its images; None:
            ``ANNOTATOR_PREFILL_DEFAULT``.

    Raises:
        ValidationError: an empty name, a colour that is not ``#rrggbb``, a version that is
            not promoted.
    """
    name = name.strip()
    if not name:
        raise ValidationError({"name": ["A project needs a name."]})
    if model_version is not None and not model_version.promoted:
        raise ValidationError({"model_version": [
            f"Version {model_version.pk} ({model_version.model_id}) is not promoted."]})
    specs: list[tuple[str, str | None]] = []
    for cat in categories:
        spec = {"name": cat} if isinstance(cat, str) else dict(cat)
        color = spec.get("color") or None
        if color is not None and not HEX_COLOR.fullmatch(color):
            raise ValidationError({"categories": [f"{spec.get('name', '')!s}: a colour is #rrggbb, not {color!r}."]})
        specs.append((str(spec.get("name", "")).strip(), color))
    project = Project.objects.create(
        name=name, created_by=user, model_version=model_version,
        prefill_enabled=settings.ANNOTATOR_PREFILL_DEFAULT if prefill_enabled is None else prefill_enabled)
    Membership.objects.create(project=project, user=user, role=Membership.Role.ADMIN)
    seen: set[str] = set()
    for i, (cat, color) in enumerate(specs):
        if cat and cat not in seen:
            seen.add(cat)
            Category.objects.create(project=project, name=cat, color=color or PALETTE[i % len(PALETTE)])
    return project


@transaction.atomic
def project_update(*, project: Project, user, name: str | None = None,
                   categories: Iterable[str | dict[str, Any]] = ()) -> Project:
    """Rename a project, add label categories and rename / recolour existing ones. Labels keep
    their ids (saved masks refer to them); none is removed here (:func:`category_delete`).

    Args:
        categories: each item is
            - a name: a new label with the next palette colour, unless a label of that name
              exists (then nothing: adding by name is idempotent, as it always was);
            - ``{"name", "color"?}``: a new label; a name that is taken is an error;
            - ``{"id", "name"?, "color"?}``: the project's label ``id`` renamed and/or recoloured.
            Names are compared after every change of the request, so two labels may swap
            names and a label may take a name another one gives up.

    Raises:
        ValidationError: an empty name; a category's problems under its index, as
            ``{"categories": {"<index>": {"name"|"color"|"id": [messages]}}}``; nothing is
            changed then.
        permissions.NotAllowed: the role may not change settings.
    """
    import uuid

    from .permissions import Action, require

    require(user=user, project=project, action=Action.SETTINGS)
    if name is not None:
        if not name.strip():
            raise ValidationError({"name": ["A project needs a name."]})
        project.name = name.strip()
        project.save(update_fields=["name"])
    items = list(categories)
    bare = [isinstance(c, str) for c in items]  # a bare name adds only what is missing
    specs = [{"name": c} if isinstance(c, str) else dict(c) for c in items]
    if not specs:
        return project
    current = {c.pk: c for c in Category.objects.select_for_update().filter(project=project).order_by("pk")}
    errors: dict[str, dict[str, list[str]]] = {}

    def refuse(index: int, field: str, message: str) -> None:
        errors.setdefault(str(index), {}).setdefault(field, []).append(message)

    changes: dict[int, tuple[int, dict[str, Any]]] = {}  # label id -> (item index, item)
    for i, spec in enumerate(specs):
        color = spec.get("color")
        if color is not None and not HEX_COLOR.fullmatch(str(color)):
            refuse(i, "color", "A colour is #rrggbb, e.g. #e6194b.")
        if "name" in spec:
            spec["name"] = str(spec["name"]).strip()
            if not spec["name"]:
                refuse(i, "name", "A label needs a name.")
            elif len(spec["name"]) > 100:
                refuse(i, "name", "Ensure this field has no more than 100 characters.")
        if "id" in spec:
            if spec["id"] not in current:
                refuse(i, "id", f"No label {spec['id']} in this project.")
            elif spec["id"] in changes:
                refuse(i, "id", f"Label {spec['id']} is changed twice (items {changes[spec['id']][0]} and {i}).")
            else:
                changes[spec["id"]] = (i, spec)
    # Names once every rename of the request is applied: each must stay unique.
    final = {pk: (changes[pk][1].get("name") or c.name) if pk in changes else c.name for pk, c in current.items()}
    holders: dict[str, list[int]] = {}
    for pk, label in final.items():
        holders.setdefault(label, []).append(pk)
    for pk, (i, spec) in changes.items():
        if spec.get("name") and spec["name"] != current[pk].name and len(holders[spec["name"]]) > 1:
            refuse(i, "name", f'There is already a label "{spec["name"]}".')
    taken = set(final.values())
    added: list[tuple[str, str | None]] = []
    for i, spec in enumerate(specs):
        if "id" in spec or not spec.get("name"):
            continue
        label = spec["name"]
        if label in taken:
            if bare[i]:
                continue  # a label of that name exists: nothing to add
            refuse(i, "name", f'There is already a label "{label}".')
            continue
        taken.add(label)
        added.append((label, spec.get("color")))
    if errors:
        raise ValidationError({"categories": errors})
    renamed = [pk for pk, (_, spec) in changes.items() if spec.get("name") and spec["name"] != current[pk].name]
    # Two steps, so that labels may swap names without tripping the unique constraint midway.
    for pk in renamed:
        Category.objects.filter(pk=pk).update(name=f"~renaming~{uuid.uuid4().hex}")
    for pk, (_, spec) in changes.items():
        fields = {}
        if pk in renamed:
            fields["name"] = spec["name"]
        if spec.get("color") and spec["color"] != current[pk].color:
            fields["color"] = spec["color"]
        if fields:
            Category.objects.filter(pk=pk).update(**fields)
    count = len(current)
    for label, color in added:
        Category.objects.create(project=project, name=label, color=color or PALETTE[count % len(PALETTE)])
        count += 1
    return project


class CategoryInUse(Exception):
    """Deleting a label that saved masks carry (the API answers 409)."""

    def __init__(self, category: Category, masks: int):
        super().__init__(f'The label "{category.name}" is used by {masks} mask{"s" if masks != 1 else ""}, so it '
                         f"cannot be deleted: rename it instead, or give those masks another label first.")
        self.category = category
        self.masks = masks


@transaction.atomic
def category_delete(*, project: Project, user, category_id: int) -> None:
    """Delete one of the project's labels, if no saved mask carries it. Pre-fill proposals
    that carry it lose their label (they are suggestions: one accepted later gets the label
    the annotator picks, or none).

    Raises:
        Category.DoesNotExist: no such label in the project (404).
        CategoryInUse: masks carry it (409); nothing is changed.
        permissions.NotAllowed: the role may not change settings.
    """
    from .models import Proposal
    from .permissions import Action, require

    require(user=user, project=project, action=Action.SETTINGS)
    Category.objects.filter(project=project).get(pk=category_id)  # DoesNotExist before anything is written
    # Proposals first, then the label: the order accepting a proposal takes its locks in.
    Proposal.objects.filter(image__project=project, category_id=category_id).update(category=None)
    category = Category.objects.select_for_update().filter(project=project).get(pk=category_id)
    masks = Annotation.objects.filter(category=category).count()
    if masks:
        raise CategoryInUse(category, masks)
    category.delete()


def project_add_member(*, project: Project, user, role: str = Membership.Role.ANNOTATOR) -> Membership:
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


# ---------------------------------------------------------------- images

@dataclass(frozen=True)
class _CheckedImage:
    name: str
    data: bytes
    width: int
    height: int
    display_png: bytes | None


# What every current browser's <img> shows; other accepted formats (TIFF) get a PNG copy.
BROWSER_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF"}


def _check_image(name: str, data: bytes) -> _CheckedImage:
    """Decode an upload fully; return its size as displayed (EXIF orientation applied).

    A PNG copy for the browser (``display_png``) is made when the stored bytes would not
    show what the model sees: an EXIF rotation, an animation (its first frame is the
    image), a format browsers do not show (TIFF), or samples over 8 bits.

    Raises:
        ValueError: with a message for the user.
    """
    from engine.images import to_display_mode

    if not data:
        raise ValueError("the file is empty")
    if len(data) > settings.ANNOTATOR_MAX_UPLOAD_BYTES:
        raise ValueError(f"the file is {len(data)} bytes, over the limit of {settings.ANNOTATOR_MAX_UPLOAD_BYTES}")
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            fmt = img.format
            if fmt not in ALLOWED_FORMATS:
                raise ValueError(f"unsupported image format {fmt}")
            if img.width * img.height > settings.ANNOTATOR_MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"the image is {img.width}x{img.height} pixels, over the limit of "
                    f"{settings.ANNOTATOR_MAX_IMAGE_PIXELS} pixels; downscale it first"
                )
            animated = getattr(img, "n_frames", 1) > 1 and fmt != "MPO"  # MPO shows its first image
            orientation = img.getexif().get(0x0112, 1)
            deep = img.mode.startswith("I") or img.mode == "F"
            upright = ImageOps.exif_transpose(img)
            upright.load()  # decodes every pixel (of the first frame): truncated files fail here
            display_png = None
            if orientation not in (1, None) or animated or deep or fmt not in BROWSER_FORMATS:
                buf = io.BytesIO()
                to_display_mode(upright).save(buf, "PNG")
                display_png = buf.getvalue()
            return _CheckedImage(name, data, upright.width, upright.height, display_png)
    except ValueError:
        raise
    except PILImage.DecompressionBombError as exc:
        raise ValueError(
            f"the image is too large to decode safely, over the limit of "
            f"{settings.ANNOTATOR_MAX_IMAGE_PIXELS} pixels ({exc})"
        ) from exc
    except PILImage.UnidentifiedImageError as exc:
        raise ValueError("not a readable image (not a recognised image format)") from exc
    except (OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"not a readable image ({exc})") from exc


def _expand_uploads(files: list[tuple[str, bytes]],
                    errors: dict[str, list[str]]) -> list[tuple[str, str, bytes]]:
    """Replace each zip archive among ``files`` by its image members (``uploads.zip_extract``).

    Returns:
        (error key, file name, bytes): the key of an archive member is
        ``"<archive>/<member>"``, its file name the member's path.
    """
    from .uploads import is_zip, zip_extract

    out: list[tuple[str, str, bytes]] = []
    limit = settings.ANNOTATOR_MAX_FILES_PER_UPLOAD
    for name, data in files:
        name = name or "(unnamed)"
        if not is_zip(name, data):
            out.append((name, name, data))
            continue
        contents = zip_extract(name=name, data=data,
                               max_member_bytes=settings.ANNOTATOR_MAX_UPLOAD_BYTES,
                               max_total_bytes=settings.ANNOTATOR_MAX_ZIP_EXTRACTED_BYTES,
                               max_members=limit)
        for key, messages in contents.errors.items():
            errors.setdefault(key, []).extend(messages)
        out.extend((f"{name}/{member}", member, content) for member, content in contents.files)
    if len(out) > limit:
        errors.setdefault("files", []).append(f"{len(out)} images in one upload; at most {limit}.")
    return out


def images_upload(*, project: Project, files: list[tuple[str, bytes]], user) -> list[Image]:
    """Store uploaded photos and queue their embeddings; a photo already in the project is
    not stored again.

    A ``.zip`` among ``files`` stands for the images inside it (member paths become the
    file names). All files are decoded before anything is stored: if any is bad, none is
    stored and the error lists each bad file (``"<archive>/<member>"`` inside archives).
    Should storing fail midway, the files already written are removed again.

    Duplicates are found by content: a file whose SHA-256 is the ``checksum`` of an image
    of ``project``, or of an earlier file of this upload, is skipped (not decoded, not
    stored) and stands for that image in the result, whatever its name. The check runs
    again under a lock on the project row, so two requests sending the same photo at once
    store it once (the database has no unique constraint: projects may hold duplicates
    uploaded before this check existed).

    Args:
        files: (file name, bytes) pairs.

    Returns:
        One image per image file sent (archives expanded), in order: the new image, or for a
        duplicate the image it duplicates. Each carries ``duplicate`` (bool) and
        ``upload_name`` (its name in this upload: the member path inside an archive).

    Raises:
        ValidationError: keyed by file name.
    """
    if not files:
        raise ValidationError({"files": ["No files were sent."]})
    errors: dict[str, list[str]] = {}
    expanded = [(key, name, data, hashlib.sha256(data).hexdigest()) for key, name, data in _expand_uploads(files, errors)]
    known = _images_by_checksum(project=project, checksums={digest for *_, digest in expanded})
    seen: set[str] = set()
    checked: dict[str, _CheckedImage] = {}  # checksum -> the first new file with it
    for key, name, data, digest in expanded:
        if digest in known or digest in seen:
            continue
        seen.add(digest)
        try:
            checked[digest] = _check_image(name, data)
        except ValueError as exc:
            errors.setdefault(key, []).append(str(exc))
    if errors:
        raise ValidationError(errors)
    created: dict[str, Image] = {}
    written: list[Any] = []
    try:
        with transaction.atomic():
            # One upload at a time per project from here on: a photo sent twice at once
            # (two requests, the upload page sends two at a time) is stored once.
            Project.objects.select_for_update().filter(pk=project.pk).exists()
            known.update(_images_by_checksum(project=project, checksums=set(checked) - set(known)))
            for digest, item in checked.items():
                if digest in known:
                    continue  # stored by a concurrent upload meanwhile
                image = Image(
                    project=project,
                    file_name=item.name[:255],
                    width=item.width,
                    height=item.height,
                    checksum=digest,
                )
                base = item.name.rsplit("/", 1)[-1]
                image.file.save(base[-100:] or "image", ContentFile(item.data), save=False)
                written.append(image.file)
                if item.display_png is not None:
                    image.display_file.save(f"{image.checksum[:16]}.png", ContentFile(item.display_png), save=False)
                    written.append(image.display_file)
                image.save()
                created[digest] = image
            ids = [img.pk for img in created.values()]
            if ids:
                transaction.on_commit(lambda: _enqueue_embeddings(ids), robust=True)
    except BaseException:
        for stored in written:  # no orphan files for rows that were rolled back
            stored.delete(save=False)
        raise
    out: list[Image] = []
    emitted: set[str] = set()
    for _key, name, _data, digest in expanded:
        fresh = created.get(digest)
        if fresh is not None and digest not in emitted:
            image = fresh
            image.duplicate = False
        else:  # its own object: each entry has its own upload_name
            image = copy.copy(fresh if fresh is not None else known[digest])
            image.duplicate = True
        image.upload_name = name
        emitted.add(digest)
        out.append(image)
    return out


def _images_by_checksum(*, project: Project, checksums: set[str]) -> dict[str, Image]:
    """The project's images with these checksums (SHA-256 of the uploaded bytes), the
    oldest one per checksum."""
    if not checksums:
        return {}
    found: dict[str, Image] = {}
    for image in Image.objects.filter(project=project, checksum__in=checksums).order_by("-id"):
        found[image.checksum] = image
    return found


def image_request_embedding(*, image: Image) -> None:
    """Mark an image pending and queue its embedding with its project's model version."""
    with transaction.atomic():
        Image.objects.filter(pk=image.pk).update(embedding_status=Image.EmbeddingStatus.PENDING, embedding_error="",
                                                 embedding_queued_at=timezone.now(), embedding_unfinished_runs=0)
        transaction.on_commit(lambda: _enqueue_embeddings([image.pk]), robust=True)


def _enqueue_embeddings(image_ids: list[int]) -> None:
    """Queue embedding tasks. Called on commit with ``robust=True``: a broker that is down
    costs the user nothing (the rows stay pending and ``embeddings_reconcile`` queues them
    again later) instead of a 500 for an upload that was stored."""
    from .tasks import embed_image

    for image_id in image_ids:
        embed_image.delay(image_id)


def embeddings_reconcile(*, older_than: timedelta, limit: int = 500) -> list[int]:
    """Queue again the images whose embedding has been pending for longer than ``older_than``
    (its task was lost: the broker was down at upload, or a worker died and the broker has
    not redelivered yet). Run periodically (Celery beat, ``reconcile_embeddings``).

    Each image is queued at most once per ``older_than``; a duplicate task is cheap, as
    ``embedding_compute`` is idempotent. Oldest first, at most ``limit`` per call.

    Returns:
        The ids queued.
    """
    from django.db.models import F, Q

    now = timezone.now()
    with transaction.atomic():
        ids = list(
            Image.objects.select_for_update(skip_locked=True)
            .filter(embedding_status=Image.EmbeddingStatus.PENDING)
            .filter(Q(embedding_queued_at__lt=now - older_than) | Q(embedding_queued_at__isnull=True))
            .order_by(F("embedding_queued_at").asc(nulls_first=True), "pk")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            Image.objects.filter(pk__in=ids).update(embedding_queued_at=now)
            transaction.on_commit(lambda: _enqueue_embeddings(ids), robust=True)
    if ids:
        log.warning("reconcile: %d image(s) pending for over %s queued again: %s", len(ids), older_than, ids[:20])
    return ids


def embedding_run_started(*, image_id: int) -> int:
    """Count a run of the embedding task that has begun; returns the runs begun and not yet
    finished, this one included (more than one: earlier runs' workers died mid-run)."""
    from django.db.models import F

    Image.objects.filter(pk=image_id).update(embedding_unfinished_runs=F("embedding_unfinished_runs") + 1)
    return Image.objects.filter(pk=image_id).values_list("embedding_unfinished_runs", flat=True).first() or 0


def embedding_run_retrying(*, image_id: int) -> None:
    """A run that ends in a retry (transient error) is finished, not lost."""
    from django.db.models import F

    Image.objects.filter(pk=image_id, embedding_unfinished_runs__gt=0).update(
        embedding_unfinished_runs=F("embedding_unfinished_runs") - 1)


def embedding_compute(*, image: Image) -> Embedding:
    """Compute and store the embedding of ``image`` with its project's model version.

    Idempotent: an existing embedding for (image, model) is reused, never duplicated. The
    image becomes ready only if its project still uses that version when the embedding is
    stored (a switch meanwhile has queued the image again for the new one).

    Raises:
        engine.ImageError: the stored file cannot be decoded (permanent).
        model_runtime.ModelUnavailable: the version's weights cannot be loaded.
    """
    import engine

    from .model_runtime import model_for_version
    from .model_versions import project_model_id, project_model_version

    project = Project.objects.select_related("model_version").get(pk=image.project_id)
    model = model_for_version(project_model_version(project))
    existing = Embedding.objects.filter(image=image, model_id=model.model_id).first()
    if existing is None:
        source = image.display_file if image.display_file else image.file
        with source.open("rb") as fh:
            pixels = engine.load_image(fh.read(), max_pixels=settings.ANNOTATOR_MAX_IMAGE_PIXELS)
        started = time.perf_counter()
        data = engine.embedding_to_bytes(engine.embed(model, pixels))
        seconds = time.perf_counter() - started
        sha = hashlib.sha256(data).hexdigest()
        emb = Embedding(image=image, model_id=model.model_id, dtype="float16",
                        shape=list(engine.EMBEDDING_SHAPE), sha256=sha, compute_seconds=seconds)
        emb.file.save(f"{model.model_id}/{image.pk}-{sha[:12]}.f16", ContentFile(data), save=False)
        try:
            with transaction.atomic():
                emb.save()
            existing = emb
        except IntegrityError:  # a concurrent run of the same task won the race
            emb.file.delete(save=False)
            existing = Embedding.objects.get(image=image, model_id=model.model_id)
    with transaction.atomic():
        # Serialised with project_model_switch by the project row: a switch either sees this
        # embedding or happens after this check.
        project = Project.objects.select_for_update().get(pk=image.project_id)
        if project_model_id(project) == model.model_id:
            Image.objects.filter(pk=image.pk).update(
                embedding_status=Image.EmbeddingStatus.READY, embedding_error="", embedding_unfinished_runs=0
            )
        else:
            log.info("image %s: embedded with %s, but its project now uses %s", image.pk, model.model_id,
                     project_model_id(project))
    return existing


def image_mark_embedding_failed(*, image_id: int, reason: str) -> None:
    Image.objects.filter(pk=image_id).update(
        embedding_status=Image.EmbeddingStatus.FAILED, embedding_error=reason[:2000], embedding_unfinished_runs=0
    )


# ---------------------------------------------------------------- annotations

def _clean_prompts(prompts: Any, width: int, height: int) -> tuple[dict[str, Any], dict[str, int]]:
    """Validate prompts (pixels of the displayed image) and count clicks by kind.

    An optional ``brush`` object records hand edits of the mask (docs/api.md): it is kept as
    ``{"strokes", "painted", "erased"}`` (missing counts are 0)."""
    if prompts in (None, {}):
        return {}, {"positive": 0, "negative": 0, "boxes": 0}
    if not isinstance(prompts, dict):
        raise ValidationError({"prompts": ["Must be an object."]})
    coords = prompts.get("point_coords") or []
    labels = prompts.get("point_labels") or []
    box = prompts.get("box")
    errors = []
    if not isinstance(coords, list) or not isinstance(labels, list) or len(coords) != len(labels):
        errors.append("point_coords and point_labels must be lists of the same length.")
    else:
        for i, (pt, lab) in enumerate(zip(coords, labels)):
            if (not isinstance(pt, list) or len(pt) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pt)):
                errors.append(f"point {i} must be [x, y].")
            elif not (0 <= pt[0] <= width and 0 <= pt[1] <= height):
                errors.append(f"point {i} ({pt[0]}, {pt[1]}) is outside the {width}x{height} image.")
            if lab not in (0, 1):
                errors.append(f"label {i} must be 1 (positive) or 0 (negative).")
    if box is not None:
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
            errors.append("box must be [x0, y0, x1, y1].")
        elif not (0 <= box[0] <= box[2] <= width and 0 <= box[1] <= box[3] <= height):
            errors.append(f"box {box} is outside the {width}x{height} image or inverted.")
    brush = prompts.get("brush")
    if brush is not None:
        # Hand edits with the brush / eraser: how many strokes, pixels painted in and erased.
        if not isinstance(brush, dict) or set(brush) - {"strokes", "painted", "erased"} or not all(
                isinstance(brush.get(k, 0), int) and not isinstance(brush.get(k, 0), bool) and brush.get(k, 0) >= 0
                for k in ("strokes", "painted", "erased")):
            errors.append('brush must be {"strokes", "painted", "erased"}: counts (integers >= 0).')
        else:
            brush = {k: brush.get(k, 0) for k in ("strokes", "painted", "erased")}
    if errors:
        raise ValidationError({"prompts": errors})
    counts = {"positive": sum(1 for v in labels if v == 1), "negative": sum(1 for v in labels if v == 0),
              "boxes": 1 if box is not None else 0}
    cleaned = {"point_coords": coords, "point_labels": labels, "box": box}
    if brush is not None:
        cleaned["brush"] = brush
    return cleaned, counts


def _clean_mask(segmentation: Any, image: Image) -> tuple[dict[str, Any], list[float], int]:
    try:
        rle = validate_rle(segmentation, (image.height, image.width))
    except RLEError as exc:
        raise ValidationError({"segmentation": [str(exc)]}) from exc
    area = rle_area(rle)
    if area == 0:
        raise ValidationError({"segmentation": ["The mask is empty."]})
    return rle, rle_bbox(rle), area


def _clean_category(category_id: Any, image: Image) -> Category | None:
    if category_id is None:
        return None
    _hold_category(category_id, image.project_id)
    category = Category.objects.filter(project_id=image.project_id, pk=category_id).first()
    if category is None:
        raise ValidationError({"category": [f"No category {category_id} in this project."]})
    return category


def _hold_category(category_id: Any, project_id: int) -> None:
    """Keeps the label from being deleted until this transaction ends, so a mask saved with it
    and :func:`category_delete` (which locks the label FOR UPDATE, then counts its masks) never
    both succeed. PostgreSQL's FOR KEY SHARE, the lock a foreign key check itself takes: saves
    do not wait for each other, only for a delete of that label. (SQLite serializes writes.)"""
    from django.db import connection

    if connection.vendor != "postgresql" or not connection.in_atomic_block or not isinstance(category_id, int):
        return
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {Category._meta.db_table} WHERE id = %s AND project_id = %s FOR KEY SHARE",
                       [category_id, project_id])


def _log_event(kind: str, annotation: Annotation, user, counts: dict[str, int], active_ms: int | None) -> None:
    AnnotationEvent.objects.create(
        kind=kind, user=user, project_id=annotation.image.project_id, image=annotation.image,
        annotation_id=annotation.pk, model_id=annotation.model_id, origin=annotation.origin,
        positive_clicks=counts.get("positive", 0), negative_clicks=counts.get("negative", 0),
        boxes=counts.get("boxes", 0), candidate_index=annotation.candidate_index, active_ms=active_ms,
    )


@transaction.atomic
def annotation_create(*, image: Image, user, segmentation: Any, category: int | None = None,
                      prompts: Any = None, predicted_iou: float | None = None,
                      candidate_index: int | None = None, model_id: str = "",
                      origin: str = Annotation.Origin.MANUAL, active_ms: int | None = None,
                      client_key: str = "") -> Annotation:
    """Validate and store a mask; log an annotation event.

    ``client_key`` makes the save idempotent: the browser retries a save whose answer it
    never got (server down, connection cut) with the same key, and gets the annotation
    stored the first time instead of a second copy.

    Raises:
        ValidationError: bad RLE (undecodable, wrong size, empty), category or prompts.
        permissions.NotAllowed, workflow.StateConflict, workflow.LeaseConflict: the user may
            not change this image's masks now (``workflow.image_check_annotatable``).
    """
    from .selectors import annotation_by_client_key
    from .workflow import image_lock_for_write

    if client_key and (done := annotation_by_client_key(image=image, user=user, client_key=client_key)):
        return done  # a replay: no lock or state check, it was allowed when it was stored
    image_lock_for_write(user=user, image_id=image.pk)
    if client_key and (done := annotation_by_client_key(image=image, user=user, client_key=client_key)):
        return done  # a concurrent replay stored it while we waited for the image's lock
    rle, bbox, area = _clean_mask(segmentation, image)
    clean_prompts, counts = _clean_prompts(prompts, image.width, image.height)
    if not model_id and clean_prompts:
        # Made with prompts by a client that did not say with which model: the project's
        # version now is the one it was served, so throughput per version stays complete.
        from .model_versions import project_model_id

        model_id = project_model_id(image.project)
    annotation = Annotation.objects.create(
        image=image, category=_clean_category(category, image), rle=rle, bbox=bbox, area=area,
        prompts=clean_prompts, predicted_iou=predicted_iou, candidate_index=candidate_index,
        model_id=model_id, origin=origin, author=user, client_key=client_key,
    )
    _log_event(AnnotationEvent.Kind.CREATE, annotation, user, counts, active_ms)
    return annotation


_UNSET = object()


@transaction.atomic
def annotation_update(*, annotation_id: int, user, version: int, segmentation: Any = _UNSET,
                      category: Any = _UNSET, prompts: Any = _UNSET, predicted_iou: Any = _UNSET,
                      candidate_index: Any = _UNSET, review_status: Any = _UNSET,
                      active_ms: int | None = None) -> Annotation:
    """Edit an annotation if nobody changed it since ``version``.

    A change of the mask or its category sends a reviewed mask back to ``pending`` (unless
    the same edit sets ``review_status``). A review-only edit needs the review right, any
    other the right to annotate the image now; setting approved/rejected logs a review event.

    Raises:
        VersionConflict: the stored version differs (carries the current annotation).
        ValidationError: as in :func:`annotation_create`; an unknown ``review_status``.
        permissions.NotAllowed: ``review_status`` set by a role that may not review.
        workflow.StateConflict, workflow.LeaseConflict: as in :func:`annotation_create`.
    """
    from .workflow import image_lock_for_write, log_review_event

    edits = (segmentation, category, prompts, predicted_iou, candidate_index)
    # The image row first (as creating and reviewing do), then the annotation: one lock order.
    image_id = Annotation.objects.filter(pk=annotation_id).values_list("image_id", flat=True).get()
    if any(v is not _UNSET for v in edits):
        image_lock_for_write(user=user, image_id=image_id)
    annotation = Annotation.objects.select_for_update().select_related("image").get(pk=annotation_id)
    if annotation.version != version:
        raise VersionConflict(annotation)
    if all(v is _UNSET for v in (*edits, review_status)):
        return annotation  # nothing to change: keep the version, so nobody else gets a 409 for nothing
    counts = {"positive": 0, "negative": 0, "boxes": 0}
    reviewed_before = annotation.review_status
    if segmentation is not _UNSET:
        annotation.rle, annotation.bbox, annotation.area = _clean_mask(segmentation, annotation.image)
    if category is not _UNSET:
        annotation.category = _clean_category(category, annotation.image)
    if prompts is not _UNSET:
        annotation.prompts, counts = _clean_prompts(prompts, annotation.image.width, annotation.image.height)
    if predicted_iou is not _UNSET:
        annotation.predicted_iou = predicted_iou
    if candidate_index is not _UNSET:
        annotation.candidate_index = candidate_index
    if review_status is not _UNSET:
        if review_status not in Annotation.ReviewStatus.values:
            raise ValidationError({"review_status": [f"Must be one of {', '.join(Annotation.ReviewStatus.values)}."]})
        require_role(user=user, project=annotation.image.project_id, roles=REVIEW_ROLES, action="review annotations")
        annotation.review_status = review_status
        annotation.reviewed_by = user
        annotation.reviewed_at = timezone.now()
    elif (segmentation is not _UNSET or category is not _UNSET) and reviewed_before != Annotation.ReviewStatus.PENDING:
        annotation.review_status = Annotation.ReviewStatus.PENDING  # changed: to be reviewed again
    annotation.version += 1
    annotation.save()
    if any(v is not _UNSET for v in edits):
        _log_event(AnnotationEvent.Kind.EDIT, annotation, user, counts, active_ms)
    if review_status is not _UNSET and review_status != Annotation.ReviewStatus.PENDING:
        log_review_event(annotation, user, review_status)
    return annotation


@transaction.atomic
def annotation_delete(*, annotation: Annotation, user) -> None:
    """Delete a mask; log an annotation event.

    Raises:
        permissions.NotAllowed, workflow.StateConflict, workflow.LeaseConflict: as in
            :func:`annotation_create`.
    """
    from .workflow import image_lock_for_write

    image_lock_for_write(user=user, image_id=annotation.image_id)
    _log_event(AnnotationEvent.Kind.DELETE, annotation, user, {}, None)
    annotation.delete()


# ---------------------------------------------------------------- exports and imports

@transaction.atomic
def export_start(*, project: Project, user, format: str, only_approved: bool = False,
                 include_images: bool = False) -> ExportJob:
    """Create an export job and queue it for a worker (after commit).

    Raises:
        ValidationError: an unknown format.
        permissions.NotAllowed: the user's role may not export.
    """
    require_role(user=user, project=project, roles=EXPORT_ROLES, action="export")
    if format not in ExportJob.Format.values:
        raise ValidationError({"format": [f"Must be one of {', '.join(ExportJob.Format.values)}."]})
    job = ExportJob.objects.create(project=project, format=format, created_by=user,
                                   options={"only_approved": bool(only_approved),
                                            "include_images": bool(include_images)})
    transaction.on_commit(lambda: _enqueue_export(job.pk))
    return job


def _enqueue_export(job_id: int) -> None:
    from .tasks import run_export

    run_export.delay(job_id)


def export_run(*, job: ExportJob) -> ExportJob:
    """Write the export of ``job`` to a temporary file, then store it as ``job.file``.

    Progress (0..1, by annotations written) is saved at most every second. Idempotent: a
    job that is already done is left as it is; a rerun of a running/failed one starts over
    and replaces the file.

    Raises:
        whatever writing raises; the task marks the job failed.
    """
    import tempfile

    from django.core.files import File
    from django.utils import timezone

    from .exports import export_write

    if job.status == ExportJob.Status.DONE:
        return job
    ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.Status.RUNNING, progress=0.0, error="",
                                               started_at=timezone.now())
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 or done >= total:
            last[0] = now
            ExportJob.objects.filter(pk=job.pk).update(progress=(done / total) if total else 1.0)

    # A local temp file, then the storage backend (local media or object storage) copies it.
    with tempfile.TemporaryFile(prefix="export-") as fh:
        stats, ext = export_write(project=job.project, format=job.format, out=fh, progress=progress,
                                  only_approved=job.options.get("only_approved", False),
                                  include_images=job.options.get("include_images", False))
        fh.seek(0)
        if job.file:
            job.file.delete(save=False)
        job.file.save(f"project-{job.project_id}-export-{job.pk}-{job.format}.{ext}", File(fh), save=False)
    job.status = ExportJob.Status.DONE
    job.progress = 1.0
    job.stats = stats.as_dict()
    job.finished_at = timezone.now()
    job.error = ""
    job.save(update_fields=["file", "status", "progress", "stats", "finished_at", "error"])
    return job


def export_mark_failed(*, job_id: int, reason: str) -> None:
    from django.utils import timezone

    ExportJob.objects.filter(pk=job_id).update(status=ExportJob.Status.FAILED, error=reason[:2000],
                                               finished_at=timezone.now())


def exports_expire(*, older_than: timedelta, limit: int = 1000) -> list[int]:
    """Delete the files of exports finished longer than ``older_than`` ago and mark those
    jobs ``expired`` (their download then answers 410). Idempotent and safe to run twice at
    once: a job is claimed by a conditional update before its file is deleted.

    Returns:
        the ids of the jobs expired by this call (at most ``limit``).
    """
    from django.utils import timezone

    cutoff = timezone.now() - older_than
    expired = []
    for job in (ExportJob.objects.filter(status=ExportJob.Status.DONE, finished_at__lt=cutoff)
                .order_by("finished_at").only("id", "file")[:limit]):
        name = job.file.name
        if not ExportJob.objects.filter(pk=job.pk, status=ExportJob.Status.DONE).update(
                status=ExportJob.Status.EXPIRED, file=""):
            continue  # another run took it
        expired.append(job.pk)
        if name:
            try:
                job.file.storage.delete(name)
            except OSError:  # the job says expired either way; the file is only disk space
                log.exception("export %s: cannot delete %s", job.pk, name)
    return expired


def annotations_import_coco(*, project: Project, user, data: Any = None, fh: Any = None, mode: str = "annotations",
                            progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Import a COCO instances file as annotations or as pre-fill proposals (``mode``
    ``annotations`` | ``proposals``; see ``imports.coco_import``): either ``data``, the
    parsed file, or ``fh``, a seekable binary file read as a stream (``imports.coco_import_file``:
    memory grows with the file's images, not its annotations).

    Returns:
        ``{"imported", "skipped": [{"index", "id", "reason"}], "unmatched_images":
        [{"id", "file_name", "reason"}], "categories_created", "area_bbox_corrected"}``.

    Raises:
        ValidationError: the file is not a COCO instances object, or an unknown ``mode``.
        permissions.NotAllowed: the user's role may not import.
    """
    from .imports import MODES, ImportFileError, coco_import, coco_import_file

    require_role(user=user, project=project, roles=IMPORT_ROLES, action="import annotations")
    if mode not in MODES:
        raise ValidationError({"mode": [f"Must be one of {', '.join(MODES)}."]})
    try:
        if fh is not None:
            return coco_import_file(project=project, user=user, fh=fh, mode=mode, progress=progress).as_dict()
        return coco_import(project=project, user=user, data=data, mode=mode, progress=progress).as_dict()
    except ImportFileError as exc:
        raise ValidationError({"file": [str(exc)]}) from exc
