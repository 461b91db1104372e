"""A label deleted while an annotator has it selected (QA pass): in a real Chromium the
annotator picks 'zebra', an admin deletes it, the annotator makes a mask and presses Enter.
The save is refused (400, no such category); the page reloads the labels (no 'zebra' in the
picker), says so, keeps the mask as the current unsaved mask (nothing left stuck in the
outbox), and another label plus Enter saves it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from annotator.core import services
from annotator.core.models import Annotation, Category
from tests.conftest import ROOT
from tests.e2e.test_annotate import ARTIFACTS, PHOTO, _deepest_points, _launch, _login, _wait_ready
from tests.e2e.test_unsaved import _db, _make_mask, _unsaved
from tests.factories import GRABCUT, UserFactory, project_with_photos

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
MESSAGE = "The label 'zebra' was deleted; pick another label and press Enter"


def _outbox(page) -> list:
    return page.evaluate("""() => new Promise((resolve, reject) => {
        const req = indexedDB.open('sam-annotator');
        req.onsuccess = () => {
            const all = req.result.transaction('outbox').objectStore('outbox').getAll();
            all.onsuccess = () => resolve(all.result.map((e) => e.key));
        };
        req.onerror = () => reject(req.error);
    })""")


def test_a_save_with_a_deleted_label_keeps_the_mask_for_another_label(app_server, tmp_path):
    from playwright.sync_api import sync_playwright

    if not (ROOT / "static" / "app" / "annotate.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")
    user = UserFactory(username="e2e-zebra")
    project = project_with_photos(user=user, photos=(PHOTO,), categories=("flower", "zebra"))
    image = project.images.get()
    services.embedding_compute(image=image)  # ready before the page opens: no worker needed
    zebra = Category.objects.get(project=project, name="zebra")
    flower = Category.objects.get(project=project, name="flower")
    gt = np.array(PILImage.open(GRABCUT / "boundary_GT" / (Path(PHOTO).stem + ".bmp")).convert("L"))
    point = _deepest_points(gt, 1)[0]
    width, height = image.width, image.height
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _login(page, app_server, "e2e-zebra")
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={image.pk}")
            _wait_ready(page)
            page.select_option("#category-select", label="zebra")

            # An admin deletes 'zebra' in Settings meanwhile.
            _db(lambda: services.category_delete(project=project, user=user, category_id=zebra.pk))

            _make_mask(page, point, width, height)
            pixels = int(page.locator("#mask-canvas").get_attribute("data-mask-pixels"))
            page.keyboard.press("Enter")
            page.wait_for_function(f"document.getElementById('status-message').innerText.includes({MESSAGE!r})",
                                   timeout=15_000)
            page.screenshot(path=str(ARTIFACTS / "label_deleted_refused.png"))
            # The picker no longer offers it; nothing is selected until the annotator picks.
            options = page.locator("#category-select option").all_inner_texts()
            assert options == ["flower"]
            assert page.locator("#category-list li").all_inner_texts() == ["flower"]
            assert page.eval_on_selector("#category-select", "s => s.selectedIndex") == -1
            # The mask is still the current one, not a refused entry stuck in the outbox.
            assert int(page.locator("#mask-canvas").get_attribute("data-mask-pixels")) == pixels
            assert _unsaved(page) == 0 and page.locator("#annotation-list li.unsaved").count() == 0
            assert _outbox(page) == []
            assert "Save refused" not in page.locator("#status-message").inner_text()
            assert _db(lambda: Annotation.objects.filter(image=image).count()) == 0

            # Another label and Enter: saved, with that label.
            page.select_option("#category-select", label="flower")
            page.keyboard.press("Enter")
            page.wait_for_function("document.querySelectorAll('#annotation-list li[data-annotation-id]').length === 1",
                                   timeout=15_000)
            (category, area), = _db(lambda: list(Annotation.objects.filter(image=image).values_list("category", "area")))
            assert category == flower.pk and area == pixels
            assert _unsaved(page) == 0 and _outbox(page) == []
            page.screenshot(path=str(ARTIFACTS / "label_deleted_saved.png"))
        finally:
            browser.close()
