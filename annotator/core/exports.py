"""Project exports written incrementally: COCO instances JSON (compressed RLE or polygons with
holes bridged), SA-1B per-image JSON and per-image PNG instance masks, optionally zipped
with the images (DESIGN.md "Masks on the wire and at rest").

Nothing here holds a whole project in memory: images and annotations are read with
server-side cursors (``QuerySet.iterator``) and each record is written as soon as it is
made. Areas and boxes are recomputed from the RLE (pycocotools, no decoding), so a stored
value that went stale cannot reach a file. ``iscrowd`` is 0 for instances, 1 only for
crowd regions that came in through an import.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterable, Iterator

import numpy as np
from django.db.models import QuerySet
from django.utils import timezone
from PIL import Image as PILImage
from PIL import ImageOps
from pycocotools import mask as mask_utils

from engine.rle import polygons_to_rle, rle_to_mask, rle_to_polygons

from .models import Annotation, Category, ExportJob, Image, Project

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` with annotation counts, at most every CHUNK records."""

CHUNK = 1000
_ANN_FIELDS = ("id", "image_id", "category_id", "rle", "iscrowd", "predicted_iou", "origin",
               "review_status", "prompts")
_IMG_FIELDS = ("id", "file_name", "width", "height")


@dataclass
class ExportStats:
    """What an export wrote; for polygon exports also how well the polygons decode back."""

    images: int = 0
    annotations: int = 0
    images_included: int = 0
    images_reencoded_upright: int = 0
    polygon_min_iou: float | None = None
    polygon_pixel_error: int = 0
    polygon_inexact: int = 0
    png_overlap_pixels: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out.update(self.extra)
        return out


# ---------------------------------------------------------------- reads


def _annotations(project: Project, only_approved: bool) -> QuerySet[Annotation]:
    qs = Annotation.objects.filter(image__project=project)
    if only_approved:
        qs = qs.filter(review_status=Annotation.ReviewStatus.APPROVED)
    return qs


def _base_name(image_id: int, file_name: str) -> str:
    return os.path.basename(file_name) or f"image-{image_id}"


def _with_id(image_id: int, base: str) -> str:
    stem, ext = os.path.splitext(base)
    return f"{stem}-{image_id}{ext}"


def _collision_key(name: str) -> str:
    """Names that would overwrite each other somewhere in an export: every format writes
    ``<stem>.<ext>`` members per image (the photo, its JSON, its PNG), and zips unpack onto
    case-insensitive file systems too, so the key is the case-folded stem."""
    return os.path.splitext(name)[0].casefold()


def unique_export_names(rows: Iterable[tuple[int, str]]) -> dict[int, str]:
    """Member name in an export for each ``(image id, stored file_name)``: the base name
    (exports are flat, folders of zip uploads are dropped) when no other image's name has
    the same stem, ignoring case; otherwise ``<stem>-<image id><ext>`` (``same.jpg`` ->
    ``same-21.jpg``, so ``photo.jpg``/``photo.png``, ``a/same.jpg``/``b/same.jpg`` and
    ``A.jpg``/``a.jpg`` all get their own photo, JSON and PNG members). A renamed name
    that meets another image's own name renames that one too, until every name is unique.
    Deterministic: it depends only on the project's images, not on their order."""
    bases = {image_id: _base_name(image_id, file_name) for image_id, file_name in rows}
    count = Counter(_collision_key(b) for b in bases.values())
    renamed = {i for i, b in bases.items() if count[_collision_key(b)] > 1}
    while True:
        taken = {_collision_key(_with_id(i, bases[i])) for i in renamed}
        more = {i for i, b in bases.items() if i not in renamed and _collision_key(b) in taken}
        if not more:
            break
        renamed |= more
    return {i: _with_id(i, b) if i in renamed else b for i, b in bases.items()}


def _export_names(project: Project) -> Callable[[int, str], str]:
    """file_name in the export for (image id, stored name): see :func:`unique_export_names`;
    files in a zip and records stay one-to-one."""
    names = unique_export_names(Image.objects.filter(project=project).values_list("id", "file_name")
                                .iterator(chunk_size=CHUNK))

    def name(image_id: int, file_name: str) -> str:
        # An image uploaded while the export runs: with its id, so it cannot take a name.
        return names.get(image_id) or _with_id(image_id, _base_name(image_id, file_name))

    return name


def _categories(project: Project, anns: QuerySet[Annotation]) -> tuple[list[dict[str, Any]], int | None]:
    """COCO categories and the id given to annotations without a category (``unlabeled``;
    id 0 breaks some loaders, so it gets the next free id)."""
    cats = [{"id": c.pk, "name": c.name, "supercategory": ""}
            for c in Category.objects.filter(project=project).order_by("id")]
    unlabeled = None
    if anns.filter(category__isnull=True).exists():
        unlabeled = max([c["id"] for c in cats], default=0) + 1
        cats.append({"id": unlabeled, "name": "unlabeled", "supercategory": ""})
    return cats, unlabeled


def _c(rle: dict[str, Any]) -> dict[str, Any]:
    return {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}


def _area_bbox(rle: dict[str, Any]) -> tuple[int, list[float]]:
    c = _c(rle)
    return int(mask_utils.area(c)), [float(v) for v in mask_utils.toBbox(c)]


# ---------------------------------------------------------------- COCO


def _polygon_record(rle: dict[str, Any], stats: ExportStats) -> list[list[float]]:
    h, w = rle["size"]
    polygons = rle_to_polygons(rle)
    back = _c(polygons_to_rle(polygons, h, w))
    orig = _c(rle)
    inter = int(mask_utils.area(mask_utils.merge([back, orig], intersect=True)))
    a, b = int(mask_utils.area(orig)), int(mask_utils.area(back))
    union = a + b - inter
    iou = inter / union if union else 1.0
    error = a + b - 2 * inter
    stats.polygon_min_iou = iou if stats.polygon_min_iou is None else min(stats.polygon_min_iou, iou)
    stats.polygon_pixel_error += error
    stats.polygon_inexact += 1 if error else 0
    return polygons


def coco_chunks(*, project: Project, polygons: bool = False, only_approved: bool = False,
                progress: Progress | None = None, stats: ExportStats | None = None,
                names: Callable[[int, str], str] | None = None) -> Iterator[str]:
    """The project as COCO instances JSON, yielded a record at a time.

    Shape: ``{"info", "licenses", "images": [{"id", "file_name", "width", "height"}],
    "categories": [{"id", "name", "supercategory"}], "annotations": [{"id", "image_id",
    "category_id", "segmentation", "area", "bbox", "iscrowd", ...}]}``. Widths/heights are
    after EXIF orientation (the masks' frame); ``area`` is the mask's pixel count; ``bbox``
    is XYWH from the mask. ``segmentation`` is compressed RLE, or with ``polygons`` a list
    of polygons (one per connected piece, holes bridged; crowd regions stay RLE as COCO
    has them). Extra keys per annotation: ``predicted_iou``, ``origin``, ``review_status``.
    ``file_name`` is the image's unique name in the export (``names``, by default
    :func:`unique_export_names` over the project; the zip passes its own so that the
    records and its ``images/`` members agree).
    """
    stats = stats if stats is not None else ExportStats()
    anns = _annotations(project, only_approved)
    cats, unlabeled = _categories(project, anns)
    total = anns.count()
    names = names or _export_names(project)
    info = {"description": project.name, "date_created": timezone.now().isoformat(), "version": "1.0",
            "contributor": "SAM annotator", "segmentation": "polygons" if polygons else "rle"}
    yield '{"info": ' + json.dumps(info) + ', "licenses": [], "categories": ' + json.dumps(cats)
    yield ', "images": ['
    sep = "\n"
    for image_id, file_name, width, height in (
            Image.objects.filter(project=project).order_by("id").values_list(*_IMG_FIELDS).iterator(chunk_size=CHUNK)):
        yield sep + json.dumps({"id": image_id, "file_name": names(image_id, file_name),
                                "width": width, "height": height})
        sep = ",\n"
        stats.images += 1
    yield '], "annotations": ['
    sep = "\n"
    done = 0
    for row in anns.order_by("id").values_list(*_ANN_FIELDS).iterator(chunk_size=CHUNK):
        ann_id, image_id, category_id, rle, iscrowd, predicted_iou, origin, review_status, _ = row
        area, bbox = _area_bbox(rle)
        segmentation: Any = {"size": rle["size"], "counts": rle["counts"]}
        if polygons and not iscrowd:
            segmentation = _polygon_record(rle, stats)
        yield sep + json.dumps({
            "id": ann_id, "image_id": image_id,
            "category_id": category_id if category_id is not None else unlabeled,
            "segmentation": segmentation, "area": area, "bbox": bbox, "iscrowd": int(iscrowd),
            "predicted_iou": predicted_iou, "origin": origin, "review_status": review_status,
        })
        sep = ",\n"
        done += 1
        stats.annotations += 1
        if progress and done % CHUNK == 0:
            progress(done, total)
    yield "\n]}\n"
    if progress:
        progress(done, total)


def export_coco(*, project: Project) -> dict[str, Any]:
    """The project as a COCO instances dict (RLE); for small projects and the synchronous
    endpoint. Big projects go through an :class:`ExportJob`."""
    return json.loads("".join(coco_chunks(project=project)))


# ---------------------------------------------------------------- per image (SA-1B, PNG)


def _images_with_annotations(project: Project, only_approved: bool) -> Iterator[tuple[tuple, list[tuple]]]:
    """(image row, its annotation rows) in image-id order: two server-side cursors merged,
    so only one image's annotations are in memory at a time."""
    ann_iter = (_annotations(project, only_approved).order_by("image_id", "id")
                .values_list(*_ANN_FIELDS).iterator(chunk_size=CHUNK))
    pending = next(ann_iter, None)
    for img in Image.objects.filter(project=project).order_by("id").values_list(
            *_IMG_FIELDS, "file", "display_file").iterator(chunk_size=CHUNK):
        rows = []
        while pending is not None and pending[1] == img[0]:
            rows.append(pending)
            pending = next(ann_iter, None)
        yield img, rows


def sa1b_record(row: tuple, width: int, height: int) -> dict[str, Any]:
    """One SA-1B annotation record (DESIGN.md "Automatic masks"): ``segmentation`` (RLE),
    ``area``, ``bbox`` (XYWH), ``predicted_iou``, ``point_coords`` ([[x, y], ...] pixels),
    ``stability_score``, ``crop_box`` (XYWH; the whole image for masks not made on a crop).
    ``stability_score`` is null: masks saved from the browser carry no logits to compute it
    from."""
    ann_id, _image_id, category_id, rle, _iscrowd, predicted_iou, _origin, _review, prompts = row
    area, bbox = _area_bbox(rle)
    prompts = prompts or {}
    coords = prompts.get("point_coords") or []
    labels = prompts.get("point_labels") or []
    positive = [list(map(float, p)) for p, lab in zip(coords, labels) if lab == 1] or [list(map(float, p)) for p in coords]
    return {
        "id": ann_id, "segmentation": {"size": rle["size"], "counts": rle["counts"]},
        "area": area, "bbox": bbox, "predicted_iou": predicted_iou, "point_coords": positive,
        "stability_score": prompts.get("stability_score"),
        "crop_box": prompts.get("crop_box") or [0.0, 0.0, float(width), float(height)],
        "category_id": category_id,
    }


def _write_image(zf: zipfile.ZipFile, arcname: str, file_field: str, display_field: str,
                 stats: ExportStats) -> None:
    """Add an image to the zip as the masks see it: the uploaded bytes, or for an EXIF-rotated
    photo the upright pixels re-encoded in the format of its name (readers that ignore EXIF
    would otherwise get a transposed image)."""
    from django.core.files.storage import default_storage

    if display_field:
        with default_storage.open(display_field, "rb") as fh:
            upright = ImageOps.exif_transpose(PILImage.open(fh))
            ext = os.path.splitext(arcname)[1].lower()
            fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
                   ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF"}.get(ext, "PNG")
            if fmt == "JPEG":
                upright = upright.convert("RGB")
            with zf.open(arcname, "w") as out:
                upright.save(out, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        stats.images_reencoded_upright += 1
    else:
        with default_storage.open(file_field, "rb") as fh, zf.open(arcname, "w", force_zip64=True) as out:
            shutil.copyfileobj(fh, out, 1 << 20)
    stats.images_included += 1


def sa1b_write_zip(*, project: Project, out: IO[bytes], only_approved: bool = False,
                   include_images: bool = False, progress: Progress | None = None,
                   stats: ExportStats | None = None) -> ExportStats:
    """SA-1B layout in a zip: per image ``<stem>.json`` = ``{"image": {"image_id", "width",
    "height", "file_name"}, "annotations": [record, ...]}`` (see :func:`sa1b_record`), and
    with ``include_images`` the photo itself as ``<file_name>`` beside it."""
    stats = stats if stats is not None else ExportStats()
    total = _annotations(project, only_approved).count()
    names = _export_names(project)
    done = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for (image_id, file_name, width, height, file_field, display_field), rows in \
                _images_with_annotations(project, only_approved):
            name = names(image_id, file_name)
            doc = {"image": {"image_id": image_id, "width": width, "height": height, "file_name": name},
                   "annotations": [sa1b_record(r, width, height) for r in rows]}
            zf.writestr(os.path.splitext(name)[0] + ".json", json.dumps(doc))
            if include_images:
                _write_image(zf, name, file_field, display_field, stats)
            stats.images += 1
            stats.annotations += len(rows)
            before, done = done, done + len(rows)
            if progress and (done // CHUNK > before // CHUNK or not rows):
                progress(done, total)
    if progress:
        progress(done, total)
    return stats


def instance_png(rows: list[tuple], width: int, height: int) -> tuple[np.ndarray, list[dict[str, Any]], int]:
    """Paint masks into an HxW uint16 instance map (0 = background, k = k-th instance).

    Larger masks are painted first so that a small mask overlapping a big one stays visible
    (SAM masks may overlap; a PNG holds one instance per pixel). Returns the map, the
    instance list ``[{"value", "id", "category_id", "area", "bbox"}]`` and the number of
    pixels that more than one mask covered.
    """
    label = np.zeros((height, width), np.uint16)
    covered = np.zeros((height, width), bool)
    overlap = 0
    measured = sorted(((row, *_area_bbox(row[3])) for row in rows), key=lambda t: -t[1])
    instances = []
    for value, (row, area, bbox) in enumerate(measured, start=1):
        x, y, w, h = (int(v) for v in bbox)
        # Work inside the mask's box only: the cost follows the mask, not the image.
        mask = rle_to_mask(row[3])[y:y + h, x:x + w].astype(bool)
        seen = covered[y:y + h, x:x + w]
        overlap += int(np.count_nonzero(mask & seen))
        seen |= mask
        label[y:y + h, x:x + w][mask] = value
        instances.append({"value": value, "id": row[0], "category_id": row[2], "area": area, "bbox": bbox})
    return label, instances, overlap


def png_write_zip(*, project: Project, out: IO[bytes], only_approved: bool = False,
                  include_images: bool = False, progress: Progress | None = None,
                  stats: ExportStats | None = None) -> ExportStats:
    """Per-image instance masks in a zip: ``masks/<stem>.png`` (16-bit grey, value k =
    instance k, 0 = background; see :func:`instance_png`), ``masks/<stem>.json`` =
    ``{"image": {...}, "instances": [...]}``, ``categories.json``, and with
    ``include_images`` the photos under ``images/``. The PNG's visible pixels are the
    masks only where no two overlap; the JSON keeps the exact RLE-derived area/bbox."""
    stats = stats if stats is not None else ExportStats()
    anns = _annotations(project, only_approved)
    cats, unlabeled = _categories(project, anns)
    total = anns.count()
    names = _export_names(project)
    done = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("categories.json", json.dumps(cats))
        for (image_id, file_name, width, height, file_field, display_field), rows in \
                _images_with_annotations(project, only_approved):
            name = names(image_id, file_name)
            stem = os.path.splitext(name)[0]
            label, instances, overlap = instance_png(rows, width, height)
            for inst in instances:
                if inst["category_id"] is None:
                    inst["category_id"] = unlabeled
            buf = io.BytesIO()
            PILImage.fromarray(label).save(buf, "PNG")
            zf.writestr(f"masks/{stem}.png", buf.getvalue(), compress_type=zipfile.ZIP_STORED)
            zf.writestr(f"masks/{stem}.json", json.dumps({
                "image": {"image_id": image_id, "width": width, "height": height, "file_name": name},
                "instances": instances, "overlap_pixels": overlap}))
            if include_images:
                _write_image(zf, f"images/{name}", file_field, display_field, stats)
            stats.images += 1
            stats.annotations += len(rows)
            stats.png_overlap_pixels += overlap
            before, done = done, done + len(rows)
            if progress and (done // CHUNK > before // CHUNK or not rows):
                progress(done, total)
    if progress:
        progress(done, total)
    return stats


def coco_write_zip(*, project: Project, out: IO[bytes], polygons: bool, only_approved: bool = False,
                   progress: Progress | None = None, stats: ExportStats | None = None) -> ExportStats:
    """COCO with its images: ``annotations/instances.json`` and ``images/<file_name>``."""
    stats = stats if stats is not None else ExportStats()
    names = _export_names(project)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("annotations/instances.json", "w", force_zip64=True) as fh:
            text = io.TextIOWrapper(fh, encoding="utf-8", write_through=False)
            for chunk in coco_chunks(project=project, polygons=polygons, only_approved=only_approved,
                                     progress=progress, stats=stats, names=names):
                text.write(chunk)
            text.flush()
            text.detach()
        for image_id, file_name, file_field, display_field in Image.objects.filter(project=project).order_by(
                "id").values_list("id", "file_name", "file", "display_file").iterator(chunk_size=CHUNK):
            _write_image(zf, f"images/{names(image_id, file_name)}", file_field, display_field, stats)
    return stats


def export_write(*, project: Project, format: str, out: IO[bytes], only_approved: bool = False,
                 include_images: bool = False, progress: Progress | None = None) -> tuple[ExportStats, str]:
    """Write one export of ``project`` to the binary file ``out``.

    Returns:
        (stats, file extension: ``"json"`` or ``"zip"``).

    Raises:
        ValueError: an unknown format.
    """
    stats = ExportStats()
    polygons = format == ExportJob.Format.COCO_POLYGONS
    if format in (ExportJob.Format.COCO, ExportJob.Format.COCO_POLYGONS):
        if include_images:
            coco_write_zip(project=project, out=out, polygons=polygons, only_approved=only_approved,
                           progress=progress, stats=stats)
            return stats, "zip"
        text = io.TextIOWrapper(out, encoding="utf-8")
        for chunk in coco_chunks(project=project, polygons=polygons, only_approved=only_approved,
                                 progress=progress, stats=stats):
            text.write(chunk)
        text.flush()
        text.detach()
        return stats, "json"
    if format == ExportJob.Format.SA1B:
        sa1b_write_zip(project=project, out=out, only_approved=only_approved, include_images=include_images,
                       progress=progress, stats=stats)
        return stats, "zip"
    if format == ExportJob.Format.PNG:
        png_write_zip(project=project, out=out, only_approved=only_approved, include_images=include_images,
                      progress=progress, stats=stats)
        return stats, "zip"
    raise ValueError(f"unknown export format {format!r}")
