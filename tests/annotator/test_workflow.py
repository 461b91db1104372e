"""Team work on the real PostgreSQL: the queue never hands one image to two annotators
(concurrent requests), leases expire and block others' writes (409 with the holder),
assignment, done, the review round trip, and members management."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np
import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from annotator.core import services, workflow
from annotator.core.models import Annotation, AnnotationEvent, Image, ImageReview, Membership
from engine.rle import mask_to_rle
from tests.factories import UserFactory, project_with_photos

PHOTOS = ("124080.jpg", "153077.jpg", "189080.jpg", "21077.jpg", "37073.jpg", "65019.jpg")


def client_for(user) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/accounts/login/")
    client.credentials(HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    return client


def team(photos=PHOTOS[:3], annotators: int = 2):
    admin = UserFactory(username="boss")
    project = project_with_photos(user=admin, photos=photos)
    people = {"admin": admin}
    for role in ("manager", "reviewer"):
        people[role] = UserFactory(username=role)
        services.project_add_member(project=project, user=people[role], role=role)
    for i in range(annotators):
        people[f"ann{i}"] = UserFactory(username=f"ann{i}")
        services.project_add_member(project=project, user=people[f"ann{i}"], role="annotator")
    return project, people


def mask_body(image: Image, rows: slice = slice(10, 60), **extra) -> dict:
    mask = np.zeros((image.height, image.width), np.uint8)
    mask[rows, 20:90] = 1
    return {"segmentation": mask_to_rle(mask), "prompts": {"point_coords": [[50, 30]], "point_labels": [1]},
            "model_id": "m1", "active_ms": 1000, **extra}


# ---------------------------------------------------------------- the queue

@pytest.mark.django_db(transaction=True)
def test_concurrent_next_requests_never_share_an_image():
    """Eight annotators ask for their next image at the same instant, twice over: every
    image is leased to exactly one of them (SELECT ... FOR UPDATE SKIP LOCKED)."""
    project, people = team(photos=PHOTOS, annotators=8)
    annotators = [people[f"ann{i}"] for i in range(8)]
    barrier = threading.Barrier(len(annotators))
    got: dict[str, int | None] = {}
    errors: list[BaseException] = []

    def ask(user):
        try:
            client = client_for(user)
            barrier.wait()
            res = client.post(f"/api/projects/{project.pk}/queue/next")
            got[user.username] = res.json()["id"] if res.status_code == 200 else None
            assert res.status_code in (200, 204), res.content
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(u,)) for u in annotators]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    leased = [v for v in got.values() if v is not None]
    assert len(leased) == len(PHOTOS) == len(set(leased)), got  # 6 images for 8 people: 2 get none
    holders = dict(Image.objects.filter(project=project).values_list("pk", "lease_holder__username"))
    assert {holders[v] for v in leased} == {k for k, v in got.items() if v is not None}
    assert set(Image.objects.filter(project=project).values_list("status", flat=True)) == {"in_progress"}


@pytest.mark.django_db(transaction=True)
def test_next_skips_a_row_another_transaction_has_locked():
    """While one request holds the first image's row lock, another does not wait for it and
    does not take it: it gets the second image at once."""
    project, people = team()
    first, second, _ = Image.objects.filter(project=project).order_by("id")
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        with transaction.atomic():
            Image.objects.select_for_update().get(pk=first.pk)
            locked.set()
            release.wait(30)
        connection.close()

    t = threading.Thread(target=hold_lock)
    t.start()
    try:
        assert locked.wait(10)
        with connection.cursor() as cur:
            cur.execute("SET lock_timeout = '2s'")  # a blocking FOR UPDATE would fail here
        image = workflow.queue_next(user=people["ann0"], project=project)
        assert image.pk == second.pk
    finally:
        release.set()
        t.join()


@pytest.mark.django_db
def test_queue_order_reload_and_assignment():
    project, people = team(photos=PHOTOS[:4])
    a, b = people["ann0"], people["ann1"]
    imgs = list(Image.objects.filter(project=project).order_by("id"))
    manager = client_for(people["manager"])
    res = manager.post(f"/api/projects/{project.pk}/assign", {"images": [imgs[0].pk, imgs[3].pk], "user": b.pk},
                       format="json")
    assert res.status_code == 200 and res.json() == {"assigned": 2}
    # Assigned to a reviewer (who may not annotate): refused.
    res = manager.post(f"/api/projects/{project.pk}/assign", {"images": [imgs[1].pk], "user": people["reviewer"].pk},
                       format="json")
    assert res.status_code == 400 and "may annotate" in res.json()["user"][0]
    res = manager.post(f"/api/projects/{project.pk}/assign", {"images": [999999], "user": None}, format="json")
    assert res.status_code == 400

    ca, cb = client_for(a), client_for(b)
    # b's own (assigned) images come before open ones; a never gets b's.
    assert cb.post(f"/api/projects/{project.pk}/queue/next").json()["id"] == imgs[0].pk
    # Asking again (a reload, a second tab) gives the same image, renewed.
    again = cb.post(f"/api/projects/{project.pk}/queue/next").json()
    assert again["id"] == imgs[0].pk and again["lease"]["holder"] == "ann1"
    assert ca.post(f"/api/projects/{project.pk}/queue/next").json()["id"] == imgs[1].pk
    # a may not even open a lease on, or annotate, b's image.
    assert ca.post(f"/api/images/{imgs[3].pk}/lease").status_code == 403
    res = ca.post(f"/api/images/{imgs[3].pk}/annotations/", mask_body(imgs[3]), format="json")
    assert res.status_code == 403 and "assigned to ann1" in res.json()["detail"]
    # Done -> the next one: b's other assigned image.
    assert cb.post(f"/api/images/{imgs[0].pk}/done").json()["status"] == "done"
    assert cb.post(f"/api/projects/{project.pk}/queue/next").json()["id"] == imgs[3].pk
    assert ca.post(f"/api/images/{imgs[1].pk}/done").status_code == 200
    assert ca.post(f"/api/projects/{project.pk}/queue/next").json()["id"] == imgs[2].pk
    assert ca.post(f"/api/images/{imgs[2].pk}/done").status_code == 200
    assert ca.post(f"/api/projects/{project.pk}/queue/next").status_code == 204  # nothing left for a
    # An image with a failed embedding is not handed out.
    Image.objects.filter(pk=imgs[3].pk).update(lease_holder=None, lease_expires_at=None, embedding_status="failed")
    assert cb.post(f"/api/projects/{project.pk}/queue/next").status_code == 204


@pytest.mark.django_db
def test_annotators_step_through_their_queue_managers_through_the_project():
    """An image's prev_id / next_id (what N / P of the annotate page follow) are, for an
    annotator, its neighbours in their queue's order (rejected back to them, assigned to
    them, open ones; each by id) among the images they could work on; for other roles, by
    id in the project."""
    project, people = team(photos=PHOTOS[:6])
    a, b = people["ann0"], people["ann1"]
    i1, i2, i3, i4, i5, i6 = Image.objects.filter(project=project).order_by("id")
    Image.objects.filter(pk=i1.pk).update(assignee=b)  # b's, not a's
    Image.objects.filter(pk=i4.pk).update(assignee=a)  # a's own: first in a's queue
    Image.objects.filter(pk=i6.pk).update(status="done", done_by=a)  # waiting for review
    # Someone else holds i5 for now.
    Image.objects.filter(pk=i5.pk).update(lease_holder=b, lease_expires_at=timezone.now() + timedelta(minutes=5))
    ca, cm = client_for(a), client_for(people["manager"])

    def hops(client, image) -> tuple:
        body = client.get(f"/api/images/{image.pk}/").json()
        return body["prev_id"], body["next_id"], body["neighbour_order"]

    # a's queue: i4 (assigned to a), then the open i2, i3 (i1 is b's, i5 leased by b, i6 done).
    assert ca.post(f"/api/projects/{project.pk}/queue/next").json()["id"] == i4.pk
    assert hops(ca, i4) == (None, i2.pk, "queue")
    assert hops(ca, i2) == (i4.pk, i3.pk, "queue")
    assert hops(ca, i3) == (i2.pk, None, "queue")
    # An image outside a's queue (b's, done) still has its place in that order.
    assert hops(ca, i1) == (i4.pk, i2.pk, "queue")
    assert hops(ca, i6) == (i3.pk, None, "queue")
    # Rejected back to a comes first of all.
    Image.objects.filter(pk=i3.pk).update(status="rejected", assignee=a)
    assert hops(ca, i3) == (None, i4.pk, "queue")
    assert hops(ca, i4) == (i3.pk, i2.pk, "queue")
    # Once b's lease lapses, i5 is a's to take.
    Image.objects.filter(pk=i5.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert hops(ca, i2) == (i4.pk, i5.pk, "queue")
    # queue/next and done answer with the same neighbours.
    assert ca.post(f"/api/projects/{project.pk}/queue/next").json()["next_id"] == i2.pk
    # Managers (and admins, reviewers) keep the project's order.
    assert hops(cm, i2) == (i1.pk, i3.pk, "project")
    assert hops(cm, i6) == (i5.pk, None, "project")
    assert hops(client_for(people["reviewer"]), i4) == (i3.pk, i5.pk, "project")


@pytest.mark.django_db
def test_lease_expiry_heartbeat_and_release(settings):
    settings.ANNOTATOR_LEASE_SECONDS = 600
    project, people = team(photos=PHOTOS[:1])
    image = Image.objects.get(project=project)
    ca, cb = client_for(people["ann0"]), client_for(people["ann1"])
    first = ca.post(f"/api/projects/{project.pk}/queue/next").json()
    assert first["id"] == image.pk
    expires = Image.objects.get(pk=image.pk).lease_expires_at
    assert timedelta(seconds=590) < expires - timezone.now() <= timedelta(seconds=600)
    assert cb.post(f"/api/projects/{project.pk}/queue/next").status_code == 204  # leased: not b's
    # Heartbeat renews it.
    Image.objects.filter(pk=image.pk).update(lease_expires_at=timezone.now() + timedelta(seconds=5))
    beat = ca.post(f"/api/images/{image.pk}/lease")
    assert beat.status_code == 200 and beat.json()["holder"] == "ann0" and beat.json()["lease_seconds"] == 600
    assert Image.objects.get(pk=image.pk).lease_expires_at - timezone.now() > timedelta(seconds=590)
    # b's heartbeat on it is refused with who holds it.
    res = cb.post(f"/api/images/{image.pk}/lease")
    assert res.status_code == 409 and res.json()["lease"]["holder"] == "ann0"
    # Expired (a's tab closed without releasing): b gets it.
    Image.objects.filter(pk=image.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert cb.get(f"/api/images/{image.pk}/").json()["lease"] is None
    assert cb.post(f"/api/projects/{project.pk}/queue/next").json()["id"] == image.pk
    assert Image.objects.get(pk=image.pk).lease_holder == people["ann1"]
    # Released on leave: a can take it again; b cannot release a's lease, a manager can.
    assert cb.delete(f"/api/images/{image.pk}/lease").status_code == 204
    assert ca.post(f"/api/images/{image.pk}/lease").status_code == 200
    assert cb.delete(f"/api/images/{image.pk}/lease").status_code == 403
    assert client_for(people["manager"]).delete(f"/api/images/{image.pk}/lease").status_code == 204
    assert Image.objects.get(pk=image.pk).lease_holder is None


@pytest.mark.django_db
def test_writes_on_an_image_leased_by_someone_else_get_409_with_the_holder():
    project, people = team(photos=PHOTOS[:1])
    image = Image.objects.get(project=project)
    ca, cb = client_for(people["ann0"]), client_for(people["ann1"])
    ann = cb.post(f"/api/images/{image.pk}/annotations/", mask_body(image), format="json").json()  # no lease yet: fine
    assert ca.post(f"/api/images/{image.pk}/lease").status_code == 200
    for res in (cb.post(f"/api/images/{image.pk}/annotations/", mask_body(image), format="json"),
                cb.patch(f"/api/annotations/{ann['id']}/", {"version": 1, "category": None}, format="json"),
                cb.delete(f"/api/annotations/{ann['id']}/"),
                cb.post(f"/api/images/{image.pk}/done")):
        assert res.status_code == 409, res.content
        body = res.json()
        assert body["lease"]["holder"] == "ann0" and "ann0 is working on this image" in body["detail"]
    assert Annotation.objects.count() == 1
    # Pre-fill proposals: accepting (a mask write) and rejecting are refused the same way.
    from annotator.core.models import Proposal
    from engine.rle import rle_area, rle_bbox

    rle = mask_body(image, rows=slice(100, 140))["segmentation"]
    proposal = Proposal.objects.create(image=image, model_id="m1", rle=rle, bbox=rle_bbox(rle), area=rle_area(rle))
    for action in ("accept", "reject"):
        res = cb.post(f"/api/proposals/{proposal.pk}/{action}", {}, format="json")
        assert res.status_code == 409 and res.json()["lease"]["holder"] == "ann0", res.content
    assert Proposal.objects.get(pk=proposal.pk).status == "pending"
    # The holder writes; a manager too is refused while someone holds it.
    assert ca.post(f"/api/images/{image.pk}/annotations/", mask_body(image), format="json").status_code == 201
    assert client_for(people["manager"]).delete(f"/api/annotations/{ann['id']}/").status_code == 409
    # A reviewer's review-status change is not an annotation write: no lease needed.
    res = client_for(people["reviewer"]).patch(f"/api/annotations/{ann['id']}/",
                                               {"version": 1, "review_status": "approved"}, format="json")
    assert res.status_code == 200


# ---------------------------------------------------------------- review

@pytest.mark.django_db
def test_review_round_trip():
    project, people = team(photos=PHOTOS[:2])
    ann0, reviewer = people["ann0"], people["reviewer"]
    ca, cr = client_for(ann0), client_for(reviewer)
    image = Image.objects.get(pk=ca.post(f"/api/projects/{project.pk}/queue/next").json()["id"])
    good = ca.post(f"/api/images/{image.pk}/annotations/", mask_body(image), format="json").json()
    bad = ca.post(f"/api/images/{image.pk}/annotations/", mask_body(image, rows=slice(70, 90)), format="json").json()
    assert cr.post(f"/api/images/{image.pk}/review", {"decision": "approve"}, format="json").status_code == 409
    assert cr.get(f"/api/projects/{project.pk}/review/").json() == []
    assert ca.post(f"/api/images/{image.pk}/done").json()["status"] == "done"
    # Done: the annotator can no longer change it; reviewers see it.
    res = ca.post(f"/api/images/{image.pk}/annotations/", mask_body(image), format="json")
    assert res.status_code == 409 and "done" in res.json()["detail"]
    listed = cr.get(f"/api/projects/{project.pk}/review/").json()
    assert [(i["id"], i["done_by"], i["annotation_count"]) for i in listed] == [(image.pk, "ann0", 2)]
    # Reject: a comment is required; one mask rejected with its own reason, one approved.
    res = cr.post(f"/api/images/{image.pk}/review", {"decision": "reject"}, format="json")
    assert res.status_code == 400 and "comment" in res.json()
    res = cr.post(f"/api/images/{image.pk}/review", {
        "decision": "reject", "comment": "The lower mask cuts the petal.",
        "annotations": [{"id": bad["id"], "status": "rejected", "comment": "misses the left petal"},
                        {"id": good["id"], "status": "approved"}]}, format="json")
    assert res.status_code == 200, res.content
    assert res.json()["decision"] == "rejected" and res.json()["annotator"] == "ann0"
    # Back to the annotator: first in their queue, with the comments visible.
    ca.post(f"/api/projects/{project.pk}/queue/next")  # (another image may be leased meanwhile)
    Image.objects.filter(lease_holder=ann0).exclude(pk=image.pk).update(lease_holder=None, lease_expires_at=None)
    detail = ca.post(f"/api/projects/{project.pk}/queue/next").json()
    assert detail["id"] == image.pk and detail["status"] == "in_progress" and detail["assignee"] == "ann0"
    assert detail["last_review"]["decision"] == "rejected"
    assert detail["last_review"]["comment"] == "The lower mask cuts the petal."
    anns = {a["id"]: a for a in ca.get(f"/api/images/{image.pk}/annotations/").json()}
    assert anns[bad["id"]]["review_status"] == "rejected"
    assert anns[bad["id"]]["review_comment"] == "misses the left petal" and anns[bad["id"]]["reviewed_by"] == "reviewer"
    assert anns[good["id"]]["review_status"] == "approved"
    # The fix: the rejected mask is edited (back to pending), the image done again, approved.
    res = ca.patch(f"/api/annotations/{bad['id']}/", dict(mask_body(image, rows=slice(60, 95)),
                                                         version=anns[bad["id"]]["version"]), format="json")
    assert res.status_code == 200 and res.json()["review_status"] == "pending"
    assert ca.post(f"/api/images/{image.pk}/done").status_code == 200
    res = cr.post(f"/api/images/{image.pk}/review", {"decision": "approve", "comment": "ok"}, format="json")
    assert res.status_code == 200 and res.json()["decision"] == "approved"
    image.refresh_from_db()
    assert image.status == "reviewed"
    assert set(Annotation.objects.filter(image=image).values_list("review_status", flat=True)) == {"approved"}
    assert [r.decision for r in ImageReview.objects.filter(image=image).order_by("id")] == ["rejected", "approved"]
    kinds = list(AnnotationEvent.objects.filter(image=image).order_by("id").values_list("kind", "user__username",
                                                                                        "mask_author__username"))
    assert kinds == [("create", "ann0", None), ("create", "ann0", None),
                     ("review_reject", "reviewer", "ann0"), ("review_approve", "reviewer", "ann0"),
                     ("edit", "ann0", None), ("review_approve", "reviewer", "ann0")]
    # An annotator may not review; a single mask can be reviewed on its own.
    assert ca.post(f"/api/annotations/{good['id']}/review", {"status": "rejected"}, format="json").status_code == 403
    res = cr.post(f"/api/annotations/{good['id']}/review", {"status": "rejected", "comment": "edge"}, format="json")
    assert res.status_code == 200 and res.json()["review_comment"] == "edge"


@pytest.mark.django_db
def test_reject_without_mask_decisions_rejects_every_pending_mask():
    project, people = team(photos=PHOTOS[:1])
    image = Image.objects.get(project=project)
    ca, cr = client_for(people["ann0"]), client_for(people["reviewer"])
    ca.post(f"/api/images/{image.pk}/annotations/", mask_body(image), format="json")
    ca.post(f"/api/images/{image.pk}/done")
    assert cr.post(f"/api/images/{image.pk}/review", {"decision": "reject", "comment": "redo"},
                   format="json").status_code == 200
    ann = Annotation.objects.get(image=image)
    assert (ann.review_status, ann.review_comment) == ("rejected", "redo")
    image.refresh_from_db()
    assert (image.status, image.assignee) == ("rejected", people["ann0"])
    # ann1 does not get ann0's rejected image.
    assert client_for(people["ann1"]).post(f"/api/projects/{project.pk}/queue/next").status_code == 204


@pytest.mark.django_db
def test_review_page_form_names_the_actual_problem():
    """The review page's form: a rejection without a comment says what is missing (it said
    "No image N in this project." before: the service's ValidationError is a ValueError)."""
    from django.test import Client

    project, people = team(photos=PHOTOS[:1])
    image = Image.objects.get(project=project)
    ca = client_for(people["ann0"])
    ca.post(f"/api/images/{image.pk}/annotations/", mask_body(image), format="json")
    ca.post(f"/api/images/{image.pk}/done")
    page = Client()
    page.force_login(people["reviewer"])
    url = f"/projects/{project.pk}/review/"
    body = page.post(url, {"image": image.pk, "decision": "reject", "comment": ""}).content.decode()
    assert "Say what to fix" in body and "No image" not in body
    body = page.post(url, {"image": image.pk, "decision": "maybe"}).content.decode()
    assert "Must be approve or reject." in body
    image.refresh_from_db()
    assert image.status == "done"  # none of these reviewed it
    assert page.post(url, {"image": image.pk, "decision": "approve"}).status_code == 302


# ---------------------------------------------------------------- members

@pytest.mark.django_db
def test_members_management_rules():
    project, people = team(photos=PHOTOS[:1])
    UserFactory(username="newbie")
    cm, cadmin = client_for(people["manager"]), client_for(people["admin"])
    url = f"/api/projects/{project.pk}/members/"
    assert [(m["username"], m["role"]) for m in cm.get(url).json()] == [
        ("ann0", "annotator"), ("ann1", "annotator"), ("boss", "admin"), ("manager", "manager"),
        ("reviewer", "reviewer")]
    assert cm.post(url, {"username": "nobody-here"}, format="json").status_code == 400
    assert cm.post(url, {"username": "ann0", "role": "reviewer"}, format="json").status_code == 400  # already in
    # A manager may not make, change or remove an admin.
    assert cm.post(url, {"username": "newbie", "role": "admin"}, format="json").status_code == 403
    assert cm.patch(f"{url}{people['admin'].pk}/", {"role": "annotator"}, format="json").status_code == 403
    assert cm.delete(f"{url}{people['admin'].pk}/").status_code == 403
    res = cm.post(url, {"username": "newbie"}, format="json")
    assert res.status_code == 201 and res.json()["role"] == "annotator"
    # The last admin stays.
    res = cadmin.patch(f"{url}{people['admin'].pk}/", {"role": "manager"}, format="json")
    assert res.status_code == 400 and "at least one admin" in res.json()["role"][0]
    assert cadmin.delete(f"{url}{people['admin'].pk}/").status_code == 400
    assert cadmin.patch(f"{url}{people['manager'].pk}/", {"role": "admin"}, format="json").status_code == 200
    # Removing an annotator releases their lease and opens their assigned images.
    image = Image.objects.get(project=project)
    workflow.lease_acquire(user=people["ann0"], image=image)
    Image.objects.filter(pk=image.pk).update(assignee=people["ann0"])
    assert cadmin.delete(f"{url}{people['ann0'].pk}/").status_code == 204
    image.refresh_from_db()
    assert image.lease_holder is None and image.assignee is None
    assert not Membership.objects.filter(project=project, user=people["ann0"]).exists()
    assert cadmin.delete(f"{url}{people['ann0'].pk}/").status_code == 404
