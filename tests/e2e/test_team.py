"""Three users with different roles in a real Chromium, on real photos, after the scripted
session of tests/scripted_session.py: the annotator sees the reviewer's rejection on the
annotate page and sends the image back with "Done"; the reviewer approves it on the review
page and cannot open the dashboard; the manager's dashboard draws its charts from the same
numbers the scripted events must give, and its tables show them.

Needs the built frontend, Chromium at /usr/bin/chromium and the real PostgreSQL.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.e2e.test_annotate import ARTIFACTS, ROOT, _launch
from tests.scripted_session import EXPECTED, run_session, setup_team

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _login(browser, base: str, username: str, errors: list[str]):
    """A fresh browser context (its own cookies) logged in as ``username``; returns its page."""
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.on("pageerror", lambda e: errors.append(f"{username}: pageerror: {e}"))
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("#login-submit")
    page.wait_for_url(f"{base}/")
    return page


def _in_thread(fn):
    """ORM work outside Playwright's event-loop thread (as tests/e2e/test_annotate.py does)."""
    from django.db import connection

    out: list = []

    def run():
        try:
            out.append(fn())
        finally:
            connection.close()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out[0] if out else None


def _cell(value) -> str:
    return "–" if value is None else str(value)


def test_three_roles_and_the_managers_dashboard(app_server):
    from playwright.sync_api import sync_playwright

    from annotator.core.models import Image, ImageReview
    from tests.annotator.test_workflow import client_for

    if not (ROOT / "static" / "app" / "dashboard.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")
    project, users = setup_team()
    clients = {name: client_for(u) for name, u in users.items()}
    # The session's worker embeds the uploads and writes each image row as it goes; the queue
    # passes over a row another transaction holds (SELECT ... FOR UPDATE SKIP LOCKED), so a
    # "next" racing that write hands out the following image (seen once in CI). Let the worker
    # finish first; with no worker running the images stay pending and nothing races.
    deadline = time.time() + 90
    while time.time() < deadline and _in_thread(
            lambda: Image.objects.filter(project=project, embedding_status="pending").exists()):
        time.sleep(0.5)
    images = run_session(project, clients)
    # alice left image B open: give it back, so her queue starts with A, rejected back to her.
    assert clients["alice"].delete(f"/api/images/{images['B']}/lease").status_code == 204
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []

    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            # --- alice, annotator: no review or dashboard links; her queue opens image A
            # with rita's rejection; "Done" sends it back and opens her next image (B).
            page = _login(browser, app_server, "alice", errors)
            row = page.locator(f"tr:has(a.annotate-link[href='/projects/{project.pk}/annotate/'])")
            assert row.locator("a.review-link").count() == 0 and row.locator("a.dashboard-link").count() == 0
            page.click("a.annotate-link")
            page.wait_for_url(f"**/projects/{project.pk}/annotate/?image={images['A']}")
            banner = page.locator("#review-banner")
            banner.wait_for(state="visible")
            assert banner.inner_text() == "Rejected by rita: Mask 2 spills onto the leaves."
            page.wait_for_function("document.getElementById('work-bar').dataset.lease === 'mine'")
            rejected = page.locator("#annotation-list li[data-review-status='rejected']")
            assert rejected.count() == 1 and "spills onto the leaves" in rejected.inner_text()
            assert page.locator("#annotation-list li[data-review-status='approved']").count() == 2
            page.screenshot(path=str(ARTIFACTS / "team_annotator_rejected.png"))
            page.click("#done-btn")
            page.wait_for_function(f"window.__samDebug.imageId() === {images['B']}")
            assert f"image={images['B']}" in page.url
            assert page.locator("#review-banner").is_hidden()
            statuses = _in_thread(lambda: dict(Image.objects.filter(project=project).values_list("pk", "status")))
            assert statuses[images["A"]] == "done"

            # --- rita, reviewer: the review page lists A; she approves it; no dashboard.
            page.close()  # leaving the page gives B's lease back
            page = _login(browser, app_server, "rita", errors)
            assert page.locator("a.dashboard-link").count() == 0
            page.click("a.review-link")
            row = page.locator(f"#review-list tr[data-image-id='{images['A']}']")
            assert "alice" in row.inner_text()
            row.locator("input[name=comment]").fill("Fine now.")
            row.locator("button[value=approve]").click()
            page.wait_for_selector("#review-empty")
            res = page.request.get(f"{app_server}/projects/{project.pk}/dashboard/")
            assert res.status == 403
            last = _in_thread(lambda: ImageReview.objects.filter(image_id=images["A"]).values_list(
                "decision", "comment").first())
            assert last == ("approved", "Fine now.")

            # --- mona, manager: the dashboard.
            page = _login(browser, app_server, "mona", errors)
            page.click("a.dashboard-link")
            page.wait_for_function("document.body.dataset.chartsDrawn === '4'", timeout=30_000)
            canvases = page.locator("#dashboard canvas[data-drawn='true']")
            assert canvases.count() == 4
            for i in range(4):
                box = canvases.nth(i).bounding_box()
                assert box and box["width"] > 200 and box["height"] > 150
            # The tables: every number is what the scripted events must give.
            for group_by in ("user", "day", "model"):
                for key, expected in [*EXPECTED[group_by].items(), ("total", EXPECTED["total"])]:
                    tr = page.locator(f"#stats-{group_by} tr[data-key='{key}']")
                    shown = tr.evaluate("tr => Object.fromEntries([...tr.querySelectorAll('td[data-col]')]"
                                        ".map(td => [td.dataset.col, td.textContent.trim()]))")
                    assert shown == {c: _cell(v) for c, v in expected.items()}, (group_by, key)
            # The charts were drawn from the same numbers.
            charts = {c["id"]: c for c in page.evaluate("window.__dashboardCharts")}
            users_order = sorted(EXPECTED["user"])
            seconds = charts["chart-seconds-user"]
            assert seconds["labels"] == users_order
            assert [s["data"] for s in seconds["series"]] == [
                [EXPECTED["user"][u]["seconds_per_mask_median"] for u in users_order],
                [EXPECTED["user"][u]["seconds_per_mask_p90"] for u in users_order]]
            days = sorted(EXPECTED["day"])
            assert charts["chart-day"]["labels"] == days
            assert charts["chart-day"]["series"][0]["data"] == [EXPECTED["day"][d]["masks"] for d in days]
            assert charts["chart-model"]["series"][1]["data"] == [EXPECTED["model"][m]["clicks_per_mask"]
                                                                   for m in sorted(EXPECTED["model"])]
            assert charts["chart-rates-user"]["series"][1]["data"] == [EXPECTED["user"][u]["review_rejection_rate"]
                                                                        for u in users_order]
            # Work states: A approved, C approved, B in progress (alice's next image).
            states = page.locator("#work-states li[data-state]").evaluate_all(
                "lis => Object.fromEntries(lis.map(li => [li.dataset.state, li.querySelector('strong').textContent]))")
            assert states == {"new": "0", "in_progress": "1", "done": "0", "reviewed": "2", "rejected": "0"}
            # The CSV link downloads the same numbers.
            csv = page.request.get(f"{app_server}/api/projects/{project.pk}/stats.csv?group_by=user")
            assert csv.ok and csv.text().splitlines()[0].startswith("user,masks,images")
            page.screenshot(path=str(ARTIFACTS / "team_dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
