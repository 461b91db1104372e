"""Brush and eraser on the annotate page, in a real Chromium: after a click, B turns the brush
on; a drag next to the model's mask paints pixels in and a right drag (or Shift+drag) through
it erases some (zoomed in: painted through the view transform); Ctrl+Z takes the last stroke
back; Enter saves, and the RLE read back from the API has the painted pixels in, the erased
ones out, and ``prompts.brush`` says it was edited by hand. A saved mask is then edited again
(✎ in the list, PATCH with its version), and an edit that started from an old version gets a
409 the page reports, the server's mask untouched.

Needs the built frontend, Chromium at /usr/bin/chromium, the real PostgreSQL and Redis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from engine.rle import rle_to_mask
from tests.e2e.test_annotate import ARTIFACTS, PHOTO, ROOT, _deepest_points, _launch, _open_annotate, _wait_ready
from tests.e2e.test_zoom import _to_page, _view
from tests.factories import GRABCUT, UserFactory, project_with_photos

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _current_mask(page, height: int, width: int) -> np.ndarray:
    rle = page.evaluate("window.__samDebug.currentMaskRle()")
    assert rle is not None, "no current mask"
    return rle_to_mask(rle).astype(bool).reshape(height, width)


def _drag(page, v: dict, a: tuple[float, float], b: tuple[float, float], button: str = "left", shift: bool = False) -> None:
    """A drag from image pixel a to b, through the page's view transform."""
    pa, pb = _to_page(v, *a), _to_page(v, *b)
    page.mouse.move(*pa)
    if shift:
        page.keyboard.down("Shift")
    page.mouse.down(button=button)
    page.mouse.move(*pb, steps=12)
    page.mouse.up(button=button)
    if shift:
        page.keyboard.up("Shift")


def _annotations(page, base: str, image_id: int) -> list[dict]:
    anns = page.request.get(f"{base}/api/images/{image_id}/annotations/").json()
    return anns["results"] if isinstance(anns, dict) else anns


def _paint_row(model: np.ndarray, v: dict, r: float, length: int = 24) -> tuple[int, int]:
    """The left end (x, y) of a horizontal run of `length` px outside the model mask, with a
    margin of the brush radius, within 40 px of the mask and on screen (next to the mask)."""
    h, w = model.shape
    ys, xs = np.nonzero(model)
    cy0, cx0 = ys.mean(), xs.mean()
    m = int(np.ceil(r)) + 3
    best = None
    for y in range(m, h - m, 3):
        for x in range(m, w - length - m, 3):
            win = model[y - m:y + m + 1, x - m:x + length + m + 1]
            if win.any():
                continue
            near = model[max(0, y - 40):y + 41, max(0, x - 40):x + length + 41].any()
            px0, py0 = _to_page(v, x, y)
            px1, _ = _to_page(v, x + length, y)
            on = v["sx"] + 5 < px0 and px1 < v["sx"] + v["sw"] - 5 and v["sy"] + 5 < py0 < v["sy"] + v["sh"] - 5
            if near and on:
                d = (x + length / 2 - cx0) ** 2 + (y - cy0) ** 2
                if best is None or d < best[0]:
                    best = (d, x, y)
    assert best is not None, "no room next to the mask to paint"
    return best[1], best[2]


def test_brush_paint_erase_save_edit_and_conflict(app_server, celery_worker_process):
    from playwright.sync_api import sync_playwright

    if not (ROOT / "static" / "app" / "annotate.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")
    user = UserFactory(username="e2e-brush")
    project = project_with_photos(user=user, photos=(PHOTO,), categories=("flower",))
    image = project.images.get()
    width, height = image.width, image.height
    gt = np.array(PILImage.open(GRABCUT / "boundary_GT" / (Path(PHOTO).stem + ".bmp")).convert("L"))
    x, y = _deepest_points(gt, 1)[0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = _open_annotate(browser, app_server, "e2e-brush", f"/projects/{project.pk}/annotate/?image={image.pk}", errors)
            _wait_ready(page)
            page.evaluate("document.activeElement && document.activeElement.blur()")

            # B with no mask yet: refused with a reason, brush stays off.
            page.keyboard.press("b")
            assert page.locator(".stage").get_attribute("data-brush") in (None, "off")
            assert "click the object first" in page.locator("#status-message").inner_text()

            # Zoomed in (x1.5 around the centre), click the object: the model's mask.
            page.keyboard.press("+")
            v = _view(page)
            page.mouse.click(*_to_page(v, x, y))
            page.wait_for_function("window.__samPerf.length > 0")
            model = _current_mask(page, height, width)
            assert model[y, x], "the model's mask does not cover the click"
            assert page.locator("#mask-canvas").get_attribute("data-edited") == "0"

            # B: the brush, radius in screen px; [ / ] change it.
            page.keyboard.press("b")
            stage = page.locator(".stage")
            assert stage.get_attribute("data-brush") == "on"
            r0 = int(stage.get_attribute("data-brush-radius"))
            page.keyboard.press("]")
            r1 = int(stage.get_attribute("data-brush-radius"))
            assert r1 > r0
            page.keyboard.press("[")
            r0 = int(stage.get_attribute("data-brush-radius"))
            assert r0 < r1
            assert page.locator("#brush-btn").inner_text() == f"Brush {r0} px"
            r_img = r0 / v["k"]

            # Paint a stroke next to the model's mask: its centre line is in the mask now.
            px, py = _paint_row(model, v, r_img)
            _drag(page, v, (px, py), (px + 24, py))
            painted = [(py, xx) for xx in range(px, px + 25)]
            mask = _current_mask(page, height, width)
            assert all(mask[p] for p in painted), "the painted stroke is not in the mask"
            assert all(not model[p] for p in painted)
            # Round caps: just past the stroke's end within the radius, in; well past it, out.
            assert mask[py, px - max(1, int(r_img) - 1)] and not mask[py, px - int(r_img) - 3]
            assert page.locator("#mask-canvas").get_attribute("data-edited") == "1"
            assert "1 brush stroke" in page.locator("#mask-info").inner_text()

            # Erase through the mask with a right drag: those pixels go.
            erased = [(y, xx) for xx in range(x - 8, x + 9)]
            assert sum(model[p] for p in erased) >= 12, "the click's row is not inside the model mask"
            _drag(page, v, (x - 8, y), (x + 8, y), button="right")
            mask = _current_mask(page, height, width)
            assert not any(mask[p] for p in erased), "the erased stroke is still in the mask"
            assert all(mask[p] for p in painted)
            # Ctrl+Z takes that stroke back (not the prompt), then Shift+drag erases the same.
            page.keyboard.press("Control+z")
            assert all(_current_mask(page, height, width)[p] for p in erased if model[p])
            assert page.evaluate("window.__samDebug.prompts().points.length") == 1
            _drag(page, v, (x - 8, y), (x + 8, y), shift=True)
            mask = _current_mask(page, height, width)
            assert not any(mask[p] for p in erased)
            assert page.evaluate("window.__samDebug.prompts().points.length") == 1  # a stroke, no prompt
            # The cursor circle shows where the brush is.
            page.mouse.move(*_to_page(v, px + 12, py - 20))
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / "brush_edit.png"))

            # Enter saves: the stored RLE has the painted pixels in, the erased ones out.
            page.keyboard.press("Enter")
            page.wait_for_function("document.querySelector('.saved-layer').dataset.count === '1'"
                                   " && window.__samDebug.currentMaskRle() === null")
            assert page.locator(".stage").get_attribute("data-brush") == "off"  # the next mask starts with clicks
            anns = _annotations(page, app_server, image.pk)
            assert len(anns) == 1
            ann = anns[0]
            saved = rle_to_mask(ann["segmentation"]).astype(bool)
            assert all(saved[p] for p in painted) and not any(saved[p] for p in erased)
            assert np.array_equal(saved, mask)
            brush = ann["prompts"]["brush"]
            assert brush["strokes"] == 2 and brush["painted"] > 0 and brush["erased"] > 0, brush
            assert ann["prompts"]["point_coords"] and ann["version"] == 1
            page.screenshot(path=str(ARTIFACTS / "brush_saved.png"))

            # Edit the saved mask: ✎ makes it the current mask with the brush on.
            row = page.locator(f"#annotation-list li[data-annotation-id='{ann['id']}']")
            row.locator("button.edit-annotation").click()
            page.wait_for_function("document.querySelector('.stage').dataset.brush === 'on'")
            assert "editing" in (row.get_attribute("class") or "")
            assert np.array_equal(_current_mask(page, height, width), saved)
            cut = [(y + 6, xx) for xx in range(x - 6, x + 7)]
            assert sum(saved[p] for p in cut) >= 8
            _drag(page, v, (x - 6, y + 6), (x + 6, y + 6), shift=True)
            page.keyboard.press("Enter")
            page.wait_for_function(
                f"document.getElementById('status-message').textContent.includes('Updated annotation #{ann['id']}')")
            ann2 = _annotations(page, app_server, image.pk)[0]
            assert ann2["id"] == ann["id"] and ann2["version"] == 2
            saved2 = rle_to_mask(ann2["segmentation"]).astype(bool)
            assert not any(saved2[p] for p in cut) and all(saved2[p] for p in painted)
            assert ann2["prompts"]["brush"]["strokes"] == 3
            assert page.evaluate("window.__samDebug.currentMaskRle()") is None  # left edit mode

            # Concurrent edit: this page starts from version 2, someone else saves version 3
            # meanwhile; this page's Enter gets 409, says so, and the server keeps theirs.
            row.locator("button.edit-annotation").click()
            page.wait_for_function("document.querySelector('.stage').dataset.brush === 'on'")
            csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
            other = page.request.patch(f"{app_server}/api/annotations/{ann['id']}/",
                                       data={"version": 2, "category": None},
                                       headers={"X-CSRFToken": csrf, "Referer": app_server})
            assert other.status == 200, other.text()
            assert other.json()["version"] == 3
            _drag(page, v, (px, py + 8), (px + 20, py + 8))
            page.keyboard.press("Enter")
            page.wait_for_function(
                "document.getElementById('status-message').textContent.includes('someone else changed')")
            assert "version 3" in page.locator("#status-message").inner_text()
            assert page.locator("#status-line").get_attribute("class").find("has-error") >= 0
            page.screenshot(path=str(ARTIFACTS / "brush_conflict.png"))
            ann3 = _annotations(page, app_server, image.pk)[0]
            assert ann3["version"] == 3 and np.array_equal(rle_to_mask(ann3["segmentation"]).astype(bool), saved2)
            # Esc drops the edit.
            page.keyboard.press("Escape")
            assert page.evaluate("window.__samDebug.currentMaskRle()") is None
            assert page.locator(".stage").get_attribute("data-brush") == "off"
        finally:
            browser.close()
    assert errors == [], errors
