"""Long names without spaces (a label of 100 'x', a project name of 200) must wrap inside
the page's card, not push the project list's table (and its links) out past the right edge
of the page or the window. Found by the QA pass: a 100-character label made the list wider
than a 1280 px window. Renders the templates alone in a real Chromium: no server, no DB."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.e2e.test_annotate import _launch

pytestmark = [pytest.mark.e2e]

LONG_LABEL = "x" * 100  # the API's longest category name
LONG_NAME = "N" * 200  # the API's longest project name


def _project(pid: int, name: str, labels: list[str]) -> SimpleNamespace:
    categories = [SimpleNamespace(name=n, color="#e6194b") for n in labels]
    return SimpleNamespace(
        id=pid, name=name, image_count=3, prefill_enabled=True, my_role="admin",
        categories=SimpleNamespace(all=lambda: categories),
        prefill={"images": {"ready": 0, "pending": 1, "running": 0, "failed": 0}, "proposals": {"pending": 0}},
    )


def _overflow(page) -> dict:
    return page.evaluate("""() => {
        const main = document.querySelector('main.page').getBoundingClientRect();
        const widest = Math.max(...[...document.querySelectorAll('main.page *')].map(e => e.getBoundingClientRect().right));
        return {mainRight: main.right, widest, scrollWidth: document.documentElement.scrollWidth,
                innerWidth: window.innerWidth};
    }""")


def test_long_label_and_project_names_stay_inside_the_page():
    from django.template.loader import render_to_string
    from playwright.sync_api import sync_playwright

    projects = [_project(1, "Demo", ["object", "person"]), _project(2, LONG_NAME, [LONG_LABEL, "truck"])]
    listing = render_to_string("core/project_list.html", {"projects": projects})
    upload = render_to_string("core/upload.html", {"project": projects[1], "max_upload_bytes": 50_000_000,
                                                   "max_megapixels": 100, "max_files": 200})
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for what, html in (("project list", listing), ("upload page", upload)):
                page.set_content(html)
                o = _overflow(page)
                assert o["scrollWidth"] <= o["innerWidth"], f"{what}: the page scrolls sideways: {o}"
                assert o["widest"] <= o["mainRight"] + 0.5, f"{what}: content sticks out of the card: {o}"
            page.set_content(listing)
            # The links column is still there, in the card.
            assert page.locator("tr:nth-child(2) a.annotate-link").is_visible()
        finally:
            browser.close()
