"""COCO instances export of a project (RLE segmentations, DESIGN.md "Masks on the wire").

Areas and boxes come from the stored masks; ``iscrowd`` is 0 for instances (compressed RLE
is valid for instances in pycocotools and the loaders that follow it).
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from .models import Annotation, Category, Image, Project


def export_coco(*, project: Project) -> dict[str, Any]:
    """The project as a COCO instances dict: ``images``, ``categories``, ``annotations``.

    Image ``width``/``height`` are after EXIF orientation, matching the masks. Annotations
    without a category are exported under the reserved category ``unlabeled`` (id 0
    would break some loaders, so it gets the next free id).
    """
    categories = list(Category.objects.filter(project=project).order_by("id"))
    cat_entries = [{"id": c.pk, "name": c.name, "supercategory": ""} for c in categories]
    unlabeled_id = None
    annotations = Annotation.objects.filter(image__project=project).order_by("id")
    if annotations.filter(category__isnull=True).exists():
        unlabeled_id = max([c.pk for c in categories], default=0) + 1
        cat_entries.append({"id": unlabeled_id, "name": "unlabeled", "supercategory": ""})
    images = [
        {"id": img.pk, "file_name": img.file_name, "width": img.width, "height": img.height}
        for img in Image.objects.filter(project=project).order_by("id")
    ]
    anns = [
        {
            "id": a.pk,
            "image_id": a.image_id,
            "category_id": a.category_id if a.category_id is not None else unlabeled_id,
            "segmentation": {"size": a.rle["size"], "counts": a.rle["counts"]},
            "area": a.area,
            "bbox": a.bbox,
            "iscrowd": 0,
            "predicted_iou": a.predicted_iou,
            "origin": a.origin,
        }
        for a in annotations.iterator()
    ]
    return {
        "info": {"description": project.name, "date_created": timezone.now().isoformat(), "version": "1.0"},
        "licenses": [],
        "images": images,
        "categories": cat_entries,
        "annotations": anns,
    }
