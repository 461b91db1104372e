"""Creating a project and uploading images in the browser: ``POST /api/projects/`` with
category colours, a model version and pre-fill on/off (all or nothing, field errors); the
"New project" page; the per-project upload page and who sees it (the ``settings`` action of
permissions.py, as ``POST /api/projects/<id>/images/`` requires); the project list's links.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from annotator.core import services
from annotator.core.models import Category, Membership, ModelVersion, Project
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _version(promoted: bool = True) -> ModelVersion:
    return ModelVersion.objects.create(model_id="vit_b-aaaaaaaaaaaa", name="SAM ViT-B (test)", architecture="vit_b",
                                       source="installed", promoted=promoted)


def _page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# ---------------------------------------------------------------- the API

def test_create_with_coloured_categories_a_model_version_and_prefill(api_client, user):
    version = _version()
    res = api_client.post("/api/projects/", {
        "name": "  Street  ",
        "categories": [{"name": "car", "color": "#123abc"}, "person", {"name": "bike"}, {"name": "car", "color": "#000000"}],
        "model_version": version.pk, "prefill_enabled": True,
    }, format="json")
    assert res.status_code == 201, res.content
    body = res.json()
    assert body["name"] == "Street" and body["model_id"] == "vit_b-aaaaaaaaaaaa" and body["prefill_enabled"] is True
    assert body["role"] == "admin" and "settings" in body["actions"]
    cats = [(c["name"], c["color"]) for c in body["categories"]]
    assert cats[0] == ("car", "#123abc")
    assert [n for n, _ in cats] == ["car", "person", "bike"]  # the repeated "car" is skipped
    assert all(c.startswith("#") and len(c) == 7 for _, c in cats)  # palette colours for the others
    project = Project.objects.get(pk=body["id"])
    assert project.model_version == version and project.prefill_enabled is True
    assert Membership.objects.get(project=project).user == user


def test_create_defaults_follow_the_server(api_client, settings):
    settings.ANNOTATOR_PREFILL_DEFAULT = False
    res = api_client.post("/api/projects/", {"name": "Plain", "categories": ["a"]}, format="json")
    assert res.status_code == 201, res.content
    project = Project.objects.get(pk=res.json()["id"])
    assert project.model_version is None and project.prefill_enabled is False
    settings.ANNOTATOR_PREFILL_DEFAULT = True
    res = api_client.post("/api/projects/", {"name": "Null", "model_version": None, "prefill_enabled": None}, format="json")
    assert res.status_code == 201, res.content
    project = Project.objects.get(pk=res.json()["id"])
    assert project.model_version is None and project.prefill_enabled is True


@pytest.mark.parametrize("payload,field,message", [
    ({"name": ""}, "name", "may not be blank"),
    ({"name": "   "}, "name", "may not be blank"),  # DRF trims first
    ({"name": "x" * 201}, "name", "no more than 200"),
    ({"name": "P", "categories": ["ok", {"name": "bad", "color": "red"}]}, "categories", "#rrggbb"),
    ({"name": "P", "categories": [{"color": "#123456"}]}, "categories", "required"),
    ({"name": "P", "categories": [7]}, "categories", "A category is a name or"),
    ({"name": "P", "categories": ["y" * 101]}, "categories", "no more than 100"),
    ({"name": "P", "categories": "cat"}, "categories", "list"),
    ({"name": "P", "model_version": 10**9}, "model_version", "No model version"),
    ({"name": "P", "model_version": "abc"}, "model_version", "valid integer"),
    ({"name": "P", "prefill_enabled": "perhaps"}, "prefill_enabled", "valid boolean"),
])
def test_create_refuses_bad_input_with_the_field_and_stores_nothing(api_client, payload, field, message):
    res = api_client.post("/api/projects/", payload, format="json")
    assert res.status_code == 400, res.content
    assert field in res.json() and message in json.dumps(res.json()), res.json()
    assert Project.objects.count() == 0 and Category.objects.count() == 0


def test_a_category_error_is_keyed_by_its_index(api_client):
    res = api_client.post("/api/projects/", {"name": "P", "categories": ["ok", {"name": "b", "color": "#12345"}]},
                          format="json")
    assert res.status_code == 400
    assert res.json() == {"categories": {"1": {"color": ["A colour is #rrggbb, e.g. #e6194b."]}}}


def test_create_refuses_a_version_that_is_not_promoted(api_client):
    version = _version(promoted=False)
    res = api_client.post("/api/projects/", {"name": "P", "model_version": version.pk}, format="json")
    assert res.status_code == 400 and "not promoted" in res.json()["model_version"][0]
    assert Project.objects.count() == 0


def test_the_service_checks_colours_itself(user):
    with pytest.raises(services.ValidationError) as info:
        services.project_create(name="P", user=user, categories=[{"name": "a", "color": "blue"}])
    assert "categories" in info.value.errors
    assert Project.objects.count() == 0


# ---------------------------------------------------------------- pages

def test_new_project_page_for_any_signed_in_user(user):
    res = _page_client(user).get("/projects/new/")
    assert res.status_code == 200
    html = res.content.decode()
    assert 'id="project-form"' in html and "app/projectNew.js" in html
    assert 'id="category-palette"' in html and services.PALETTE[0] in html
    assert 'data-upload-url="/projects/0/upload/"' in html


def test_new_project_page_checks_prefill_as_the_server_default(user, settings):
    settings.ANNOTATOR_PREFILL_DEFAULT = True
    assert 'id="project-prefill" checked' in _page_client(user).get("/projects/new/").content.decode()
    settings.ANNOTATOR_PREFILL_DEFAULT = False
    assert 'id="project-prefill" checked' not in _page_client(user).get("/projects/new/").content.decode()


@pytest.fixture
def team(db):
    owner = UserFactory()
    project = services.project_create(name="Team", user=owner, categories=["a"], prefill_enabled=True)
    members = {"admin": owner}
    for role in ("manager", "reviewer", "annotator"):
        members[role] = UserFactory()
        services.project_add_member(project=project, user=members[role], role=role)
    return project, members


@pytest.mark.parametrize("role,status", [("admin", 200), ("manager", 200), ("reviewer", 403), ("annotator", 403)])
def test_upload_page_is_for_roles_that_may_upload(team, role, status):
    project, members = team
    res = _page_client(members[role]).get(f"/projects/{project.pk}/upload/")
    assert res.status_code == status
    if status == 200:
        html = res.content.decode()
        assert f'data-project-id="{project.pk}"' in html and 'data-prefill-enabled="true"' in html
        assert 'id="file-input" multiple' in html and 'id="drop-zone"' in html and "app/upload.js" in html
        assert "<th>Pre-fill</th>" in html


def test_upload_page_of_another_project_is_404_and_superusers_may_open_it(team):
    project, _ = team
    assert _page_client(UserFactory()).get(f"/projects/{project.pk}/upload/").status_code == 404
    admin = UserFactory(is_superuser=True)
    assert _page_client(admin).get(f"/projects/{project.pk}/upload/").status_code == 200


def test_upload_page_without_prefill_has_no_prefill_column(user):
    project = services.project_create(name="P", user=user, prefill_enabled=False)
    html = _page_client(user).get(f"/projects/{project.pk}/upload/").content.decode()
    assert 'data-prefill-enabled="false"' in html and "<th>Pre-fill</th>" not in html


@pytest.mark.parametrize("role,sees_upload", [("admin", True), ("manager", True), ("reviewer", False),
                                              ("annotator", False)])
def test_project_list_links_new_project_and_upload_by_role(team, role, sees_upload):
    project, members = team
    html = _page_client(members[role]).get("/").content.decode()
    assert 'id="new-project-link" href="/projects/new/"' in html
    assert (f'href="/projects/{project.pk}/upload/"' in html) is sees_upload


def test_empty_project_list_points_to_the_form(user):
    html = _page_client(user).get("/").content.decode()
    assert "No projects yet" in html and 'href="/projects/new/">create one</a>' in html


def test_pages_carry_an_inline_icon_so_browsers_do_not_ask_for_a_missing_favicon(user):
    """Without a <link rel="icon">, every page load asks /favicon.ico: a 404 in the console."""
    body = _page_client(user).get("/").content.decode()
    assert '<link rel="icon" href="data:image/svg+xml,' in body


def test_a_refused_page_says_why_in_words_and_links_back(team, caplog):
    """A 403 page names the role and what it may not do (not "may not dashboard") and links
    back to the projects; the log keeps one line for it, without a traceback."""
    project, members = team
    with caplog.at_level("WARNING", logger="django.request"):
        res = _page_client(members["reviewer"]).get(f"/projects/{project.pk}/dashboard/")
    assert res.status_code == 403
    html = res.content.decode()
    assert 'id="forbidden-reason"' in html
    assert "Your role (reviewer) may not see the dashboard in this project." in html
    assert '<a href="/">' in html
    refused = [r for r in caplog.records if r.name == "django.request" and getattr(r, "status_code", None) == 403]
    assert refused and all(r.exc_info is None for r in refused)
    res = _page_client(members["annotator"]).get(f"/projects/{project.pk}/upload/")
    assert "Your role (annotator) may not " in res.content.decode()
