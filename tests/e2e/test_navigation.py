"""N / P and opening images when things go wrong (QA pass after the quiet-moment re-check):
the server unreachable after a prefetched image opened, or while N opens one; quick
repeated presses; an image of another project; an image that does not exist.

Embeddings are computed before the page opens (no worker); "server unreachable" is the
page's API requests aborted with ``page.route``.
"""

from __future__ import annotations

import pytest

from annotator.core import services
from tests.e2e.test_annotate import PHOTO, ROOT, _click, _launch, _login, _wait_ready
from tests.factories import UserFactory, project_with_photos

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
API = "**/api/**"
PHOTOS = (PHOTO, "153077.jpg", "65019.jpg")


def _built() -> None:
    if not (ROOT / "static" / "app" / "annotate.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")


def _project(username: str, photos=PHOTOS, embed: bool = True):
    user = UserFactory(username=username)
    project = project_with_photos(user=user, photos=photos, categories=("flower",))
    images = list(project.images.order_by("id"))
    if embed:
        for im in images:
            services.embedding_compute(image=im)
    return user, project, images


def _message(page) -> str:
    return page.locator("#status-message").inner_text()


def test_server_unreachable_after_opening_a_prefetched_image_and_while_opening_one(app_server):
    from playwright.sync_api import sync_playwright

    _built()
    _, project, (first, second, third) = _project("e2e-offline-nav")
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _login(page, app_server, "e2e-offline-nav")
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={first.pk}")
            _wait_ready(page)
            # The next image is prefetched (its embedding is in the worker)...
            page.wait_for_function(f"window.__samEmbeddingLoads.some((l) => l.imageId === {second.pk})", timeout=60_000)
            page.wait_for_timeout(1000)  # its photo and lists are kept by now
            # ...then the server becomes unreachable, and N opens it from what the page kept.
            page.route(API, lambda route: route.abort())
            page.keyboard.press("n")
            page.wait_for_function(f"window.__samDebug.imageId() === {second.pk} && window.__samReady === true")
            # The background re-check fails: a message, and the image stays usable.
            page.wait_for_function("document.getElementById('status-message').textContent.includes('Could not refresh image')")
            assert f"Could not refresh image {second.pk}" in _message(page)
            assert page.evaluate("window.__samReady") is True
            assert page.locator("#stage-banner").is_hidden()
            # A click makes a mask (the decoder and embedding are in the browser).
            n = page.evaluate("window.__samPerf.length")
            _click(page, second.width // 2, second.height // 2, second.width, second.height)
            page.wait_for_function(f"window.__samPerf.length > {n}")
            assert "Not ready" not in _message(page)
            # The server comes back: the re-check is retried, the lease taken, the message gone.
            page.unroute(API)
            page.wait_for_function("document.getElementById('work-bar').dataset.lease === 'mine'", timeout=30_000)
            page.wait_for_function("!document.getElementById('status-message').textContent.includes('Could not refresh')")
            assert page.evaluate("window.__samReady") is True

            # Without prefetch, N while the server is unreachable: the page says the image could
            # not be opened, and the proposals line says they failed (not "Loading…").
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={second.pk}&prefetch=0")
            _wait_ready(page)
            page.route(API, lambda route: route.abort())
            page.keyboard.press("n")
            page.wait_for_function(f"document.getElementById('status-message').textContent.includes('Cannot open image {third.pk}')")
            page.wait_for_function("document.getElementById('proposal-state').dataset.status !== 'loading'")
            assert "Loading" not in page.locator("#proposal-state").inner_text()
            # The server is back: N again opens it.
            page.unroute(API)
            page.keyboard.press("n")
            page.wait_for_function(f"window.__samDebug.imageId() === {third.pk} && window.__samReady === true", timeout=60_000)
            assert page.locator("#stage-banner").is_hidden()
        finally:
            browser.close()


MANY = (PHOTO, "153077.jpg", "65019.jpg", "106024.jpg", "153093.jpg", "181079.jpg", "189080.jpg")


def test_quick_presses_each_advance_one_image(app_server):
    """4 presses of N ~70 ms apart while images load (no prefetch) end 4 images further on."""
    from playwright.sync_api import sync_playwright

    _built()
    _, project, images = _project("e2e-quick-nav", photos=MANY, embed=False)
    ids = [im.pk for im in images]
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _login(page, app_server, "e2e-quick-nav")
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={ids[1]}&prefetch=0")
            page.wait_for_function(f"window.__samDebug.imageId() === {ids[1]}")
            page.evaluate("""() => new Promise((resolve) => {
                let n = 0;
                const press = () => {
                    document.body.dispatchEvent(new KeyboardEvent('keydown', { key: 'n', bubbles: true }));
                    if (++n < 4) setTimeout(press, 70); else resolve();
                };
                press();
            })""")
            page.wait_for_function(f"window.__samDebug.imageId() === {ids[5]}", timeout=20_000)
            page.wait_for_timeout(1500)
            assert page.evaluate("window.__samDebug.imageId()") == ids[5]
            assert f"image={ids[5]}" in page.url
            # P twice, as quickly: two images back.
            page.evaluate("""() => new Promise((resolve) => {
                let n = 0;
                const press = () => {
                    document.body.dispatchEvent(new KeyboardEvent('keydown', { key: 'p', bubbles: true }));
                    if (++n < 2) setTimeout(press, 50); else resolve();
                };
                press();
            })""")
            page.wait_for_function(f"window.__samDebug.imageId() === {ids[3]}", timeout=20_000)
            page.wait_for_timeout(1500)
            assert page.evaluate("window.__samDebug.imageId()") == ids[3]
        finally:
            browser.close()


def test_an_image_of_another_project_or_none_is_not_shown(app_server):
    """?image= of another project's image: an error with a link to its project, nothing shown
    (no prompts, no saves under this project's categories); ?image= of no image: the title,
    work bar and proposals say there is no image, with a link to the project's first image."""
    from playwright.sync_api import sync_playwright

    _built()
    user, home, (image,) = _project("e2e-other-project", photos=(PHOTO,), embed=False)
    other = project_with_photos(user=user, photos=("153077.jpg",), categories=("leaf",))
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _login(page, app_server, "e2e-other-project")
            page.goto(f"{app_server}/projects/{other.pk}/annotate/?image={image.pk}")
            page.wait_for_function("document.getElementById('status-message').textContent.includes('not in this project')")
            assert f"Image {image.pk} is not in this project" in page.locator("#stage-banner").inner_text()
            href = page.locator("#status-message-link").get_attribute("href")
            assert href == f"/projects/{home.pk}/annotate/?image={image.pk}"
            assert page.evaluate("window.__samDebug.imageId()") is None
            assert page.locator("#image-name").inner_text() == "no image open"
            assert page.evaluate("window.__samReady") is False
            page.wait_for_timeout(1000)  # nothing opens it later either
            assert page.evaluate("window.__samDebug.imageId()") is None

            page.goto(f"{app_server}/projects/{home.pk}/annotate/?image=99999")
            page.wait_for_function("document.getElementById('stage-banner').textContent.includes('Cannot open image 99999')")
            assert page.locator("#image-name").inner_text() == "no image open"
            assert page.locator("#work-state").inner_text() == "No image open"
            assert page.locator("#proposal-state").inner_text() == "No image open."
            assert page.locator("#status-message-link").get_attribute("href") == f"/projects/{home.pk}/annotate/"
            page.click("#status-message-link")
            page.wait_for_function(f"window.__samDebug && window.__samDebug.imageId() === {image.pk}")
        finally:
            browser.close()


def test_a_hung_save_times_out_and_a_second_enter_is_queued(app_server):
    """The server never answers a save: it times out into the outbox (retried, lands once),
    and Enter on the next image meanwhile is queued, not dropped."""
    from playwright.sync_api import sync_playwright

    from annotator.core.models import Annotation
    from tests.e2e.test_unsaved import SAVES, _db

    _built()
    _, project, (first, second) = _project("e2e-hung-save", photos=PHOTOS[:2])
    held = []

    def hold_first(route):
        if route.request.method == "POST" and not held:
            held.append(route)  # never answered
        else:
            route.continue_()

    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _login(page, app_server, "e2e-hung-save")
            page.goto(f"{app_server}/projects/{project.pk}/annotate/?image={first.pk}")
            _wait_ready(page)
            page.route(SAVES, hold_first)
            for image in (first, second):
                if image is second:
                    page.keyboard.press("n")
                    page.wait_for_function(f"window.__samDebug.imageId() === {second.pk} && window.__samReady === true",
                                           timeout=120_000)
                n = page.evaluate("window.__samPerf.length")
                _click(page, image.width // 2, image.height // 2, image.width, image.height)
                page.wait_for_function(f"window.__samPerf.length > {n}")
                page.wait_for_function("Number(document.getElementById('mask-canvas').dataset.maskPixels) > 0")
                page.keyboard.press("Enter")
            assert len(held) == 1
            # The second save lands once the first timed out (kept in the outbox, retried).
            page.wait_for_function("document.querySelectorAll('#annotation-list li[data-annotation-id]').length === 1",
                                   timeout=30_000)
            page.wait_for_function("document.getElementById('unsaved-status').dataset.count === '0'", timeout=30_000)
            rows = _db(lambda: sorted(Annotation.objects.filter(image__project=project).values_list("image_id", flat=True)))
            assert rows == sorted([first.pk, second.pk])
        finally:
            browser.close()
