"""A project's "Exports" page (/projects/<id>/exports/): who may open it (the ``export``
action of permissions.py, as the export endpoints require: admins, managers, reviewers;
annotators 403, non-members 404, anonymous visitors to the login), who sees its COCO import
section (the ``import`` action: admins, managers), what it offers (every format of
ExportJob.Format, the only-approved and include-images options), the project list's
"Exports" link in place of the old direct "COCO export" one, and the export's ``size`` the
page's table shows."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.utils import timezone

from annotator.core import services
from annotator.core.models import ExportJob
from annotator.core.permissions import EXPORT_ROLES, IMPORT_ROLES
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def team(db):
    owner = UserFactory()
    project = services.project_create(name="Team <exports>", user=owner, categories=["a"])
    members = {"admin": owner}
    for role in ("manager", "reviewer", "annotator"):
        members[role] = UserFactory()
        services.project_add_member(project=project, user=members[role], role=role)
    return project, members


def test_the_page_follows_the_role_table():
    # The test below spells the expectation out; this keeps it tied to the table.
    assert EXPORT_ROLES == {"admin", "manager", "reviewer"}
    assert IMPORT_ROLES == {"admin", "manager"}


@pytest.mark.parametrize("role,status,sees_import", [("admin", 200, True), ("manager", 200, True),
                                                     ("reviewer", 200, False), ("annotator", 403, False)])
def test_exports_page_is_for_roles_that_may_export(team, role, status, sees_import):
    project, members = team
    res = _page_client(members[role]).get(f"/projects/{project.pk}/exports/")
    assert res.status_code == status
    html = res.content.decode()
    if status != 200:
        assert "app/exports.js" not in html
        return
    assert f'data-project-id="{project.pk}"' in html and "app/exports.js" in html
    assert "Team &lt;exports&gt;" in html  # the name is escaped
    assert 'id="export-form"' in html and 'id="export-rows"' in html
    assert (f'data-may-import="{"true" if sees_import else "false"}"') in html
    assert ('id="import-section"' in html) is sees_import
    assert ('id="import-file"' in html) is sees_import


def test_exports_page_offers_every_format_the_api_takes_and_its_options(team):
    project, members = team
    html = _page_client(members["admin"]).get(f"/projects/{project.pk}/exports/").content.decode()
    for value, label in ExportJob.Format.choices:
        assert f'name="format" value="{value}"' in html and label in html
    assert 'value="coco" id="export-format-coco" checked' in html  # COCO RLE is the default
    assert 'id="export-only-approved"' in html and 'id="export-include-images"' in html
    assert 'name="import-mode" value="annotations"' in html and 'name="import-mode" value="proposals"' in html
    assert 'data-retention-hours="168"' in html and "All times are UTC" in html
    assert f'href="/api/projects/{project.pk}/export/coco"' in html  # the synchronous export stays reachable


def test_exports_page_says_the_configured_retention(team, settings):
    project, members = team
    settings.ANNOTATOR_EXPORT_RETENTION_HOURS = 1.5
    html = _page_client(members["admin"]).get(f"/projects/{project.pk}/exports/").content.decode()
    assert 'data-retention-hours="1.50"' in html


def test_exports_page_is_404_for_non_members_and_open_to_superusers(team):
    project, _ = team
    assert _page_client(UserFactory()).get(f"/projects/{project.pk}/exports/").status_code == 404
    assert _page_client(UserFactory()).get("/projects/999999/exports/").status_code == 404
    root = UserFactory(is_superuser=True)
    res = _page_client(root).get(f"/projects/{project.pk}/exports/")
    assert res.status_code == 200 and 'id="import-section"' in res.content.decode()


def test_exports_page_sends_anonymous_visitors_to_the_login(team):
    project, _ = team
    res = Client().get(f"/projects/{project.pk}/exports/")
    assert res.status_code == 302 and res["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("role,sees_link", [("admin", True), ("manager", True), ("reviewer", True),
                                            ("annotator", False)])
def test_project_list_links_the_exports_page_by_role(team, role, sees_link):
    project, members = team
    html = _page_client(members[role]).get("/").content.decode()
    assert (f'class="exports-link" href="/projects/{project.pk}/exports/">Exports</a>' in html) is sees_link
    assert "COCO export</a>" not in html  # the old direct link is replaced by the page


def test_export_jobs_carry_the_size_of_their_file(team, api_client, user):
    project, members = team
    services.project_add_member(project=project, user=user, role="manager")
    done = ExportJob.objects.create(project=project, format="coco", created_by=members["admin"],
                                    status=ExportJob.Status.DONE, progress=1.0, finished_at=timezone.now())
    done.file.save(f"project-{project.pk}-export-{done.pk}-coco.json", ContentFile(b'{"images": []}'))
    running = ExportJob.objects.create(project=project, format="sa1b", created_by=members["admin"],
                                       status=ExportJob.Status.RUNNING, progress=0.25)
    body = {j["id"]: j for j in api_client.get(f"/api/projects/{project.pk}/exports/").json()}
    assert body[done.pk]["size"] == len(b'{"images": []}') and body[done.pk]["download_url"]
    assert body[running.pk]["size"] is None and body[running.pk]["progress"] == 0.25
    # A file gone from storage under a done job does not break the list.
    done.file.storage.delete(done.file.name)
    assert api_client.get(f"/api/exports/{done.pk}/").json()["size"] is None
