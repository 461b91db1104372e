"""A project's "Exports" page in a real Chromium, as an admin uses it.

A project of three photos with saved masks (two labelled, one without a label, one
approved in review), plus three older export jobs: one the retention cleanup expired (its
file deleted), one that failed with the worker's reason. From the project list's
"Exports" link: the expired job says "expired" and has no Download link, the failed one
shows its reason; a COCO (RLE) export started in the page is followed by polling through
queued/running to done by the session's real Celery worker, with its size, UTC times and
expiry; its Download link gives the file, whose annotations decode (pycocotools) to
exactly the saved masks; an "only approved masks" export holds only the approved one. The
import section then takes a COCO file as annotations (one new mask imported, a duplicate
and a dangling one skipped with their reasons), as proposals, and refuses a non-COCO file
in the server's words.

Needs the built frontend, Chromium at /usr/bin/chromium, the real PostgreSQL and Redis.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from annotator.core import services, tasks
from annotator.core.models import Annotation, ExportJob, Image, Proposal
from engine.rle import mask_to_rle
from tests.e2e.test_annotate import ARTIFACTS, ROOT, _launch, _login
from tests.e2e.test_upload import _db
from tests.factories import UserFactory, project_with_photos

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PHOTOS = ("124080.jpg", "153077.jpg", "llama.bmp")
FAILURE = "OSError: [Errno 28] No space left on device (e2e)"


def _built() -> None:
    if not (ROOT / "static" / "app" / "exports.js").exists():
        pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")


def _mask(image: Image, x0: int, y0: int, x1: int, y1: int, hole: bool = False) -> np.ndarray:
    """A rectangle (optionally with a hole) in the image's frame."""
    mask = np.zeros((image.height, image.width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    if hole:
        mask[y0 + (y1 - y0) // 3: y1 - (y1 - y0) // 3, x0 + (x1 - x0) // 3: x1 - (x1 - x0) // 3] = 0
    return mask


def _world():
    """The project, its saved masks ({annotation id: (image, category id, mask)}), and the
    older jobs: an expired one and a failed one."""
    admin = UserFactory(username="e2e-exporter")
    project = project_with_photos(user=admin, photos=PHOTOS, categories=("flower", "animal"))
    flower, animal = project.categories.order_by("id")
    images = list(Image.objects.filter(project=project).order_by("id"))
    saved: dict[int, tuple[Image, int | None, np.ndarray]] = {}
    for image, x0, y0, cat, hole in ((images[0], 20, 30, flower.pk, False), (images[0], 100, 60, flower.pk, True),
                                     (images[1], 10, 10, None, False), (images[2], 40, 50, animal.pk, True)):
        mask = _mask(image, x0, y0, x0 + 70, y0 + 45, hole)
        ann = services.annotation_create(image=image, user=admin, segmentation=mask_to_rle(mask), category=cat)
        saved[ann.pk] = (image, cat, mask)
    approved = max(saved)
    Annotation.objects.filter(pk=approved).update(review_status=Annotation.ReviewStatus.APPROVED)

    # An export written 8 days ago, whose file the periodic cleanup (retention 7 days) deletes.
    old = ExportJob.objects.create(project=project, format="sa1b", created_by=admin, status=ExportJob.Status.DONE,
                                   progress=1.0)
    old.file.save(f"project-{project.pk}-export-{old.pk}-sa1b.zip", ContentFile(b"PK\x05\x06" + b"\0" * 18))
    ExportJob.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=8))
    tasks.expire_exports()  # what Celery beat runs hourly
    old.refresh_from_db()
    assert old.status == ExportJob.Status.EXPIRED and not old.file
    failed = ExportJob.objects.create(project=project, format="png", created_by=admin, status=ExportJob.Status.FAILED,
                                      progress=0.5, error=FAILURE, options={"only_approved": False,
                                                                            "include_images": True})
    return admin, project, saved, approved, old, failed


def _decode(segmentation: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")})


def _check_coco(doc: dict, names: dict[int, str], saved: dict, only: set[int] | None = None) -> None:
    """The export's annotations are the saved masks, pixel for pixel, on the right images and
    labels (``names``: the project's category names by id)."""
    images = {im["id"]: im for im in doc["images"]}
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    want = set(saved) if only is None else only
    assert {a["id"] for a in doc["annotations"]} == want
    assert doc["info"]["segmentation"] == "rle"
    for ann in doc["annotations"]:
        image, cat, mask = saved[ann["id"]]
        assert ann["image_id"] == image.pk
        assert (images[image.pk]["width"], images[image.pk]["height"]) == (image.width, image.height)
        assert images[image.pk]["file_name"] == image.file_name
        assert cats[ann["category_id"]] == (names[cat] if cat is not None else "unlabeled")
        decoded = _decode(ann["segmentation"])
        assert decoded.shape == mask.shape and np.array_equal(decoded, mask), ann["id"]
        assert ann["area"] == int(mask.sum()) and ann["iscrowd"] == 0
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                               float(ys.max() - ys.min() + 1)]


def _start(page, fmt: str, only_approved: bool = False) -> int:
    page.check(f"#export-format-{fmt}")
    page.set_checked("#export-only-approved", only_approved)
    before = page.locator("tr.export-row").count()
    page.click("#export-start")
    page.wait_for_function(f"document.querySelectorAll('tr.export-row').length === {before + 1}")
    return int(page.locator("tr.export-row").first.get_attribute("data-export-id"))


def test_export_and_import_in_the_exports_page(app_server, celery_worker_process, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    _built()
    admin, project, saved, approved, old, failed = _world()
    names = dict(project.categories.values_list("id", "name"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            _login(page, app_server, admin.username)
            page.click(f'a.exports-link[href="/projects/{project.pk}/exports/"]')
            page.wait_for_url(f"{app_server}/projects/{project.pk}/exports/")
            page.wait_for_function("document.getElementById('exports-page').dataset.ready === 'true'")

            # ---- The older jobs: expired without a link, failed with the worker's reason.
            expired_row = page.locator(f'tr.export-row[data-export-id="{old.pk}"]')
            expect(expired_row).to_have_attribute("data-status", "expired")
            expect(expired_row.locator(".status-badge")).to_have_text("expired")
            expect(expired_row.locator("a.download-link")).to_have_count(0)
            expect(expired_row.locator("td.expires")).to_have_text("file deleted")
            expect(expired_row.locator(".detail")).to_contain_text("168 h after it was written")
            failed_row = page.locator(f'tr.export-row[data-export-id="{failed.pk}"]')
            expect(failed_row.locator(".status-badge")).to_have_text("failed")
            expect(failed_row.locator(".detail.error")).to_have_text(FAILURE)
            expect(failed_row.locator("a.download-link")).to_have_count(0)
            expect(failed_row.locator("td.format")).to_have_text("PNG masks, with images")

            # ---- A COCO export started here, followed to done by the real worker.
            job_id = _start(page, "coco")
            row = page.locator(f'tr.export-row[data-export-id="{job_id}"]')
            # Drawn from the POST's answer, then polled (no reload) until the worker is done.
            assert row.get_attribute("data-status") in ("pending", "running")
            assert row.locator(".status-badge").inner_text() in ("queued", "running")
            expect(row.locator("td.format")).to_have_text("COCO (RLE)")
            expect(page.locator("#export-message")).to_contain_text(f"Export #{job_id} queued")
            expect(row).to_have_attribute("data-status", "done", timeout=180_000)
            expect(page.locator("#exports-page")).to_have_attribute("data-polling", "false")
            job = _db(lambda: ExportJob.objects.get(pk=job_id))
            assert job.status == "done" and job.created_by_id == admin.pk
            expect(row.locator("td.size")).to_have_text(_size_text(job.file.size))
            expect(row.locator("td.created")).to_contain_text(
                job.created_at.strftime("%Y-%m-%d %H:%M:%S") + " UTC")
            expect(row.locator("td.created")).to_contain_text(f"by {admin.username}")
            expires = job.finished_at + timedelta(hours=168)
            expect(row.locator("td.expires")).to_contain_text(expires.strftime("%Y-%m-%d %H:%M") + " UTC (in 6 d 23 h)")
            expect(row.locator(".detail")).to_have_text(f"3 images, {len(saved)} masks")
            page.screenshot(path=str(ARTIFACTS / "exports_page.png"), full_page=True)

            # ---- Download through the link: the saved masks, pixel for pixel.
            with page.expect_download() as info:
                row.locator("a.download-link").click()
            download = info.value
            assert download.suggested_filename == f"project-{project.pk}-export-{job_id}-coco.json"
            path = tmp_path / "export.json"
            download.save_as(path)
            doc = json.loads(path.read_text())
            _check_coco(doc, names, saved)

            # ---- Only approved masks: the option reaches the worker.
            approved_id = _start(page, "coco", only_approved=True)
            approved_row = page.locator(f'tr.export-row[data-export-id="{approved_id}"]')
            expect(approved_row.locator("td.format")).to_have_text("COCO (RLE), only approved masks")
            expect(approved_row).to_have_attribute("data-status", "done", timeout=180_000)
            with page.expect_download() as info:
                approved_row.locator("a.download-link").click()
            info.value.save_as(tmp_path / "approved.json")
            _check_coco(json.loads((tmp_path / "approved.json").read_text()), names, saved, only={approved})

            # ---- Import as annotations: one new mask, a duplicate and a dangling one skipped.
            first_image, first_cat, _ = saved[min(saved)]
            new_mask = _mask(first_image, 200, 120, 260, 180)
            new_rle = mask_to_rle(new_mask)
            dup = next(a for a in doc["annotations"] if a["id"] == min(saved))
            upload = dict(doc, annotations=[
                {"id": 1, "image_id": first_image.pk, "category_id": dup["category_id"], "segmentation": new_rle,
                 "iscrowd": 0},
                dict(dup, id=2),
                {"id": 3, "image_id": 999999, "category_id": dup["category_id"], "segmentation": new_rle, "iscrowd": 0},
            ])
            page.set_input_files("#import-file", files=[{"name": "instances.json", "mimeType": "application/json",
                                                         "buffer": json.dumps(upload).encode()}])
            page.click("#import-submit")
            result = page.locator("#import-result")
            expect(result).to_have_attribute("data-imported", "1")
            expect(result).to_have_attribute("data-skipped", "2")
            expect(result.locator(".import-headline")).to_have_text("Imported 1 annotation, skipped 2.")
            expect(result).to_contain_text("Annotation #1 (id 2): the same mask is already on this image")
            expect(result).to_contain_text("Annotation #2 (id 3): image_id 999999 is not in the file's images")
            imported = _db(lambda: list(Annotation.objects.filter(image=first_image, origin="imported")))
            assert len(imported) == 1 and np.array_equal(_decode(imported[0].rle), new_mask)
            assert imported[0].category_id == first_cat

            # ---- Import as proposals: pending proposals to review on the annotate page.
            proposal_mask = _mask(first_image, 5, 150, 60, 200)
            upload = dict(doc, annotations=[{"id": 9, "image_id": first_image.pk, "segmentation": mask_to_rle(proposal_mask),
                                             "predicted_iou": 0.91, "point_coords": [[30, 170]]}])
            page.check("#import-mode-proposals")
            page.set_input_files("#import-file", files=[{"name": "proposals.json", "mimeType": "application/json",
                                                         "buffer": json.dumps(upload).encode()}])
            page.click("#import-submit")
            expect(result).to_have_attribute("data-mode", "proposals")
            expect(result.locator(".import-headline")).to_have_text("Imported 1 proposal, skipped 0.")
            proposals = _db(lambda: list(Proposal.objects.filter(image=first_image, source="imported")))
            assert len(proposals) == 1 and proposals[0].status == "pending" and proposals[0].predicted_iou == 0.91

            # ---- A file that is not COCO: the server's reason, nothing imported.
            page.set_input_files("#import-file", files=[{"name": "notes.json", "mimeType": "application/json",
                                                         "buffer": b"this is not json"}])
            page.click("#import-submit")
            expect(page.locator("#import-status")).to_contain_text("Import refused: file: not a JSON file")
            expect(page.locator("#import-status")).to_have_attribute("data-state", "error")
            expect(result).to_be_hidden()
            page.screenshot(path=str(ARTIFACTS / "exports_page_import.png"), full_page=True)
        finally:
            browser.close()


def _size_text(n: int) -> str:
    """lib/uploads.ts formatBytes."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} bytes"
