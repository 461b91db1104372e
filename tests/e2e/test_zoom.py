"""Zoom and pan on the annotate page, in a real Chromium: the wheel zooms around the cursor,
Space+drag and a middle-button drag pan without making prompts, and a click after that lands
on the image pixel under the cursor (the saved prompt says so and the mask covers it). A very
thin image (3000x8, cut from a real photo) opens wide enough to click, and a click lands in it.

Needs the built frontend, Chromium at /usr/bin/chromium, the real PostgreSQL and Redis.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from annotator.core import services
from tests.e2e.test_annotate import (
    ARTIFACTS, PHOTO, ROOT, _attr, _deepest_points, _launch, _login, _open_annotate, _shown_mask, _wait_ready,
)
from tests.factories import GRABCUT, UserFactory, grabcut_photo

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _view(page) -> dict:
    """The view transform as the page applies it: k (screen px per image px), tx, ty (the
    image's top-left corner, relative to the stage), and the stage's position on the page."""
    badge = page.locator("#zoom-level")
    stage = page.locator(".stage").bounding_box()
    return {"k": float(badge.get_attribute("data-k")), "tx": float(badge.get_attribute("data-tx")),
            "ty": float(badge.get_attribute("data-ty")), "sx": stage["x"], "sy": stage["y"],
            "sw": stage["width"], "sh": stage["height"], "label": badge.inner_text()}


def _to_page(v: dict, x: float, y: float) -> tuple[float, float]:
    """Image pixel (x, y) (pixel centres are integers) -> page coordinates."""
    return v["sx"] + v["tx"] + (x + 0.5) * v["k"], v["sy"] + v["ty"] + (y + 0.5) * v["k"]


def _to_image(v: dict, px: float, py: float) -> tuple[float, float]:
    return (px - v["sx"] - v["tx"]) / v["k"] - 0.5, (py - v["sy"] - v["ty"]) / v["k"] - 0.5


def _thin_jpeg() -> tuple[str, bytes]:
    """A 3000x8 strip from a real photo (its middle rows, stretched along)."""
    im = PILImage.open(GRABCUT / "data_GT" / PHOTO).convert("RGB")
    w, h = im.size
    strip = im.crop((0, h // 2 - 4, w, h // 2 + 4)).resize((3000, 8), PILImage.BILINEAR)
    buf = io.BytesIO()
    strip.save(buf, "JPEG", quality=92)
    return "thin_3000x8.jpg", buf.getvalue()


def test_zoom_pan_click(app_server, celery_worker_process):
    from playwright.sync_api import sync_playwright

    if not (ROOT / "static" / "app" / "annotate.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")

    user = UserFactory(username="e2e-zoom")
    project = services.project_create(name="Zoom", user=user, categories=["flower"])
    services.images_upload(project=project, files=[grabcut_photo(PHOTO), _thin_jpeg()], user=user)
    photo, thin = list(project.images.order_by("id"))
    assert (thin.width, thin.height) == (3000, 8)
    width, height = photo.width, photo.height
    gt = np.array(PILImage.open(GRABCUT / "boundary_GT" / (Path(PHOTO).stem + ".bmp")).convert("L"))
    x, y = _deepest_points(gt, 1)[0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = _open_annotate(browser, app_server, "e2e-zoom", f"/projects/{project.pk}/annotate/?image={photo.pk}", errors)
            _wait_ready(page)
            page.evaluate("document.activeElement && document.activeElement.blur()")

            fit = _view(page)
            # Fitted: the whole photo on the stage.
            assert fit["tx"] >= 0 and fit["ty"] >= 0
            assert fit["tx"] + width * fit["k"] <= fit["sw"] + 0.5 and fit["ty"] + height * fit["k"] <= fit["sh"] + 0.5

            # The wheel zooms around the cursor: the pixel under it stays under it.
            cx, cy = _to_page(fit, x, y)
            page.mouse.move(cx, cy)
            for _ in range(6):  # x1.57 per 300 px of wheel
                page.mouse.wheel(0, -300)
            page.wait_for_function(f"Number(document.getElementById('zoom-level').dataset.k) > {fit['k'] * 8}")
            zoomed = _view(page)
            ux, uy = _to_image(zoomed, cx, cy)
            assert abs(ux - x) < 0.5 and abs(uy - y) < 0.5, (ux, uy, x, y)
            assert zoomed["label"].endswith("%")
            # Ctrl+wheel (a trackpad pinch) zooms too.
            page.keyboard.down("Control")
            page.mouse.wheel(0, 20)
            page.keyboard.up("Control")
            page.wait_for_function(f"Number(document.getElementById('zoom-level').dataset.k) < {zoomed['k']}")

            # Space + drag pans; no prompt is made.
            before = _view(page)
            page.keyboard.down(" ")
            page.mouse.move(cx, cy)
            page.mouse.down()
            page.mouse.move(cx - 60, cy - 40, steps=5)
            page.mouse.up()
            page.keyboard.up(" ")
            after = _view(page)
            assert abs((after["tx"] - before["tx"]) - (-60)) < 1 and abs((after["ty"] - before["ty"]) - (-40)) < 1, (before, after)
            # Middle-button drag pans as well.
            page.mouse.move(cx, cy)
            page.mouse.down(button="middle")
            page.mouse.move(cx + 25, cy + 15, steps=5)
            page.mouse.up(button="middle")
            after2 = _view(page)
            assert abs((after2["tx"] - after["tx"]) - 25) < 1 and abs((after2["ty"] - after["ty"]) - 15) < 1
            # An arrow key pans too.
            page.keyboard.press("ArrowLeft")
            after3 = _view(page)
            assert after3["tx"] > after2["tx"]
            assert _attr(page, ".prompt-layer", "data-points") == "0"
            assert page.evaluate("window.__samDebug.prompts().points.length") == 0
            assert page.evaluate("window.__samPerf.length") == 0

            # Click where (x, y) now is: the prompt is that pixel, and the mask covers it.
            px, py = _to_page(after3, x, y)
            assert after3["sx"] < px < after3["sx"] + after3["sw"] and after3["sy"] < py < after3["sy"] + after3["sh"]
            page.mouse.click(px, py)
            page.wait_for_function("window.__samPerf.length > 0")
            prompts = page.evaluate("window.__samDebug.prompts()")
            assert len(prompts["points"]) == 1 and prompts["points"][0]["label"] == 1
            gx, gy = prompts["points"][0]["x"], prompts["points"][0]["y"]
            assert abs(gx - x) <= 1 and abs(gy - y) <= 1, (gx, gy, x, y)
            shown = _shown_mask(page, width, height)
            assert shown[round(gy), round(gx)], "the mask does not cover the clicked pixel"
            page.wait_for_timeout(300)  # the overlay redraws on the next animation frame
            page.screenshot(path=str(ARTIFACTS / "zoom_mask.png"))
            # Less zoomed (- around the centre), so the mask's edge is in view: its outline must
            # follow the photo's object edge.
            k_before = _view(page)["k"]
            for _ in range(3):
                page.keyboard.press("-")
            assert _view(page)["k"] < k_before / 3
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / "zoom_mask_edge.png"))

            # Saved: the server's prompt is the pixel that was under the cursor.
            page.keyboard.press("Enter")
            page.wait_for_function("document.querySelector('.saved-layer').dataset.count === '1'")
            anns = page.request.get(f"{app_server}/api/images/{photo.pk}/annotations/").json()
            anns = anns["results"] if isinstance(anns, dict) else anns
            assert len(anns) == 1
            sx_, sy_ = anns[0]["prompts"]["point_coords"][0]
            assert abs(sx_ - x) <= 1 and abs(sy_ - y) <= 1, (sx_, sy_, x, y)
            page.screenshot(path=str(ARTIFACTS / "zoom_saved.png"))

            # F fits again.
            page.keyboard.press("f")
            page.wait_for_function(f"Math.abs(Number(document.getElementById('zoom-level').dataset.k) - {fit['k']}) < 1e-9")

            # A 3000x8 image: fitted wide enough to click (not a 1-px strip), and a click in it
            # lands on the pixel under the cursor.
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={thin.pk}")
            _wait_ready(page)
            tv = _view(page)
            assert thin.height * tv["k"] >= 100, tv
            assert tv["ty"] >= 0 and tv["ty"] + thin.height * tv["k"] <= tv["sh"]
            tx, ty = 30, 4
            qx, qy = _to_page(tv, tx, ty)
            assert tv["sx"] < qx < tv["sx"] + tv["sw"]
            page.mouse.click(qx, qy)
            page.wait_for_function("window.__samDebug.prompts().points.length === 1")
            tp = page.evaluate("window.__samDebug.prompts()")["points"][0]
            assert 0 <= tp["x"] <= thin.width - 1 and 0 <= tp["y"] <= thin.height - 1
            assert abs(tp["x"] - tx) <= 1 and abs(tp["y"] - ty) <= 1, tp
            page.screenshot(path=str(ARTIFACTS / "zoom_thin.png"))
            # Panning along the long side reaches its far end.
            for _ in range(200):
                page.keyboard.press("Shift+ArrowRight")
            end = _view(page)
            assert end["tx"] + thin.width * end["k"] <= end["sw"]
        finally:
            browser.close()
    assert errors == [], errors


def _relative(v: dict, width: int, height: int) -> tuple[float, float]:
    """The image point at the stage's centre, as fractions of the image's width and height."""
    return (v["sw"] / 2 - v["tx"]) / v["k"] / width, (v["sh"] / 2 - v["ty"]) / v["k"] / height


def _shown(page, image_id: int) -> None:
    page.wait_for_function(f"window.__samDebug.imageId() === {image_id} && "
                           f"document.getElementById('mask-canvas').dataset.imageId === '{image_id}'", timeout=30_000)
    page.wait_for_timeout(200)


def test_zoom_kept_across_next_and_previous(app_server):
    """Zoomed in on one photo, N opens the next one at the same zoom relative to fit, centred
    on the same relative point; P back likewise; F fits and the next image opens fitted."""
    from playwright.sync_api import sync_playwright

    if not (ROOT / "static" / "app" / "annotate.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")
    user = UserFactory(username="e2e-zoom-keep")
    project = services.project_create(name="Zoom keep", user=user, categories=["flower"])
    services.images_upload(project=project, files=[grabcut_photo(p) for p in (PHOTO, "153077.jpg", "65019.jpg")], user=user)
    first, second, third = list(project.images.order_by("id"))
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = _open_annotate(browser, app_server, "e2e-zoom-keep", f"/projects/{project.pk}/annotate/?image={first.pk}&prefetch=0", errors)
            _shown(page, first.pk)
            page.evaluate("document.activeElement && document.activeElement.blur()")
            fit1 = _view(page)
            # Zoom in around a point off the centre: the view is 3x fit there.
            page.mouse.move(fit1["sx"] + fit1["sw"] * 0.3, fit1["sy"] + fit1["sh"] * 0.35)
            for _ in range(3):
                page.mouse.wheel(0, -300)
            page.wait_for_function(f"Number(document.getElementById('zoom-level').dataset.k) > {fit1['k'] * 3}")
            z1 = _view(page)
            rel1 = z1["k"] / fit1["k"]
            c1 = _relative(z1, first.width, first.height)
            assert abs(c1[0] - 0.5) > 0.05  # off the centre: what is kept is not just "centred"

            page.keyboard.press("n")
            _shown(page, second.pk)
            z2 = _view(page)
            assert page.locator("#zoom-level").get_attribute("data-fitted") == "0"
            c2 = _relative(z2, second.width, second.height)
            assert abs(c2[0] - c1[0]) < 0.01 and abs(c2[1] - c1[1]) < 0.01, (c1, c2)
            page.screenshot(path=str(ARTIFACTS / "zoom_kept_next.png"))
            # Its zoom relative to its own fit is the same (F shows its fit scale).
            page.keyboard.press("f")
            fit2 = _view(page)
            assert abs(z2["k"] / fit2["k"] - rel1) < 0.01 * rel1, (z2["k"], fit2["k"], rel1)
            # F fitted it: P opens the first photo fitted too.
            page.keyboard.press("p")
            _shown(page, first.pk)
            assert page.locator("#zoom-level").get_attribute("data-fitted") == "1"
            assert abs(_view(page)["k"] - fit1["k"]) < 1e-6
            # Zoom again (with +), then P-N: N and P both carry it.
            page.keyboard.press("+")
            page.keyboard.press("+")
            z3 = _view(page)
            page.keyboard.press("n")
            _shown(page, second.pk)
            page.keyboard.press("n")
            _shown(page, third.pk)
            z4 = _view(page)
            page.keyboard.press("p")
            _shown(page, second.pk)
            page.keyboard.press("p")
            _shown(page, first.pk)
            z5 = _view(page)
            assert abs(z5["k"] - z3["k"]) < 0.01 * z3["k"] and abs(z5["tx"] - z3["tx"]) < 1 and abs(z5["ty"] - z3["ty"]) < 1
            assert page.locator("#zoom-level").get_attribute("data-fitted") == "0" and z4["k"] > 0
        finally:
            browser.close()
    assert not errors, errors


def _touch(cdp, kind: str, points: list[tuple[float, float]]) -> None:
    cdp.send("Input.dispatchTouchEvent", {
        "type": kind, "touchPoints": [{"x": x, "y": y, "id": i, "radiusX": 4, "radiusY": 4, "force": 1}
                                      for i, (x, y) in enumerate(points)]})


def test_touch_pinch_zooms_two_fingers_pan_one_finger_points(app_server):
    """On a touch screen (Chromium's touch input through CDP): two fingers spreading zoom
    around their midpoint, two fingers moving together pan, neither makes a prompt; one
    finger's tap still makes a positive point there."""
    from playwright.sync_api import sync_playwright

    if not (ROOT / "static" / "app" / "annotate.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")
    user = UserFactory(username="e2e-touch")
    project = services.project_create(name="Touch", user=user, categories=["flower"])
    services.images_upload(project=project, files=[grabcut_photo(PHOTO)], user=user)
    photo = project.images.get()
    services.embedding_compute(image=photo)
    gt = np.array(PILImage.open(GRABCUT / "boundary_GT" / (Path(PHOTO).stem + ".bmp")).convert("L"))
    x, y = _deepest_points(gt, 1)[0]
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 800}, has_touch=True)
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            _login(page, app_server, "e2e-touch")
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={photo.pk}")
            _wait_ready(page)
            cdp = context.new_cdp_session(page)
            fit = _view(page)
            mx, my = fit["sx"] + fit["sw"] * 0.4, fit["sy"] + fit["sh"] * 0.45
            under = _to_image(fit, mx, my)

            # Pinch out: 60 px apart -> 180 px apart around (mx, my): x3.
            _touch(cdp, "touchStart", [(mx - 30, my), (mx + 30, my)])
            for i in range(1, 7):
                _touch(cdp, "touchMove", [(mx - 30 - 10 * i, my), (mx + 30 + 10 * i, my)])
            _touch(cdp, "touchEnd", [])
            page.wait_for_timeout(200)
            z = _view(page)
            assert abs(z["k"] / fit["k"] - 3) < 0.05, (z["k"], fit["k"])
            ux, uy = _to_image(z, mx, my)
            assert abs(ux - under[0]) < 0.5 and abs(uy - under[1]) < 0.5, (ux, uy, under)
            assert page.evaluate("window.__samDebug.prompts().points.length") == 0
            assert page.evaluate("window.__samPerf.length") == 0

            # Two fingers moving together: a pan by their move, the zoom unchanged.
            _touch(cdp, "touchStart", [(mx - 40, my), (mx + 40, my)])
            for i in range(1, 6):
                _touch(cdp, "touchMove", [(mx - 40 - 8 * i, my - 6 * i), (mx + 40 - 8 * i, my - 6 * i)])
            _touch(cdp, "touchEnd", [])
            page.wait_for_timeout(200)
            p = _view(page)
            assert abs(p["k"] - z["k"]) < 1e-9
            assert abs((p["tx"] - z["tx"]) - (-40)) < 1 and abs((p["ty"] - z["ty"]) - (-30)) < 1, (z, p)
            assert page.evaluate("window.__samDebug.prompts().points.length") == 0
            page.screenshot(path=str(ARTIFACTS / "touch_pinch_pan.png"))

            # One finger: a tap makes a positive point on the pixel under it.
            tx, ty = _to_page(p, x, y)
            assert p["sx"] < tx < p["sx"] + p["sw"] and p["sy"] < ty < p["sy"] + p["sh"]
            _touch(cdp, "touchStart", [(tx, ty)])
            _touch(cdp, "touchEnd", [])
            page.wait_for_function("window.__samDebug.prompts().points.length === 1")
            pt = page.evaluate("window.__samDebug.prompts()")["points"][0]
            assert pt["label"] == 1 and abs(pt["x"] - x) <= 1 and abs(pt["y"] - y) <= 1, (pt, x, y)
            page.wait_for_function("window.__samPerf.length > 0")
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / "touch_tap_point.png"))
        finally:
            browser.close()
    assert not errors, errors
