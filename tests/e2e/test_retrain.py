"""The dashboard's "Model" panel in a real Chromium: a manager sees the current version and
how many masks a retrain would use, starts a retrain with the button (the job is queued),
watches its phase and progress by polling, and sees its held-out NoC@85 / NoC@90 before
-> after and the decision once it is done (and the new current version). No worker runs
here: the test plays the worker's part on the job row (the real task is tested in
tests/annotator/test_retrain.py). Reviewers get no panel (no dashboard at all).

Needs the built frontend, Chromium at /usr/bin/chromium, the real PostgreSQL and Redis.
"""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.base import ContentFile

from tests.e2e.test_annotate import ARTIFACTS, ROOT, _launch
from tests.e2e.test_team import _in_thread, _login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _world():
    from annotator.core import services
    from annotator.core.model_versions import model_version_default
    from annotator.core.models import Embedding
    from engine.rle import mask_to_rle
    from tests.annotator.test_retrain import PROJECT_PHOTOS, gt_mask, photo
    from tests.factories import UserFactory

    owner = UserFactory(username="owner")
    manager = UserFactory(username="mona")
    project = services.project_create(name="Animals and vehicles", user=owner)
    services.project_add_member(project=project, user=manager, role="manager")
    names = PROJECT_PHOTOS[:16]  # 13 training images, 3 held out: enough masks
    images = services.images_upload(project=project, files=[photo(n) for n in names], user=owner)
    base = model_version_default()
    data = np.zeros((1, 256, 64, 64), "<f2").tobytes()
    for name, image in zip(names, images):
        emb = Embedding(image=image, model_id=base.model_id, shape=[1, 256, 64, 64], sha256="0" * 64)
        emb.file.save(f"e2e/{image.pk}.f16", ContentFile(data), save=False)
        emb.save()
        services.annotation_create(image=image, user=owner, segmentation=mask_to_rle(gt_mask(name)))
    return project, base


def test_a_manager_starts_a_retrain_and_sees_its_progress_and_result(app_server):
    from playwright.sync_api import sync_playwright

    from annotator.core.model_versions import model_version_register
    from annotator.core.models import Project, RetrainJob

    if not (ROOT / "static" / "app" / "dashboard.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")
    project, base = _in_thread(_world)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = _login(browser, app_server, "mona", errors)
            page.goto(f"{app_server}/projects/{project.pk}/dashboard/")
            page.wait_for_selector("#model-panel[data-ready='true']")
            assert page.locator("#model-current").inner_text() == base.name
            assert page.locator("#retrain-masks").inner_text() == "13 masks on training images, 3 on held-out images"
            assert "No retraining yet." in page.locator("#retrain-jobs").inner_text()

            page.click("#retrain-start")
            row = page.locator("#retrain-jobs tbody tr[data-job-id]")
            row.first.wait_for()
            job = _in_thread(lambda: RetrainJob.objects.select_related("created_by").get(project=project))
            assert job.status == "pending" and job.created_by.username == "mona"
            assert page.locator("#retrain-start").is_disabled()

            # The worker's part: running, then done with a promoted version the project uses.
            _in_thread(lambda: RetrainJob.objects.filter(pk=job.pk).update(
                status="running", phase="fine-tuning: step 12/200, loss 1.620", progress=0.42))
            page.wait_for_function("document.getElementById('retrain-status').textContent.includes('step 12/200')")
            assert page.locator("#retrain-progress").is_visible()
            assert abs(float(page.eval_on_selector("#retrain-progress", "e => e.value")) - 0.42) < 1e-6
            page.screenshot(path=str(ARTIFACTS / "retrain_running.png"), full_page=True)

            def finish():
                new, _ = model_version_register(model_id="default-e2e000000001", architecture="default",
                                                checkpoint=None, sha256="1" * 64, source="retrained", parent=base,
                                                name="Shipped default model · retrained #1")
                Project.objects.filter(pk=project.pk).update(model_version=new)
                before = {"n": 3, "NoC@85": 20.0, "NoC@90": 20.0, "NoF@90": 3, "mIoU_by_click": [0.7] * 20}
                after = {"n": 3, "NoC@85": 14.0, "NoC@90": 19.0, "NoF@90": 2, "mIoU_by_click": [0.75] * 20}
                RetrainJob.objects.filter(pk=job.pk).update(
                    status="done", phase="done", progress=1.0, new_version=new,
                    metrics={"before": before, "after": after, "train_masks": 13, "heldout_masks": 3,
                             "decision": "promoted", "reason": "held-out NoC@85 20.00 -> 14.00 (lower is better)"})

            _in_thread(finish)
            page.wait_for_function("document.getElementById('retrain-status').dataset.state === 'finished'")
            cells = row.first.locator("td")
            assert cells.nth(2).inner_text() == "13 / 3"
            assert cells.nth(3).inner_text() == "20.00 → 14.00"
            assert cells.nth(4).inner_text() == "20.00 → 19.00"
            assert cells.nth(5).inner_text() == "promoted"
            assert page.locator("#model-current").inner_text() == "Shipped default model · retrained #1"
            assert page.locator("#model-current-id").inner_text() == "default-e2e000000001"
            assert page.locator("#retrain-start").is_enabled() and page.locator("#retrain-progress").is_hidden()
            page.screenshot(path=str(ARTIFACTS / "retrain_done.png"), full_page=True)

            # Too few masks on the new version (no embeddings of it): the refusal is shown.
            page.click("#retrain-start")
            page.wait_for_function("document.getElementById('retrain-status').dataset.state === 'error'")
            assert "Too few accepted masks" in page.locator("#retrain-status").inner_text()
        finally:
            browser.close()
    assert not errors, errors
