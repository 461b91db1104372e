"""The review page's per-image form in a real Chromium: typing the rejection comment and
pressing Enter must not approve the image (HTML's implicit submission clicks the form's
first submit button, which was "Approve"). Renders the template alone: no server, no DB."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.e2e.test_annotate import _launch

pytestmark = [pytest.mark.e2e]


def _review_html() -> str:
    from django.template.loader import render_to_string

    image = SimpleNamespace(id=7, file_name="sheep.jpg", annotation_count=2,
                            done_by=SimpleNamespace(username="alice"))
    project = SimpleNamespace(id=3, name="P")
    return render_to_string("core/review.html", {"project": project, "images": [image], "recent": [],
                                                 "error": None})


def test_enter_in_the_comment_field_does_not_approve():
    from playwright.sync_api import sync_playwright

    html = _review_html()
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page()
            page.set_content(html)
            page.evaluate("""() => { window.__submits = [];
                document.querySelectorAll('form.review-form').forEach(f => f.addEventListener('submit', e => {
                    window.__submits.push(e.submitter ? e.submitter.value : '(none)'); e.preventDefault(); })); }""")
            comment = page.locator("form.review-form input[name=comment]")
            comment.fill("the second flower is missing")
            comment.press("Enter")
            assert page.evaluate("window.__submits") == []
            # The buttons still decide.
            page.locator("form.review-form button[value=reject]").click()
            page.locator("form.review-form button[value=approve]").click()
            assert page.evaluate("window.__submits") == ["reject", "approve"]
        finally:
            browser.close()
