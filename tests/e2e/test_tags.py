"""Label tags of saved masks on the annotate page, in a real Chromium: the tags of small,
close masks used to be drawn each at its mask's corner, on top of one another and
unreadable; now none overlaps another, each is on the stage, and one moved away from its
mask's corner is tied to it (the overlay says so: data-tags, see frontend/src/lib/tags.ts).

Needs the built frontend, Chromium at /usr/bin/chromium, the real PostgreSQL and Redis.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from annotator.core import services
from tests.e2e.test_annotate import ARTIFACTS, ROOT, _launch, _open_annotate
from tests.factories import UserFactory, project_with_photos

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NAMES = ("flower", "leaf", "stem", "petal", "background")


def _overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def test_tags_of_close_masks_do_not_overlap(app_server):
    from playwright.sync_api import sync_playwright

    from engine.rle import mask_to_rle

    if not (ROOT / "static" / "app" / "annotate.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")
    owner = UserFactory(username="e2e-tags")
    project = project_with_photos(user=owner, categories=NAMES)
    image = project.images.get()
    cats = {c.name: c.pk for c in project.categories.all()}
    # Five small masks side by side, 14 image px apart: at fit (~0.5 screen px per image px)
    # their corners are ~7 screen px apart, far less than a tag's width.
    for i, name in enumerate(NAMES):
        mask = np.zeros((image.height, image.width), np.uint8)
        mask[100:112, 100 + 14 * i:112 + 14 * i] = 1
        services.annotation_create(image=image, user=owner, segmentation=mask_to_rle(mask), category=cats[name])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = _open_annotate(browser, app_server, "e2e-tags", f"/projects/{project.pk}/annotate/?image={image.pk}", errors)
            page.wait_for_function("document.querySelector('.saved-layer')?.dataset.count === '5'", timeout=60_000)
            page.wait_for_function("JSON.parse(document.querySelector('.overlay-layer').dataset.tags || '[]').length === 5",
                                   timeout=10_000)
            k = float(page.locator("#zoom-level").get_attribute("data-k"))
            assert 14 * k < 40, k  # the masks are closer than a tag is wide: the case that overlapped
            tags = json.loads(page.locator(".overlay-layer").get_attribute("data-tags"))
            assert len(tags) == 5
            for i in range(5):
                for j in range(i + 1, 5):
                    assert not _overlap(tags[i], tags[j]), (tags[i], tags[j])
            stage = page.locator(".stage").bounding_box()
            for t in tags:
                assert t["x"] >= 0 and t["y"] >= 0 and t["x"] + t["w"] <= stage["width"] and t["y"] + t["h"] <= stage["height"]
            # One keeps its mask's corner; the others were moved (and get a leader line).
            assert sum(not t["moved"] for t in tags) >= 1 and sum(t["moved"] for t in tags) >= 1
            page.screenshot(path=str(ARTIFACTS / "tags_close_masks.png"),
                            clip={"x": stage["x"], "y": stage["y"], "width": 500, "height": 300})
            # Zoomed in, the masks are far apart: every tag sits at its own mask's corner.
            page.evaluate("document.activeElement && document.activeElement.blur()")
            tv = json.loads(page.locator(".overlay-layer").get_attribute("data-tags"))
            x0 = min(t["x"] for t in tv)
            page.mouse.move(stage["x"] + x0 + 20, stage["y"] + min(t["y"] for t in tv) + 20)
            for _ in range(8):
                page.mouse.wheel(0, -300)
            page.wait_for_function("Number(document.getElementById('zoom-level').dataset.k) > 4")
            page.wait_for_timeout(300)
            tags = json.loads(page.locator(".overlay-layer").get_attribute("data-tags"))
            assert tags and all(not t["moved"] for t in tags), tags
            page.screenshot(path=str(ARTIFACTS / "tags_zoomed.png"),
                            clip={"x": stage["x"], "y": stage["y"], "width": 900, "height": 500})
        finally:
            browser.close()
    assert not errors, errors
