"""Annotate-page fixes from a QA pass, in a real Chromium: the accept-all threshold refuses
values outside [0, 1] and says so.

Embeddings are computed before the page opens where a test needs them (no worker).
"""

from __future__ import annotations

import pytest

from tests.e2e.test_annotate import PHOTO, _launch, _login
from tests.e2e.test_navigation import _built, _message, _project

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_threshold_outside_0_1_is_refused_with_a_message(app_server):
    from playwright.sync_api import sync_playwright

    _built()
    _, project, (image,) = _project("e2e-qa-threshold", photos=(PHOTO,), embed=False)
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _login(page, app_server, "e2e-qa-threshold")
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={image.pk}")
            page.wait_for_function(f"window.__samDebug.imageId() === {image.pk}")
            box = page.locator("#prefill-threshold")
            assert box.get_attribute("min") == "0" and box.get_attribute("max") == "1"
            box.fill("5")
            box.press("Enter")  # commits the value (change event)
            page.wait_for_function("document.getElementById('status-message').textContent.includes('between 0 and 1')")
            assert "not 5" in _message(page) and "Kept 0.95" in _message(page)
            assert box.input_value() == "0.95"  # the refused value does not stay as if in use
            assert box.get_attribute("aria-invalid") == "true"
            # A value in range is taken, and the message goes.
            box.fill("0.5")
            box.press("Enter")
            page.wait_for_function("!document.getElementById('status-message').textContent.includes('between 0 and 1')")
            assert box.input_value() == "0.5" and box.get_attribute("aria-invalid") is None
        finally:
            browser.close()
