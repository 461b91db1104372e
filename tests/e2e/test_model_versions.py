"""The annotate page never decodes an embedding with another model's decoder (issue 9): a
project switched to another version while a page holds the old decoder makes the page say
"reload" instead of painting a wrong mask; after the reload it loads the new version's
decoder and works. Real Chromium, server and worker (see tests/e2e/test_annotate.py)."""

from __future__ import annotations

import threading

import pytest

from tests.annotator.test_model_versions import _register_default_copy
from tests.e2e.test_annotate import ROOT, _launch, _login, _wait_ready
from tests.factories import UserFactory, project_with_photos

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _in_thread(fn) -> None:
    """ORM work off Playwright's event-loop thread."""
    from django.db import connection

    def run():
        try:
            fn()
        finally:
            connection.close()

    t = threading.Thread(target=run)
    t.start()
    t.join()


def test_a_page_holding_the_old_decoder_says_reload_after_a_switch(app_server, celery_worker_process, tmp_path):
    from playwright.sync_api import sync_playwright

    from annotator.core.model_runtime import current_model_id
    from annotator.core.model_versions import project_model_switch
    from annotator.core.models import Embedding, Image
    from tests.conftest import wait_for

    if not (ROOT / "static" / "app" / "annotate.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")
    user = UserFactory(username="e2e-versions")
    project = project_with_photos(user=user, photos=("124080.jpg", "153077.jpg", "65019.jpg"))
    first, second, third = project.images.order_by("id")
    for im in (first, second, third):
        wait_for(lambda: Image.objects.get(pk=im.pk).embedding_status == "ready", timeout=240, what=f"embedding {im.pk}")
    retrained = _register_default_copy(tmp_path, "retrained-e2e", 1.05)
    default_id = current_model_id()

    def switch():
        # As if the third image had been uploaded after the switch: no embedding of the old model.
        Embedding.objects.filter(image=third, model_id=default_id).delete()
        project_model_switch(project=project, user=user, version=retrained)

    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _login(page, app_server, "e2e-versions")
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={first.pk}")
            _wait_ready(page)
            assert "Shipped default model" in page.locator("#decoder-status").inner_text()
            _in_thread(switch)  # behind the page's back: it holds the default's decoder
            # The second image's default embedding (prefetched, or still served): a right mask.
            page.keyboard.press("n")
            page.wait_for_url(f"**image={second.pk}*")
            _wait_ready(page)
            # The third has none of the default's: never decoded, the page says why.
            page.keyboard.press("n")
            page.wait_for_url(f"**image={third.pk}*")
            page.wait_for_function("document.getElementById('status-line').dataset.embedding === 'failed'",
                                   timeout=240_000)
            status = page.locator("#embedding-status").inner_text()
            assert f"switched to model {retrained.model_id}" in status and "reload" in status, status
            assert page.evaluate("window.__samReady") is False  # no prompt can be decoded
            # After a reload: the new version's decoder and its embedding.
            page.reload()
            _wait_ready(page)
            assert "retrained-e2e" in page.locator("#decoder-status").inner_text()
        finally:
            browser.close()
