"""A scripted team session on real photos, driven through the HTTP API, and the statistics
it must produce, worked out by hand (tests/annotator/test_stats.py and the dashboard's
browser test both use it).

Cast: ``alice`` and ``bob`` annotate, ``rita`` reviews, ``mona`` manages; the admin
``owner`` made the project. Three photos: A and B for alice (B on the day before), C for
bob, who also decides three pre-fill proposals.

| mask | who   | image | model | origin           | clicks (+, -, box) | active s |
|------|-------|-------|-------|------------------|--------------------|----------|
| 1    | alice | A     | m1    | manual           | 1, 0, 0            | 10       |
| 2    | alice | A     | m1    | manual           | 2, 1, 0            | 20       |
| 3    | alice | A     | m1    | manual           | 1, 0, 1            | 30       |
| (3 edited by alice, 5 s)                                                   |
| 4    | alice | B     | m2    | manual           | 1, 0, 0            | 40       | (day 1)
| 5    | bob   | C     | m2    | manual           | 3, 2, 0            | 12       |
| 6    | bob   | C     | m2    | manual           | 1, 0, 0            | 8        |
| 7    | bob   | C     | m2    | prefill_accepted | 0                  | 2        |
| 8    | bob   | C     | m2    | prefill_edited   | 1, 0, 0            | 6        |
| (a third proposal rejected by bob, 1 s)                                     |

rita rejects image A (mask 2 rejected, 1 and 3 approved) and approves image C (5-8).
Events of image B are dated DAY1, all others DAY2.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from annotator.core import services
from annotator.core.models import AnnotationEvent, Image, Proposal
from engine.rle import mask_to_rle, rle_area, rle_bbox
from tests.factories import UserFactory, project_with_photos

PHOTOS = ("124080.jpg", "153077.jpg", "189080.jpg")
DAY1, DAY2 = dt.date(2026, 1, 10), dt.date(2026, 1, 11)

_ROW_KEYS = ["masks", "images", "masks_per_image", "seconds_per_mask_median", "seconds_per_mask_p90",
             "active_seconds", "masks_per_hour", "clicks", "clicks_per_mask", "edits", "prefill_accepted",
             "prefill_edited", "prefill_rejected", "prefill_acceptance_rate", "reviewed", "review_rejected",
             "review_rejection_rate"]


def _row(*values) -> dict:
    return dict(zip(_ROW_KEYS, values, strict=True))


# Worked out by hand from the table above (see stats.py for the definitions; p90 by linear
# interpolation: alice's [10, 20, 30, 40] -> 30 + 0.7 * 10 = 37).
EXPECTED = {
    "user": {
        "alice": _row(4, 2, 2.0, 25.0, 37.0, 105.0, 137.14, 7, 1.75, 1, 0, 0, 0, None, 3, 1, 0.3333),
        "bob": _row(4, 1, 4.0, 7.0, 10.8, 29.0, 496.55, 7, 1.75, 0, 1, 1, 1, 0.6667, 4, 0, 0.0),
    },
    "day": {
        DAY1.isoformat(): _row(1, 1, 1.0, 40.0, 40.0, 40.0, 90.0, 1, 1.0, 0, 0, 0, 0, None, 0, 0, None),
        DAY2.isoformat(): _row(7, 2, 3.5, 10.0, 24.0, 94.0, 268.09, 13, 1.8571, 1, 1, 1, 1, 0.6667, 7, 1, 0.1429),
    },
    "model": {
        "m1": _row(3, 1, 3.0, 20.0, 28.0, 65.0, 166.15, 6, 2.0, 1, 0, 0, 0, None, 3, 1, 0.3333),
        "m2": _row(5, 2, 2.5, 8.0, 28.8, 69.0, 260.87, 8, 1.6, 0, 1, 1, 1, 0.6667, 4, 0, 0.0),
    },
    "total": _row(8, 3, 2.6667, 11.0, 33.0, 134.0, 214.93, 14, 1.75, 1, 1, 1, 1, 0.6667, 7, 1, 0.1429),
}


def _mask(image: Image, k: int) -> dict:
    """A distinct rectangle per mask number k (RLE of the image's size)."""
    m = np.zeros((image.height, image.width), np.uint8)
    m[10 + 12 * k: 20 + 12 * k, 10 + 8 * k: 60 + 8 * k] = 1
    return mask_to_rle(m)


def _prompts(pos: int, neg: int, box: bool) -> dict:
    coords = [[30 + 5 * i, 40] for i in range(pos + neg)]
    return {"point_coords": coords, "point_labels": [1] * pos + [0] * neg,
            "box": [5, 5, 100, 100] if box else None}


def _ok(res, code: int = 200):
    assert res.status_code == code, (res.status_code, res.content[:500])
    return res.json() if res.content else None


def setup_team():
    """Users, memberships and the project (three real photos). Returns (project, users by name)."""
    users = {name: UserFactory(username=name) for name in ("owner", "alice", "bob", "rita", "mona")}
    project = project_with_photos(user=users["owner"], photos=PHOTOS, categories=("flower", "leaf"))
    for name, role in (("alice", "annotator"), ("bob", "annotator"), ("rita", "reviewer"), ("mona", "manager")):
        services.project_add_member(project=project, user=users[name], role=role)
    return project, users


def run_session(project, clients: dict) -> dict[str, int]:
    """Play the table above through the API (``clients``: name -> logged-in APIClient with
    CSRF). Returns the image ids by letter."""
    a_img, b_img, c_img = Image.objects.filter(project=project).order_by("id")
    alice, bob, rita = clients["alice"], clients["bob"], clients["rita"]

    def save(client, image, k, pos, neg, box, ms, model):
        return _ok(client.post(f"/api/images/{image.pk}/annotations/", {
            "segmentation": _mask(image, k), "prompts": _prompts(pos, neg, box), "model_id": model,
            "active_ms": ms, "candidate_index": 1, "predicted_iou": 0.9}, format="json"), 201)

    # alice: the queue gives her A; three masks, one edit, done; then B.
    assert _ok(alice.post(f"/api/projects/{project.pk}/queue/next"))["id"] == a_img.pk
    m1 = save(alice, a_img, 1, 1, 0, False, 10_000, "m1")
    m2 = save(alice, a_img, 2, 2, 1, False, 20_000, "m1")
    m3 = save(alice, a_img, 3, 1, 0, True, 30_000, "m1")
    _ok(alice.patch(f"/api/annotations/{m3['id']}/", {"version": 1, "segmentation": _mask(a_img, 4),
                                                      "active_ms": 5_000}, format="json"))
    _ok(alice.post(f"/api/images/{a_img.pk}/done"))
    assert _ok(alice.post(f"/api/projects/{project.pk}/queue/next"))["id"] == b_img.pk
    save(alice, b_img, 1, 1, 0, False, 40_000, "m2")

    # bob: C, two manual masks, three proposals (accepted, edited, rejected), done.
    assert _ok(bob.post(f"/api/projects/{project.pk}/queue/next"))["id"] == c_img.pk
    save(bob, c_img, 1, 3, 2, False, 12_000, "m2")
    save(bob, c_img, 2, 1, 0, False, 8_000, "m2")
    proposals = []
    for k in (3, 4, 5):
        rle = _mask(c_img, k)
        proposals.append(Proposal.objects.create(image=c_img, model_id="m2", rle=rle, bbox=rle_bbox(rle),
                                                 area=rle_area(rle), predicted_iou=0.95, stability_score=0.97))
    _ok(bob.post(f"/api/proposals/{proposals[0].pk}/accept", {"active_ms": 2_000}, format="json"), 201)
    edited = _ok(bob.post(f"/api/proposals/{proposals[1].pk}/accept", {
        "segmentation": _mask(c_img, 6), "prompts": _prompts(1, 0, False), "model_id": "m2",
        "active_ms": 6_000}, format="json"), 201)
    assert edited["origin"] == "prefill_edited"
    _ok(bob.post(f"/api/proposals/{proposals[2].pk}/reject", {"active_ms": 1_000}, format="json"))
    _ok(bob.post(f"/api/images/{c_img.pk}/done"))

    # rita: A rejected (mask 2), C approved.
    _ok(rita.post(f"/api/images/{a_img.pk}/review", {
        "decision": "reject", "comment": "Mask 2 spills onto the leaves.",
        "annotations": [{"id": m1["id"], "status": "approved"},
                        {"id": m2["id"], "status": "rejected", "comment": "spills onto the leaves"},
                        {"id": m3["id"], "status": "approved"}]}, format="json"))
    _ok(rita.post(f"/api/images/{c_img.pk}/review", {"decision": "approve"}, format="json"))

    # Dates: B's work on DAY1, everything else on DAY2 (noon UTC).
    at = {d: dt.datetime.combine(d, dt.time(12), tzinfo=dt.timezone.utc) for d in (DAY1, DAY2)}
    AnnotationEvent.objects.filter(project=project, image=b_img).update(created_at=at[DAY1])
    AnnotationEvent.objects.filter(project=project).exclude(image=b_img).update(created_at=at[DAY2])
    return {"A": a_img.pk, "B": b_img.pk, "C": c_img.pk}
