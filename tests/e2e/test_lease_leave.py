"""The image's lease when an annotator leaves the annotate page, in a real Chromium.

Closing the tab or going to another page gives the lease back at once (a keepalive request
sent on ``pagehide``), so the next annotator gets the image instead of waiting for the
lease to lapse (10 min); except while a save of that image is still only in the browser's
outbox: then the lease is kept so that the save, sent again when the page is opened again,
lands on an image nobody else has taken meanwhile.

A page the browser restores from its back/forward cache takes the lease again at once
(Playwright's Chromium runs without that cache, so the test dispatches the page-transition
events the browser would).

Embeddings are computed before the page opens (no worker).
"""

from __future__ import annotations

import time

import pytest

from annotator.core import services
from annotator.core.models import Image, Membership
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from tests.e2e.test_annotate import ARTIFACTS, PHOTO, ROOT, _deepest_points, _launch, _login, _wait_ready
from tests.e2e.test_unsaved import _make_mask
from tests.e2e.test_upload import _db
from tests.factories import GRABCUT, UserFactory, project_with_photos

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _built() -> None:
    if not (ROOT / "static" / "app" / "annotate.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")


def _setup(name: str, photos=(PHOTO, "153077.jpg")):
    owner = UserFactory(username=f"{name}-owner")
    annotator = UserFactory(username=name)
    project = project_with_photos(user=owner, photos=photos, categories=("flower",))
    services.project_add_member(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
    images = list(project.images.order_by("id"))
    for im in images:
        services.embedding_compute(image=im)
    return annotator, project, images


def _holder(image_id: int) -> str | None:
    def read():
        img = Image.objects.select_related("lease_holder").get(pk=image_id)
        from annotator.core.workflow import lease_is_active

        return img.lease_holder.username if lease_is_active(img) else None

    return _db(read)


def _wait_holder(image_id: int, expected: str | None, seconds: float = 10) -> None:
    deadline = time.time() + seconds
    while True:
        got = _holder(image_id)
        if got == expected or time.time() > deadline:
            break
        time.sleep(0.2)
    assert got == expected, f"lease of image {image_id}: {got!r}, expected {expected!r}"


def _open(page, base: str, project, image) -> None:
    page.goto(f"{base}/projects/{project.pk}/annotate/?image={image.pk}")
    _wait_ready(page)
    page.wait_for_function("document.getElementById('work-bar').dataset.lease === 'mine'", timeout=30_000)


def test_closing_the_tab_or_leaving_the_page_gives_the_lease_back(app_server):
    from playwright.sync_api import sync_playwright

    _built()
    annotator, project, (first, second) = _setup("e2e-leaver")
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            _login(page, app_server, annotator.username)

            # Going to another page of the site (the project list): released.
            _open(page, app_server, project, first)
            assert _holder(first.pk) == annotator.username
            page.goto(f"{app_server}/")
            _wait_holder(first.pk, None)

            # Closing the tab (as the user does: unload handlers run): released.
            page = context.new_page()
            _open(page, app_server, project, second)
            assert _holder(second.pk) == annotator.username
            page.close(run_before_unload=True)
            _wait_holder(second.pk, None)
        finally:
            browser.close()


def test_a_save_still_in_the_outbox_keeps_the_lease_until_it_lands(app_server):
    from playwright.sync_api import sync_playwright

    _built()
    annotator, project, (first, _second) = _setup("e2e-unsaved-leaver", photos=(PHOTO,) + ("153077.jpg",))
    gt = np.array(PILImage.open(GRABCUT / "boundary_GT" / (Path(PHOTO).stem + ".bmp")).convert("L"))
    point = _deepest_points(gt, 1)[0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            _login(page, app_server, annotator.username)
            _open(page, app_server, project, first)

            # The save does not reach the server: it stays in the outbox (IndexedDB).
            page.route("**/api/images/*/annotations/", lambda route: route.abort()
                       if route.request.method == "POST" else route.continue_())
            _make_mask(page, point, first.width, first.height)
            page.keyboard.press("Enter")
            page.wait_for_function("document.getElementById('unsaved-status').dataset.count === '1'", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "lease_unsaved_before_leaving.png"))
            # Leaving the page now keeps the lease: the save must find the image still ours.
            page.goto(f"{app_server}/")
            time.sleep(2)  # what a release would take (the first test sees one within this)
            assert _holder(first.pk) == annotator.username

            # Back on the image (no failing route now): the outbox sends the save, it lands; then
            # leaving gives the lease back.
            page.unroute("**/api/images/*/annotations/")
            _open(page, app_server, project, first)
            page.wait_for_function("document.getElementById('unsaved-status').dataset.count === '0'", timeout=30_000)
            assert _db(lambda: first.annotations.count()) == 1
            page.goto(f"{app_server}/")
            _wait_holder(first.pk, None)
        finally:
            browser.close()


def test_back_from_the_back_forward_cache_takes_the_lease_again(app_server):
    from playwright.sync_api import sync_playwright

    _built()
    annotator, project, (first, _second) = _setup("e2e-bfcache")
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _login(page, app_server, annotator.username)
            _open(page, app_server, project, first)
            # Away into the cache: the lease goes back (someone else may take the image)...
            page.evaluate("window.dispatchEvent(new PageTransitionEvent('pagehide', {persisted: true}))")
            _wait_holder(first.pk, None)
            # ...and back: taken again now, not at the next heartbeat a minute later.
            page.evaluate("window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")
            _wait_holder(first.pk, annotator.username, seconds=10)
            page.wait_for_function("document.getElementById('work-bar').dataset.lease === 'mine'")
        finally:
            browser.close()


def _token(image_id: int) -> str:
    return _db(lambda: Image.objects.get(pk=image_id).lease_token)


def _bar(page) -> str:
    return page.locator("#work-bar").get_attribute("data-lease")


def _come_back(page) -> None:
    """The user switches back to this tab (the page renews its lease at once)."""
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")


def test_two_tabs_of_one_user_hold_the_image_one_at_a_time_and_say_so(app_server):
    from playwright.sync_api import sync_playwright

    _built()
    annotator, project, (first, second) = _setup("e2e-two-tabs")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            one = context.new_page()
            _login(one, app_server, annotator.username)
            _open(one, app_server, project, first)
            token_one = _token(first.pk)
            two = context.new_page()
            _open(two, app_server, project, first)  # the second tab takes the image over
            token_two = _token(first.pk)
            assert token_one and token_two and token_one != token_two

            # The first tab, not told yet, leaves the image (N): the second tab's hold stays.
            one.bring_to_front()
            one.keyboard.press("n")
            one.wait_for_function(f"window.__samDebug.imageId() === {second.pk}")
            one.wait_for_function("document.getElementById('work-bar').dataset.lease === 'mine'", timeout=30_000)
            time.sleep(1)  # the release of the first image has been sent by now
            assert _holder(first.pk) == annotator.username and _token(first.pk) == token_two
            _come_back(two)
            two.wait_for_timeout(500)
            assert _bar(two) == "mine"

            # The first tab comes back to the image (P) and takes it; the second tab, when the
            # user looks at it again, says another tab holds it and offers "Work here".
            one.keyboard.press("p")
            one.wait_for_function(f"window.__samDebug.imageId() === {first.pk}")
            one.wait_for_function("document.getElementById('work-bar').dataset.lease === 'mine'", timeout=30_000)
            assert _token(first.pk) == token_one
            _come_back(two)
            two.wait_for_function("document.getElementById('work-bar').dataset.lease === 'elsewhere'")
            state = two.locator("#work-state").inner_text()
            assert "open in another tab or window of yours" in state and "yours until" not in state
            assert two.locator("#work-here-btn").is_visible() and two.locator("#done-btn").is_disabled()
            two.screenshot(path=str(ARTIFACTS / "lease_two_tabs_elsewhere.png"))
            # "Work here": the second tab holds it again; the first is told in its turn.
            two.click("#work-here-btn")
            two.wait_for_function("document.getElementById('work-bar').dataset.lease === 'mine'")
            assert _token(first.pk) == token_two and two.locator("#work-here-btn").is_hidden()
            _come_back(one)
            one.wait_for_function("document.getElementById('work-bar').dataset.lease === 'elsewhere'")
            # Closing the tab that does not hold it leaves the other's hold alone.
            one.close(run_before_unload=True)
            time.sleep(1)
            assert _holder(first.pk) == annotator.username and _token(first.pk) == token_two
            two.close(run_before_unload=True)
            _wait_holder(first.pk, None)
        finally:
            browser.close()


def test_a_page_waiting_on_someone_elses_image_takes_it_once_they_close_their_tab(app_server):
    """QA pass: the second annotator's page said "<first> is working on it" until a reload,
    long after the first had closed their tab. It asks again every WAIT_FOR_LEASE_MS (15 s)."""
    from playwright.sync_api import sync_playwright

    _built()
    first_user, project, (image, _) = _setup("e2e-first")
    second_user = UserFactory(username="e2e-second")
    _db(lambda: services.project_add_member(project=project, user=second_user, role=Membership.Role.ANNOTATOR))
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            one = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            _login(one, app_server, first_user.username)
            _open(one, app_server, project, image)
            two = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            _login(two, app_server, second_user.username)
            two.goto(f"{app_server}/projects/{project.pk}/annotate/?image={image.pk}")
            _wait_ready(two)
            two.wait_for_function("document.getElementById('work-bar').dataset.lease === 'other'", timeout=30_000)
            assert "e2e-first is working on it" in two.locator("#work-bar").inner_text()

            one.close(run_before_unload=True)
            _wait_holder(image.pk, None)
            # No reload: within one wait period the page holds the image and says so.
            two.wait_for_function("document.getElementById('work-bar').dataset.lease === 'mine'", timeout=25_000)
            assert _holder(image.pk) == second_user.username
            assert "working on it" not in two.locator("#work-bar").inner_text()
            two.screenshot(path=str(ARTIFACTS / "lease_waiting_taken.png"))
        finally:
            browser.close()
