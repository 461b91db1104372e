"""A real Celery worker process on the real Redis computes embeddings for uploads."""

import io

import pytest

from annotator.core import services
from annotator.core.models import Embedding, Image
from annotator.core.tasks import embed_image
from tests.conftest import wait_for
from tests.factories import grabcut_photo

pytestmark = pytest.mark.django_db(transaction=True)


def test_upload_is_embedded_by_the_worker(celery_worker_process, api_client, user):
    project = services.project_create(name="P", user=user)
    buf = io.BytesIO(grabcut_photo("124080.jpg")[1])
    buf.name = "124080.jpg"
    res = api_client.post(f"/api/projects/{project.pk}/images/", {"files": [buf]}, format="multipart")
    assert res.status_code == 201
    image_id = res.json()[0]["id"]

    def ready():
        status = Image.objects.get(pk=image_id).embedding_status
        assert status != "failed", Image.objects.get(pk=image_id).embedding_error
        return status == "ready"

    wait_for(ready, timeout=180, what=f"embedding of image {image_id}")
    emb = api_client.get(f"/api/images/{image_id}/embedding")
    assert emb.status_code == 200 and len(b"".join(emb.streaming_content)) == 2 * 256 * 64 * 64

    # Idempotent: the same task run again (e.g. redelivered after a worker died) stores nothing new.
    embed_image.delay(image_id)
    embed_image.delay(image_id)
    marker = services.project_create(name="marker", user=user)
    marker_buf = io.BytesIO(grabcut_photo("llama.bmp")[1])
    marker_buf.name = "llama.bmp"
    marker_id = api_client.post(f"/api/projects/{marker.pk}/images/", {"files": [marker_buf]},
                                format="multipart").json()[0]["id"]
    # The worker is single-process and FIFO: once the later upload is embedded, the reruns ran.
    wait_for(lambda: Image.objects.get(pk=marker_id).embedding_status == "ready", timeout=180, what="marker")
    assert Embedding.objects.filter(image_id=image_id).count() == 1


def test_undecodable_stored_file_fails_with_a_readable_reason(celery_worker_process, user):
    project = services.project_create(name="P", user=user)
    image = services.images_upload(project=project, files=[grabcut_photo("124080.jpg")], user=user)[0]
    wait_for(lambda: Image.objects.get(pk=image.pk).embedding_status == "ready", timeout=180, what="first embed")
    # The stored file gets corrupted on disk after upload (e.g. a broken storage backend).
    Embedding.objects.filter(image=image).delete()
    with open(image.file.path, "wb") as fh:
        fh.write(b"garbage")
    Image.objects.filter(pk=image.pk).update(embedding_status="pending")
    embed_image.delay(image.pk)
    wait_for(lambda: Image.objects.get(pk=image.pk).embedding_status == "failed", timeout=180, what="failure")
    assert "cannot decode the image" in Image.objects.get(pk=image.pk).embedding_error
