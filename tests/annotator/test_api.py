"""API tests on the real PostgreSQL: upload, embedding, decoder, annotations, export."""

import io
import json

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image as PILImage
from pycocotools.coco import COCO

import engine
from annotator.core import services
from annotator.core.models import Annotation, AnnotationEvent, Embedding, Image
from engine.onnx_browser import browser_feeds
from engine.rle import mask_to_rle, rle_to_mask
from tests.factories import UserFactory, grabcut_photo, project_with_photos

pytestmark = pytest.mark.django_db


def _upload(client, project_id, *files):
    payload = {"files": [io.BytesIO(data) for _, data in files]}
    for buf, (name, _) in zip(payload["files"], files):
        buf.name = name
    return client.post(f"/api/projects/{project_id}/images/", payload, format="multipart")


def _mask(h, w):
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4: h // 2, w // 3: w // 2] = 1
    return mask


def test_project_create_and_list(api_client):
    res = api_client.post("/api/projects/", {"name": "Birds", "categories": ["bird", "nest"]}, format="json")
    assert res.status_code == 201, res.content
    assert [c["name"] for c in res.json()["categories"]] == ["bird", "nest"]
    listed = api_client.get("/api/projects/").json()
    assert [p["name"] for p in listed] == ["Birds"]


def test_upload_many_photos_stores_sizes_and_pending_status(api_client, user):
    project = services.project_create(name="P", user=user)
    res = _upload(api_client, project.pk, grabcut_photo("124080.jpg"), grabcut_photo("llama.bmp"))
    assert res.status_code == 201, res.content
    body = res.json()
    assert [(i["file_name"], i["width"], i["height"]) for i in body] == [("124080.jpg", 481, 321), ("llama.bmp", 513, 371)]
    assert all(i["embedding_status"] == "pending" for i in body)
    file_res = api_client.get(body[0]["file_url"])
    assert file_res.status_code == 200
    assert b"".join(file_res.streaming_content) == grabcut_photo("124080.jpg")[1]


@pytest.mark.parametrize("name,data,message", [
    ("empty.jpg", b"", "empty"),
    ("text.jpg", b"this is not an image at all", "not a recognised image format"),
    ("truncated.jpg", grabcut_photo("124080.jpg")[1][:5000], "not a readable image"),
])
def test_bad_upload_is_refused_whole_with_a_clear_error(api_client, user, name, data, message):
    project = services.project_create(name="P", user=user)
    res = _upload(api_client, project.pk, grabcut_photo("124080.jpg"), (name, data))
    assert res.status_code == 400
    assert message in " ".join(res.json()[name])
    assert Image.objects.count() == 0  # the good file was not half-stored either


def test_exif_rotated_photo_reports_the_size_the_user_sees(api_client, user):
    img = PILImage.new("RGB", (60, 40), (200, 10, 10))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    project = services.project_create(name="P", user=user)
    res = _upload(api_client, project.pk, ("rotated.jpg", buf.getvalue()))
    assert res.status_code == 201
    assert (res.json()[0]["width"], res.json()[0]["height"]) == (40, 60)
    shown = PILImage.open(io.BytesIO(b"".join(api_client.get(res.json()[0]["file_url"]).streaming_content)))
    assert shown.size == (40, 60)


def test_embedding_pending_then_binary_fp16_with_etag(api_client, user):
    project = project_with_photos(user=user)
    image = project.images.get()
    url = f"/api/images/{image.pk}/embedding"
    pending = api_client.get(url)
    assert pending.status_code == 409 and pending.json()["embedding_status"] == "pending"
    services.embedding_compute(image=image)
    services.embedding_compute(image=image)  # idempotent
    assert Embedding.objects.filter(image=image).count() == 1
    res = api_client.get(url, HTTP_ACCEPT="application/octet-stream")
    assert res.status_code == 200
    data = b"".join(res.streaming_content)
    assert len(data) == 256 * 64 * 64 * 2
    assert res["X-Embedding-Dtype"] == "float16" and res["X-Embedding-Shape"] == "1,256,64,64"
    assert "private" in res["Cache-Control"]
    etag = res["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert api_client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    emb = engine.embedding_from_bytes(data)
    assert np.isfinite(emb).all() and emb.std() > 0
    detail = api_client.get(f"/api/images/{image.pk}/").json()
    assert detail["embedding_status"] == "ready" and detail["model_id"] == res["X-Model-Id"]


def test_decoder_onnx_runs_on_the_served_embedding(api_client, user):
    project = project_with_photos(user=user)
    image = project.images.get()
    services.embedding_compute(image=image)
    models = api_client.get("/api/models/").json()
    res = api_client.get(models[0]["decoder_url"])
    assert res.status_code == 200
    onnx_bytes = b"".join(res.streaming_content)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    emb = engine.embedding_from_bytes(b"".join(api_client.get(f"/api/images/{image.pk}/embedding").streaming_content))
    masks, iou, low = session.run(None, engine.decoder_feeds(emb, (image.height, image.width),
                                                            point_coords=[[240, 160]], point_labels=[1]))
    assert masks.shape == (1, 4, image.height, image.width) and iou.shape == (1, 4)
    assert api_client.get("/api/models/nope-123/decoder.onnx").status_code == 404


def test_browser_decoder_graph_is_served_and_agrees_with_the_contract(api_client, user):
    """?graph=browser: the page's graph (low-res outputs only) gives the contract graph's logits."""
    project = project_with_photos(user=user)
    image = project.images.get()
    services.embedding_compute(image=image)
    url = api_client.get("/api/models/").json()[0]["decoder_url"]
    sessions = {}
    for graph in ("contract", "browser"):
        res = api_client.get(f"{url}?graph={graph}")
        assert res.status_code == 200
        sessions[graph] = ort.InferenceSession(b"".join(res.streaming_content), providers=["CPUExecutionProvider"])
    assert res["ETag"] != api_client.get(url)["ETag"]  # the two graphs are cached apart
    emb = engine.embedding_from_bytes(b"".join(api_client.get(f"/api/images/{image.pk}/embedding").streaming_content))
    feeds = engine.decoder_feeds(emb, (image.height, image.width), point_coords=[[240, 160]], point_labels=[1])
    _, iou, low = sessions["contract"].run(None, feeds)
    assert [o.name for o in sessions["browser"].get_outputs()] == ["iou_predictions", "low_res_masks"]
    b_iou, b_low = sessions["browser"].run(None, browser_feeds(feeds))
    np.testing.assert_allclose(b_iou, iou, atol=1e-5)
    np.testing.assert_allclose(b_low, low, atol=1e-3)
    res = api_client.get(f"{url}?graph=fast")
    assert res.status_code == 400 and "graph must be one of contract, browser" in res.json()["detail"]


def test_annotation_create_validates_rle_and_prompts(api_client, user):
    project = project_with_photos(user=user)
    image = project.images.get()
    cat = project.categories.first()
    rle = mask_to_rle(_mask(image.height, image.width))
    body = {"category": cat.pk, "segmentation": rle,
            "prompts": {"point_coords": [[200, 100]], "point_labels": [1], "box": None},
            "predicted_iou": 0.9, "candidate_index": 2, "model_id": "m", "active_ms": 4200}
    res = api_client.post(f"/api/images/{image.pk}/annotations/", body, format="json")
    assert res.status_code == 201, res.content
    ann = res.json()
    assert ann["area"] == int(_mask(image.height, image.width).sum())
    assert ann["bbox"] == [160.0, 80.0, 80.0, 80.0] and ann["version"] == 1
    event = AnnotationEvent.objects.get()
    assert (event.positive_clicks, event.negative_clicks, event.active_ms) == (1, 0, 4200)

    wrong_size = dict(body, segmentation=mask_to_rle(np.ones((10, 10), np.uint8)))
    res = api_client.post(f"/api/images/{image.pk}/annotations/", wrong_size, format="json")
    assert res.status_code == 400 and "does not match the image size" in res.json()["segmentation"][0]
    broken = dict(body, segmentation={"size": [image.height, image.width], "counts": "abc"})
    res = api_client.post(f"/api/images/{image.pk}/annotations/", broken, format="json")
    assert res.status_code == 400 and "segmentation" in res.json()
    huge = dict(body, active_ms=10**30)
    res = api_client.post(f"/api/images/{image.pk}/annotations/", huge, format="json")
    assert res.status_code == 400 and "active_ms" in res.json()
    res = api_client.post(f"/api/images/{image.pk}/annotations/", dict(body, category=2**63), format="json")
    assert res.status_code == 400 and "category" in res.json()
    outside = dict(body, prompts={"point_coords": [[5000, 10]], "point_labels": [1]})
    res = api_client.post(f"/api/images/{image.pk}/annotations/", outside, format="json")
    assert res.status_code == 400 and "outside" in res.json()["prompts"][0]
    assert Annotation.objects.count() == 1


def test_csrf_is_enforced(user):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    res = client.post("/api/projects/", {"name": "x"}, format="json")
    assert res.status_code == 403 and "CSRF" in res.json()["detail"]


def test_stale_edit_gets_409_with_the_current_version(api_client, user):
    project = project_with_photos(user=user)
    image = project.images.get()
    ann = services.annotation_create(image=image, user=user, segmentation=mask_to_rle(_mask(image.height, image.width)))
    url = f"/api/annotations/{ann.pk}/"
    first = api_client.patch(url, {"version": 1, "category": project.categories.first().pk}, format="json")
    assert first.status_code == 200 and first.json()["version"] == 2
    noop = api_client.patch(url, {"version": 2}, format="json")
    assert noop.status_code == 200 and noop.json()["version"] == 2  # nothing changed, no new version
    stale = api_client.patch(url, {"version": 1, "category": None}, format="json")
    assert stale.status_code == 409
    assert stale.json()["current"]["version"] == 2
    assert Annotation.objects.get().category_id == project.categories.first().pk


def test_other_projects_are_invisible_and_anonymous_is_refused(api_client, user, client):
    other = UserFactory()
    project = project_with_photos(user=other)
    image = project.images.get()
    ann = services.annotation_create(image=image, user=other, segmentation=mask_to_rle(_mask(image.height, image.width)))
    for url in [f"/api/projects/{project.pk}/", f"/api/projects/{project.pk}/images/",
                f"/api/images/{image.pk}/", f"/api/images/{image.pk}/file", f"/api/images/{image.pk}/embedding",
                f"/api/images/{image.pk}/annotations/", f"/api/annotations/{ann.pk}/",
                f"/api/projects/{project.pk}/export/coco"]:
        assert api_client.get(url).status_code == 404, url
        assert client.get(url).status_code in (401, 403), url
    assert api_client.get("/api/projects/").json() == []
    assert client.get(f"/projects/{project.pk}/annotate/").status_code == 302  # to the login page


def test_coco_export_loads_in_pycocotools_and_decodes_to_the_saved_pixels(api_client, user, tmp_path):
    project = project_with_photos(user=user, photos=("124080.jpg", "llama.bmp"))
    masks = {}
    for image in project.images.all():
        mask = _mask(image.height, image.width)
        services.annotation_create(image=image, user=user, segmentation=mask_to_rle(mask),
                                   category=project.categories.first().pk)
        masks[image.pk] = mask
    res = api_client.get(f"/api/projects/{project.pk}/export/coco")
    assert res.status_code == 200 and "attachment" in res["Content-Disposition"]
    path = tmp_path / "coco.json"
    path.write_bytes(res.content)
    coco = COCO(str(path))
    assert len(coco.getAnnIds()) == 2
    for ann in coco.loadAnns(coco.getAnnIds()):
        np.testing.assert_array_equal(coco.annToMask(ann), masks[ann["image_id"]])
        assert ann["area"] == masks[ann["image_id"]].sum() and ann["iscrowd"] == 0
        img = coco.imgs[ann["image_id"]]
        assert coco.annToMask(ann).shape == (img["height"], img["width"])


def test_openapi_schema(api_client):
    res = api_client.get("/api/schema/")
    assert res.status_code == 200 and b"/api/images/{image_id}/embedding" in res.content


def test_pages_are_cross_origin_isolated(client, user):
    client.force_login(user)
    project = project_with_photos(user=user)
    res = client.get(f"/projects/{project.pk}/annotate/", follow=True)
    assert res.status_code == 200
    assert res["Cross-Origin-Opener-Policy"] == "same-origin"
    assert res["Cross-Origin-Embedder-Policy"] == "require-corp"
    assert b'id="app"' in res.content


def test_deleting_a_project_deletes_its_labelled_masks(user):
    from django.db.models import RESTRICT  # noqa: F401  (documents the on_delete rule)

    from annotator.core.models import Category, Project

    project = project_with_photos(user=user)
    image = project.images.get()
    cat = project.categories.first()
    services.annotation_create(image=image, user=user, category=cat.pk,
                               segmentation=mask_to_rle(_mask(image.height, image.width)))
    # A category still used by a mask cannot be deleted on its own...
    from django.db.models.deletion import RestrictedError

    with pytest.raises(RestrictedError):
        Category.objects.get(pk=cat.pk).delete()
    # ...but the whole project can.
    project.delete()
    assert not Project.objects.exists() and not Annotation.objects.exists()


def test_an_embedding_of_a_replaced_model_is_recomputed(api_client, user, monkeypatch,
                                                        django_capture_on_commit_callbacks):
    project = project_with_photos(user=user)
    image = project.images.get()
    services.embedding_compute(image=image)
    Embedding.objects.filter(image=image).update(model_id="default-oldoldoldold")
    queued = []
    monkeypatch.setattr(services, "_enqueue_embeddings", queued.extend)
    with django_capture_on_commit_callbacks(execute=True):
        res = api_client.get(f"/api/images/{image.pk}/embedding")
    assert res.status_code == 409 and res.json()["embedding_status"] == "pending"
    assert queued == [image.pk]
    image.refresh_from_db()
    assert image.embedding_status == "pending"
    services.embedding_compute(image=image)
    assert api_client.get(f"/api/images/{image.pk}/embedding").status_code == 200
