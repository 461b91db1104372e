"""Two tabs of one user on one image: each page sends its own lease token.

The newest tab takes the lease; the older one's heartbeat is told (409 ``lease_elsewhere``)
instead of renewing a lease it no longer holds; a tab leaving the image does not end the
other tab's hold; clients that send no token keep the old behaviour (one lease per user).
"""

from __future__ import annotations

import pytest

from annotator.core import workflow
from annotator.core.models import Image
from tests.annotator.test_workflow import client_for, mask_body, team

pytestmark = pytest.mark.django_db

A, B = "tab-a-0123456789", "tab-b-0123456789"


def _lease(client, image: Image, **body):
    return client.post(f"/api/images/{image.pk}/lease", body, format="json")


def _release(client, image: Image, token: str | None = None):
    suffix = f"?token={token}" if token is not None else ""
    return client.delete(f"/api/images/{image.pk}/lease{suffix}")


def _state(image: Image) -> tuple[str | None, str]:
    image.refresh_from_db()
    holder = image.lease_holder.username if workflow.lease_is_active(image) else None
    return holder, image.lease_token if holder else ""


def test_the_newest_tab_holds_the_lease_and_the_older_one_is_told_at_its_next_renew():
    project, people = team(photos=("124080.jpg",))
    image = project.images.get()
    browser = client_for(people["ann0"])  # one browser, one session, two tabs

    assert _lease(browser, image, token=A).status_code == 200
    assert _lease(browser, image, token=A, renew=True).status_code == 200  # its heartbeat
    assert _lease(browser, image, token=B).status_code == 200  # the second tab opens the image
    assert _state(image) == ("ann0", B)

    res = _lease(browser, image, token=A, renew=True)  # the first tab's next heartbeat
    assert res.status_code == 409
    body = res.json()
    assert body["code"] == "lease_elsewhere" and "another tab" in body["detail"]
    assert body["lease"]["holder"] == "ann0"
    assert _state(image) == ("ann0", B)  # not taken back

    # The first tab leaves the image: the second tab's hold stays.
    assert _release(browser, image, A).status_code == 204
    assert _state(image) == ("ann0", B)
    # "Work here" in the first tab (an open, not a renew) takes it over again.
    assert _lease(browser, image, token=A).status_code == 200
    assert _state(image) == ("ann0", A)
    assert _release(browser, image, A).status_code == 204
    assert _state(image) == (None, "")


def test_a_tab_leaving_the_image_frees_it_and_the_other_tab_takes_it_back_at_its_renew():
    """The case of the bug report: the tab that holds the lease leaves; the other, whose bar
    still said "yours", renews: the lease is free, so it is its own again (not a 409)."""
    project, people = team(photos=("124080.jpg",))
    image = project.images.get()
    browser = client_for(people["ann0"])
    _lease(browser, image, token=A)
    _lease(browser, image, token=B)
    assert _release(browser, image, B).status_code == 204
    assert _state(image) == (None, "")
    assert _lease(browser, image, token=A, renew=True).status_code == 200
    assert _state(image) == ("ann0", A)


def test_another_users_lease_is_a_conflict_whatever_the_tokens():
    project, people = team(photos=("124080.jpg",))
    image = project.images.get()
    assert _lease(client_for(people["ann0"]), image, token=A).status_code == 200
    other = client_for(people["ann1"])
    res = _lease(other, image, token=B)
    assert res.status_code == 409 and res.json()["lease"]["holder"] == "ann0" and "code" not in res.json()
    assert _release(other, image, A).status_code == 403  # knowing the token gives no right
    assert other.post(f"/api/images/{image.pk}/annotations/", mask_body(image), format="json").status_code == 409
    # A manager still breaks it, token or not.
    assert _release(client_for(people["manager"]), image, B).status_code == 204
    assert _state(image) == (None, "")


def test_clients_without_a_token_keep_one_lease_per_user():
    project, people = team(photos=("124080.jpg",))
    image = project.images.get()
    old_client = client_for(people["ann0"])
    assert old_client.post(f"/api/images/{image.pk}/lease").status_code == 200  # no body at all
    assert _state(image) == ("ann0", "")
    assert _lease(old_client, image, token=A, renew=True).status_code == 200  # a tokenless lease is anyone's of theirs
    assert _state(image) == ("ann0", A)
    assert old_client.post(f"/api/images/{image.pk}/lease").status_code == 200  # renews whatever page held it
    _lease(old_client, image, token=B)
    assert _release(old_client, image).status_code == 204  # no token: released whatever page held it
    assert _state(image) == (None, "")


def test_the_queue_keeps_the_page_of_a_lease_it_hands_out_again():
    project, people = team(photos=("124080.jpg", "153077.jpg"))
    browser = client_for(people["ann0"])
    first = browser.post(f"/api/projects/{project.pk}/queue/next").json()
    image = Image.objects.get(pk=first["id"])
    assert _state(image) == ("ann0", "")
    _lease(browser, image, token=A)
    again = browser.post(f"/api/projects/{project.pk}/queue/next").json()  # e.g. a second tab's /annotate/
    assert again["id"] == image.pk and _state(image) == ("ann0", A)


@pytest.mark.parametrize("body,field", [({"token": "short"}, "token"), ({"token": "has spaces in it"}, "token"),
                                        ({"token": "x" * 65}, "token"), ({"renew": "sometimes"}, "renew")])
def test_a_bad_token_or_renew_flag_is_a_field_error(body, field):
    project, people = team(photos=("124080.jpg",))
    image = project.images.get()
    browser = client_for(people["ann0"])
    res = _lease(browser, image, **body)
    assert res.status_code == 400 and field in res.json(), res.content
    assert _state(image) == (None, "")
    assert _release(browser, image, "bad token!").status_code == 400
