"""The annotate page tells the frontend what the member's role allows: a reviewer (view,
no annotate) gets a read-only page and a link to the review page; opening the page takes
no lease for them. The API keeps refusing their writes (tests/annotator/test_roles.py)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from annotator.core import services
from annotator.core.models import Image
from tests.factories import UserFactory, project_with_photos

pytestmark = pytest.mark.django_db


def _app_attrs(html: str) -> dict[str, str]:
    tag = re.search(r'<div id="app"([^>]*)>', html, re.S)
    assert tag, html
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', tag.group(1)))


@pytest.fixture
def world():
    owner = UserFactory(username="owner")
    project = project_with_photos(user=owner, photos=("124080.jpg", "153077.jpg"))
    people = {}
    for role in ("reviewer", "annotator", "manager"):
        people[role] = UserFactory(username=f"the-{role}")
        services.project_add_member(project=project, user=people[role], role=role)
    return project, people


def _page(user, url: str):
    client = Client()
    client.force_login(user)
    return client.get(url)


@pytest.mark.parametrize("role, may_annotate, may_review", [
    ("reviewer", "false", "true"), ("annotator", "true", "false"), ("manager", "true", "true"),
])
def test_the_page_says_what_the_role_may_do(world, role, may_annotate, may_review):
    project, people = world
    image = project.images.order_by("id").first()
    resp = _page(people[role], f"/projects/{project.pk}/annotate/?image={image.pk}")
    assert resp.status_code == 200
    attrs = _app_attrs(resp.content.decode())
    assert attrs["role"] == role
    assert attrs["may-annotate"] == may_annotate
    assert attrs["may-review"] == may_review
    assert attrs.get("review-url") == (f"/projects/{project.pk}/review/" if may_review == "true" else None)


def test_a_reviewer_opens_the_first_image_without_a_lease(world):
    project, people = world
    first = project.images.order_by("id").first()
    resp = _page(people["reviewer"], f"/projects/{project.pk}/annotate/")
    assert resp.status_code == 302 and resp["Location"].endswith(f"?image={first.pk}")
    assert not Image.objects.filter(project=project, lease_holder__isnull=False).exists()


def test_a_superuser_who_is_no_member_may_annotate(world):
    project, _ = world
    admin = UserFactory(username="site-admin", is_superuser=True, is_staff=True)
    image = project.images.order_by("id").first()
    attrs = _app_attrs(_page(admin, f"/projects/{project.pk}/annotate/?image={image.pk}").content.decode())
    assert attrs["may-annotate"] == "true" and attrs["role"] == ""
