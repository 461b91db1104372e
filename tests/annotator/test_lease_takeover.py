"""A manager or admin takes over an image's lease from whoever holds it (the annotate page's
"Take over": ``POST /api/images/<id>/lease {"takeover": true}``); annotators and reviewers
may not (403), and without ``takeover`` nobody takes a held lease by opening the image.
The former holder's page is refused at its next renew and mask write (409 naming the new
holder)."""

from __future__ import annotations

import pytest

from annotator.core import workflow
from annotator.core.models import Image
from annotator.core.permissions import Action, roles_for
from tests.annotator.test_workflow import client_for, mask_body, team

pytestmark = pytest.mark.django_db

PAGE_A, PAGE_M = "page-ann-0123456789", "page-mgr-0123456789"


def _lease(client, image: Image, **body):
    return client.post(f"/api/images/{image.pk}/lease", body, format="json")


def _holder(image: Image) -> str | None:
    image.refresh_from_db()
    return image.lease_holder.username if workflow.lease_is_active(image) else None


def test_only_managers_and_admins_may_take_over():
    assert roles_for(Action.ASSIGN) == {"admin", "manager"}


@pytest.mark.parametrize("who", ["manager", "admin"])
def test_a_manager_or_admin_takes_over_and_the_former_holder_is_refused(who):
    project, people = team(photos=("124080.jpg",))
    image = project.images.get()
    ann = client_for(people["ann0"])
    assert _lease(ann, image, token=PAGE_A).status_code == 200
    boss = client_for(people[who])

    # Opening the image does not take it from its holder.
    res = _lease(boss, image, token=PAGE_M)
    assert res.status_code == 409 and res.json()["lease"]["holder"] == "ann0"
    assert _holder(image) == "ann0"

    res = _lease(boss, image, token=PAGE_M, takeover=True)
    assert res.status_code == 200, res.content
    assert res.json()["holder"] == people[who].username
    assert _holder(image) == people[who].username
    image.refresh_from_db()
    assert image.lease_token == PAGE_M

    # The former holder's heartbeat and mask write: 409 naming the new holder.
    res = _lease(ann, image, token=PAGE_A, renew=True)
    assert res.status_code == 409 and res.json()["lease"]["holder"] == people[who].username
    res = ann.post(f"/api/images/{image.pk}/annotations/", mask_body(image), format="json")
    assert res.status_code == 409 and res.json()["lease"]["holder"] == people[who].username
    # The new holder works: its renew and its mask write go through.
    assert _lease(boss, image, token=PAGE_M, renew=True).status_code == 200
    assert boss.post(f"/api/images/{image.pk}/annotations/", mask_body(image), format="json").status_code == 201


@pytest.mark.parametrize("who", ["ann1", "reviewer"])
def test_annotators_and_reviewers_may_not_take_over(who):
    project, people = team(photos=("124080.jpg",))
    image = project.images.get()
    assert _lease(client_for(people["ann0"]), image, token=PAGE_A).status_code == 200
    res = _lease(client_for(people[who]), image, token=PAGE_M, takeover=True)
    assert res.status_code == 403
    assert _holder(image) == "ann0"
    image.refresh_from_db()
    assert image.lease_token == PAGE_A


def test_takeover_of_a_free_or_own_lease_is_a_plain_take():
    project, people = team(photos=("124080.jpg",))
    image = project.images.get()
    ann = client_for(people["ann0"])
    # An annotator's takeover=true on a free image: nothing to take over, just a take.
    assert _lease(ann, image, token=PAGE_A, takeover=True).status_code == 200
    assert _holder(image) == "ann0"
    # And on their own lease from another tab: the newest tab, as without it.
    assert _lease(ann, image, token=PAGE_M, takeover=True).status_code == 200
    image.refresh_from_db()
    assert image.lease_token == PAGE_M


def test_takeover_input_is_validated():
    project, people = team(photos=("124080.jpg",))
    image = project.images.get()
    res = _lease(client_for(people["manager"]), image, token=PAGE_M, takeover="maybe")
    assert res.status_code == 400 and "takeover" in res.json()
