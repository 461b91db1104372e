"""The annotate page for a role that may view but not annotate (a reviewer), in a real
Chromium: a read-only banner with a link to the image's row on the review page, saved masks
and proposals drawn, N/P browse, and no click, key or timer sends a write — no lease, no
save, no proposal decision. An annotator's page is unchanged: a click still gives a mask.

Needs the built frontend, Chromium at /usr/bin/chromium, the real PostgreSQL and Redis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.e2e.test_annotate import ARTIFACTS, ROOT, _click, _deepest_points, _launch, _wait_ready
from tests.e2e.test_team import _in_thread, _login
from tests.factories import GRABCUT, UserFactory, project_with_photos

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BANNER = "Read-only: your role (reviewer) may view this project's images, not annotate them"
REVIEWED = "153077.jpg"  # image 1: done, one saved mask and one pending proposal
CLICKED = "124080.jpg"  # image 2: the annotator clicks inside its flower


def _world():
    from annotator.core import services
    from annotator.core.models import Image, Proposal
    from engine.rle import mask_to_rle

    owner = UserFactory(username="ro-owner")
    project = project_with_photos(user=owner, photos=(REVIEWED, CLICKED), categories=("flower",))
    people = {}
    for name, role in (("rita", "reviewer"), ("alice", "annotator")):
        people[name] = UserFactory(username=name)
        services.project_add_member(project=project, user=people[name], role=role)
    first, second = project.images.order_by("id")
    mask = np.zeros((first.height, first.width), np.uint8)
    mask[40:140, 60:200] = 1
    services.annotation_create(image=first, user=owner, segmentation=mask_to_rle(mask),
                               category=project.categories.get().pk)
    prop = np.zeros_like(mask)
    prop[180:260, 220:330] = 1
    ys, xs = np.nonzero(prop)
    Proposal.objects.create(
        image=first, model_id="test-model", rle=mask_to_rle(prop), area=int(prop.sum()),
        bbox=[float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)], predicted_iou=0.97,
        stability_score=0.97, point_coords=[[float(xs.mean()), float(ys.mean())]])
    Image.objects.filter(pk=first.pk).update(status="done", done_by=people["alice"], proposals_status="ready",
                                             lease_holder=None, lease_expires_at=None)
    return project, first, second


def _state(image_id: int) -> dict:
    from annotator.core.models import Annotation, Image, Proposal

    img = Image.objects.get(pk=image_id)
    return {"annotations": Annotation.objects.filter(image_id=image_id).count(),
            "pending": Proposal.objects.filter(image_id=image_id, status="pending").count(),
            "lease": img.lease_holder_id, "status": img.status}


def test_reviewer_gets_a_read_only_page_annotator_does_not(app_server, celery_worker_process):
    from playwright.sync_api import sync_playwright

    if not (ROOT / "static" / "app" / "annotate.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")
    project, first, second = _world()
    before = {i.pk: _state(i.pk) for i in (first, second)}
    gt = np.array(PILImage.open(GRABCUT / "boundary_GT" / (Path(CLICKED).stem + ".bmp")).convert("L"))
    inside = _deepest_points(gt, 1)[0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []

    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            # --- rita, reviewer.
            page = _login(browser, app_server, "rita", errors)
            requests: list[tuple[str, str]] = []
            page.on("request", lambda r: requests.append((r.method, r.url)))
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={first.pk}")
            banner = page.locator("#readonly-banner")
            banner.wait_for(state="visible")
            assert page.locator("#readonly-banner .readonly-text").inner_text() == BANNER
            link = page.locator("#readonly-review-link")
            page.wait_for_function(f"window.__samDebug.imageId() === {first.pk}")
            assert link.get_attribute("href") == f"/projects/{project.pk}/review/#review-image-{first.pk}"
            # Saved masks and proposals are drawn as usual.
            page.wait_for_function("document.querySelector('.saved-layer').dataset.count === '1'")
            page.wait_for_function("document.querySelectorAll('#proposal-list li[data-proposal-id]').length === 1")
            # No control that writes; the Done button is hidden.
            for sel in ("#save-btn", "#undo-btn", "#clear-btn", "#accept-proposal-btn", "#reject-proposal-btn",
                        "#edit-proposal-btn", "#accept-above-btn", "#annotation-list button"):
                assert page.locator(sel).count() == 0, sel
            assert page.locator("#done-btn").is_hidden()

            # A click and a drag on the image make no mask; every key that would write does nothing.
            _click(page, 150, 120, first.width, first.height)
            box = page.locator(".prompt-layer").bounding_box()
            page.mouse.move(box["x"] + 20, box["y"] + 20)
            page.mouse.down()
            page.mouse.move(box["x"] + 120, box["y"] + 90, steps=4)
            page.mouse.up()
            page.keyboard.press("Tab")  # focuses the proposal: A / X / E would act on it
            for key in ("Enter", "a", "Shift+A", "x", "Delete", "e", "1", "Escape", "Control+z"):
                page.keyboard.press(key)
            page.wait_for_timeout(1500)
            assert page.locator("#mask-canvas").get_attribute("data-mask-pixels") == "0"
            assert page.evaluate("window.__samDebug.prompts()") == {"points": [], "box": None}
            assert page.locator("#status-message").inner_text() == BANNER + "."
            assert page.locator("#proposal-list li[data-proposal-id]").count() == 1
            page.screenshot(path=str(ARTIFACTS / "readonly_reviewer.png"))

            # N / P browse.
            page.keyboard.press("n")
            page.wait_for_function(f"window.__samDebug.imageId() === {second.pk}")
            assert f"image={second.pk}" in page.url
            assert link.get_attribute("href") == f"/projects/{project.pk}/review/"  # not waiting for review
            page.wait_for_function("document.querySelector('.saved-layer').dataset.count === '0'")
            page.keyboard.press("p")
            page.wait_for_function(f"window.__samDebug.imageId() === {first.pk}")

            writes = [r for r in requests if r[0] not in ("GET", "HEAD")]
            assert writes == [], writes
            # Nothing decodes on this page: neither the decoder nor an embedding was fetched.
            assert not [u for _, u in requests if "decoder" in u or "/embedding" in u], requests
            assert _in_thread(lambda: {i.pk: _state(i.pk) for i in (first, second)}) == before
            page.close()

            # --- alice, annotator: the page as before — no banner, a click gives a mask.
            page = _login(browser, app_server, "alice", errors)
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={second.pk}")
            _wait_ready(page)
            assert page.locator("#readonly-banner").is_hidden()
            assert page.locator("#save-btn").count() == 1
            page.wait_for_function("document.getElementById('work-bar').dataset.lease === 'mine'")
            _click(page, *inside, second.width, second.height)
            page.wait_for_function("window.__samPerf.length > 0")
            assert int(page.locator("#mask-canvas").get_attribute("data-mask-pixels")) > 0
            page.screenshot(path=str(ARTIFACTS / "readonly_annotator_unchanged.png"))
        finally:
            browser.close()
    assert not errors, errors
