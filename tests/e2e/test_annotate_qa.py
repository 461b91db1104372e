"""Annotate-page fixes from a QA pass, in a real Chromium: the accept-all threshold refuses
values outside [0, 1] and says so; the "auto" mask chip can be picked again after 1/2/3; an
image that N could not open (no answer from the server) is tried again on its own; an
annotator's N follows their work queue and P goes back the way they came.

Embeddings are computed before the page opens where a test needs them (no worker).
"""

from __future__ import annotations

import pytest

from annotator.core import services
from annotator.core.models import Image
from tests.e2e.test_annotate import PHOTO, _attr, _click, _launch, _login, _wait_ready
from tests.e2e.test_navigation import API, MANY, PHOTOS, _built, _message, _project
from tests.factories import UserFactory

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


def test_the_auto_chip_comes_back_after_1_2_3(app_server):
    from playwright.sync_api import sync_playwright

    _built()
    _, project, (image,) = _project("e2e-qa-auto-chip", photos=(PHOTO,))
    w, h = image.width, image.height
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _login(page, app_server, "e2e-qa-auto-chip")
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={image.pk}")
            _wait_ready(page)

            def decoded_after(action) -> None:
                n = page.evaluate("window.__samPerf.length")
                action()
                page.wait_for_function(f"window.__samPerf.length > {n}")

            def candidate() -> str:
                return _attr(page, "#mask-canvas", "data-candidate")

            # One point: 1..3, the best one first; 0 brings that automatic choice back.
            decoded_after(lambda: _click(page, w // 2, h // 2, w, h))
            first = candidate()
            assert first in ("1", "2", "3")
            other = "1" if first != "1" else "2"
            page.keyboard.press(other)
            assert candidate() == other
            page.keyboard.press("0")
            assert candidate() == first

            # A second (negative) point: the single-mask output "auto" (0) is shown...
            box = page.locator(".prompt-layer").bounding_box()
            decoded_after(lambda: page.mouse.click(box["x"] + 5, box["y"] + 5, button="right"))
            auto = page.locator('#candidate-chips button.chip[data-candidate="0"]')
            assert candidate() == "0" and "active" in auto.get_attribute("class")
            # ...and stays a chip after 1/2/3: the key 0 and the chip both bring it back.
            for key in ("1", "3"):
                page.keyboard.press(key)
                assert candidate() == key
                assert auto.count() == 1 and "active" not in auto.get_attribute("class")
            page.keyboard.press("0")
            assert candidate() == "0" and "active" in auto.get_attribute("class")
            page.keyboard.press("2")
            auto.click()
            assert candidate() == "0"
            assert page.locator("#mask-info").inner_text().startswith(
                f"Mask: {_attr(page, '#mask-canvas', 'data-mask-pixels')} px, candidate 0")
        finally:
            browser.close()


def test_n_that_failed_is_retried_with_backoff(app_server):
    from playwright.sync_api import sync_playwright

    _built()
    _, project, (first, second, third) = _project("e2e-qa-open-retry", photos=PHOTOS)
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _login(page, app_server, "e2e-qa-open-retry")
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={first.pk}&prefetch=0")
            _wait_ready(page)
            page.route(API, lambda route: route.abort())  # the server is unreachable
            page.keyboard.press("n")
            page.wait_for_function("document.getElementById('status-message').textContent.includes('trying again in 1 s (attempt 2')")
            assert f"Cannot open image {second.pk}" in _message(page)
            assert f"Cannot open image {second.pk}" in page.locator("#stage-banner").inner_text()
            # It keeps trying, waiting longer each time, and says which try is next.
            page.wait_for_function("document.getElementById('status-message').textContent.includes('trying again in 2 s (attempt 3')",
                                   timeout=10_000)
            # The server is back: the image opens with no key pressed.
            page.unroute(API)
            page.wait_for_function(f"window.__samDebug.imageId() === {second.pk} && window.__samReady === true",
                                   timeout=60_000)
            assert "Cannot open" not in _message(page)
            assert f"image={second.pk}" in page.url

            # A press while a retry waits takes over: P opens the image before (kept from the
            # first visit), and the pending retry of the third image never fires.
            page.route(API, lambda route: route.abort())
            page.keyboard.press("n")
            page.wait_for_function(f"document.getElementById('status-message').textContent.includes('Cannot open image {third.pk}')")
            page.keyboard.press("p")
            page.wait_for_function(f"window.__samDebug.imageId() === {first.pk} && window.__samReady === true",
                                   timeout=60_000)
            page.unroute(API)
            page.wait_for_timeout(3500)  # past the retries that were pending
            assert page.evaluate("window.__samDebug.imageId()") == first.pk
            assert "Cannot open" not in _message(page)
        finally:
            browser.close()


def test_annotators_n_follows_their_queue_and_p_goes_back(app_server):
    from playwright.sync_api import sync_playwright

    _built()
    _, project, (i1, i2, i3, i4) = _project("e2e-qa-queue-owner", photos=MANY[:4], embed=False)
    annotator, other = UserFactory(username="e2e-qa-queue-ann"), UserFactory(username="e2e-qa-queue-other")
    services.project_add_member(project=project, user=annotator, role="annotator")
    services.project_add_member(project=project, user=other, role="annotator")
    Image.objects.filter(pk=i1.pk).update(assignee=other)  # not in the annotator's queue
    Image.objects.filter(pk=i3.pk).update(assignee=annotator)  # first in it
    # The annotator's queue: i3 (assigned to them), then the open i2, i4. Project order: i1..i4.
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})

            def shown(image) -> None:
                page.wait_for_function(f"window.__samDebug.imageId() === {image.pk}", timeout=30_000)

            def press(key: str, image) -> None:
                page.keyboard.press(key)
                shown(image)

            _login(page, app_server, "e2e-qa-queue-ann")
            page.goto(f"{app_server}/projects/{project.pk}/annotate/")  # starts at the queue's first
            shown(i3)
            assert page.locator("#next-btn").get_attribute("title") == "Next image of your queue (N)"
            assert page.locator("#prev-btn").is_disabled()  # nothing before i3 in the queue, no history
            press("n", i2)  # the project's next would be i4
            press("n", i4)
            page.keyboard.press("n")
            page.wait_for_function("document.getElementById('status-message').textContent.includes('last image of your queue')")
            assert page.evaluate("window.__samDebug.imageId()") == i4.pk
            press("p", i2)  # back the way it came, not the project's previous (i3)
            press("p", i3)
            page.keyboard.press("p")
            page.wait_for_function("document.getElementById('status-message').textContent.includes('first image of your queue')")
            assert page.evaluate("window.__samDebug.imageId()") == i3.pk

            # The project's admin walks the project's images by id.
            page.context.clear_cookies()
            _login(page, app_server, "e2e-qa-queue-owner")
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={i2.pk}")
            shown(i2)
            assert page.locator("#next-btn").get_attribute("title") == "Next image (N)"
            press("n", i3)
            press("n", i4)
            press("p", i3)
        finally:
            browser.close()
