"""Semi-automatic mode end to end in a real Chromium: a real Celery worker embeds an
uploaded GrabCut photo and pre-fills it with automatic-mask proposals (shipped model); the
annotate page draws them and an annotator accepts, rejects, edits and accepts-above with
the keyboard alone; the database and the API's counts by origin agree.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import wait_for
from tests.e2e.test_annotate import ARTIFACTS, ROOT, _launch, _open_annotate, _wait_ready
from tests.e2e.test_unsaved import _db
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PHOTO = "106024.jpg"


def _pending(image_id: int) -> list:
    from annotator.core.models import Proposal

    return list(Proposal.objects.filter(image_id=image_id, status="pending").order_by("-predicted_iou", "id"))


def test_prefill_review_by_keyboard(app_server, celery_worker_process):
    from playwright.sync_api import sync_playwright

    from annotator.core.models import Annotation, Image, Proposal
    from engine.rle import rle_to_mask

    if not (ROOT / "static" / "app" / "annotate.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")

    from annotator.core import services
    from tests.factories import grabcut_photo

    user = UserFactory(username="e2e-prefill")
    project = services.project_create(name="Pre-fill", user=user, categories=["object"])
    # This test is about the review loop, not the model's quality (bench/automatic_masks.py
    # measures that): an 8x8 grid and no IoU/stability floor give a handful of proposals
    # from any model in seconds. The filters themselves are tested in tests/engine.
    project.automatic_params = {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    project.prefill_enabled = True  # off by default in the test settings (a minute of CPU per photo)
    project.save()
    services.images_upload(project=project, files=[grabcut_photo(PHOTO)], user=user)
    image = project.images.get()

    def prefilled():
        img = Image.objects.get(pk=image.pk)
        assert img.embedding_status != "failed", img.embedding_error
        assert img.proposals_status != "failed", img.proposals_error
        return img.proposals_status == "ready"

    wait_for(prefilled, timeout=300, what="pre-fill of the uploaded photo")
    pending = _pending(image.pk)
    assert len(pending) >= 3, f"the shipped model proposed only {len(pending)} masks on {PHOTO}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = _open_annotate(browser, app_server, "e2e-prefill", f"/projects/{project.pk}/annotate/?image={image.pk}", errors)
            _wait_ready(page)
            page.wait_for_function(f"document.getElementById('proposal-canvas').dataset.count === '{len(pending)}'")
            assert page.locator("#proposal-list li[data-proposal-id]").count() == len(pending)
            # The best proposal (highest predicted IoU) has the focus first.
            assert page.locator("#proposal-canvas").get_attribute("data-focused") == str(pending[0].pk)
            page.screenshot(path=str(ARTIFACTS / "prefill_proposals.png"))

            # A accepts the focused proposal as it is.
            page.keyboard.press("a")
            page.wait_for_function("document.querySelector('.saved-layer').dataset.count === '1'")
            first = _db(lambda: Proposal.objects.get(pk=pending[0].pk))
            assert first.status == "accepted"
            ann = _db(lambda: Annotation.objects.select_related("category").get(pk=first.annotation_id))
            assert ann.origin == "prefill_accepted" and ann.category.name == "object"
            assert np.array_equal(rle_to_mask(ann.rle), rle_to_mask(first.rle))
            # The focus moved on to the next one.
            assert page.locator("#proposal-canvas").get_attribute("data-focused") == str(pending[1].pk)

            # Tab moves the focus; X rejects.
            page.keyboard.press("Tab")
            page.keyboard.press("Shift+Tab")
            assert page.locator("#proposal-canvas").get_attribute("data-focused") == str(pending[1].pk)
            page.keyboard.press("x")
            wait_for(lambda: _db(lambda: Proposal.objects.get(pk=pending[1].pk).status) == "rejected", timeout=20,
                     what="reject to land")

            # E opens the next one for editing: its grid point is decoded again in the browser
            # and the candidate matching the proposal is shown.
            target = _db(lambda: Proposal.objects.get(pk=pending[2].pk))
            assert page.locator("#proposal-canvas").get_attribute("data-focused") == str(target.pk)
            page.keyboard.press("e")
            page.wait_for_function("Number(document.getElementById('mask-canvas').dataset.maskPixels) > 0")
            shown = int(page.locator("#mask-canvas").get_attribute("data-mask-pixels"))
            prop_mask = rle_to_mask(target.rle).astype(bool)
            assert abs(shown - prop_mask.sum()) <= 0.2 * prop_mask.sum(), (shown, int(prop_mask.sum()))
            # A negative click inside the proposal, away from its grid point, changes the mask.
            ys, xs = np.nonzero(prop_mask)
            gx, gy = target.point_coords[0]
            far = int(np.argmax((xs - gx) ** 2 + (ys - gy) ** 2))
            box = page.locator(".prompt-layer").bounding_box()
            page.mouse.click(box["x"] + (xs[far] + 0.5) * box["width"] / image.width,
                             box["y"] + (ys[far] + 0.5) * box["height"] / image.height, button="right")
            page.wait_for_function("window.__samPerf.length > 0")
            page.keyboard.press("Enter")
            wait_for(lambda: _db(lambda: Proposal.objects.get(pk=target.pk).status) in ("edited", "accepted"), timeout=20,
                     what="edited proposal to land")
            target = _db(lambda: Proposal.objects.get(pk=target.pk))
            edited = _db(lambda: Annotation.objects.get(pk=target.annotation_id))
            assert target.status == "edited" and edited.origin == "prefill_edited", (target.status, edited.origin)
            assert edited.prompts["point_labels"] == [1, 0]
            page.wait_for_function("document.querySelector('.saved-layer').dataset.count === '2'")

            # M shades what no saved mask covers.
            page.keyboard.press("m")
            page.wait_for_function("Number(document.getElementById('proposal-canvas').dataset.shaded) > 0")
            page.screenshot(path=str(ARTIFACTS / "prefill_shaded.png"))

            # Shift+A accepts every remaining proposal at or above the side panel's threshold,
            # set here between the remaining proposals' predicted IoUs so that it splits them.
            rest = sorted(p.predicted_iou for p in _db(lambda: _pending(image.pk)))
            threshold = float(np.floor(rest[len(rest) // 2] * 1000) / 1000)
            page.fill("#prefill-threshold", str(threshold))
            page.locator("#prefill-threshold").press("Enter")
            above = [p.pk for p in _db(lambda: _pending(image.pk)) if p.predicted_iou >= threshold]
            assert above
            page.keyboard.press("Shift+A")
            wait_for(lambda: _db(lambda: Proposal.objects.filter(pk__in=above, status="accepted").count()) == len(above),
                     timeout=20, what="accept-above to land")
            assert all(p.predicted_iou < threshold for p in _db(lambda: _pending(image.pk)))
            page.wait_for_function(f"document.querySelector('.saved-layer').dataset.count === '{2 + len(above)}'")

            # Tab from a focused control moves the keyboard focus, not the proposal focus.
            before = page.locator("#proposal-canvas").get_attribute("data-focused")
            page.focus("#accept-above-btn")
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "prefill-threshold"
            assert page.locator("#proposal-canvas").get_attribute("data-focused") == before

            counts = page.evaluate(f"fetch('/api/projects/{project.pk}/prefill').then(r => r.json())")
            assert counts["annotations_by_origin"]["prefill_accepted"] == 1 + len(above)
            assert counts["annotations_by_origin"]["prefill_edited"] == 1
            assert counts["proposals"]["rejected"] == 1
            assert errors == [], errors
        finally:
            browser.close()
