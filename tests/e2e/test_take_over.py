"""A manager takes over an image's lease from the annotate page, in a real Chromium: while an
annotator holds the image, the manager's work bar names them and offers "Take over"; its
confirm step names the holder (Cancel leaves the lease alone); confirmed, the lease is the
manager's, and the annotator's page says the manager is working on it at its next renew.
Another annotator is never offered the button.

Needs the built frontend, Chromium at /usr/bin/chromium and the real PostgreSQL.
"""

from __future__ import annotations

import pytest

from annotator.core import services
from tests.e2e.test_annotate import ARTIFACTS, ROOT, _launch
from tests.e2e.test_team import _in_thread, _login
from tests.factories import UserFactory, project_with_photos

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _holder(image_id: int):
    from annotator.core import workflow
    from annotator.core.models import Image

    img = Image.objects.select_related("lease_holder").get(pk=image_id)
    return img.lease_holder.username if workflow.lease_is_active(img) else None


def _bar(page) -> str:
    return page.locator("#work-state").inner_text()


def test_manager_takes_over_from_the_annotate_page(app_server):
    from playwright.sync_api import sync_playwright

    if not (ROOT / "static" / "app" / "annotate.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")
    owner = UserFactory(username="to-owner")
    project = project_with_photos(user=owner, categories=("flower",))
    for name, role in (("alice", "annotator"), ("mona", "manager"), ("bob", "annotator")):
        services.project_add_member(project=project, user=UserFactory(username=name), role=role)
    image = project.images.get()
    url = f"{app_server}/projects/{project.pk}/annotate/?image={image.pk}&prefetch=0"
    lease_is = "document.getElementById('work-bar').dataset.lease === '{}'"
    errors: list[str] = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            alice = _login(browser, app_server, "alice", errors)
            alice.goto(url)
            alice.wait_for_function(lease_is.format("mine"), timeout=30_000)
            assert _in_thread(lambda: _holder(image.pk)) == "alice"

            mona = _login(browser, app_server, "mona", errors)
            mona.goto(url)
            mona.wait_for_function(lease_is.format("other"), timeout=30_000)
            assert "alice is working on it" in _bar(mona)
            button = mona.locator("#take-over-btn")
            assert button.is_visible()
            assert not mona.locator("#take-over-confirm").is_visible()

            # The confirm step names the holder; Cancel changes nothing.
            button.click()
            confirm = mona.locator("#take-over-confirm")
            assert confirm.is_visible() and not button.is_visible()
            assert "Take this image over from alice?" in confirm.inner_text()
            mona.screenshot(path=str(ARTIFACTS / "take_over_confirm.png"), clip={"x": 0, "y": 0, "width": 1400, "height": 140})
            mona.locator("#take-over-no").click()
            assert not confirm.is_visible() and button.is_visible()
            assert _in_thread(lambda: _holder(image.pk)) == "alice"

            # Confirmed: the lease is mona's, her bar says yours, Done is enabled.
            button.click()
            mona.locator("#take-over-yes").click()
            mona.wait_for_function(lease_is.format("mine"), timeout=10_000)
            assert "yours until" in _bar(mona)
            assert not button.is_visible() and not confirm.is_visible()
            assert mona.locator("#done-btn").is_enabled()
            assert _in_thread(lambda: _holder(image.pk)) == "mona"

            # Alice's page notices at its next renew (the heartbeat, or coming back to the tab).
            alice.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
            alice.wait_for_function(lease_is.format("other"), timeout=10_000)
            assert "mona is working on it" in _bar(alice)
            # An annotator is not offered "Take over".
            assert not alice.locator("#take-over-btn").is_visible()
            alice.screenshot(path=str(ARTIFACTS / "take_over_former_holder.png"),
                             clip={"x": 0, "y": 0, "width": 1400, "height": 140})
            bob = _login(browser, app_server, "bob", errors)
            bob.goto(url)
            bob.wait_for_function(lease_is.format("other"), timeout=30_000)
            assert "mona is working on it" in _bar(bob)
            assert not bob.locator("#take-over-btn").is_visible()
            assert _in_thread(lambda: _holder(image.pk)) == "mona"
        finally:
            browser.close()
    assert not errors, errors
