"""Access (issue 8): every API endpoint, found by walking the URL patterns, is tested for an
anonymous client (401/403, nothing changed), a user of another project (404: they never
learn the object exists) and a member writing without a CSRF token (403). A new endpoint
is covered the moment it is routed; one with a new URL argument, or one that is not
project-scoped, fails here until it is added to the tables below.

Also: pages, the schema and the admin need a login; media files are never served raw;
production settings send cookies over TLS only, with HSTS; logins are rate limited.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404

from annotator.core import api_urls, services
from annotator.core.model_runtime import current_model_id
from annotator.core.model_versions import model_version_default
from annotator.core.models import (Annotation, AnnotationEvent, Category, Embedding, ExportJob, Image, Membership,
                                   ModelVersion, Project, Proposal, RetrainJob)
from engine.rle import mask_to_rle
from tests.factories import UserFactory, project_with_photos

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("get", "post", "put", "patch", "delete")
WRITE_METHODS = ("post", "put", "patch", "delete")

# URL arguments that name an object of a project: an outsider must get 404 wherever one
# appears. Each maps to the object of the other team's project made by ``world``.
PROJECT_SCOPED_ARGS = {"project_id", "image_id", "annotation_id", "export_id", "proposal_id", "user_id", "retrain_id",
                       "category_id"}
# Endpoints with no project object in their URL, and what a signed-in outsider gets.
GLOBAL_ENDPOINTS = {
    "api-models": {"get": 200},  # the model this server runs: the same for everyone
    "api-decoder": {"get": 200},
    "api-projects": {"get": 200, "post": 400},  # lists only the user's own; the empty body is refused
}
# Top-level routes (annotator/urls.py) and what an anonymous client gets.
PAGES = {
    "project-list": ("/", 302),
    "project-new": ("/projects/new/", 302),
    "upload": ("/projects/{project_id}/upload/", 302),
    "annotate": ("/projects/{project_id}/annotate/", 302),
    "dashboard": ("/projects/{project_id}/dashboard/", 302),
    "review": ("/projects/{project_id}/review/", 302),
    "exports": ("/projects/{project_id}/exports/", 302),
    "project-settings": ("/projects/{project_id}/settings/", 302),
    "login": ("/accounts/login/", 200),
    "logout": ("/accounts/logout/", 405),  # POST only
    "api-schema": ("/api/schema/", 403),
}


def _api_patterns():
    """(name, route, view class, methods) of every pattern in api_urls, includes unfolded."""
    out = []

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                view = p.callback.view_class
                methods = [m for m in METHODS if hasattr(view, m)]
                out.append((p.name, prefix + str(p.pattern), view, methods))

    walk(api_urls.urlpatterns)
    return out


API = _api_patterns()


def _cases(kind):
    return [pytest.param(name, route, m, id=f"{name}-{m}") for name, route, _, methods in API for m in methods
            if kind == "all" or m in WRITE_METHODS]


@pytest.fixture
def world(db):
    """Another team's project with one of everything, and its owner."""
    owner = UserFactory()
    project = project_with_photos(user=owner)
    image = project.images.get()
    emb = Embedding(image=image, model_id=current_model_id(), shape=[1, 256, 64, 64], sha256="0" * 64)
    emb.file.save("access-test.f16", ContentFile(bytes(2 * 256 * 64 * 64)), save=False)
    emb.save()
    Image.objects.filter(pk=image.pk).update(embedding_status="ready")
    mask = np.zeros((image.height, image.width), np.uint8)
    mask[10:40, 10:40] = 1
    annotation = services.annotation_create(image=image, user=owner, segmentation=mask_to_rle(mask))
    export = ExportJob.objects.create(project=project, format="coco", created_by=owner, status="done")
    proposal = Proposal.objects.create(image=image, rle=mask_to_rle(mask), bbox=[10, 10, 30, 30], area=900)
    retrain = RetrainJob.objects.create(project=project, base_version=model_version_default(), created_by=owner)
    ids = {"project_id": project.pk, "image_id": image.pk, "annotation_id": annotation.pk, "export_id": export.pk,
           "proposal_id": proposal.pk, "user_id": owner.pk, "model_id": current_model_id(), "retrain_id": retrain.pk,
           "category_id": project.categories.order_by("id").first().pk}
    return owner, ids


def _url(route: str, ids: dict) -> str:
    import re

    def sub(m):
        arg = m.group(2)
        assert arg in ids, (f"URL argument {arg!r} of {route!r} is new: add it to PROJECT_SCOPED_ARGS and "
                            f"the world fixture in {__file__}")
        return str(ids[arg])

    return "/api/" + re.sub(r"<(?:(\w+):)?(\w+)>", sub, route)


def _snapshot():
    return [m.objects.count() for m in (Project, Image, Annotation, AnnotationEvent, Embedding, ExportJob,
                                        Proposal, Membership, RetrainJob, ModelVersion, Category)] + [
        list(Annotation.objects.values_list("version", "review_status")),
        list(Proposal.objects.values_list("status", flat=True)),
        list(Image.objects.values_list("embedding_status", flat=True)),
        list(Membership.objects.values_list("role", flat=True)),
        list(Category.objects.values_list("name", "color")),
    ]


def _call(client, method, url):
    """An empty body in the media type the view parses (a JSON body to a multipart-only view
    gets 415 before anything is looked up, which tells nothing but tests nothing either)."""
    view = resolve(url).func.view_class
    parsers = getattr(view, "parser_classes", None) or []
    if method == "get":
        return client.get(url)
    if any(p.media_type == "application/json" for p in parsers):
        return getattr(client, method)(url, data="{}", content_type="application/json")
    return getattr(client, method)(url, data={"name": ""})  # multipart


def test_every_api_route_is_in_a_table():
    for name, route, _, _ in API:
        args = {a for a in __import__("re").findall(r"<(?:\w+:)?(\w+)>", route)}
        assert args & PROJECT_SCOPED_ARGS or name in GLOBAL_ENDPOINTS, (
            f"{name} ({route}) has no project object in its URL: say in GLOBAL_ENDPOINTS what an outsider gets")


@pytest.mark.parametrize("name,route,method", _cases("all"))
def test_anonymous_is_refused_everywhere_and_changes_nothing(client, world, name, route, method):
    _, ids = world
    before = _snapshot()
    res = _call(client, method, _url(route, ids))
    assert res.status_code in (401, 403), (name, method, res.status_code)
    assert _snapshot() == before


@pytest.mark.parametrize("name,route,method", _cases("all"))
def test_a_user_of_another_project_gets_404_and_changes_nothing(api_client, user, world, name, route, method):
    _, ids = world
    Project.objects.create(name="mine", created_by=user)  # the outsider has a project of their own
    before = _snapshot()
    res = _call(api_client, method, _url(route, ids))
    if name in GLOBAL_ENDPOINTS:
        assert res.status_code == GLOBAL_ENDPOINTS[name][method], (name, method, res.status_code)
        if name == "api-projects" and method == "get":
            assert ids["project_id"] not in [p["id"] for p in res.json()]
        return
    assert res.status_code == 404, (name, method, res.status_code, res.content[:200])
    assert _snapshot() == before


@pytest.mark.parametrize("name,route,method", _cases("write"))
def test_session_writes_without_a_csrf_token_are_refused(world, name, route, method):
    owner, ids = world
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)  # a member (admin) of the project: only the token is missing
    before = _snapshot()
    res = _call(client, method, _url(route, ids))
    assert res.status_code == 403 and "CSRF" in res.json()["detail"], (name, method, res.status_code)
    assert _snapshot() == before


def test_every_top_level_route_needs_a_login(client, world):
    _, ids = world
    names = {p.name for p in get_resolver().url_patterns if isinstance(p, URLPattern)}
    assert names == set(PAGES), f"top-level routes changed: add them to PAGES in {__file__}"
    for name, (path, status) in PAGES.items():
        res = client.get(path.format(**ids))
        assert res.status_code == status, (name, res.status_code)
        if status == 302:
            assert res["Location"].startswith(settings.LOGIN_URL)
    res = client.get("/admin/")
    assert res.status_code == 302 and "/admin/login/" in res["Location"]


def test_pages_of_another_project_are_404(api_client, user, world):
    _, ids = world
    client = Client()
    client.force_login(user)
    for page in ("annotate", "dashboard", "review", "upload", "settings", "exports"):
        assert client.get(f"/projects/{ids['project_id']}/{page}/").status_code == 404, page
    assert f"/projects/{ids['project_id']}/annotate/".encode() not in client.get("/").content
    assert client.get("/api/schema/").status_code == 200


def test_media_files_are_never_served_raw(world):
    owner, ids = world
    client = Client()
    client.force_login(owner)
    image = Image.objects.get(pk=ids["image_id"])
    embedding = Embedding.objects.get(image=image)
    for stored in (image.file.name, embedding.file.name):
        assert (Path(settings.MEDIA_ROOT) / stored).is_file()
        with pytest.raises(Resolver404):
            resolve(settings.MEDIA_URL + stored)
        assert client.get(settings.MEDIA_URL + stored).status_code == 404  # not even for the owner
        assert client.get("/static/../media/" + stored).status_code == 404
    # The permission-checked views serve them to the owner.
    assert client.get(f"/api/images/{image.pk}/file").status_code == 200
    assert client.get(f"/api/images/{image.pk}/embedding").status_code == 200


def _production_settings(**extra) -> dict:
    code = ("import json, django; from django.conf import settings as s; django.setup(); print(json.dumps({k: "
            "getattr(s, k, None) for k in ['DEBUG', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
            "'SESSION_COOKIE_HTTPONLY', 'SECURE_HSTS_SECONDS', 'SECURE_CONTENT_TYPE_NOSNIFF', "
            "'SECURE_PROXY_SSL_HEADER', 'SECURE_SSL_REDIRECT', 'MIDDLEWARE']}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update({"DJANGO_SETTINGS_MODULE": "annotator.settings", "DJANGO_DEBUG": "0",
                "DJANGO_SECRET_KEY": "x" * 60, "DJANGO_ALLOWED_HOSTS": "annotate.example.org", **extra})
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


def test_production_settings_are_secure():
    prod = _production_settings()
    assert prod["DEBUG"] is False
    assert prod["SESSION_COOKIE_SECURE"] and prod["CSRF_COOKIE_SECURE"] and prod["SESSION_COOKIE_HTTPONLY"]
    assert prod["SECURE_HSTS_SECONDS"] >= 180 * 24 * 3600
    assert prod["SECURE_CONTENT_TYPE_NOSNIFF"]
    assert prod["MIDDLEWARE"][0] == "django.middleware.security.SecurityMiddleware"
    behind_proxy = _production_settings(DJANGO_BEHIND_TLS_PROXY="1", DJANGO_SECURE_SSL_REDIRECT="1")
    assert behind_proxy["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert behind_proxy["SECURE_SSL_REDIRECT"] is True
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update({"DJANGO_SETTINGS_MODULE": "annotator.settings", "DJANGO_DEBUG": "0"})
    no_key = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert no_key.returncode != 0 and "DJANGO_SECRET_KEY must be set" in no_key.stderr


def test_production_responses_carry_hsts_and_secure_cookies(settings, user):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    client = Client()
    res = client.get("/accounts/login/", secure=True)
    assert res["Strict-Transport-Security"].startswith("max-age=31536000")
    assert res.cookies["csrftoken"]["secure"]
    res = client.post("/accounts/login/", {"username": user.username, "password": "pw",
                                           "csrfmiddlewaretoken": res.cookies["csrftoken"].value}, secure=True)
    assert res.status_code == 302
    assert res.cookies["sessionid"]["secure"] and res.cookies["sessionid"]["httponly"]


def _login(client, username, password):
    client.get("/accounts/login/")
    return client.post("/accounts/login/", {"username": username, "password": password})


def test_logins_are_rate_limited_per_username_and_address(user):
    limit = settings.AXES_FAILURE_LIMIT
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(limit - 1):
        assert _login(attacker, user.username, "wrong").status_code == 200  # the form again, with an error
    locked = _login(attacker, user.username, "wrong")
    assert locked.status_code == 429
    assert _login(attacker, user.username, "pw").status_code == 429  # even the right password, for a while
    # The same user from their own machine is not locked out by someone else's guesses.
    own = Client(REMOTE_ADDR="198.51.100.2")
    res = _login(own, user.username, "pw")
    assert res.status_code == 302 and own.get("/api/projects/").status_code == 200


def test_a_successful_login_resets_the_failure_count(user):
    client = Client(REMOTE_ADDR="203.0.113.8")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, user.username, "wrong")
    assert _login(client, user.username, "pw").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, user.username, "wrong").status_code == 200
