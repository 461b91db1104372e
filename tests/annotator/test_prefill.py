"""Semi-automatic mode on the real PostgreSQL: proposals generated from a stored embedding
of a real photo, accepted as they are, edited, rejected, accepted above a threshold, with
the counts by origin in the API; settings and roles."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from annotator.core import prefill, services
from annotator.core.models import Annotation, AnnotationEvent, Image, Proposal
from engine.rle import mask_to_rle, rle_to_mask
from tests.factories import GRABCUT, UserFactory, project_with_photos

pytestmark = pytest.mark.django_db

PHOTO = "124080.jpg"


def _gt_mask(name: str = PHOTO) -> np.ndarray:
    """GrabCut's ground truth of the photo (object = 255), H x W 0/1."""
    gt = np.asarray(PILImage.open(GRABCUT / "boundary_GT" / name.replace(".jpg", ".bmp")).convert("L"))
    return (gt == 255).astype(np.uint8)


def _proposal(image: Image, mask: np.ndarray, predicted_iou: float = 0.93, **kw) -> Proposal:
    rle = mask_to_rle(mask)
    ys, xs = np.nonzero(mask)
    return Proposal.objects.create(
        image=image, model_id="test-model", rle=rle, area=int(mask.sum()),
        bbox=[float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
        predicted_iou=predicted_iou, stability_score=0.97, point_coords=[[float(xs.mean()), float(ys.mean())]],
        crop_box=[0, 0, image.width, image.height], **kw)


@pytest.fixture
def project(user):
    return project_with_photos(user=user, photos=(PHOTO,))


@pytest.fixture
def image(project):
    return project.images.get()


def test_pending_proposals_are_listed_best_first(api_client, image):
    gt = _gt_mask()
    low = _proposal(image, gt, predicted_iou=0.90)
    high = _proposal(image, 1 - gt, predicted_iou=0.97)
    body = api_client.get(f"/api/images/{image.pk}/proposals/").json()
    assert [p["id"] for p in body] == [high.pk, low.pk]
    assert body[1]["segmentation"]["size"] == [image.height, image.width]
    assert np.array_equal(rle_to_mask(body[1]["segmentation"]), gt)
    assert {"bbox", "area", "predicted_iou", "stability_score", "point_coords", "crop_box", "status"} <= set(body[0])
    assert api_client.get(f"/api/images/{image.pk}/proposals/?status=bogus").status_code == 400


def test_accept_as_proposed_makes_a_prefill_accepted_annotation(api_client, project, image):
    gt = _gt_mask()
    prop = _proposal(image, gt)
    cat = project.categories.first()
    res = api_client.post(f"/api/proposals/{prop.pk}/accept", {"category": cat.pk, "active_ms": 900}, format="json")
    assert res.status_code == 201, res.content
    ann = Annotation.objects.get(pk=res.json()["id"])
    assert ann.origin == "prefill_accepted" and ann.category_id == cat.pk
    assert np.array_equal(rle_to_mask(ann.rle), gt) and ann.area == int(gt.sum())
    assert ann.predicted_iou == pytest.approx(0.93) and ann.model_id == "test-model"
    prop.refresh_from_db()
    assert prop.status == "accepted" and prop.annotation_id == ann.pk
    event = AnnotationEvent.objects.get(annotation_id=ann.pk)
    assert (event.kind, event.origin, event.active_ms, event.positive_clicks) == ("create", "prefill_accepted", 900, 0)
    # Decided once: a second accept (another annotator, a double key press) is a 409 with who did it.
    again = api_client.post(f"/api/proposals/{prop.pk}/accept", {}, format="json")
    assert again.status_code == 409 and "already accepted" in again.json()["detail"]
    assert Annotation.objects.filter(image=image).count() == 1
    assert api_client.get(f"/api/images/{image.pk}/proposals/").json() == []


def test_accept_with_an_edited_mask_is_prefill_edited(api_client, image):
    gt = _gt_mask()
    prop = _proposal(image, gt)
    edited = gt.copy()
    edited[:, : image.width // 2] = 0  # the annotator cut the object in half with a negative click
    payload = {"segmentation": mask_to_rle(edited), "category": None, "candidate_index": 0, "predicted_iou": 0.8,
               "prompts": {"point_coords": [[200, 150], [100, 150]], "point_labels": [1, 0]}}
    res = api_client.post(f"/api/proposals/{prop.pk}/accept", payload, format="json")
    assert res.status_code == 201, res.content
    ann = Annotation.objects.get(pk=res.json()["id"])
    assert ann.origin == "prefill_edited" and np.array_equal(rle_to_mask(ann.rle), edited)
    assert Proposal.objects.get(pk=prop.pk).status == "edited"
    event = AnnotationEvent.objects.get(annotation_id=ann.pk)
    assert (event.positive_clicks, event.negative_clicks) == (1, 1)


def test_accept_with_the_unchanged_mask_counts_as_accepted(api_client, image):
    gt = _gt_mask()
    prop = _proposal(image, gt)
    res = api_client.post(f"/api/proposals/{prop.pk}/accept", {"segmentation": mask_to_rle(gt)}, format="json")
    assert res.status_code == 201 and res.json()["origin"] == "prefill_accepted"


def test_accept_with_a_malformed_mask_stores_nothing(api_client, image):
    prop = _proposal(image, _gt_mask())
    bad = {"size": [image.height, image.width], "counts": [5, 7]}  # counts do not sum to H x W
    res = api_client.post(f"/api/proposals/{prop.pk}/accept", {"segmentation": bad}, format="json")
    assert res.status_code == 400 and "segmentation" in res.json()
    assert Proposal.objects.get(pk=prop.pk).status == "pending" and not Annotation.objects.exists()


def test_reject_keeps_the_row_and_logs_an_event(api_client, image):
    prop = _proposal(image, _gt_mask())
    res = api_client.post(f"/api/proposals/{prop.pk}/reject", {"active_ms": 300}, format="json")
    assert res.status_code == 200 and res.json()["status"] == "rejected"
    assert AnnotationEvent.objects.filter(kind="proposal_reject", image=image, active_ms=300).count() == 1
    assert api_client.post(f"/api/proposals/{prop.pk}/accept", {}, format="json").status_code == 409
    assert api_client.get(f"/api/images/{image.pk}/proposals/?status=rejected").json()[0]["id"] == prop.pk


def test_accept_all_above_a_threshold(api_client, project, image):
    gt = _gt_mask()
    strong = _proposal(image, gt, predicted_iou=0.97)
    weak = _proposal(image, 1 - gt, predicted_iou=0.89)
    res = api_client.post(f"/api/images/{image.pk}/proposals/accept", {"min_predicted_iou": 0.95}, format="json")
    assert res.status_code == 201, res.content
    assert [a["origin"] for a in res.json()] == ["prefill_accepted"]
    assert Proposal.objects.get(pk=strong.pk).status == "accepted"
    assert Proposal.objects.get(pk=weak.pk).status == "pending"
    assert api_client.post(f"/api/images/{image.pk}/proposals/accept", {"min_predicted_iou": 1.5},
                           format="json").status_code == 400

    summary = api_client.get(f"/api/projects/{project.pk}/prefill").json()
    assert summary["annotations_by_origin"]["prefill_accepted"] == 1
    assert summary["proposals"] == {"pending": 1, "accepted": 1, "edited": 0, "rejected": 0}


def test_settings_are_validated_and_stored_as_overrides(api_client, project):
    res = api_client.patch(f"/api/projects/{project.pk}/prefill",
                           {"enabled": False, "params": {"pred_iou_thresh": 0.9, "points_per_side": 16}},
                           format="json")
    assert res.status_code == 200, res.content
    body = res.json()
    assert body["enabled"] is False and body["params"]["pred_iou_thresh"] == 0.9
    assert body["params"]["stability_score_thresh"] == 0.95  # defaults filled in
    assert body["overrides"] == {"pred_iou_thresh": 0.9, "points_per_side": 16}
    bad = api_client.patch(f"/api/projects/{project.pk}/prefill", {"params": {"pred_iou_thresh": 7}}, format="json")
    assert bad.status_code == 400 and "pred_iou_thresh" in str(bad.json())
    unknown = api_client.patch(f"/api/projects/{project.pk}/prefill", {"params": {"bogus": 1}}, format="json")
    assert unknown.status_code == 400 and "bogus" in str(unknown.json())
    project.refresh_from_db()
    assert project.automatic_params == {"pred_iou_thresh": 0.9, "points_per_side": 16}


def test_every_out_of_range_parameter_gets_its_own_400_error(api_client, project):
    # The thresholds are in [0, 1]: 5 is refused, and every bad field is named on its own
    # with its range (not only the first one the generator would trip on).
    res = api_client.patch(f"/api/projects/{project.pk}/prefill",
                           {"params": {"pred_iou_thresh": 5, "stability_score_thresh": 5, "box_nms_thresh": 0,
                                       "points_per_side": 0, "min_mask_region_area": -1, "bogus": 1,
                                       "points_per_batch": 64}}, format="json")
    assert res.status_code == 400, res.content
    errors = res.json()["params"]
    assert set(errors) == {"pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "points_per_side",
                           "min_mask_region_area", "bogus"}
    assert errors["pred_iou_thresh"] == ["pred_iou_thresh must be in [0, 1], got 5"]
    assert errors["stability_score_thresh"] == ["stability_score_thresh must be in [0, 1], got 5"]
    assert errors["box_nms_thresh"] == ["box_nms_thresh must be in (0, 1], got 0"]
    assert errors["points_per_side"] == ["points_per_side must be between 1 and 128, got 0"]
    assert errors["min_mask_region_area"] == ["min_mask_region_area must be >= 0, got -1"]
    assert "unknown" in errors["bogus"][0]
    for value in (-0.01, 1.01, "0.9", None, True):
        bad = api_client.patch(f"/api/projects/{project.pk}/prefill", {"params": {"pred_iou_thresh": value}},
                               format="json")
        assert bad.status_code == 400 and list(bad.json()["params"]) == ["pred_iou_thresh"], (value, bad.content)
    # A grid with no points in the last crop layer is a problem of several fields together.
    grid = api_client.patch(f"/api/projects/{project.pk}/prefill",
                            {"params": {"points_per_side": 3, "crop_n_layers": 2, "crop_n_points_downscale_factor": 2}},
                            format="json")
    assert grid.status_code == 400 and "no points in crop layer 2" in grid.json()["params"]["non_field_errors"][0]
    # The bounds themselves are allowed; nothing bad was stored.
    ok = api_client.patch(f"/api/projects/{project.pk}/prefill",
                          {"params": {"pred_iou_thresh": 1, "stability_score_thresh": 0}}, format="json")
    assert ok.status_code == 200, ok.content
    project.refresh_from_db()
    assert project.automatic_params == {"pred_iou_thresh": 1.0, "stability_score_thresh": 0.0}


@pytest.mark.parametrize("role,settings_status,decide_status", [
    ("admin", 200, 201), ("manager", 200, 201), ("annotator", 403, 201), ("reviewer", 403, 403),
])
def test_roles(project, image, role, settings_status, decide_status):
    from rest_framework.test import APIClient

    member = UserFactory()
    services.project_add_member(project=project, user=member, role=role)
    client = APIClient()
    client.force_login(member)
    prop = _proposal(image, _gt_mask())
    assert client.patch(f"/api/projects/{project.pk}/prefill", {"enabled": False},
                        format="json").status_code == settings_status
    assert client.post(f"/api/proposals/{prop.pk}/accept", {}, format="json").status_code == decide_status


def test_another_projects_proposals_do_not_exist(project, image):
    from rest_framework.test import APIClient

    stranger = UserFactory()
    client = APIClient()
    client.force_login(stranger)
    prop = _proposal(image, _gt_mask())
    for method, url in [("get", f"/api/proposals/{prop.pk}/"), ("post", f"/api/proposals/{prop.pk}/accept"),
                        ("post", f"/api/proposals/{prop.pk}/reject"), ("get", f"/api/images/{image.pk}/proposals/"),
                        ("get", f"/api/projects/{project.pk}/prefill")]:
        assert getattr(client, method)(url, {}, format="json").status_code == 404, url
    assert Proposal.objects.get(pk=prop.pk).status == "pending"


# ---------------------------------------------------------------- generation with the shipped model

def test_generate_from_the_stored_embedding_of_a_real_photo(user, project, image):
    # An 8x8 grid with low floors: this checks the pipeline (stored embedding -> records ->
    # proposals -> dedup on rerun) in seconds, whatever the shipped model's calibration;
    # the generator's filters are tested in tests/engine/test_automatic.py and its yield
    # with SAM's defaults is measured by bench/automatic_masks.py.
    prefill.prefill_settings_update(project=project, user=user,
                                    params={"points_per_side": 8, "pred_iou_thresh": 0.02,
                                            "stability_score_thresh": 0.0})
    project.refresh_from_db()
    services.embedding_compute(image=image)
    created = prefill.proposals_generate(image=image)
    image.refresh_from_db()
    assert image.proposals_status == "ready"
    assert created, "the shipped model proposed nothing on a GrabCut photo"
    params = prefill.prefill_params(project=project)
    for p in created:
        mask = rle_to_mask(p.rle)
        assert mask.shape == (image.height, image.width) and int(mask.sum()) == p.area > 0
        assert p.predicted_iou >= params.pred_iou_thresh and p.stability_score >= params.stability_score_thresh
        x, y = p.point_coords[0]
        assert 0 <= x <= image.width and 0 <= y <= image.height

    # A person accepts one and rejects another; a rerun replaces only the pending ones and
    # proposes neither the accepted mask nor the rejected one again.
    first, second = created[0], created[1] if len(created) > 1 else None
    prefill.proposal_accept(proposal_id=first.pk, user=user)
    if second is not None:
        prefill.proposal_reject(proposal_id=second.pk, user=user)
    rerun = prefill.proposals_generate(image=image)
    again = [rle_to_mask(p.rle) for p in rerun]
    # The accepted one is now an annotation (nothing at IoU >= DUPLICATE_IOU with it is
    # proposed again); the rejected one is not proposed again (nothing at >= REJECTED_IOU).
    for decided, limit in [(first, prefill.DUPLICATE_IOU)] + ([(second, prefill.REJECTED_IOU)] if second else []):
        m = rle_to_mask(decided.rle)
        assert all((np.logical_and(m, a).sum() / np.logical_or(m, a).sum()) < limit for a in again)
    assert Proposal.objects.filter(image=image, status="pending").count() == len(rerun)
    assert Proposal.objects.filter(image=image).exclude(status="pending").count() == (2 if second else 1)


def test_a_new_embedding_queues_proposals_only_when_enabled(project, image, django_capture_on_commit_callbacks):
    from unittest import mock

    project.prefill_enabled = True
    project.save()
    with mock.patch("annotator.core.prefill._enqueue") as enqueue:
        with django_capture_on_commit_callbacks(execute=True):
            prefill.after_embedding(image_id=image.pk)
        enqueue.assert_called_once_with([image.pk])
        assert Image.objects.get(pk=image.pk).proposals_status == "pending"
        project.prefill_enabled = False
        project.save()
        Image.objects.filter(pk=image.pk).update(proposals_status="none")
        with django_capture_on_commit_callbacks(execute=True):
            prefill.after_embedding(image_id=image.pk)
        enqueue.assert_called_once()



# ---------------------------------------------------------------- import as proposals

def test_real_coco_results_import_as_proposals_then_accept(api_client, user):
    """The cocoapi results file (real val2014 segmentations, wrapped as an instances file)
    imported as proposals: every mask becomes a pending proposal, no annotation is made;
    accepting one gives an annotation with exactly its pixels; a re-import proposes nothing
    that is already pending or annotated."""
    import io
    import json

    from tests.annotator.test_export_import import _cocoapi_as_instances, _project_for

    source = _cocoapi_as_instances()
    project = _project_for(user, source)
    buf = io.BytesIO(json.dumps(source).encode())
    buf.name = "results.json"
    res = api_client.post(f"/api/projects/{project.pk}/imports/coco", {"file": buf, "mode": "proposals"},
                          format="multipart")
    assert res.status_code == 200, res.content
    report = res.json()
    assert report["imported"] == 734 and report["skipped"] == []
    assert not Annotation.objects.filter(image__project=project).exists()
    proposals = Proposal.objects.filter(image__project=project)
    assert proposals.count() == 734 and set(proposals.values_list("source", flat=True)) == {"imported"}
    prop = proposals.order_by("id").first()
    res = api_client.post(f"/api/proposals/{prop.pk}/accept", {}, format="json")
    assert res.status_code == 201, res.content
    ann = Annotation.objects.get(pk=res.json()["id"])
    assert ann.origin == "prefill_accepted" and ann.category_id == prop.category_id
    assert np.array_equal(rle_to_mask(ann.rle), rle_to_mask(prop.rle))
    # Importing the same file again proposes nothing twice.
    buf.seek(0)
    again = api_client.post(f"/api/projects/{project.pk}/imports/coco", {"file": buf, "mode": "proposals"},
                            format="multipart").json()
    assert again["imported"] == 0 and len(again["skipped"]) == 734
    reasons = [s["reason"] for s in again["skipped"]]
    assert sum(f"(annotation {ann.pk})" in r for r in reasons) == 1
    assert sum("(pending proposal" in r for r in reasons) == 733


def test_prefill_runs_on_its_own_queue():
    """Embeddings (an annotator waits for them) never queue behind a pre-fill backlog."""
    from django.conf import settings

    from annotator.celery import app
    from annotator.core.tasks import embed_image, generate_proposals

    route = app.amqp.router.route({}, generate_proposals.name)
    assert route["queue"].name == settings.CELERY_PREFILL_QUEUE != settings.CELERY_TASK_DEFAULT_QUEUE
    assert app.amqp.router.route({}, embed_image.name)["queue"].name == settings.CELERY_TASK_DEFAULT_QUEUE


def test_new_projects_follow_the_prefill_default(user, settings):
    settings.ANNOTATOR_PREFILL_DEFAULT = True
    assert services.project_create(name="on", user=user).prefill_enabled is True
    settings.ANNOTATOR_PREFILL_DEFAULT = False
    assert services.project_create(name="off", user=user).prefill_enabled is False


def test_run_queues_embedded_images_once(api_client, project, image, django_capture_on_commit_callbacks):
    from unittest import mock

    Image.objects.filter(pk=image.pk).update(embedding_status="ready")
    with mock.patch("annotator.core.prefill._enqueue") as enqueue:
        with django_capture_on_commit_callbacks(execute=True):
            res = api_client.post(f"/api/projects/{project.pk}/prefill/run", {}, format="json")
        assert res.status_code == 202 and res.json() == {"queued": 1}
        enqueue.assert_called_once_with([image.pk])
        # Still queued: a second run does not queue it twice (the task reads the params when it runs).
        with django_capture_on_commit_callbacks(execute=True):
            again = api_client.post(f"/api/projects/{project.pk}/prefill/run", {}, format="json")
        assert again.json() == {"queued": 0} and enqueue.call_count == 1
        Image.objects.filter(pk=image.pk).update(proposals_status="ready")
        with django_capture_on_commit_callbacks(execute=True):
            third = api_client.post(f"/api/projects/{project.pk}/prefill/run", {"image_ids": [image.pk]},
                                    format="json")
        assert third.json() == {"queued": 1} and enqueue.call_count == 2


def test_turning_prefill_off_cancels_the_images_still_queued(api_client, project, image,
                                                             django_capture_on_commit_callbacks):
    """Found by the QA pass: after PATCH {"enabled": false} the worker still ran every queued
    image of the project (minutes of CPU each with the shipped model) ahead of other projects'
    images. Now the queued ones go back to "none" and their tasks skip them; a run asked for
    afterwards (POST .../prefill/run, allowed while off) still generates."""
    from unittest import mock

    from annotator.core.tasks import generate_proposals

    Image.objects.filter(pk=image.pk).update(embedding_status="ready")
    with mock.patch("annotator.core.prefill._enqueue"):
        with django_capture_on_commit_callbacks(execute=True):
            prefill.prefill_request(image_ids=[image.pk])
    assert Image.objects.get(pk=image.pk).proposals_status == "pending"

    res = api_client.patch(f"/api/projects/{project.pk}/prefill", {"enabled": False}, format="json")
    assert res.status_code == 200
    assert res.json()["images"]["pending"] == 0
    assert Image.objects.get(pk=image.pk).proposals_status == "none"
    with mock.patch("annotator.core.prefill.proposals_generate") as generate:
        generate_proposals(image.pk)  # the task already in the broker
    generate.assert_not_called()

    with mock.patch("annotator.core.prefill._enqueue") as enqueue:
        with django_capture_on_commit_callbacks(execute=True):
            assert api_client.post(f"/api/projects/{project.pk}/prefill/run", {}, format="json").json() == {"queued": 1}
        enqueue.assert_called_once_with([image.pk])
    with mock.patch("annotator.core.prefill.proposals_generate") as generate:
        generate_proposals(image.pk)
    generate.assert_called_once()


@pytest.mark.parametrize("env, expected", [
    ({}, False),  # the shipped default model: its masks almost never pass SAM's filters
    ({"ANNOTATOR_MODEL_NAME": "vit_h"}, True),  # an official checkpoint: pre-fill on
    ({"ANNOTATOR_PREFILL_DEFAULT": "1"}, True),  # said explicitly
    ({"ANNOTATOR_MODEL_NAME": "vit_b", "ANNOTATOR_PREFILL_DEFAULT": "0"}, False),
])
def test_new_projects_prefill_by_default_only_with_a_model_that_proposes(env, expected):
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items()
            if k not in ("ANNOTATOR_MODEL_NAME", "ANNOTATOR_PREFILL_DEFAULT", "DJANGO_SETTINGS_MODULE")}
    out = subprocess.run([sys.executable, "-c", "import annotator.settings as s; print(s.ANNOTATOR_PREFILL_DEFAULT)"],
                         env={**base, **env}, capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(expected)
