"""Creating a project and uploading photos in a real Chromium, as a manager does it.

The project list's "New project" form: the server's validation errors next to the fields
(a blank name, a category name over 100 characters on its own row), then a project with two
coloured labels, landing on its upload page. There: 3 real COCO photos and one corrupt file
through the file input, one more photo by a synthetic drop; the corrupt file shows the
server's refusal, with no Retry (it would be refused again), while the others upload; one
upload that never reaches the server (the request aborted) shows "failed" and succeeds on
Retry, the others' results untouched; every photo reaches "embedding ready" (the session's
real Celery worker). Then duplicates: a photo picked again under another name shows "already
in the project (image N)" with a link to that image and no Retry, nothing stored; a zip with
one photo already there and one new stores the new one and counts the other as skipped
(its first request answered 503: Retry, as for any failure on the way). The Annotate link
opens the annotate page on a photo.

Needs the built frontend, Chromium at /usr/bin/chromium, the real PostgreSQL and Redis.
"""

from __future__ import annotations

import base64
import io
import threading
import zipfile

import pytest

from annotator.core.models import Category, Image, Project
from tests.e2e.test_annotate import ARTIFACTS, ROOT, _launch, _login, _wait_ready
from tests.factories import SHARED_DATA, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

COCO = SHARED_DATA / "coco_mval" / "img"
PICKED = ("airplane02_000000272136.jpg", "airplane05_000000005477.jpg", "banana00_000000193926.jpg")
DROPPED = "apple01_000000216277.jpg"
CORRUPT = ("corrupt.jpg", b"these bytes are not an image, whatever the name says\n" * 20)
ZIPPED_NEW = "bear00_000000243075.jpg"


def _built() -> None:
    for name in ("projectNew.js", "upload.js"):
        if not (ROOT / "static" / "app" / name).exists():
            pytest.fail("frontend not built: run `cd frontend && npm ci && npm run build` first")


def _db(fn):
    """Runs ORM work in a thread of its own: Playwright's sync API keeps an event loop in this
    one, where Django refuses database calls."""
    from django.db import connection

    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            out["error"] = exc
        finally:
            connection.close()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def _row(page, name: str):
    return page.locator(f'tr.upload-row[data-file-name="{name}"]')


def _drop(page, name: str, data: bytes) -> None:
    """A drop event carrying one file, dispatched on the drop zone as a browser would."""
    page.evaluate(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: 'image/jpeg' }));
            const zone = document.getElementById('drop-zone');
            for (const type of ['dragenter', 'dragover', 'drop']) {
                zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
            }
        }""",
        [name, base64.b64encode(data).decode()],
    )


def test_create_a_project_and_upload_photos_in_the_browser(app_server, celery_worker_process):
    from playwright.sync_api import expect, sync_playwright

    _built()
    UserFactory(username="e2e-uploader")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            _login(page, app_server, "e2e-uploader")

            # ---- New project: the server's errors by their fields, then a project.
            page.click("#new-project-link")
            page.wait_for_url(f"{app_server}/projects/new/")
            expect(page.locator("#project-model")).to_be_enabled()
            assert page.locator("#project-model option").first.inner_text().startswith("Server default")
            page.click("#project-submit")
            expect(page.locator('[data-errors-for="name"]')).to_contain_text("This field may not be blank.")
            page.fill("#project-name", "Planes and fruit")
            page.fill("li.category-row:nth-child(1) input.category-name", "airplane")
            page.fill("li.category-row:nth-child(1) input.category-color", "#1f77b4")
            page.click("#add-category")
            page.fill("li.category-row:nth-child(2) input.category-name", "x" * 101)
            page.click("#add-category")
            page.fill("li.category-row:nth-child(3) input.category-name", "fruit")
            page.fill("li.category-row:nth-child(3) input.category-color", "#ff7f0e")
            page.click("#project-submit")
            too_long = page.locator("li.category-row:nth-child(2) ul.field-errors")
            expect(too_long).to_contain_text("Ensure this field has no more than 100 characters.")
            expect(page.locator('[data-errors-for="name"]')).to_be_empty()
            assert _db(Project.objects.count) == 0
            page.screenshot(path=str(ARTIFACTS / "new_project_errors.png"), full_page=True)
            page.click("li.category-row:nth-child(2) button.category-remove")
            page.click("#project-submit")
            page.wait_for_url(f"{app_server}/projects/*/upload/")
            project = _db(Project.objects.get)
            assert project.name == "Planes and fruit" and project.prefill_enabled is False  # test server default
            assert _db(lambda: list(Category.objects.filter(project=project).order_by("id").values_list(
                "name", "color"))) == [("airplane", "#1f77b4"), ("fruit", "#ff7f0e")]
            assert page.url == f"{app_server}/projects/{project.pk}/upload/"
            page.wait_for_selector("#upload-page[data-ready=true]")

            # ---- Upload: the first request of the first photo never reaches the server (aborted,
            # matched by the file name in its multipart body); everything else goes through.
            aborted: list[str] = []

            def maybe_abort(route):
                body = route.request.post_data_buffer or b""
                if route.request.method == "POST" and f'filename="{PICKED[0]}"'.encode() in body and not aborted:
                    aborted.append(route.request.url)
                    route.abort()
                else:
                    route.continue_()

            page.route("**/api/projects/*/images/", maybe_abort)
            photo = lambda name: {"name": name, "mimeType": "image/jpeg", "buffer": (COCO / name).read_bytes()}  # noqa: E731
            files = [photo(PICKED[0]), {"name": CORRUPT[0], "mimeType": "image/jpeg", "buffer": CORRUPT[1]},
                     photo(PICKED[1]), photo(PICKED[2])]
            page.set_input_files("#file-input", files)
            _drop(page, DROPPED, (COCO / DROPPED).read_bytes())
            names = [PICKED[0], CORRUPT[0], PICKED[1], PICKED[2], DROPPED]
            expect(page.locator("tr.upload-row")).to_have_count(5)
            assert page.locator("tr.upload-row").evaluate_all("rows => rows.map(r => r.dataset.fileName)") == names
            page.wait_for_function("document.getElementById('upload-summary').dataset.busy === 'false'", timeout=60_000)
            assert len(aborted) == 1

            # The first file failed on the way, the corrupt one was refused in the server's words.
            expect(_row(page, PICKED[0])).to_have_attribute("data-state", "failed")
            expect(_row(page, PICKED[0]).locator(".upload-result")).to_contain_text("network error")
            expect(_row(page, CORRUPT[0])).to_have_attribute("data-state", "refused")
            expect(_row(page, CORRUPT[0]).locator(".upload-result")).to_have_text(
                "refused: not a readable image (not a recognised image format)")
            for name in (PICKED[1], PICKED[2], DROPPED):
                expect(_row(page, name)).to_have_attribute("data-state", "uploaded")

            # Retry only where it may help: the failed one (no answer) has it and uploads now; the
            # refused one (the server's 400) has none; nothing else changes.
            expect(_row(page, CORRUPT[0]).locator("button.retry")).to_have_count(0)
            for name in (PICKED[1], PICKED[2], DROPPED):
                expect(_row(page, name).locator("button.retry")).to_have_count(0)
            _row(page, PICKED[0]).locator("button.retry").click()
            expect(_row(page, PICKED[0])).to_have_attribute("data-state", "uploaded", timeout=60_000)
            expect(_row(page, PICKED[0]).locator("button.retry")).to_have_count(0)
            expect(_row(page, CORRUPT[0])).to_have_attribute("data-state", "refused")
            expect(_row(page, CORRUPT[0]).locator(".upload-result")).to_contain_text("not a readable image")
            page.unroute("**/api/projects/*/images/")

            # Every photo reaches "embedding ready" (the worker's), as the images API says.
            for name in (PICKED[0], PICKED[1], PICKED[2], DROPPED):
                expect(_row(page, name)).to_have_attribute("data-embedding", "ready", timeout=180_000)
                expect(_row(page, name).locator(".embedding-stage")).to_have_text("embedding ready")
            expect(page.locator("#upload-summary")).to_contain_text("4 uploaded, 1 refused")
            expect(page.locator("#upload-summary")).to_contain_text("embeddings ready: 4/4")
            stored = _db(lambda: list(Image.objects.filter(project=project).values_list("file_name", "embedding_status")))
            assert sorted(stored) == sorted((name, "ready") for name in (PICKED[0], PICKED[1], PICKED[2], DROPPED))

            # ---- Duplicates: the same bytes under another name, and a zip of one known photo and
            # one new; the zip's first request gets a 503 (a failure on the way: Retry).
            first_zip: list[int] = []

            def zip_503_once(route):
                body = route.request.post_data_buffer or b""
                if route.request.method == "POST" and b'filename="more.zip"' in body and not first_zip:
                    first_zip.append(1)
                    route.fulfill(status=503, content_type="application/json",
                                  body='{"detail": "The server is restarting."}')
                else:
                    route.continue_()

            page.route("**/api/projects/*/images/", zip_503_once)
            known = _db(lambda: Image.objects.get(project=project, file_name=PICKED[1]))
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                zf.writestr(f"trip/{PICKED[2]}", (COCO / PICKED[2]).read_bytes())
                zf.writestr(f"trip/{ZIPPED_NEW}", (COCO / ZIPPED_NEW).read_bytes())
            page.set_input_files("#file-input", [
                {"name": "plane-copy.jpg", "mimeType": "image/jpeg", "buffer": (COCO / PICKED[1]).read_bytes()},
                {"name": "more.zip", "mimeType": "application/zip", "buffer": buf.getvalue()}])
            copy_row, zip_row = _row(page, "plane-copy.jpg"), _row(page, "more.zip")
            expect(copy_row).to_have_attribute("data-state", "duplicate", timeout=60_000)
            expect(copy_row.locator(".upload-result")).to_have_text(f"already in the project (image {known.pk})")
            link = copy_row.locator(".upload-result a.duplicate-link")
            assert link.get_attribute("href") == f"/projects/{project.pk}/annotate/?image={known.pk}"
            expect(copy_row.locator("button.retry")).to_have_count(0)
            expect(zip_row).to_have_attribute("data-state", "failed", timeout=60_000)
            expect(zip_row.locator(".upload-result")).to_have_text("failed: The server is restarting.")
            zip_row.locator("button.retry").click()
            expect(zip_row).to_have_attribute("data-state", "uploaded", timeout=60_000)
            expect(zip_row.locator(".upload-result")).to_have_text("uploaded (1 image; 1 already in the project, skipped)")
            expect(zip_row.locator(".duplicate-note")).to_contain_text(f"trip/{PICKED[2]} (image ")
            expect(zip_row.locator("button.retry")).to_have_count(0)
            page.unroute("**/api/projects/*/images/")
            expect(page.locator("#upload-summary")).to_contain_text("1 already in the project")
            expect(page.locator("#upload-summary")).to_contain_text("1 zip member already in the project (skipped)")
            names_now = _db(lambda: sorted(Image.objects.filter(project=project).values_list("file_name", flat=True)))
            assert names_now == sorted([PICKED[0], PICKED[1], PICKED[2], DROPPED, f"trip/{ZIPPED_NEW}"])
            page.screenshot(path=str(ARTIFACTS / "upload.png"), full_page=True)

            # ---- Annotate from the link: the page opens on that photo, ready to click.
            image = _db(lambda: Image.objects.get(project=project, file_name=PICKED[1]))
            link = _row(page, PICKED[1]).locator("a.annotate-link")
            assert link.get_attribute("href") == f"/projects/{project.pk}/annotate/?image={image.pk}"
            link.click()
            page.wait_for_url(f"{app_server}/projects/{project.pk}/annotate/?image={image.pk}")
            _wait_ready(page)
            assert page.evaluate("window.__samDebug.imageId()") == image.pk
            expect(page.locator("#mask-canvas")).to_have_attribute("data-width", str(image.width))
            expect(page.locator("#mask-canvas")).to_have_attribute("data-height", str(image.height))
            # The photo is drawn: its pixels on the image layer vary (not a blank canvas).
            spread = page.evaluate("""() => {
                const c = document.querySelector('canvas.image-layer');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let lo = 255, hi = 0;
                for (let i = 0; i < d.length; i += 4 * 97) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
                return hi - lo;
            }""")
            assert spread > 100, spread
            page.screenshot(path=str(ARTIFACTS / "upload_then_annotate.png"))
        finally:
            browser.close()
