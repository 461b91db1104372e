"""A save retried by the browser (its first answer was lost) stores one annotation: the
``client_key`` idempotency key (issue 8, "no lost work")."""

import numpy as np
import pytest

from annotator.core import services
from annotator.core.models import Annotation, AnnotationEvent
from engine.rle import mask_to_rle
from tests.factories import UserFactory, project_with_photos

pytestmark = pytest.mark.django_db


def _body(image, key="k3y-0123456789abcdef"):
    mask = np.zeros((image.height, image.width), np.uint8)
    mask[20:60, 30:90] = 1
    return {"segmentation": mask_to_rle(mask), "prompts": {"point_coords": [[50, 40]], "point_labels": [1]},
            "client_key": key, "active_ms": 1200}


def test_a_retried_save_returns_the_first_annotation_and_stores_nothing_new(api_client, user):
    image = project_with_photos(user=user).images.get()
    url = f"/api/images/{image.pk}/annotations/"
    first = api_client.post(url, _body(image), format="json")
    assert first.status_code == 201 and first.json()["client_key"] == "k3y-0123456789abcdef"
    again = api_client.post(url, _body(image), format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert Annotation.objects.count() == 1 and AnnotationEvent.objects.count() == 1
    other = api_client.post(url, _body(image, key="another-key-123"), format="json")
    assert other.status_code == 201 and Annotation.objects.count() == 2


def test_a_replay_succeeds_even_after_the_image_moved_on(api_client, user):
    from annotator.core import workflow

    image = project_with_photos(user=UserFactory()).images.get()
    services.project_add_member(project=image.project, user=user, role="annotator")
    url = f"/api/images/{image.pk}/annotations/"
    first = api_client.post(url, _body(image), format="json")
    assert first.status_code == 201
    workflow.image_mark_done(user=user, image=image)  # no more saves on it...
    assert api_client.post(url, _body(image, key="a-new-mask-0001"), format="json").status_code == 409
    again = api_client.post(url, _body(image), format="json")  # ...but the lost answer can be had again
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_keys_belong_to_their_author(api_client, user):
    image = project_with_photos(user=user).images.get()
    colleague = UserFactory()
    services.project_add_member(project=image.project, user=colleague)
    theirs = services.annotation_create(image=image, user=colleague, segmentation=_body(image)["segmentation"],
                                        client_key="k3y-0123456789abcdef")
    mine = api_client.post(f"/api/images/{image.pk}/annotations/", _body(image), format="json")
    assert mine.status_code == 201 and mine.json()["id"] != theirs.pk


@pytest.mark.parametrize("key", ["short", "has spaces in it", "x" * 65, "semi;colon-key"])
def test_malformed_keys_are_refused(api_client, user, key):
    image = project_with_photos(user=user).images.get()
    res = api_client.post(f"/api/images/{image.pk}/annotations/", _body(image, key=key), format="json")
    assert res.status_code == 400 and "client_key" in res.json()
    assert not Annotation.objects.exists()
