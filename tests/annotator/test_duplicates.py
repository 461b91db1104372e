"""Duplicate uploads: a photo whose bytes are already in the project is not stored again.

The answer names the image it duplicates (200 when nothing was new, 201 otherwise; each
entry carries ``duplicate`` and ``upload_name``), zip members that repeat an image are
skipped and counted, two requests sending the same photo at once store it once, and the
migration fills the checksum of rows that had none.
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile

import pytest

from annotator.core import services
from annotator.core.models import Image
from tests.annotator.test_bad_input import _upload, media_files
from tests.factories import UserFactory, grabcut_photo

pytestmark = pytest.mark.django_db


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def test_the_same_photo_again_names_the_image_it_duplicates_and_stores_nothing(api_client, user):
    project = services.project_create(name="P", user=user)
    name, data = grabcut_photo("124080.jpg")
    first = _upload(api_client, project.pk, (name, data))
    assert first.status_code == 201, first.content
    (stored,) = first.json()
    assert stored["duplicate"] is False and stored["upload_name"] == name
    files_before = media_files()

    again = _upload(api_client, project.pk, ("IMG_0001 copy.jpg", data))  # other name, same bytes
    assert again.status_code == 200, again.content
    (dup,) = again.json()
    assert dup["duplicate"] is True and dup["id"] == stored["id"] and dup["file_name"] == name
    assert dup["upload_name"] == "IMG_0001 copy.jpg"
    assert dup["checksum"] == hashlib.sha256(data).hexdigest()
    assert Image.objects.filter(project=project).count() == 1
    assert media_files() == files_before  # no second copy of the file either


def test_the_same_photo_in_another_project_is_a_new_image(api_client, user):
    one = services.project_create(name="One", user=user)
    two = services.project_create(name="Two", user=user)
    photo = grabcut_photo("124080.jpg")
    assert _upload(api_client, one.pk, photo).status_code == 201
    res = _upload(api_client, two.pk, photo)
    assert res.status_code == 201 and res.json()[0]["duplicate"] is False
    assert Image.objects.filter(project=two).count() == 1


def test_zip_members_already_in_the_project_or_repeated_are_skipped_and_counted(api_client, user,
                                                                                 django_capture_on_commit_callbacks,
                                                                                 monkeypatch):
    project = services.project_create(name="P", user=user)
    old = services.images_upload(project=project, user=user, files=[grabcut_photo("124080.jpg")])[0]
    queued: list[int] = []
    monkeypatch.setattr(services, "_enqueue_embeddings", queued.extend)
    archive = _zip([("a/124080.jpg", grabcut_photo("124080.jpg")[1]),   # already in the project
                    ("a/153077.jpg", grabcut_photo("153077.jpg")[1]),   # new
                    ("b/153077-again.jpg", grabcut_photo("153077.jpg")[1]),  # repeats a member
                    ("b/65019.jpg", grabcut_photo("65019.jpg")[1])])    # new
    with django_capture_on_commit_callbacks(execute=True):
        res = _upload(api_client, project.pk, ("batch.zip", archive))
    assert res.status_code == 201, res.content
    body = res.json()
    assert [(i["upload_name"], i["duplicate"]) for i in body] == [
        ("a/124080.jpg", True), ("a/153077.jpg", False), ("b/153077-again.jpg", True), ("b/65019.jpg", False)]
    assert body[0]["id"] == old.pk and body[2]["id"] == body[1]["id"]
    assert sum(i["duplicate"] for i in body) == 2
    assert sorted(Image.objects.filter(project=project).values_list("file_name", flat=True)) == [
        "124080.jpg", "a/153077.jpg", "b/65019.jpg"]
    assert sorted(queued) == sorted([body[1]["id"], body[3]["id"]])  # only the new ones are embedded


def test_an_upload_of_nothing_but_duplicates_queues_nothing(user, monkeypatch, django_capture_on_commit_callbacks):
    project = services.project_create(name="P", user=user)
    services.images_upload(project=project, user=user, files=[grabcut_photo("124080.jpg"), grabcut_photo("llama.bmp")])
    queued: list[int] = []
    monkeypatch.setattr(services, "_enqueue_embeddings", queued.extend)
    with django_capture_on_commit_callbacks(execute=True):
        images = services.images_upload(project=project, user=user,
                                        files=[grabcut_photo("llama.bmp"), grabcut_photo("124080.jpg")])
    assert [(i.file_name, i.duplicate) for i in images] == [("llama.bmp", True), ("124080.jpg", True)]
    assert queued == [] and Image.objects.filter(project=project).count() == 2


def test_a_bad_file_beside_a_duplicate_still_refuses_the_whole_upload(api_client, user):
    project = services.project_create(name="P", user=user)
    photo = grabcut_photo("124080.jpg")
    _upload(api_client, project.pk, photo)
    res = _upload(api_client, project.pk, photo, ("new.jpg", grabcut_photo("153077.jpg")[1]),
                  ("broken.jpg", b"not an image"))
    assert res.status_code == 400 and list(res.json()) == ["broken.jpg"]
    assert Image.objects.filter(project=project).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_requests_sending_the_same_photo_at_once_store_it_once(monkeypatch):
    """Both requests pass the first check before either stores (held at a barrier); the
    second check, under the project's row lock, finds the row the first one wrote."""
    from django.db import connection

    user = UserFactory()
    project = services.project_create(name="P", user=user)
    monkeypatch.setattr(services, "_enqueue_embeddings", lambda ids: None)
    barrier = threading.Barrier(2, timeout=30)
    real_check = services._check_image

    def check_then_wait(name, data):
        checked = real_check(name, data)
        barrier.wait()  # both have decoded the photo: neither has stored it yet
        return checked

    monkeypatch.setattr(services, "_check_image", check_then_wait)
    results: dict[str, list[Image]] = {}
    errors: list[BaseException] = []

    def upload(name: str) -> None:
        try:
            results[name] = services.images_upload(project=project, user=user,
                                                   files=[(name, grabcut_photo("124080.jpg")[1])])
        except BaseException as exc:  # re-raised below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload, args=(n,)) for n in ("left.jpg", "right.jpg")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert Image.objects.filter(project=project).count() == 1
    flags = sorted(results[n][0].duplicate for n in results)
    assert flags == [False, True]
    assert results["left.jpg"][0].pk == results["right.jpg"][0].pk


def test_the_migration_fills_missing_checksums_from_the_stored_files(user):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("annotator.core.migrations.0011_image_checksum_index")
    project = services.project_create(name="P", user=user)
    image = services.images_upload(project=project, user=user, files=[grabcut_photo("124080.jpg")])[0]
    Image.objects.filter(pk=image.pk).update(checksum="")
    migration.fill_checksums(apps, None)
    assert Image.objects.get(pk=image.pk).checksum == hashlib.sha256(grabcut_photo("124080.jpg")[1]).hexdigest()
    # The filled row is found as a duplicate again.
    again = services.images_upload(project=project, user=user, files=[grabcut_photo("124080.jpg")])
    assert again[0].duplicate is True and again[0].pk == image.pk
