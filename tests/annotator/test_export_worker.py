"""An export job end to end through the API and a real Celery worker on the real Redis."""

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from annotator.core import services
from engine.rle import mask_to_rle
from tests.conftest import wait_for
from tests.factories import UserFactory, project_with_photos

pytestmark = pytest.mark.django_db(transaction=True)


def test_export_job_runs_in_the_worker_shows_progress_and_downloads(celery_worker_process, api_client, user,
                                                                     tmp_path):
    project = project_with_photos(user=user, photos=("124080.jpg", "llama.bmp"))
    masks = {}
    for image in project.images.all():
        mask = np.zeros((image.height, image.width), np.uint8)
        mask[10:60, 20:90] = 1
        mask[30:40, 40:50] = 0  # a hole
        a = services.annotation_create(image=image, user=user, segmentation=mask_to_rle(mask))
        masks[a.pk] = mask
    res = api_client.post(f"/api/projects/{project.pk}/exports/", {"format": "coco_polygons"}, format="json")
    assert res.status_code == 201, res.content
    url = res["Location"]

    def finished():
        body = api_client.get(url).json()
        assert body["status"] != "failed", body["error"]
        return body if body["status"] == "done" else None

    body = wait_for(finished, timeout=180, what="export job")
    assert body["progress"] == 1.0 and body["stats"]["annotations"] == 2
    assert body["stats"]["polygon_min_iou"] == 1.0 and body["stats"]["polygon_pixel_error"] == 0
    download = api_client.get(body["download_url"])
    assert download.status_code == 200 and download["Content-Type"] == "application/json"
    path = tmp_path / "export.json"
    path.write_bytes(b"".join(download.streaming_content))
    coco = COCO(str(path))
    for ann in coco.loadAnns(coco.getAnnIds()):
        np.testing.assert_array_equal(coco.annToMask(ann), masks[ann["id"]])

    stranger = UserFactory()
    api_client.force_login(stranger)
    assert api_client.get(url).status_code == 404
    assert api_client.get(body["download_url"]).status_code == 404
    json.loads(path.read_text())  # well-formed JSON as a whole, not only per record


def test_worker_exports_of_colliding_file_names_keep_every_image(celery_worker_process, api_client, user):
    """photo.jpg/photo.png, a/same.jpg/b/same.jpg (one zip), A.jpg/a.jpg through the API and the
    worker in every zip format: unique member names, each image's masks under its own name."""
    import io
    import zipfile

    from tests.annotator.test_export_names import _colliding_project, check_coco, check_png, check_sa1b

    project, saved = _colliding_project(user)
    for fmt, check in (("sa1b", check_sa1b), ("png", check_png), ("coco", check_coco)):
        res = api_client.post(f"/api/projects/{project.pk}/exports/", {"format": fmt, "include_images": True},
                              format="json")
        assert res.status_code == 201, res.content
        url = res["Location"]

        def finished():
            body = api_client.get(url).json()
            assert body["status"] != "failed", body["error"]
            return body if body["status"] == "done" else None

        body = wait_for(finished, timeout=180, what=f"{fmt} export job")
        download = api_client.get(body["download_url"])
        assert download.status_code == 200
        with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as zf:
            check(zf, saved)
