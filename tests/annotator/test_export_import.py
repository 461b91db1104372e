"""Exports and imports on the real PostgreSQL: round trips on the real COCO files in
shared/data/coco_rle, polygon exports that keep holes, SA-1B/PNG zips, a well-known COCO
reader (torchvision's CocoDetection on pycocotools), malformed input, permissions."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image as PILImage
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from annotator.core import services
from annotator.core.models import Annotation, ExportJob
from annotator.core.permissions import NotAllowed
from engine.rle import mask_to_rle, rle_to_mask
from tests.factories import SHARED_DATA, UserFactory, grabcut_photo, project_with_photos

pytestmark = pytest.mark.django_db

COCO_RLE = SHARED_DATA / "coco_rle"
DATUMARO = COCO_RLE / "datumaro_coco_instances"


# ---------------------------------------------------------------- helpers


def _blank(width: int, height: int, seed: int = 0) -> bytes:
    """A grey image (PNG bytes) of this size; ``seed`` shades one corner pixel so that blank images of one
    size differ in content (the project stores a photo it already has only once)."""
    image = PILImage.new("RGB", (width, height), (128, 128, 128))
    image.putpixel((0, 0), (seed % 256, (seed // 256) % 256, 0))
    buf = io.BytesIO()
    image.save(buf, "PNG")  # lossless: every seed gives other bytes
    return buf.getvalue()


def _cocoapi_as_instances() -> dict:
    """The cocoapi *results* list wrapped as an instances file: results carry no images, so
    each image gets its val2014 file name and the size of its masks."""
    results = json.loads((COCO_RLE / "cocoapi" / "instances_val2014_fakesegm100_results.json").read_text())
    sizes = {r["image_id"]: r["segmentation"]["size"] for r in results}
    return {
        "images": [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg", "height": h, "width": w}
                   for i, (h, w) in sorted(sizes.items())],
        "categories": [{"id": c, "name": f"category {c}"} for c in sorted({r["category_id"] for r in results})],
        "annotations": [dict(r, id=n + 1) for n, r in enumerate(results)],
    }


def _project_for(user, coco: dict, real: dict[str, bytes] | None = None):
    """A project with the file's images: the real photo where one exists, else a blank image
    of the stated size, named as in the file."""
    project = services.project_create(name="Import", user=user)
    real = real or {}
    files = [(img["file_name"], real.get(img["file_name"]) or _blank(img["width"], img["height"], seed=i + 1))
             for i, img in enumerate(coco["images"])]
    services.images_upload(project=project, files=files, user=user)
    return project


def _post_import(client, project_id: int, coco: dict | bytes, name: str = "instances.json"):
    buf = io.BytesIO(coco if isinstance(coco, bytes) else json.dumps(coco).encode())
    buf.name = name
    return client.post(f"/api/projects/{project_id}/imports/coco", {"file": buf}, format="multipart")


def _export(project, user, format: str = "coco", **options) -> ExportJob:
    """Start an export and run it here (the worker path is tested in test_export_worker.py)."""
    job = services.export_start(project=project, user=user, format=format, **options)
    return services.export_run(job=ExportJob.objects.get(pk=job.pk))


def _digest(mask: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(mask.astype(np.uint8)).tobytes() + str(mask.shape).encode()).hexdigest()


def _masks_by_file(coco_path: Path) -> dict[str, list[str]]:
    """file_name -> sorted digests of every mask, decoded by pycocotools (``annToMask``)."""
    coco = COCO(str(coco_path))
    out: dict[str, list[str]] = defaultdict(list)
    for ann in coco.loadAnns(coco.getAnnIds()):
        if ann["segmentation"] in ([], None):
            continue
        out[coco.imgs[ann["image_id"]]["file_name"]].append(_digest(coco.annToMask(ann)))
    return {k: sorted(v) for k, v in out.items()}


def _write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data)) if not isinstance(data, bytes) else path.write_bytes(data)
    return path


# ---------------------------------------------------------------- round trips on the real files


REAL_FILES = {
    "datumaro_val": (lambda: json.loads((DATUMARO / "annotations" / "instances_val.json").read_text()),
                     {"b.jpg": (DATUMARO / "images" / "val" / "b.jpg").read_bytes()}, 2, 0),
    "datumaro_train": (lambda: json.loads((DATUMARO / "annotations" / "instances_train.json").read_text()), {}, 0, 1),
    "mmdet": (lambda: json.loads((COCO_RLE / "mmdet_coco_dummy" / "instances_val2017_excerpt.json").read_text()),
              {}, 3, 0),
    "cocoapi": (_cocoapi_as_instances, {}, 734, 0),
}


@pytest.mark.parametrize("case", list(REAL_FILES))
def test_real_coco_file_imports_and_exports_to_the_same_pixels(api_client, user, tmp_path, case):
    load, real, n_imported, n_skipped = REAL_FILES[case]
    source = load()
    project = _project_for(user, source, real)
    res = _post_import(api_client, project.pk, source)
    assert res.status_code == 200, res.content
    report = res.json()
    assert report["imported"] == n_imported, report
    assert len(report["skipped"]) == n_skipped and report["unmatched_images"] == []
    expected = _masks_by_file(_write(tmp_path, "source.json", source))

    for fmt in ("coco", "coco_polygons"):
        job = _export(project, user, fmt)
        assert job.status == "done", job.error
        path = _write(tmp_path, f"{fmt}.json", job.file.open("rb").read())
        assert _masks_by_file(path) == expected, fmt
        exported = json.loads(path.read_text())
        for ann in exported["annotations"]:
            rle = ann["segmentation"] if isinstance(ann["segmentation"], dict) else None
            if rle is not None:
                assert isinstance(rle["counts"], str)  # compressed, whatever came in
                assert ann["area"] == int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}))
            assert ann["bbox"] == [float(v) for v in ann["bbox"]] and len(ann["bbox"]) == 4
        if fmt == "coco_polygons" and n_imported:
            # The reconstruction error of the polygons, measured by the export itself.
            print(f"\n{case}: polygon export of {job.stats['annotations']} masks: min IoU "
                  f"{job.stats['polygon_min_iou']}, pixel error {job.stats['polygon_pixel_error']}")
            assert job.stats["polygon_min_iou"] == 1.0 and job.stats["polygon_pixel_error"] == 0


def test_mmdet_stored_area_and_bbox_are_recomputed_and_crowd_kept(api_client, user, tmp_path):
    source = REAL_FILES["mmdet"][0]()
    project = _project_for(user, source)
    report = _post_import(api_client, project.pk, source).json()
    assert report["area_bbox_corrected"] == 3  # polygon areas are fractional; the crowd RLE says 4015
    crowd = Annotation.objects.get(image__project=project, iscrowd=True)
    assert crowd.area == 3386 and crowd.origin == "imported"
    assert crowd.bbox[2:] == [253.0, 85.0]
    exported = json.loads(_export(project, user).file.open("rb").read())
    crowd_out = [a for a in exported["annotations"] if a["iscrowd"] == 1]
    assert len(crowd_out) == 1 and crowd_out[0]["area"] == 3386
    # 'person' is in the file's categories but no annotation uses it: no label is made for it
    assert sorted(c["name"] for c in exported["categories"]) == ["car", "traffic light", "tv"]
    assert sum(a["iscrowd"] == 0 for a in exported["annotations"]) == 2


def test_reimport_of_the_same_file_skips_every_mask_as_a_duplicate(api_client, user):
    source = REAL_FILES["mmdet"][0]()
    project = _project_for(user, source)
    assert _post_import(api_client, project.pk, source).json()["imported"] == 3
    again = _post_import(api_client, project.pk, source).json()
    assert again["imported"] == 0
    assert [s["index"] for s in again["skipped"]] == [0, 1, 2]
    assert all("already on this image" in s["reason"] for s in again["skipped"])


def test_streamed_import_reads_keys_in_any_order_like_the_parsed_import(api_client, user, tmp_path):
    """The API and import_coco read the file as a stream (ijson, two passes): a file whose
    annotations come before its images (key order is free in JSON) and whose categories are
    null imports exactly as the parsed dict does."""
    source = _cocoapi_as_instances()
    reordered = {"annotations": source["annotations"], "info": {"note": "keys in another order"},
                 "images": source["images"], "categories": source["categories"]}
    streamed = _project_for(user, source)
    report = _post_import(api_client, streamed.pk, json.dumps(reordered, indent=1).encode()).json()
    parsed = _project_for(user, source)
    expected = services.annotations_import_coco(project=parsed, user=user, data=source)
    assert report["imported"] == expected["imported"] == 734 and report["skipped"] == expected["skipped"] == []
    by_stream = _masks_by_file(_write(tmp_path, "a.json", _export(streamed, user).file.open("rb").read()))
    by_parse = _masks_by_file(_write(tmp_path, "b.json", _export(parsed, user).file.open("rb").read()))
    assert by_stream == by_parse and sum(len(v) for v in by_stream.values()) == 734

    no_categories = {"images": source["images"][:1], "categories": None,
                     "annotations": [a for a in source["annotations"] if a["image_id"] == source["images"][0]["id"]]}
    fresh = _project_for(user, {"images": source["images"][:1]})
    report = _post_import(api_client, fresh.pk, no_categories).json()
    assert report["imported"] == len(no_categories["annotations"]) > 0


def test_an_export_with_duplicate_file_names_imports_back_into_its_project(api_client, user, tmp_path):
    """Two images named alike are exported as ``<stem>-<image id><ext>``; importing that file
    into the same project matches each record to its own image again."""
    project = services.project_create(name="Dup", user=user, categories=["object"])
    a, b = (services.images_upload(project=project, files=[("same.jpg", grabcut_photo(p)[1])], user=user)[0]
            for p in ("124080.jpg", "37073.jpg"))
    masks = {}
    for image, (y0, x0) in ((a, (10, 20)), (b, (40, 30))):
        mask = np.zeros((image.height, image.width), np.uint8)
        mask[y0:y0 + 50, x0:x0 + 70] = 1
        res = api_client.post(f"/api/images/{image.pk}/annotations/", {"segmentation": mask_to_rle(mask)},
                              format="json")
        assert res.status_code == 201, res.content
        masks[image.pk] = _digest(mask)
    exported = _export(project, user).file.open("rb").read()
    names = sorted(img["file_name"] for img in json.loads(exported)["images"])
    assert names == sorted([f"same-{a.pk}.jpg", f"same-{b.pk}.jpg"])
    Annotation.objects.filter(image__project=project).delete()
    report = _post_import(api_client, project.pk, exported).json()
    assert report["imported"] == 2 and report["unmatched_images"] == [] and report["skipped"] == []
    for image in (a, b):
        (ann,) = Annotation.objects.filter(image=image)
        assert _digest(rle_to_mask(ann.rle)) == masks[image.pk]


# ---------------------------------------------------------------- polygons keep holes


def _ring_mask() -> np.ndarray:
    """A square ring (hole in the middle) with an island in the hole, plus a second piece."""
    mask = np.zeros((60, 80), np.uint8)
    mask[5:45, 5:45] = 1
    mask[15:35, 15:35] = 0
    mask[22:28, 22:28] = 1
    mask[50:58, 60:78] = 1
    return mask


def test_polygon_export_keeps_holes_and_pieces_of_a_hand_made_mask(user, tmp_path):
    project = services.project_create(name="Ring", user=user, categories=["ring"])
    image = services.images_upload(project=project, files=[("ring.jpg", _blank(80, 60))], user=user)[0]
    mask = _ring_mask()
    services.annotation_create(image=image, user=user, segmentation=mask_to_rle(mask),
                               category=project.categories.first().pk)
    job = _export(project, user, "coco_polygons")
    path = _write(tmp_path, "poly.json", job.file.open("rb").read())
    coco = COCO(str(path))
    (ann,) = coco.loadAnns(coco.getAnnIds())
    assert isinstance(ann["segmentation"], list) and len(ann["segmentation"]) == 3  # ring, island, second piece
    back = coco.annToMask(ann)
    inter, union = np.logical_and(back, mask).sum(), np.logical_or(back, mask).sum()
    print(f"\nring mask: polygon reconstruction IoU {inter / union:.6f}, pixel error {(back != mask).sum()}")
    np.testing.assert_array_equal(back, mask)
    assert back[25, 18] == 0  # inside the hole
    assert ann["area"] == int(mask.sum()) and ann["bbox"] == [5.0, 5.0, 73.0, 53.0]
    assert job.stats["polygon_min_iou"] == 1.0 and job.stats["polygon_pixel_error"] == 0


# ---------------------------------------------------------------- a well-known reader


def test_torchvision_coco_detection_loads_the_export_with_images(user, tmp_path):
    from torchvision.datasets import CocoDetection

    project = project_with_photos(user=user, photos=("124080.jpg",), categories=("object",))
    rotated = PILImage.new("RGB", (60, 40), (200, 10, 10))
    exif = rotated.getexif()
    exif[0x0112] = 6  # shown rotated: 40x60
    buf = io.BytesIO()
    rotated.save(buf, "JPEG", exif=exif)
    services.images_upload(project=project, files=[("rotated.jpg", buf.getvalue())], user=user)
    masks = {}
    for image in project.images.all():
        mask = np.zeros((image.height, image.width), np.uint8)
        mask[image.height // 4: image.height // 2, image.width // 3: image.width // 2] = 1
        mask[image.height // 4 + 3: image.height // 4 + 6, image.width // 3 + 3: image.width // 3 + 6] = 0
        services.annotation_create(image=image, user=user, segmentation=mask_to_rle(mask),
                                   category=project.categories.first().pk)
        masks[image.file_name] = mask
    for fmt in ("coco", "coco_polygons"):
        job = _export(project, user, fmt, include_images=True)
        assert job.file.name.endswith(".zip") and job.stats["images_reencoded_upright"] == 1
        root = tmp_path / fmt
        with zipfile.ZipFile(job.file.open("rb")) as zf:
            zf.extractall(root)
        dataset = CocoDetection(root=str(root / "images"), annFile=str(root / "annotations" / "instances.json"))
        assert len(dataset) == 2
        for i in range(len(dataset)):
            img, targets = dataset[i]
            info = dataset.coco.imgs[dataset.ids[i]]
            assert img.size == (info["width"], info["height"])  # the reader needs no EXIF handling
            (target,) = targets
            np.testing.assert_array_equal(dataset.coco.annToMask(target), masks[info["file_name"]])


# ---------------------------------------------------------------- SA-1B and PNG


def test_sa1b_and_png_zips(user):
    project = services.project_create(name="P", user=user, categories=["a"])
    image = services.images_upload(project=project, files=[("photo.jpg", _blank(40, 30))], user=user)[0]
    big = np.zeros((30, 40), np.uint8)
    big[5:25, 5:35] = 1
    small = np.zeros((30, 40), np.uint8)
    small[10:15, 10:15] = 1
    a_big = services.annotation_create(image=image, user=user, segmentation=mask_to_rle(big), predicted_iou=0.9,
                                       prompts={"point_coords": [[20, 15], [1, 1]], "point_labels": [1, 0]})
    a_small = services.annotation_create(image=image, user=user, segmentation=mask_to_rle(small),
                                         category=project.categories.first().pk)

    job = _export(project, user, "sa1b", include_images=True)
    with zipfile.ZipFile(job.file.open("rb")) as zf:
        assert sorted(zf.namelist()) == ["photo.jpg", "photo.json"]
        doc = json.loads(zf.read("photo.json"))
        assert PILImage.open(io.BytesIO(zf.read("photo.jpg"))).size == (40, 30)
    assert doc["image"] == {"image_id": image.pk, "width": 40, "height": 30, "file_name": "photo.jpg"}
    rec = {r["id"]: r for r in doc["annotations"]}
    assert set(rec[a_big.pk]) >= {"segmentation", "area", "bbox", "predicted_iou", "point_coords",
                                  "stability_score", "crop_box"}
    assert rec[a_big.pk]["point_coords"] == [[20.0, 15.0]] and rec[a_big.pk]["predicted_iou"] == 0.9
    assert rec[a_big.pk]["crop_box"] == [0.0, 0.0, 40.0, 30.0] and rec[a_big.pk]["area"] == 600
    np.testing.assert_array_equal(rle_to_mask(rec[a_small.pk]["segmentation"]), small)

    job = _export(project, user, "png")
    with zipfile.ZipFile(job.file.open("rb")) as zf:
        assert sorted(zf.namelist()) == ["categories.json", "masks/photo.json", "masks/photo.png"]
        label = np.array(PILImage.open(io.BytesIO(zf.read("masks/photo.png"))))
        meta = json.loads(zf.read("masks/photo.json"))
    values = {i["id"]: i["value"] for i in meta["instances"]}
    assert label.shape == (30, 40)
    np.testing.assert_array_equal(label == values[a_small.pk], small.astype(bool))  # small drawn on top
    np.testing.assert_array_equal((label == values[a_big.pk]) | (label == values[a_small.pk]), big.astype(bool))
    assert meta["overlap_pixels"] == 25 and job.stats["png_overlap_pixels"] == 25


# ---------------------------------------------------------------- review status


def test_only_approved_export_and_who_may_review(api_client, user):
    project = services.project_create(name="P", user=user, categories=["a"])
    image = services.images_upload(project=project, files=[("p.jpg", _blank(20, 10))], user=user)[0]
    m1, m2 = np.zeros((10, 20), np.uint8), np.zeros((10, 20), np.uint8)
    m1[1:3, 1:3] = 1
    m2[5:8, 5:8] = 1
    a1 = services.annotation_create(image=image, user=user, segmentation=mask_to_rle(m1))
    services.annotation_create(image=image, user=user, segmentation=mask_to_rle(m2))
    res = api_client.patch(f"/api/annotations/{a1.pk}/", {"version": 1, "review_status": "approved"}, format="json")
    assert res.status_code == 200 and res.json()["review_status"] == "approved"
    exported = json.loads(_export(project, user, only_approved=True).file.open("rb").read())
    assert [a["id"] for a in exported["annotations"]] == [a1.pk]
    assert len(json.loads(_export(project, user).file.open("rb").read())["annotations"]) == 2

    annotator = UserFactory()
    services.project_add_member(project=project, user=annotator, role="annotator")
    with pytest.raises(NotAllowed):
        services.annotation_update(annotation_id=a1.pk, user=annotator, version=2, review_status="rejected")
    api_client.force_login(annotator)
    api_client.get("/accounts/login/")
    api_client.credentials(HTTP_X_CSRFTOKEN=api_client.cookies["csrftoken"].value)
    res = api_client.patch(f"/api/annotations/{a1.pk}/", {"version": 2, "review_status": "rejected"}, format="json")
    assert res.status_code == 403
    assert Annotation.objects.get(pk=a1.pk).review_status == "approved"


# ---------------------------------------------------------------- malformed input


def test_a_category_is_created_only_when_an_annotation_using_it_is_imported(api_client, user):
    """'zebra' is used only by annotations that are skipped (an unmatched image, the same mask
    twice, a malformed mask) and 'ghost' by none: neither becomes a label; 'thing' does."""
    from annotator.core.models import Category

    project = services.project_create(name="P", user=user, categories=["object"])
    services.images_upload(project=project, files=[("a.jpg", _blank(10, 8))], user=user)
    good = mask_to_rle(np.pad(np.ones((2, 2), np.uint8), ((1, 5), (1, 7))))
    source = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 8},
                   {"id": 2, "file_name": "missing.jpg", "width": 10, "height": 8}],
        "categories": [{"id": 7, "name": "thing"}, {"id": 8, "name": "zebra"}, {"id": 9, "name": "ghost"},
                       {"id": 10, "name": "object"}],
        "annotations": [
            {"id": 1, "image_id": 2, "category_id": 8, "segmentation": good},
            {"id": 2, "image_id": 1, "category_id": 7, "segmentation": good},
            {"id": 3, "image_id": 1, "category_id": 8, "segmentation": good},
            {"id": 4, "image_id": 1, "category_id": 8, "segmentation": [[1, 1, 2, 2, 3]]},
        ],
    }
    report = _post_import(api_client, project.pk, source).json()
    assert report["imported"] == 1 and [s["id"] for s in report["skipped"]] == [1, 3, 4]
    assert report["categories_created"] == ["thing"]
    assert sorted(Category.objects.filter(project=project).values_list("name", flat=True)) == ["object", "thing"]
    (ann,) = Annotation.objects.filter(image__project=project)
    assert ann.category.name == "thing"


def test_malformed_annotations_are_skipped_one_by_one_with_reasons(api_client, user):
    project = services.project_create(name="P", user=user)
    services.images_upload(project=project, files=[("a.jpg", _blank(10, 8))], user=user)
    good = mask_to_rle(np.pad(np.ones((2, 2), np.uint8), ((1, 5), (1, 7))))
    source = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 8},
                   {"id": 2, "file_name": "missing.jpg", "width": 10, "height": 8}],
        "categories": [{"id": 7, "name": "thing"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "segmentation": good, "area": 999, "bbox": [0, 0, 1, 1]},
            "not an object",
            {"id": 12, "image_id": 2, "category_id": 7, "segmentation": good},
            {"id": 13, "image_id": 99, "category_id": 7, "segmentation": good},
            {"id": 14, "image_id": 1, "category_id": 8, "segmentation": good},
            {"id": 15, "image_id": 1, "category_id": 7, "segmentation": {"size": [8, 10], "counts": "~~~"}},
            {"id": 16, "image_id": 1, "category_id": 7, "segmentation": {"size": [4, 4], "counts": [16]}},
            {"id": 17, "image_id": 1, "category_id": 7, "segmentation": [[1, 1, 2, 2, 3]]},
            {"id": 18, "image_id": 1, "category_id": 7, "segmentation": [[1, 1, 5, 1]]},
            {"id": 19, "image_id": 1, "category_id": 7, "segmentation": {"size": [8, 10], "counts": [80]}},
            {"id": 20, "image_id": 1, "category_id": 7, "segmentation": []},
            {"id": 21, "image_id": 1, "category_id": 7, "segmentation": {"size": [8, 10], "counts": [3, 2, 70]}},
            {"id": 22, "image_id": 1, "category_id": 7, "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]], "iscrowd": 0},
            {"id": 23, "image_id": 1, "category_id": 7, "segmentation": good},
            {"id": 24, "image_id": [1], "category_id": 7, "segmentation": good},
        ],
    }
    res = _post_import(api_client, project.pk, source)
    assert res.status_code == 200, res.content
    report = res.json()
    assert report["imported"] == 2 and report["categories_created"] == ["thing"]
    assert report["unmatched_images"] == [{"id": 2, "file_name": "missing.jpg",
                                           "reason": "no image of this name in the project"}]
    reasons = {s["index"]: (s["id"], s["reason"]) for s in report["skipped"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14]
    expect = {1: "must be an object", 2: "was not matched", 3: "not in the file's images", 4: "category_id 8",
              5: "invalid character", 6: "does not match the image size", 7: "even count of at least 6",
              8: "even count of at least 6", 9: "mask is empty", 10: "no segmentation",
              11: "runs sum to 75", 13: "already on this image", 14: "not in the file's images"}
    for index, text in expect.items():
        assert text in reasons[index][1], (index, reasons[index])
    assert reasons[5][0] == 15
    stored = Annotation.objects.filter(image__project=project).order_by("id")
    assert [a.area for a in stored] == [4, 25] and all(a.origin == "imported" for a in stored)


def test_whole_file_errors(api_client, user):
    project = services.project_create(name="P", user=user)
    res = _post_import(api_client, project.pk, b"{not json")
    assert res.status_code == 400 and "not a JSON file" in res.json()["file"][0]
    res = _post_import(api_client, project.pk, [{"image_id": 1, "segmentation": []}])
    assert res.status_code == 400 and "results list" in res.json()["file"][0]
    res = _post_import(api_client, project.pk, {"annotations": []})
    assert res.status_code == 400
    # A file cut off in the middle of its annotations: refused as a whole, nothing imported.
    res = _post_import(api_client, project.pk, b'{"images": [], "annotations": [{"id": 1, "segmentation": ')
    assert res.status_code == 400 and "not a JSON file" in res.json()["file"][0]
    for body in (b"42", b'{"images": {}, "annotations": []}', b'{"images": [], "annotations": null}',
                 b'{"images": [], "annotations": [], "categories": 3}'):
        res = _post_import(api_client, project.pk, body)
        assert res.status_code == 400, body
    assert not Annotation.objects.filter(image__project=project).exists()


# ---------------------------------------------------------------- permissions


def test_non_members_get_404_and_roles_are_enforced(api_client, user, client):
    other = UserFactory()
    project = project_with_photos(user=other, photos=("124080.jpg",))
    job = _export(project, other)
    for method, url in [("post", f"/api/projects/{project.pk}/exports/"), ("get", f"/api/projects/{project.pk}/exports/"),
                        ("get", f"/api/exports/{job.pk}/"), ("get", f"/api/exports/{job.pk}/download")]:
        res = getattr(api_client, method)(url, {"format": "coco"} if method == "post" else None, format="json")
        assert res.status_code == 404, url
        assert getattr(client, method)(url).status_code in (401, 403), url
    assert _post_import(api_client, project.pk, {"images": [], "annotations": []}).status_code == 404

    services.project_add_member(project=project, user=user, role="annotator")
    assert api_client.get(f"/api/exports/{job.pk}/download").status_code == 403
    assert api_client.post(f"/api/projects/{project.pk}/exports/", {"format": "coco"}, format="json").status_code == 403
    assert _post_import(api_client, project.pk, {"images": [], "annotations": []}).status_code == 403

    services.project_add_member(project=project, user=user, role="reviewer")
    res = api_client.get(f"/api/exports/{job.pk}/download")
    assert res.status_code == 200 and "attachment" in res["Content-Disposition"]
    assert json.loads(b"".join(res.streaming_content))["images"][0]["file_name"] == "124080.jpg"
    assert _post_import(api_client, project.pk, {"images": [], "annotations": []}).status_code == 403


def test_export_api_validates_and_reports_a_pending_job(api_client, user):
    project = project_with_photos(user=user, photos=("124080.jpg",))
    res = api_client.post(f"/api/projects/{project.pk}/exports/", {"format": "yolo"}, format="json")
    assert res.status_code == 400 and "format" in res.json()
    res = api_client.post(f"/api/projects/{project.pk}/exports/", {"format": "sa1b", "include_images": True},
                          format="json")
    assert res.status_code == 201, res.content
    body = res.json()
    assert body["status"] == "pending" and body["download_url"] is None
    assert body["options"] == {"only_approved": False, "include_images": True}
    assert api_client.get(f"/api/exports/{body['id']}/download").status_code == 409
    assert [e["id"] for e in api_client.get(f"/api/projects/{project.pk}/exports/").json()] == [body["id"]]


# ---------------------------------------------------------------- management commands


def test_management_commands(user, tmp_path):
    user.is_superuser = True
    user.save()
    source = REAL_FILES["mmdet"][0]()
    project = _project_for(user, source)
    src = _write(tmp_path, "in.json", source)
    out = io.StringIO()
    call_command("import_coco", project=project.pk, file=str(src), user=user.username, no_progress=True, stdout=out)
    assert "imported 3, skipped 0" in out.getvalue()
    call_command("export_coco", project=project.pk, output=str(tmp_path / "out.json"), polygons=True,
                 no_progress=True, stdout=io.StringIO())
    assert _masks_by_file(tmp_path / "out.json") == _masks_by_file(src)
    call_command("export_sa1b", project=project.pk, output=str(tmp_path / "sa.zip"), no_progress=True,
                 stdout=io.StringIO())
    with zipfile.ZipFile(tmp_path / "sa.zip") as zf:
        assert sorted(zf.namelist()) == ["000000000139.json", "000000255917.json"]


# ---------------------------------------------------------------- masks saved as the browser saves them


def test_grabcut_masks_saved_through_the_api_survive_export_import_export(api_client, user, tmp_path):
    """The 50 real GrabCut object masks, POSTed as the annotate page posts them, exported as
    polygons (reconstruction error measured), imported into a second project, exported again
    as RLE and as SA-1B: every mask decodes with pycocotools to the saved pixels."""
    grabcut = SHARED_DATA / "grabcut"
    photos = sorted(p.name for p in (grabcut / "data_GT").iterdir())
    files = [(name, (grabcut / "data_GT" / name).read_bytes()) for name in photos]
    first = services.project_create(name="Browser", user=user, categories=["object"])
    images = services.images_upload(project=first, files=files, user=user)
    category = first.categories.first().pk
    saved: dict[str, str] = {}
    holes = 0
    for image in images:
        stem = image.file_name.rsplit(".", 1)[0]
        gt = np.array(PILImage.open(grabcut / "boundary_GT" / f"{stem}.bmp").convert("L"))
        mask = (gt == 255).astype(np.uint8)  # 128 = the unknown band: left out
        assert mask.shape == (image.height, image.width)
        res = api_client.post(f"/api/images/{image.pk}/annotations/", {
            "category": category, "segmentation": mask_to_rle(mask),
            "prompts": {"point_coords": [[5, 5]], "point_labels": [1], "box": None}, "active_ms": 1000,
        }, format="json")
        assert res.status_code == 201, res.content
        saved[image.file_name] = _digest(mask)
        _, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        holes += int((hierarchy[0][:, 3] != -1).sum()) if hierarchy is not None else 0
    expected = {name: [digest] for name, digest in saved.items()}

    job = _export(first, user, "coco_polygons")
    polygons_path = _write(tmp_path, "polygons.json", job.file.open("rb").read())
    assert _masks_by_file(polygons_path) == expected
    print(f"\nGrabCut: {len(saved)} real masks ({holes} holes): polygon reconstruction min IoU "
          f"{job.stats['polygon_min_iou']}, pixel error {job.stats['polygon_pixel_error']}")
    assert job.stats["polygon_min_iou"] == 1.0 and job.stats["polygon_pixel_error"] == 0 and holes > 0

    second = services.project_create(name="Imported", user=user)
    services.images_upload(project=second, files=files, user=user)
    report = _post_import(api_client, second.pk, polygons_path.read_bytes()).json()
    assert report["imported"] == len(saved) and report["skipped"] == [] and report["unmatched_images"] == []
    rle_path = _write(tmp_path, "rle.json", _export(second, user, "coco").file.open("rb").read())
    assert _masks_by_file(rle_path) == expected

    with zipfile.ZipFile(_export(second, user, "sa1b").file.open("rb")) as zf:
        for name in zf.namelist():
            doc = json.loads(zf.read(name))
            (record,) = doc["annotations"]
            assert _digest(rle_to_mask(record["segmentation"])) == saved[doc["image"]["file_name"]]


def test_export_task_is_idempotent_and_reports_failures(user):
    from annotator.core.tasks import run_export

    project = project_with_photos(user=user, photos=("124080.jpg",))
    job = _export(project, user)
    name, finished = job.file.name, job.finished_at
    run_export.apply(args=[job.pk])  # a redelivered task: the finished job is left alone
    job.refresh_from_db()
    assert (job.status, job.file.name, job.finished_at) == ("done", name, finished)

    broken = services.export_start(project=project, user=user, format="coco")
    ExportJob.objects.filter(pk=broken.pk).update(format="bogus")
    run_export.apply(args=[broken.pk])
    broken.refresh_from_db()
    assert broken.status == "failed" and "unknown export format 'bogus'" in broken.error
    run_export.apply(args=[987654321])  # a job deleted meanwhile: nothing to do, no error


# ---------------------------------------------------------------- importing a zip, or the wrong file

def test_the_tools_own_coco_zip_imports_back_and_an_image_or_a_zip_without_json_says_so(api_client, user):
    """QA pass: the COCO export "with images" (a zip) was refused as "not a JSON file", and a
    JPEG sent by mistake got the JSON parser's byte dump as its reason."""
    source = services.project_create(name="Source", user=user, categories=["a"])
    files = [("one.jpg", _blank(40, 30, seed=1)), ("two.jpg", _blank(40, 30, seed=2))]
    masks = {}
    for image in services.images_upload(project=source, files=files, user=user):
        mask = np.zeros((30, 40), np.uint8)
        mask[5:20, 3 + image.pk % 7: 25] = 1
        services.annotation_create(image=image, user=user, segmentation=mask_to_rle(mask),
                                   category=source.categories.first().pk)
        masks[image.file_name] = mask
    job = _export(source, user, "coco", include_images=True)
    assert job.file.name.endswith(".zip")
    target = services.project_create(name="Target", user=user)
    services.images_upload(project=target, files=files, user=user)
    res = _post_import(api_client, target.pk, job.file.open("rb").read(), name="export.zip")
    assert res.status_code == 200, res.content
    assert res.json()["imported"] == 2 and res.json()["skipped"] == []
    for ann in Annotation.objects.filter(image__project=target).select_related("image"):
        np.testing.assert_array_equal(rle_to_mask(ann.rle), masks[ann.image.file_name])

    res = _post_import(api_client, target.pk, grabcut_photo("124080.jpg")[1], name="photo.jpg")
    assert res.status_code == 400
    reason = res.json()["file"][0]
    assert "a JPEG image, not a COCO instances JSON file" in reason and "\\x" not in reason
    empty = io.BytesIO()
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "hello")
    res = _post_import(api_client, target.pk, empty.getvalue(), name="x.zip")
    assert res.status_code == 400 and "no .json file" in res.json()["file"][0]
    assert Annotation.objects.filter(image__project=target).count() == 2  # nothing more imported
