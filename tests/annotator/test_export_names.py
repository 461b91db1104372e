"""Exports of images whose names collide (``photo.jpg``/``photo.png``, ``a/same.jpg``/``b/same.jpg``
from a zip, ``A.jpg``/``a.jpg``): every image gets its own member names in every format, its
masks are under its own name and decode to the saved pixels, and a COCO export imports back
into the project matching each record to its own image."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image as PILImage

from annotator.core import services
from annotator.core.exports import unique_export_names
from annotator.core.models import Annotation, ExportJob
from engine.rle import mask_to_rle, rle_to_mask, segmentation_to_rle

pytestmark = pytest.mark.django_db


def test_unique_export_names_keeps_unique_names_and_adds_the_id_to_colliding_ones():
    names = unique_export_names([
        (1, "photo.jpg"), (2, "photo.png"), (3, "a/same.jpg"), (4, "b/same.jpg"), (5, "A.jpg"), (6, "a.jpg"),
        (7, "x/lonely.jpg"), (8, "dup.jpg"), (9, "dup.jpg"), (10, "dup-8.jpg"), (11, ""),
    ])
    assert names == {1: "photo-1.jpg", 2: "photo-2.png", 3: "same-3.jpg", 4: "same-4.jpg", 5: "A-5.jpg",
                     6: "a-6.jpg", 7: "lonely.jpg", 8: "dup-8.jpg", 9: "dup-9.jpg",
                     # a literal dup-8.jpg would meet image 8's renamed name: it is renamed too
                     10: "dup-8-10.jpg", 11: "image-11"}
    stems = [n.rsplit(".", 1)[0].casefold() for n in names.values()]
    assert len(set(stems)) == len(stems)
    # deterministic, whatever the order of the rows
    assert unique_export_names(reversed([(i, n) for i, n in [(1, "photo.jpg"), (2, "photo.png")]])) == \
        {1: "photo-1.jpg", 2: "photo-2.png"}


def _photo(seed: int, fmt: str) -> bytes:
    """A 64x48 image whose content depends on ``seed`` (so uploads are not duplicates)."""
    rng = np.random.default_rng(seed)
    image = PILImage.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def _colliding_project(user):
    """Images photo.jpg, photo.png, a/same.jpg, b/same.jpg (one zip), A.jpg, a.jpg, unique.jpg;
    each with one mask of its own. Returns (project, {image id: (image, mask)})."""
    project = services.project_create(name="Collide", user=user, categories=["object"])
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("a/same.jpg", _photo(3, "JPEG"))
        zf.writestr("b/same.jpg", _photo(4, "JPEG"))
    files = [("photo.jpg", _photo(1, "JPEG")), ("photo.png", _photo(2, "PNG")), ("both.zip", zbuf.getvalue()),
             ("A.jpg", _photo(5, "JPEG")), ("a.jpg", _photo(6, "JPEG")), ("unique.jpg", _photo(7, "JPEG"))]
    images = []
    for name, data in files:  # one file per upload: names in one request may be checked together
        images += services.images_upload(project=project, files=[(name, data)], user=user)
    assert sorted(i.file_name for i in images) == sorted(
        ["photo.jpg", "photo.png", "a/same.jpg", "b/same.jpg", "A.jpg", "a.jpg", "unique.jpg"])
    category = project.categories.first()
    saved = {}
    for k, image in enumerate(images):
        mask = np.zeros((image.height, image.width), np.uint8)
        mask[2 + k:20 + 2 * k, 3 + 3 * k:30 + k] = 1
        services.annotation_create(image=image, user=user, segmentation=mask_to_rle(mask), category=category.pk)
        saved[image.pk] = (image, mask)
    return project, saved


def _expected_name(image) -> str:
    base = image.file_name.rsplit("/", 1)[-1]
    if base == "unique.jpg":
        return base
    stem, ext = base.rsplit(".", 1)
    return f"{stem}-{image.pk}.{ext}"


def _run(project, user, format: str, **options) -> ExportJob:
    job = services.export_start(project=project, user=user, format=format, **options)
    return services.export_run(job=ExportJob.objects.get(pk=job.pk))


def _stored_bytes(image) -> bytes:
    with image.file.open("rb") as fh:
        return fh.read()


def _assert_unique(names: list[str]) -> None:
    assert len(names) == len(set(names)), names
    folded = [n.casefold() for n in names]
    assert len(folded) == len(set(folded)), names  # case-insensitive file systems too


def check_sa1b(zf: zipfile.ZipFile, saved: dict) -> None:
    """Each image's JSON and photo under its own unique name, masks pixel-equal to the saved ones."""
    names = zf.namelist()
    _assert_unique(names)
    assert len(names) == 2 * len(saved)
    for image, mask in saved.values():
        name = _expected_name(image)
        doc = json.loads(zf.read(name.rsplit(".", 1)[0] + ".json"))
        assert doc["image"]["image_id"] == image.pk and doc["image"]["file_name"] == name
        (record,) = doc["annotations"]
        np.testing.assert_array_equal(rle_to_mask(record["segmentation"]), mask)
        assert zf.read(name) == _stored_bytes(image)


def check_png(zf: zipfile.ZipFile, saved: dict) -> None:
    names = zf.namelist()
    _assert_unique(names)
    assert len(names) == 1 + 3 * len(saved)
    for image, mask in saved.values():
        name = _expected_name(image)
        stem = name.rsplit(".", 1)[0]
        doc = json.loads(zf.read(f"masks/{stem}.json"))
        assert doc["image"]["image_id"] == image.pk and doc["image"]["file_name"] == name
        label = np.array(PILImage.open(io.BytesIO(zf.read(f"masks/{stem}.png"))))
        np.testing.assert_array_equal(label > 0, mask.astype(bool))
        assert zf.read(f"images/{name}") == _stored_bytes(image)


def check_coco(zf: zipfile.ZipFile, saved: dict) -> dict:
    names = zf.namelist()
    _assert_unique(names)
    coco = json.loads(zf.read("annotations/instances.json"))
    file_names = [img["file_name"] for img in coco["images"]]
    _assert_unique(file_names)
    assert sorted(f"images/{n}" for n in file_names) == sorted(n for n in names if n.startswith("images/"))
    by_id = {img["id"]: img for img in coco["images"]}
    for ann in coco["annotations"]:
        image, mask = saved[ann["image_id"]]
        assert by_id[image.pk]["file_name"] == _expected_name(image)
        rle = segmentation_to_rle(ann["segmentation"], image.height, image.width)  # RLE or polygons
        np.testing.assert_array_equal(rle_to_mask(rle), mask)
        assert zf.read(f"images/{_expected_name(image)}") == _stored_bytes(image)
    assert len(coco["annotations"]) == len(saved)
    return coco


def test_every_format_gives_each_image_its_own_members_and_masks(user):
    project, saved = _colliding_project(user)
    with zipfile.ZipFile(_run(project, user, "sa1b", include_images=True).file.open("rb")) as zf:
        check_sa1b(zf, saved)
    with zipfile.ZipFile(_run(project, user, "png", include_images=True).file.open("rb")) as zf:
        check_png(zf, saved)
    for fmt in ("coco", "coco_polygons"):
        with zipfile.ZipFile(_run(project, user, fmt, include_images=True).file.open("rb")) as zf:
            check_coco(zf, saved)
    # without images, COCO JSON names the images as the zip would
    plain = json.loads(_run(project, user, "coco").file.open("rb").read())
    assert {img["id"]: img["file_name"] for img in plain["images"]} == \
        {image.pk: _expected_name(image) for image, _ in saved.values()}


def test_a_coco_export_of_colliding_names_imports_back_to_the_same_images(api_client, user):
    project, saved = _colliding_project(user)
    with zipfile.ZipFile(_run(project, user, "coco", include_images=True).file.open("rb")) as zf:
        exported = zf.read("annotations/instances.json")
    Annotation.objects.filter(image__project=project).delete()
    buf = io.BytesIO(exported)
    buf.name = "instances.json"
    report = api_client.post(f"/api/projects/{project.pk}/imports/coco", {"file": buf}, format="multipart").json()
    assert report["imported"] == len(saved) and report["unmatched_images"] == [] and report["skipped"] == []
    assert report["categories_created"] == []
    for image, mask in saved.values():
        (ann,) = Annotation.objects.filter(image=image)
        np.testing.assert_array_equal(rle_to_mask(ann.rle), mask)


def test_an_image_uploaded_while_an_export_runs_gets_a_name_of_its_own(user):
    from annotator.core.exports import _export_names

    project = services.project_create(name="Late", user=user)
    (first,) = services.images_upload(project=project, files=[("x.jpg", _photo(1, "JPEG"))], user=user)
    names = _export_names(project)  # the export has started
    (late,) = services.images_upload(project=project, files=[("x.jpg", _photo(2, "JPEG"))], user=user)
    assert names(first.pk, first.file_name) == "x.jpg"
    assert names(late.pk, late.file_name) == f"x-{late.pk}.jpg"
