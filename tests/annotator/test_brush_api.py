"""Masks edited by hand (brush / eraser on the annotate page): the annotation's prompts
record it as ``prompts.brush`` {strokes, painted, erased}; old clients that send no brush get
prompts as before; editing a saved mask with a stale version gets 409 and changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.core import services
from annotator.core.models import Annotation
from engine.rle import mask_to_rle, rle_to_mask
from tests.factories import project_with_photos

pytestmark = pytest.mark.django_db


def _mask(h, w, x0=10, x1=40):
    m = np.zeros((h, w), dtype=np.uint8)
    m[10:40, x0:x1] = 1
    return m


def test_brush_record_is_stored_and_returned(api_client, user):
    project = project_with_photos(user=user)
    image = project.images.get()
    body = {"segmentation": mask_to_rle(_mask(image.height, image.width)),
            "prompts": {"point_coords": [[20, 20]], "point_labels": [1], "box": None,
                        "brush": {"strokes": 2, "painted": 120, "erased": 30}}}
    res = api_client.post(f"/api/images/{image.pk}/annotations/", body, format="json")
    assert res.status_code == 201, res.content
    assert res.json()["prompts"]["brush"] == {"strokes": 2, "painted": 120, "erased": 30}
    assert Annotation.objects.get().prompts["brush"]["strokes"] == 2
    # An old client (no brush): the prompts are as before, with no brush key.
    res = api_client.post(f"/api/images/{image.pk}/annotations/",
                          {"segmentation": mask_to_rle(_mask(image.height, image.width, 50, 60)),
                           "prompts": {"point_coords": [[55, 20]], "point_labels": [1]}}, format="json")
    assert res.status_code == 201 and "brush" not in res.json()["prompts"]


@pytest.mark.parametrize("brush", [{"strokes": -1}, {"strokes": "two"}, [1, 2]])
def test_bad_brush_record_is_400(api_client, user, brush):
    project = project_with_photos(user=user)
    image = project.images.get()
    res = api_client.post(f"/api/images/{image.pk}/annotations/",
                          {"segmentation": mask_to_rle(_mask(image.height, image.width)),
                           "prompts": {"brush": brush}}, format="json")
    assert res.status_code == 400 and "prompts" in res.json()
    assert not Annotation.objects.exists()


def test_edited_mask_patch_and_concurrent_edit_409(api_client, user):
    project = project_with_photos(user=user)
    image = project.images.get()
    ann = services.annotation_create(image=image, user=user, segmentation=mask_to_rle(_mask(image.height, image.width)),
                                     prompts={"point_coords": [[20, 20]], "point_labels": [1], "box": None})
    url = f"/api/annotations/{ann.pk}/"
    painted = _mask(image.height, image.width, 10, 50)
    first = api_client.patch(url, {"version": 1, "segmentation": mask_to_rle(painted),
                                   "prompts": {"point_coords": [[20, 20]], "point_labels": [1], "box": None,
                                               "brush": {"strokes": 1, "painted": 300, "erased": 0}}}, format="json")
    assert first.status_code == 200, first.content
    assert first.json()["version"] == 2 and first.json()["prompts"]["brush"]["strokes"] == 1
    assert first.json()["prompts"]["point_coords"] == [[20, 20]]
    # A second editor who opened version 1 is refused, and the first edit stays.
    stale = api_client.patch(url, {"version": 1, "segmentation": mask_to_rle(_mask(image.height, image.width, 10, 20)),
                                   "prompts": {"brush": {"strokes": 1, "painted": 0, "erased": 600}}}, format="json")
    assert stale.status_code == 409
    assert stale.json()["current"]["version"] == 2 and "Someone else changed" in stale.json()["detail"]
    stored = Annotation.objects.get()
    assert stored.version == 2 and stored.area == int(painted.sum())
    assert np.array_equal(rle_to_mask(stored.rle), painted)
