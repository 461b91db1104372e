"""A project's settings page in a real Chromium, as its admin uses it.

From the project list's "Settings" link: the project renamed, a label recoloured and renamed
(it keeps its id, so the mask that carries it keeps it), a label added with its colour, an
unused label deleted and the used one refused with the server's reason; pre-fill turned on
with thresholds, a stability threshold of 5 refused next to its field in the server's words
(nothing stored), then accepted at 0.9; "Run pre-fill now" answered; the model section shows
the project's version and the versions to choose from (the switch itself, which re-embeds
every image, is tested at the API: tests/annotator/test_model_versions.py); a member added by
username, an unknown username refused, a role changed, the last admin's demotion refused.
A reload shows everything as saved, and the database agrees.

Needs the built frontend, Chromium at /usr/bin/chromium, the real PostgreSQL and Redis.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from annotator.core import services
from annotator.core.models import Category, Membership, Project
from engine.rle import mask_to_rle
from tests.e2e.test_annotate import ARTIFACTS, ROOT, _launch, _login
from tests.e2e.test_upload import _db
from tests.factories import UserFactory, project_with_photos

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _row(page, name: str):
    """The label row whose name input holds ``name`` (input values are not attributes)."""
    index = page.locator("#category-rows li.category-row input.category-name").evaluate_all(
        "(inputs, name) => inputs.findIndex((i) => i.value === name)", name)
    assert index >= 0, f"no label row {name!r}"
    return page.locator("#category-rows li.category-row").nth(index)


def test_change_labels_prefill_and_members_then_reload(app_server):
    from playwright.sync_api import expect, sync_playwright

    if not (ROOT / "static" / "app" / "settings.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")

    # All ORM work happens before Playwright starts its event loop in this thread. The photo's
    # embedding is never queued: the page must not set a worker going (pre-fill runs only on
    # embedded images, so "Run pre-fill now" has nothing to queue).
    admin = UserFactory(username="e2e-settings-admin")
    UserFactory(username="e2e-newcomer")
    with mock.patch("annotator.core.services._enqueue_embeddings"):
        project = project_with_photos(user=admin, categories=("car", "person"))
    Project.objects.filter(pk=project.pk).update(prefill_enabled=False, automatic_params={})
    car, person = project.categories.order_by("id")
    image = project.images.get()
    mask = np.zeros((image.height, image.width), np.uint8)
    mask[10:50, 20:80] = 1
    annotation = services.annotation_create(image=image, user=admin, segmentation=mask_to_rle(mask), category=car.pk)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console_errors: list[str] = []

    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("dialog", lambda d: d.accept())  # "Delete the label …?" / "Remove …?"
            _login(page, app_server, admin.username)
            page.click(f'a.settings-link[href="/projects/{project.pk}/settings/"]')
            page.wait_for_url(f"{app_server}/projects/{project.pk}/settings/")
            page.wait_for_selector("#settings-page[data-ready=true]")

            # ---- General: rename the project, recolour and rename "car", add "bike", delete.
            expect(page.locator("#category-rows li.stored-row")).to_have_count(2)
            expect(_row(page, "car").locator(".category-usage")).to_have_text("1 mask")
            page.fill("#project-name", "Street scenes")
            car_row = _row(page, "car")
            car_row.locator("input.category-color").fill("#123456")
            car_row.locator("input.category-name").fill("vehicle")
            page.click("#add-category")
            new_row = page.locator("#category-rows li.new-row").last
            new_row.locator("input.category-name").fill("bike")
            new_row.locator("input.category-color").fill("#abcdef")
            page.click("#general-save")
            expect(page.locator("#general-status")).to_have_text("Saved.")
            expect(page.locator("#settings-project-name")).to_have_text("Street scenes")
            assert page.evaluate("window.__settingsLastBody") == {"name": "Street scenes", "categories": [
                {"id": car.pk, "name": "vehicle", "color": "#123456"}, {"name": "bike", "color": "#abcdef"}]}
            expect(page.locator("#category-rows li.stored-row")).to_have_count(3)
            # The label a mask carries cannot be deleted: the server's reason by its row.
            vehicle = page.locator(f'#category-rows li[data-category-id="{car.pk}"]')
            vehicle.locator("button.category-delete").click()
            expect(vehicle.locator("ul.field-errors")).to_contain_text(
                'The label "vehicle" is used by 1 mask, so it cannot be deleted')
            # An unused one goes.
            page.locator(f'#category-rows li[data-category-id="{person.pk}"] button.category-delete').click()
            expect(page.locator(f'#category-rows li[data-category-id="{person.pk}"]')).to_have_count(0)
            expect(page.locator("#general-status")).to_have_text('Label "person" deleted.')

            # ---- Pre-fill: a stability threshold of 5 is refused next to its field.
            expect(page.locator("#param-pred_iou_thresh")).to_have_value("0.88")  # SAM's default
            expect(page.locator("#prefill-progress")).to_contain_text("0 of 1 image pre-filled")
            page.check("#prefill-enabled")
            page.fill("#param-pred_iou_thresh", "0.5")
            page.fill("#param-stability_score_thresh", "5")
            page.click("#prefill-save")
            expect(page.locator('[data-errors-for="params.stability_score_thresh"]')).to_have_text(
                "stability_score_thresh must be in [0, 1], got 5")
            expect(page.locator("#param-stability_score_thresh")).to_have_class("param-input invalid")
            expect(page.locator('[data-errors-for="params.pred_iou_thresh"]')).to_be_empty()
            assert _db(lambda: Project.objects.values_list("prefill_enabled", "automatic_params").get(pk=project.pk)) \
                == (False, {})  # nothing stored
            page.screenshot(path=str(ARTIFACTS / "settings_prefill_error.png"), full_page=True)
            page.fill("#param-stability_score_thresh", "0.9")
            page.click("#prefill-save")
            expect(page.locator("#prefill-status")).to_have_text("Saved.")
            expect(page.locator('[data-errors-for="params.stability_score_thresh"]')).to_be_empty()
            page.click("#prefill-run")
            expect(page.locator("#prefill-run-status")).to_have_text(
                "Nothing to queue: no embedded image that is not queued already.")

            # ---- Model: the current version and the versions to choose from.
            expect(page.locator("#model-select")).to_be_enabled()
            expect(page.locator("#model-select option").first).to_contain_text("Server default")
            expect(page.locator("#model-current")).not_to_be_empty()
            expect(page.locator("#model-progress-text")).to_contain_text("embedded with")

            # ---- Members: add by username, an unknown one refused, change a role, keep the last admin.
            expect(page.locator("#member-rows tr.member-row")).to_have_count(1)
            page.fill("#member-username", "nobody-here")
            page.click("#member-add")
            expect(page.locator('[data-errors-for="username"]')).to_have_text("No user 'nobody-here'.")
            page.fill("#member-username", "e2e-newcomer")
            page.select_option("#member-role", "reviewer")
            page.click("#member-add")
            newcomer = page.locator('#member-rows tr[data-username="e2e-newcomer"]')
            expect(newcomer).to_have_attribute("data-role", "reviewer")
            expect(page.locator('[data-errors-for="username"]')).to_be_empty()
            newcomer.locator("select.member-role").select_option("annotator")
            expect(newcomer).to_have_attribute("data-role", "annotator")
            me = page.locator(f'#member-rows tr[data-username="{admin.username}"]')
            me.locator("select.member-role").select_option("manager")
            expect(me.locator("ul.field-errors")).to_have_text("A project keeps at least one admin.")
            expect(me.locator("select.member-role")).to_have_value("admin")
            page.screenshot(path=str(ARTIFACTS / "settings.png"), full_page=True)

            # ---- Reload: everything as saved.
            page.reload()
            page.wait_for_selector("#settings-page[data-ready=true]")
            expect(page.locator("#settings-project-name")).to_have_text("Street scenes")
            expect(page.locator("#project-name")).to_have_value("Street scenes")
            rows = page.locator("#category-rows li.category-row")
            expect(rows).to_have_count(2)
            bike = _db(lambda: Category.objects.get(project=project, name="bike").pk)
            assert rows.evaluate_all("""rows => rows.map((r) => [Number(r.dataset.categoryId),
                r.querySelector('input.category-name').value, r.querySelector('input.category-color').value])""") \
                == [[car.pk, "vehicle", "#123456"], [bike, "bike", "#abcdef"]]
            expect(page.locator("#prefill-enabled")).to_be_checked()
            expect(page.locator("#param-pred_iou_thresh")).to_have_value("0.5")
            expect(page.locator("#param-stability_score_thresh")).to_have_value("0.9")
            expect(page.locator('#member-rows tr[data-username="e2e-newcomer"]')).to_have_attribute("data-role", "annotator")
            expect(page.locator(f'#member-rows tr[data-username="{admin.username}"]')).to_have_attribute("data-role", "admin")
        finally:
            browser.close()

    # The database agrees; the mask kept its (renamed) label.
    def stored():
        p = Project.objects.get(pk=project.pk)
        return (p.name, p.prefill_enabled, p.automatic_params,
                list(Category.objects.filter(project=p).order_by("id").values_list("name", "color")),
                dict(Membership.objects.filter(project=p).values_list("user__username", "role")),
                type(annotation).objects.get(pk=annotation.pk).category_id)

    assert stored() == ("Street scenes", True, {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.9},
                        [("vehicle", "#123456"), ("bike", "#abcdef")],
                        {admin.username: "admin", "e2e-newcomer": "annotator"}, car.pk)
    assert not [e for e in console_errors if "Failed to load resource" not in e], console_errors
