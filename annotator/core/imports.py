"""COCO instances import: masks from other tools become annotations (origin ``imported``)
or pre-fill proposals (source ``imported``) that annotators accept, fix or reject.

Images are matched by file name; each annotation that cannot be imported is reported with
its index, id and the reason, and the rest are imported. Stored ``area``/``bbox`` are never
trusted (real files disagree with their own masks): both are recomputed from the mask.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator

from django.db import transaction

from engine.rle import RLEError, rle_area, rle_bbox, segmentation_to_rle

from .models import Annotation, Category, Image, Project, Proposal
from .services import PALETTE

BATCH = 1000


class ImportFileError(ValueError):
    """The file as a whole is not a COCO instances file; nothing was imported."""


RESULTS_LIST = ("this is a COCO results list (annotations only): it has no images to match "
                "by file name; wrap it as {\"images\": [...], \"annotations\": [...]}")
NOT_INSTANCES = "a COCO instances file is an object with 'images' and 'annotations' lists"


@dataclass
class ImportReport:
    """``imported``: annotations created; ``skipped``: ``[{"index", "id", "reason"}]`` (index in
    the file's ``annotations`` list); ``unmatched_images``: ``[{"id", "file_name", "reason"}]``;
    ``categories_created``: names; ``area_bbox_corrected``: annotations whose stored
    area or bbox differed from their mask."""

    imported: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    unmatched_images: list[dict[str, Any]] = field(default_factory=list)
    categories_created: list[str] = field(default_factory=list)
    area_bbox_corrected: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _get(mapping: dict, key: Any) -> Any:
    """``mapping.get(key)``, None for an unhashable key (a list where an id belongs)."""
    try:
        return mapping.get(key)
    except TypeError:
        return None


_DUP_NAME = re.compile(r"^(?P<stem>.*)-(?P<id>[0-9]+)(?P<ext>\.[^.]*)?$")


def _exported_duplicate(name: str, by_id: dict[int, tuple[str, int, int]]) -> list[tuple[int, int, int]]:
    """Our own exports name images whose file name is used twice ``<stem>-<image id><ext>``
    (``exports._export_names``): such a name matches that image when its stored name is
    ``<stem><ext>``, so an export imports back into its project."""
    m = _DUP_NAME.match(os.path.basename(name))
    if not m:
        return []
    image = by_id.get(int(m["id"]))
    if image is None or os.path.basename(image[0]) != m["stem"] + (m["ext"] or ""):
        return []
    return [(int(m["id"]), image[1], image[2])]


def _match_images(project: Project, entries: list[Any], report: ImportReport) -> dict[Any, tuple[int, int, int]]:
    """COCO image id -> (our image id, height, width), matched by file name: first the name
    our own export gives the image (``exports.unique_export_names``: ``<stem>-<image id><ext>``
    where names collide), then the stored name, then the base name (COCO ``file_name`` may
    carry a folder)."""
    from .exports import unique_export_names

    by_name: dict[str, list[tuple[int, int, int]]] = {}
    by_base: dict[str, list[tuple[int, int, int]]] = {}
    by_id: dict[int, tuple[str, int, int]] = {}
    for pk, name, w, h in Image.objects.filter(project=project).values_list("id", "file_name", "width", "height"):
        by_id[pk] = (name, h, w)
        by_name.setdefault(name, []).append((pk, h, w))
        by_base.setdefault(os.path.basename(name), []).append((pk, h, w))
    by_export = {exported: [(pk, by_id[pk][1], by_id[pk][2])]
                 for pk, exported in unique_export_names((pk, v[0]) for pk, v in by_id.items()).items()}
    matched: dict[Any, tuple[int, int, int]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), (int, str)) \
                or isinstance(entry.get("id"), bool) or not isinstance(entry.get("file_name"), str):
            report.unmatched_images.append({"id": entry.get("id") if isinstance(entry, dict) else None,
                                            "file_name": None,
                                            "reason": "an image needs an id (number or string) and a file_name"})
            continue
        name = entry["file_name"]
        base = os.path.basename(name)
        found = (by_export.get(name) or by_name.get(name) or by_export.get(base) or by_base.get(base)
                 or _exported_duplicate(name, by_id) or [])
        if not found:
            report.unmatched_images.append({"id": entry["id"], "file_name": name,
                                            "reason": "no image of this name in the project"})
            continue
        if len(found) > 1:
            report.unmatched_images.append({"id": entry["id"], "file_name": name,
                                            "reason": f"{len(found)} images in the project have this name"})
            continue
        pk, h, w = found[0]
        fw, fh = entry.get("width"), entry.get("height")
        if (fw is not None and fw != w) or (fh is not None and fh != h):
            report.unmatched_images.append({
                "id": entry["id"], "file_name": name,
                "reason": f"the file says {fw}x{fh} but the project's image is {w}x{h} (after EXIF orientation)"})
            continue
        matched[entry["id"]] = (pk, h, w)
    return matched


class _Categories:
    """COCO category id -> our category id, by name. A name the project lacks is created only
    when the first annotation that uses it is imported (:meth:`pk`), so a category whose
    annotations are all skipped leaves no unused label behind."""

    def __init__(self, project: Project, entries: list[Any], report: ImportReport) -> None:
        self.project, self.report = project, report
        self.ours = {c.name: c.pk for c in Category.objects.filter(project=project)}
        self.names: dict[Any, str] = {}
        for entry in entries:
            if not isinstance(entry, dict) or "id" not in entry:
                continue
            try:
                self.names[entry["id"]] = str(entry.get("name") or "").strip()[:100] or f"category {entry['id']}"
            except TypeError:  # an unhashable id: no annotation can refer to it
                continue

    def known(self, coco_id: Any) -> bool:
        """Whether the file's categories have this id."""
        return _get(self.names, coco_id) is not None

    def pk(self, coco_id: Any) -> int:
        """Our category id for a known COCO category id, created now if the project lacks it."""
        name = self.names[coco_id]
        if name not in self.ours:
            self.ours[name] = Category.objects.create(project=self.project, name=name,
                                                      color=PALETTE[len(self.ours) % len(PALETTE)]).pk
            self.report.categories_created.append(name)
        return self.ours[name]


MODES = ("annotations", "proposals")


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def coco_import(*, project: Project, user, data: Any, mode: str = "annotations",
                progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Import the annotations of a COCO instances dict into ``project``.

    ``mode`` ``annotations`` stores them as annotations (origin ``imported``); ``proposals``
    stores them as pending pre-fill proposals (source ``imported``; ``predicted_iou``,
    ``stability_score`` and ``point_coords`` kept when the file has them, as SAM's
    automatic-mask records do), for annotators to accept, fix or reject on the annotate
    page. Crowd regions (``iscrowd`` 1) are not proposals and are skipped in that mode.

    Accepts every COCO segmentation form: polygons, compressed RLE (``counts`` str) and
    uncompressed RLE (``counts`` list, as ``iscrowd`` regions have). ``iscrowd`` is kept.
    An annotation is skipped (and reported) when it is not an object, its image is not
    matched, its category is unknown, its segmentation is malformed, empty, or of another
    size than the image, or the same mask is already on that image. No annotation events
    are logged: imports are not annotation work and would distort throughput statistics.

    Raises:
        ImportFileError: ``data`` is not an object with ``images`` and ``annotations`` lists
            (e.g. a COCO *results* list, which has no file names to match).
    """
    if mode not in MODES:
        raise ImportFileError(f"mode must be one of {', '.join(MODES)}")
    if isinstance(data, list):
        raise ImportFileError(RESULTS_LIST)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) \
            or not isinstance(data.get("images"), list):
        raise ImportFileError(NOT_INSTANCES)
    categories = data.get("categories") or []
    if not isinstance(categories, list):
        raise ImportFileError("'categories' must be a list")
    anns = data["annotations"]
    return _import(project=project, user=user, images=data["images"], categories=categories,
                   annotations=iter(anns), total=len(anns), mode=mode, progress=progress)


_START = ("start_map", "start_array")
_END = ("end_map", "end_array")
_SCALAR = ("string", "number", "boolean", "null")


def _scan(fh: IO[bytes]) -> tuple[list[Any], list[Any], int]:
    """One streaming pass over a COCO file: its ``images`` and ``categories`` (built in
    memory: small) and how many ``annotations`` it has (counted, not kept).

    Raises:
        ImportFileError: not JSON, not an object, or no ``images``/``annotations`` lists.
    """
    import ijson

    lists = {"images": [], "categories": []}
    kinds: dict[str, str] = {}
    n_annotations = 0
    builder, building = None, ""
    try:
        for prefix, event, value in ijson.parse(fh, use_float=True):
            if prefix == "":
                if event == "start_array":
                    raise ImportFileError(RESULTS_LIST)
                if event not in ("start_map", "end_map", "map_key"):
                    raise ImportFileError(NOT_INSTANCES)
            elif prefix in ("images", "annotations", "categories"):
                if event in _START or event in _SCALAR:
                    kinds[prefix] = "list" if event == "start_array" else ("null" if event == "null" else "other")
            elif prefix == "annotations.item":
                if event in _START or event in _SCALAR:
                    n_annotations += 1
            elif builder is not None or prefix in ("images.item", "categories.item"):
                if builder is None:
                    builder, building = ijson.ObjectBuilder(), prefix
                builder.event(event, value)
                if prefix == building and (event in _END or event in _SCALAR):
                    lists[building.split(".")[0]].append(builder.value)
                    builder, building = None, ""
    except ImportFileError:
        raise
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        # The parser's own message quotes raw bytes (b'lexical error: ... \xff\xd8'): say it plainly.
        raise ImportFileError("not a JSON file: it does not parse as JSON (the import takes a COCO instances "
                              "JSON file, or a zip holding one)") from exc
    if kinds.get("images") != "list" or kinds.get("annotations") != "list":
        raise ImportFileError(NOT_INSTANCES)
    if kinds.get("categories") not in (None, "list", "null"):
        raise ImportFileError("'categories' must be a list")
    return lists["images"], lists["categories"], n_annotations


def coco_import_file(*, project: Project, user, fh: IO[bytes], mode: str = "annotations",
                     progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """:func:`coco_import` on a COCO file read as a stream (ijson), for files larger than
    memory: a first pass keeps only ``images`` and ``categories`` and counts the
    annotations, a second pass imports the annotations one at a time (so memory grows
    with the number of images, not with the file). ``fh`` is a seekable binary file.

    Raises:
        ImportFileError: not JSON, a results list, or not an object with ``images`` and
            ``annotations`` lists; nothing is imported then.
    """
    import ijson

    if mode not in MODES:
        raise ImportFileError(f"mode must be one of {', '.join(MODES)}")
    fh.seek(0)
    head = fh.read(8)
    fh.seek(0)
    if head.startswith(b"PK\x03\x04"):
        with _instances_from_zip(fh) as inner:
            return coco_import_file(project=project, user=user, fh=inner, mode=mode, progress=progress)
    for magic, kind in _IMAGE_MAGIC:
        if head.startswith(magic):
            raise ImportFileError(f"a {kind} image, not a COCO instances JSON file (images are added on the "
                                  "upload page; the import adds masks to images already in the project)")
    images, categories, total = _scan(fh)
    fh.seek(0)
    annotations = ijson.items(fh, "annotations.item", use_float=True)
    return _import(project=project, user=user, images=images, categories=categories, annotations=annotations,
                   total=total, mode=mode, progress=progress)


_IMAGE_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
                (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"RIFF", "WebP"))


def _instances_from_zip(fh: IO[bytes]):
    """The COCO instances JSON inside a zip (this tool's own COCO export with its images:
    ``annotations/instances.json``; or any archive holding one ``.json`` file), copied out to a
    temporary file (at most ``ANNOTATOR_MAX_ZIP_EXTRACTED_BYTES``) for the two streaming passes.

    Raises:
        ImportFileError: not a readable zip, no JSON member, several without an
            ``instances.json`` among them, or the member expands beyond the limit.
    """
    import posixpath
    import shutil
    import tempfile
    import zipfile

    from django.conf import settings

    try:
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise ImportFileError(f"not a readable zip archive ({exc})") from exc
    with archive:
        members = [i for i in archive.infolist() if not i.is_dir() and i.filename.lower().endswith(".json")
                   and not i.filename.startswith("__MACOSX/") and not posixpath.basename(i.filename).startswith(".")]
        named = [i for i in members if posixpath.basename(i.filename) == "instances.json"]
        chosen = named if named else members
        if not chosen:
            raise ImportFileError("a zip archive with no .json file in it: the import takes a COCO instances "
                                  "JSON file, or a zip holding one (e.g. this tool's COCO export)")
        if len(chosen) > 1:
            raise ImportFileError("a zip archive with several .json files and no instances.json among them: "
                                  f"send the COCO instances file itself ({', '.join(i.filename for i in chosen[:5])})")
        limit = settings.ANNOTATOR_MAX_ZIP_EXTRACTED_BYTES
        out = tempfile.TemporaryFile()
        try:
            with archive.open(chosen[0]) as src:
                copied = 0
                while chunk := src.read(1 << 20):
                    copied += len(chunk)
                    if copied > limit:
                        raise ImportFileError(f"{chosen[0].filename} expands to more than {limit} bytes; refused")
                    out.write(chunk)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
            out.close()
            raise ImportFileError(f"{chosen[0].filename} cannot be read from the archive ({exc})") from exc
        except BaseException:
            out.close()
            raise
    out.seek(0)
    return out


def _import(*, project: Project, user, images: list[Any], categories: list[Any], annotations: Iterator[Any],
            total: int, mode: str, progress: Callable[[int, int], None] | None) -> ImportReport:
    """The import proper, over the file's images and categories (lists) and its annotations
    (any iterator of ``total`` items: a list, or a stream from :func:`coco_import_file`)."""
    report = ImportReport()
    with transaction.atomic():
        images = _match_images(project, images, report)
        unmatched_ids = {u["id"]: True for u in report.unmatched_images if isinstance(u["id"], (int, str))}
        cat_map = _Categories(project, categories, report)
        seen: dict[tuple[int, str], Any] = {}
        for pk, image_id, counts in Annotation.objects.filter(
                image_id__in=[v[0] for v in images.values()]).values_list("id", "image_id", "rle__counts"):
            seen[(image_id, counts)] = f"annotation {pk}"
        if mode == "proposals":
            for pk, image_id, counts in Proposal.objects.filter(
                    image_id__in=[v[0] for v in images.values()], status=Proposal.Status.PENDING
            ).values_list("id", "image_id", "rle__counts"):
                seen[(image_id, counts)] = f"pending proposal {pk}"
        model = Proposal if mode == "proposals" else Annotation
        batch: list[Annotation | Proposal] = []
        for index, ann in enumerate(annotations):
            ann_id = ann.get("id") if isinstance(ann, dict) else None

            def skip(reason: str) -> None:
                report.skipped.append({"index": index, "id": ann_id, "reason": reason})

            if not isinstance(ann, dict):
                skip("an annotation must be an object")
                continue
            image_ref = ann.get("image_id")
            image = _get(images, image_ref)
            if image is None:
                skip(f"image_id {image_ref!r} " + ("was not matched (see unmatched_images)"
                                                   if _get(unmatched_ids, image_ref) else "is not in the file's images"))
                continue
            image_pk, height, width = image
            if mode == "proposals" and ann.get("iscrowd"):
                skip("a crowd region (iscrowd 1) is not imported as a proposal")
                continue
            has_category = "category_id" in ann and ann["category_id"] is not None and bool(categories)
            if has_category and not cat_map.known(ann["category_id"]):
                skip(f"category_id {ann['category_id']!r} is not in the file's categories")
                continue
            segmentation = ann.get("segmentation")
            if segmentation in (None, [], {}):
                skip("no segmentation (a box alone is not a mask)")
                continue
            try:
                rle = segmentation_to_rle(segmentation, height, width)
            except RLEError as exc:
                skip(f"segmentation: {exc}")
                continue
            except Exception as exc:  # pycocotools on input our checks did not foresee
                skip(f"segmentation could not be decoded ({type(exc).__name__}: {exc})")
                continue
            area = rle_area(rle)
            if area == 0:
                skip("the mask is empty")
                continue
            key = (image_pk, rle["counts"])
            if key in seen:
                skip(f"the same mask is already on this image ({seen[key]})")
                continue
            seen[key] = f"annotation index {index} of this file"
            bbox = rle_bbox(rle)
            stored_area, stored_bbox = ann.get("area"), ann.get("bbox")
            if (stored_area is not None and stored_area != area) or (
                    isinstance(stored_bbox, list) and [float(v) for v in stored_bbox if isinstance(v, (int, float))] != bbox):
                report.area_bbox_corrected += 1
            predicted_iou = _number(ann.get("predicted_iou"))
            category = cat_map.pk(ann["category_id"]) if has_category else None  # imported: create it now
            if mode == "proposals":
                points = ann.get("point_coords")
                points_ok = isinstance(points, list) and all(
                    isinstance(p, list) and len(p) == 2 and all(_number(v) is not None for v in p) for p in points)
                batch.append(Proposal(
                    image_id=image_pk, source=Proposal.Source.IMPORTED, category_id=category, rle=rle, bbox=bbox,
                    area=area, predicted_iou=predicted_iou, stability_score=_number(ann.get("stability_score")),
                    point_coords=[[float(x), float(y)] for x, y in points] if points_ok else [],
                    model_id=str(ann.get("model_id") or "")[:100],
                ))
            else:
                batch.append(Annotation(
                    image_id=image_pk, category_id=category, rle=rle, bbox=bbox, area=area,
                    predicted_iou=predicted_iou,
                    origin=Annotation.Origin.IMPORTED, iscrowd=bool(ann.get("iscrowd")), author=user,
                ))
            if len(batch) >= BATCH:
                model.objects.bulk_create(batch)
                report.imported += len(batch)
                batch = []
                if progress:
                    progress(index + 1, total)
        if batch:
            model.objects.bulk_create(batch)
            report.imported += len(batch)
    if progress:
        progress(total, total)
    return report
