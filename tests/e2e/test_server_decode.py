"""End to end in a real Chromium: the annotate page with ``?decoder=server`` sends each prompt
to ``POST /api/images/<id>/decode`` (onnxruntime in Django) instead of its worker, paints
the mask the server made, and records the same ``click-to-mask`` measure (issue 7 compares
the two paths on the same prompts).

Needs the built frontend, Chromium and the real PostgreSQL and Redis (see test_annotate.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.e2e.test_annotate import (ARTIFACTS, PHOTO, ROOT, _click, _deepest_points, _launch, _login,
                                     _reference_decode, _shown_mask, _wait_ready)
from tests.factories import GRABCUT, UserFactory, project_with_photos

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_server_decoder_paints_the_servers_mask(app_server, celery_worker_process):
    from playwright.sync_api import sync_playwright

    if not (ROOT / "static" / "app" / "annotate.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")

    user = UserFactory(username="e2e-server-decoder")
    project = project_with_photos(user=user, photos=(PHOTO,))
    image = project.images.get()
    width, height = image.width, image.height
    gt = np.array(PILImage.open(GRABCUT / "boundary_GT" / (Path(PHOTO).stem + ".bmp")).convert("L"))
    points = _deepest_points(gt, 2)

    console: list[str] = []
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("response", lambda r: console.append(f"error: HTTP {r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
            decodes: list[dict] = []
            page.on("request", lambda r: decodes.append(json.loads(r.post_data or "{}"))
                    if r.url.endswith(f"/api/images/{image.pk}/decode") and r.method == "POST" else None)

            _login(page, app_server, "e2e-server-decoder")
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={image.pk}&decoder=server")
            _wait_ready(page)
            status = page.locator("#decoder-status").inner_text()
            assert "server" in status, status

            # One click -> one POST to the server -> its mask painted, the click timed.
            _click(page, *points[0], width, height)
            page.wait_for_function("window.__samPerf.length > 0")
            assert len(decodes) == 1, decodes
            body = decodes[0]
            assert body["point_labels"] == [1] and body["mask_input"] is None and body["model_id"]
            shown = _shown_mask(page, width, height)
            area = int(page.locator("#mask-canvas").get_attribute("data-mask-pixels"))
            candidate = int(page.locator("#mask-canvas").get_attribute("data-candidate"))
            assert area > 0 and shown.sum() == area
            measures = page.evaluate("performance.getEntriesByName('click-to-mask', 'measure').length")
            assert measures >= 1
            detail = page.evaluate("window.__samPerfDetail")
            assert detail[0]["runMs"] > 0 and detail[0]["workerMs"] >= detail[0]["runMs"]

            # The server decoded what the worker would have: onnxruntime on the served
            # contract decoder and embedding gives the same pixels.
            prompts = page.evaluate("window.__samDebug.prompts()")
            ref_masks, ref_iou, ref_low_res = _reference_decode(page, app_server, image.pk, body["model_id"], prompts,
                                                                height, width)
            assert candidate == 1 + int(np.argmax(ref_iou[1:]))
            differ = int((ref_masks[candidate] ^ shown).sum())
            assert differ <= max(10, area // 1000), f"server mask differs from onnxruntime's in {differ} of {area} px"

            # A second click refines: the chosen candidate's low-res logits go to the server (fp16).
            _click(page, *points[1], width, height)
            page.wait_for_function("window.__samPerf.length > 1")
            assert len(decodes) == 2 and decodes[1]["point_labels"] == [1, 1]
            assert isinstance(decodes[1]["mask_input"], str) and len(decodes[1]["mask_input"]) > 100_000
            shown = _shown_mask(page, width, height)
            area = int(page.locator("#mask-canvas").get_attribute("data-mask-pixels"))
            assert area > 0 and shown.sum() == area
            prompts2 = page.evaluate("window.__samDebug.prompts()")
            mask_input = ref_low_res[candidate].astype(np.float16).astype(np.float32)  # as it went on the wire
            ref2, _, _ = _reference_decode(page, app_server, image.pk, body["model_id"], prompts2, height, width,
                                           mask_input=mask_input)
            differ = int((ref2[0] ^ shown).sum())
            assert differ <= max(10, area // 1000), f"refined mask differs from onnxruntime's in {differ} of {area} px"
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "annotate_server_decoder.png"))
        finally:
            browser.close()
    errors = [c for c in console if c.startswith(("error", "pageerror"))]
    assert not errors, errors
