"""A project's settings after creation: ``PATCH /api/projects/<id>/`` renames and recolours
labels by id (masks keep them), adds labels with colours, refuses taken names item by item;
``DELETE /api/projects/<id>/categories/<cid>/`` deletes a label no mask carries (409 with
the reason otherwise, also against a mask saved at the same moment); the settings page
(``/projects/<id>/settings/``): who gets it (any of the ``settings``, ``model``, ``members``
actions of permissions.py) and which sections each role sees; the links to it.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from django.db import connection, transaction
from django.test import Client

from annotator.core import permissions, services
from annotator.core.models import Annotation, Category, Image, Membership, ModelVersion, Proposal
from engine.rle import mask_to_rle
from tests.annotator.test_workflow import client_for
from tests.factories import UserFactory, project_with_photos

pytestmark = pytest.mark.django_db


def _rle(image: Image, top: int = 10) -> dict:
    mask = np.zeros((image.height, image.width), np.uint8)
    mask[top: top + 40, 20:80] = 1
    return mask_to_rle(mask)


def _page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def team(db):
    owner = UserFactory(username="owner")
    project = project_with_photos(user=owner, categories=("car", "person"))
    members = {"admin": owner}
    for role in ("manager", "reviewer", "annotator"):
        members[role] = UserFactory(username=f"{role}-user")
        services.project_add_member(project=project, user=members[role], role=role)
    return project, members


def _labels(project) -> list[tuple[int, str, str]]:
    return list(Category.objects.filter(project=project).order_by("id").values_list("id", "name", "color"))


# ---------------------------------------------------------------- PATCH /api/projects/<id>/: labels

def test_rename_and_recolour_keep_the_label_id_and_its_masks(team):
    project, members = team
    car, person = project.categories.order_by("id")
    image = project.images.first()
    mask = services.annotation_create(image=image, user=members["admin"], segmentation=_rle(image), category=car.pk)
    res = client_for(members["manager"]).patch(f"/api/projects/{project.pk}/", {
        "name": "Street scenes",
        "categories": [{"id": car.pk, "name": "vehicle", "color": "#123abc"}, {"id": person.pk, "color": "#00FF00"}],
    }, format="json")
    assert res.status_code == 200, res.content
    body = res.json()
    assert body["name"] == "Street scenes"
    assert [(c["id"], c["name"], c["color"]) for c in body["categories"]] == [
        (car.pk, "vehicle", "#123abc"), (person.pk, "person", "#00FF00")]
    mask.refresh_from_db()
    assert mask.category_id == car.pk and mask.category.name == "vehicle"
    # The export names the label as it is now.
    coco = client_for(members["admin"]).get(f"/api/projects/{project.pk}/export/coco").json()
    assert {c["id"]: c["name"] for c in coco["categories"]}[car.pk] == "vehicle"


def test_add_labels_with_and_without_colour_and_a_bare_name_stays_idempotent(team):
    project, members = team
    before = _labels(project)
    res = client_for(members["admin"]).patch(f"/api/projects/{project.pk}/", {
        "categories": ["car", {"name": "bike", "color": "#abcdef"}, {"name": " tree "}, "sign"],
    }, format="json")
    assert res.status_code == 200, res.content
    after = _labels(project)
    assert after[:2] == before  # "car" existed: a bare name adds nothing, as before
    assert [(n, c) for _, n, c in after[2:]][0] == ("bike", "#abcdef")
    assert [n for _, n, _ in after[2:]] == ["bike", "tree", "sign"]
    assert all(c.startswith("#") and len(c) == 7 for _, _, c in after)


def test_labels_may_swap_names_and_take_a_name_given_up(team):
    project, members = team
    car, person = project.categories.order_by("id")
    res = client_for(members["admin"]).patch(f"/api/projects/{project.pk}/", {
        "categories": [{"id": car.pk, "name": "person"}, {"id": person.pk, "name": "car"}],
    }, format="json")
    assert res.status_code == 200, res.content
    assert [(i, n) for i, n, _ in _labels(project)] == [(car.pk, "person"), (person.pk, "car")]
    res = client_for(members["admin"]).patch(f"/api/projects/{project.pk}/", {
        "categories": [{"id": car.pk, "name": "pedestrian"}, {"name": "person", "color": "#111111"}],
    }, format="json")
    assert res.status_code == 200, res.content
    assert [n for _, n, _ in _labels(project)] == ["pedestrian", "car", "person"]


@pytest.mark.parametrize("items,index,field,message", [
    (lambda c, p, o: [{"id": c, "name": "person"}], "0", "name", 'There is already a label "person".'),
    (lambda c, p, o: [{"name": "car", "color": "#000000"}], "0", "name", 'There is already a label "car".'),
    (lambda c, p, o: [{"name": "ok"}, {"id": c, "name": "   "}], "1", "name", "may not be blank"),
    (lambda c, p, o: [{"id": c, "color": "red"}], "0", "color", "A colour is #rrggbb"),
    (lambda c, p, o: [{"id": 10**9, "name": "x"}], "0", "id", "No label 1000000000 in this project."),
    (lambda c, p, o: [{"id": o, "name": "stolen"}], "0", "id", "in this project"),
    (lambda c, p, o: [{"id": c, "name": "a"}, {"id": c, "color": "#000000"}], "1", "id", "changed twice"),
    (lambda c, p, o: [{"id": c, "name": "y" * 101}], "0", "name", "no more than 100"),
    (lambda c, p, o: [{"color": "#000000"}], "0", "name", "A new label needs a name."),
    (lambda c, p, o: [{"name": "n1", "color": "#000000"}, {"name": "n1"}], "1", "name", 'already a label "n1"'),
])
def test_label_changes_are_refused_item_by_item_and_nothing_changes(team, items, index, field, message):
    project, members = team
    car, person = project.categories.order_by("id")
    other = services.project_create(name="Other", user=UserFactory(), categories=["secret"]).categories.get()
    before = _labels(project)
    res = client_for(members["admin"]).patch(f"/api/projects/{project.pk}/", {
        "name": "Renamed too", "categories": items(car.pk, person.pk, other.pk)}, format="json")
    assert res.status_code == 400, res.content
    errors = res.json()["categories"]
    assert list(errors) == [index] and field in errors[index], errors
    assert message in " ".join(errors[index][field]), errors
    assert _labels(project) == before
    project.refresh_from_db()
    assert project.name == "Photos"  # all or nothing
    assert other.name == Category.objects.get(pk=other.pk).name


def test_a_label_that_is_not_a_name_or_an_object_is_refused(team):
    project, members = team
    res = client_for(members["admin"]).patch(f"/api/projects/{project.pk}/", {"categories": [7]}, format="json")
    assert res.status_code == 400 and "A label is a name" in json.dumps(res.json())


@pytest.mark.parametrize("role,status", [("admin", 200), ("manager", 200), ("reviewer", 403), ("annotator", 403)])
def test_label_changes_need_the_settings_action(team, role, status):
    project, members = team
    car = project.categories.order_by("id").first()
    res = client_for(members[role]).patch(f"/api/projects/{project.pk}/", {"categories": [{"id": car.pk, "name": "x"}]},
                                          format="json")
    assert res.status_code == status
    assert Category.objects.get(pk=car.pk).name == ("x" if status == 200 else "car")


# ---------------------------------------------------------------- DELETE a label

def test_delete_an_unused_label_and_its_proposals_lose_it(team):
    project, members = team
    car, person = project.categories.order_by("id")
    image = project.images.first()
    proposal = Proposal.objects.create(image=image, rle=_rle(image), bbox=[20, 10, 60, 40], area=2400, category=person)
    res = client_for(members["manager"]).delete(f"/api/projects/{project.pk}/categories/{person.pk}/")
    assert res.status_code == 204, res.content
    assert [n for _, n, _ in _labels(project)] == ["car"]
    proposal.refresh_from_db()
    assert proposal.category_id is None


def test_delete_a_label_that_masks_carry_is_refused_with_the_reason(team):
    project, members = team
    car, person = project.categories.order_by("id")
    image = project.images.first()
    for top in (10, 60):
        services.annotation_create(image=image, user=members["admin"], segmentation=_rle(image, top), category=car.pk)
    proposal = Proposal.objects.create(image=image, rle=_rle(image), bbox=[20, 10, 60, 40], area=2400, category=car)
    res = client_for(members["admin"]).delete(f"/api/projects/{project.pk}/categories/{car.pk}/")
    assert res.status_code == 409, res.content
    body = res.json()
    assert body["code"] == "category_in_use" and body["masks"] == 2
    assert body["detail"] == ('The label "car" is used by 2 masks, so it cannot be deleted: rename it instead, or give '
                              "those masks another label first.")
    assert Category.objects.filter(pk=car.pk).exists()
    proposal.refresh_from_db()
    assert proposal.category_id == car.pk  # nothing changed


def test_delete_another_projects_label_or_an_unknown_one_is_404(team):
    project, members = team
    other = services.project_create(name="Other", user=members["admin"], categories=["x"]).categories.get()
    client = client_for(members["admin"])
    assert client.delete(f"/api/projects/{project.pk}/categories/{other.pk}/").status_code == 404
    assert client.delete(f"/api/projects/{project.pk}/categories/{10**9}/").status_code == 404
    assert Category.objects.filter(pk=other.pk).exists()


def test_the_service_refuses_a_label_in_use(team):
    project, members = team
    car = project.categories.order_by("id").first()
    image = project.images.first()
    services.annotation_create(image=image, user=members["admin"], segmentation=_rle(image), category=car.pk)
    with pytest.raises(services.CategoryInUse) as info:
        services.category_delete(project=project, user=members["admin"], category_id=car.pk)
    assert info.value.masks == 1 and "1 mask," in str(info.value)
    with pytest.raises(permissions.NotAllowed):
        services.category_delete(project=project, user=members["reviewer"], category_id=car.pk)


@pytest.mark.django_db(transaction=True)
def test_a_mask_saved_while_its_label_is_deleted_never_loses_it():
    """A save holds its label (FOR KEY SHARE) until it commits: the delete waits for it and
    then refuses, instead of both committing (a mask with a label that is gone)."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    owner = UserFactory()
    project = project_with_photos(user=owner, categories=("car",))
    car = project.categories.get()
    image = project.images.first()
    saved, proceed = threading.Event(), threading.Event()
    out: dict = {}

    def save_mask():
        try:
            with transaction.atomic():
                services.annotation_create(image=image, user=owner, segmentation=_rle(image), category=car.pk)
                saved.set()
                proceed.wait(10)
        finally:
            connection.close()

    def delete_label():
        try:
            services.category_delete(project=project, user=owner, category_id=car.pk)
            out["deleted"] = True
        except services.CategoryInUse as exc:
            out["refused"] = exc.masks
        finally:
            connection.close()

    saver = threading.Thread(target=save_mask)
    saver.start()
    assert saved.wait(10)
    deleter = threading.Thread(target=delete_label)
    deleter.start()
    deleter.join(1.0)
    assert deleter.is_alive()  # waiting for the save's lock on the label
    proceed.set()
    saver.join(10)
    deleter.join(10)
    assert out == {"refused": 1}
    assert Annotation.objects.get().category_id == car.pk


# ---------------------------------------------------------------- the settings page

@pytest.mark.parametrize("role,status", [("admin", 200), ("manager", 200), ("reviewer", 403), ("annotator", 403)])
def test_settings_page_is_for_roles_with_a_settings_action(team, role, status):
    project, members = team
    res = _page_client(members[role]).get(f"/projects/{project.pk}/settings/")
    assert res.status_code == status
    if status == 200:
        html = res.content.decode()
        for section in ('id="general"', 'id="prefill"', 'id="model"', 'id="members"'):
            assert section in html
        assert "app/settings.js" in html and f'data-project-id="{project.pk}"' in html
        assert 'id="param-pred_iou_thresh"' in html and 'id="param-stability_score_thresh"' in html
        assert 'id="param-points_per_side"' in html and 'id="param-box_nms_thresh"' in html
        assert 'id="prefill-run"' in html and 'id="model-select"' in html and 'id="member-add-form"' in html
        assert f'href="/projects/{project.pk}/exports/"' in html  # admins and managers may export (QA: no link)


def test_settings_page_of_another_project_is_404_anonymous_go_to_login_site_admins_get_it(team):
    project, _ = team
    assert _page_client(UserFactory()).get(f"/projects/{project.pk}/settings/").status_code == 404
    res = Client().get(f"/projects/{project.pk}/settings/")
    assert res.status_code == 302 and res["Location"].startswith("/accounts/login/")
    root = UserFactory(is_superuser=True)
    html = _page_client(root).get(f"/projects/{project.pk}/settings/").content.decode()
    assert 'data-may-administer="true"' in html and 'id="members"' in html


def test_only_admins_are_offered_the_admin_role(team):
    project, members = team
    def roles(user):
        html = _page_client(user).get(f"/projects/{project.pk}/settings/").content.decode()
        return json.loads(html.split('<script id="member-roles" type="application/json">')[1].split("</script>")[0])
    assert roles(members["admin"]) == ["admin", "manager", "reviewer", "annotator"]
    assert roles(members["manager"]) == ["manager", "reviewer", "annotator"]
    assert 'data-may-administer="false"' in _page_client(members["manager"]).get(
        f"/projects/{project.pk}/settings/").content.decode()


def test_each_section_follows_its_own_action(team, monkeypatch):
    """A role allowed only ``members`` gets the Members section alone; one allowed only
    ``model`` the Model section alone (the table decides, not the role's name)."""
    project, members = team
    A = permissions.Action
    monkeypatch.setitem(permissions.ROLE_ACTIONS, Membership.Role.REVIEWER, frozenset({A.VIEW, A.MEMBERS}))
    monkeypatch.setitem(permissions.ROLE_ACTIONS, Membership.Role.ANNOTATOR, frozenset({A.VIEW, A.MODEL}))
    html = _page_client(members["reviewer"]).get(f"/projects/{project.pk}/settings/").content.decode()
    assert 'id="members"' in html and 'id="general"' not in html and 'id="prefill"' not in html
    assert 'id="model"' not in html and 'id="project-categories"' not in html
    html = _page_client(members["annotator"]).get(f"/projects/{project.pk}/settings/").content.decode()
    assert 'id="model"' in html and 'id="general"' not in html and 'id="members"' not in html


def test_the_page_carries_each_labels_mask_count_and_the_current_model(team):
    project, members = team
    car, person = project.categories.order_by("id")
    image = project.images.first()
    services.annotation_create(image=image, user=members["admin"], segmentation=_rle(image), category=car.pk)
    version = ModelVersion.objects.create(model_id="vit_b-bbbbbbbbbbbb", name="SAM ViT-B (test)",
                                          architecture="vit_b", source="installed", promoted=True)
    project.model_version = version
    project.save(update_fields=["model_version"])
    html = _page_client(members["manager"]).get(f"/projects/{project.pk}/settings/").content.decode()
    labels = json.loads(html.split('<script id="project-categories" type="application/json">')[1].split("</script>")[0])
    assert labels == [{"id": car.pk, "name": "car", "color": car.color, "masks": 1},
                      {"id": person.pk, "name": "person", "color": person.color, "masks": 0}]
    assert 'data-model-id="vit_b-bbbbbbbbbbbb"' in html and "SAM ViT-B (test)" in html


@pytest.mark.parametrize("role,sees", [("admin", True), ("manager", True), ("reviewer", False), ("annotator", False)])
def test_settings_links_on_the_project_list_and_the_annotate_page(team, role, sees):
    project, members = team
    client = _page_client(members[role])
    link = f'href="/projects/{project.pk}/settings/"'
    assert (link in client.get("/").content.decode()) is sees
    image = project.images.first()
    assert (link in client.get(f"/projects/{project.pk}/annotate/?image={image.pk}").content.decode()) is sees
    if sees:
        assert link in client.get(f"/projects/{project.pk}/dashboard/").content.decode()


def test_the_last_admin_is_kept_with_the_message_the_page_shows(team):
    project, members = team
    client = client_for(members["admin"])
    url = f"/api/projects/{project.pk}/members/{members['admin'].pk}/"
    for res in (client.patch(url, {"role": "manager"}, format="json"), client.delete(url)):
        assert res.status_code == 400 and res.json() == {"role": ["A project keeps at least one admin."]}
    assert Membership.objects.get(project=project, user=members["admin"]).role == "admin"


def test_the_pre_fill_fields_cover_every_generator_parameter_with_the_range_the_server_checks():
    """The page's inputs are every AutomaticMaskParams field, each hinted with the range that
    the server's own error message names."""
    from dataclasses import fields

    from engine.automatic_params import AutomaticMaskParams, param_range
    from annotator.core.views import PREFILL_FIELDS

    assert sorted(name for name, _, _ in PREFILL_FIELDS) == sorted(f.name for f in fields(AutomaticMaskParams))
    assert param_range("pred_iou_thresh") == ("float", "[0, 1]")
    assert param_range("box_nms_thresh") == ("float", "(0, 1]")
    assert param_range("crop_overlap_ratio") == ("float", "[0, 1)")
    assert param_range("stability_score_offset") == ("float", "> 0")
    assert param_range("points_per_side") == ("int", "1..128")
    assert param_range("min_mask_region_area") == ("int", ">= 0")
    message = AutomaticMaskParams.errors({"stability_score_thresh": 5})["stability_score_thresh"][0]
    assert param_range("stability_score_thresh")[1] in message
