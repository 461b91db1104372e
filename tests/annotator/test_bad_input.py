"""Bad-input catalogue (issue 8): one row per case, each a clear error or a correct result,
and nothing half-stored (no Image/Annotation row, no file left in MEDIA_ROOT).

Policies the rows pin down:
- Images over ``ANNOTATOR_MAX_IMAGE_PIXELS`` (100 MP) are refused with a message, not
  downscaled: the decoder returns masks at the original size, in the browser's memory.
- What the browser shows is what the model embeds: EXIF rotation applied; an animation's
  first frame (stored as a PNG for display); 16-bit samples scaled to 8 bits; alpha
  composited over black (the annotate stage is near-black); TIFF shown through a PNG copy.
- A zip upload stands for its images; any unsafe member refuses the whole upload.
"""

from __future__ import annotations

import io
import json
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image as PILImage
from pycocotools.coco import COCO

import engine
from annotator.core import services
from annotator.core.models import Annotation, AnnotationEvent, Image
from engine.rle import mask_to_rle
from tests.factories import grabcut_photo, project_with_photos

pytestmark = pytest.mark.django_db


# ---------------------------------------------------------------- helpers

def media_files() -> set[str]:
    root = Path(settings.MEDIA_ROOT)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.fixture
def no_new_files():
    """Asserts, after the test, that it left no new file under MEDIA_ROOT."""
    before = media_files()
    yield
    assert media_files() - before == set()


def _upload(client, project_id, *files):
    bufs = []
    for name, data in files:
        buf = io.BytesIO(data)
        buf.name = name
        bufs.append(buf)
    return client.post(f"/api/projects/{project_id}/images/", {"files": bufs}, format="multipart")


def _encode(img: PILImage.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def blank_png(width: int, height: int) -> bytes:
    """A 1-bit black PNG of any size, built without holding its pixels (cheap at 300 MP)."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def photo() -> bytes:
    return grabcut_photo("124080.jpg")[1]


def small_png() -> bytes:
    return _encode(PILImage.new("RGB", (64, 48), (10, 200, 30)), "PNG")


def _flip(data: bytes, start: int, stop: int, step: int = 7) -> bytes:
    b = bytearray(data)
    for i in range(start, min(stop, len(b)), step):
        b[i] ^= 0x55
    return bytes(b)


def _zip(members: list[tuple[str, bytes]] | list, *, symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name)  # ZipInfo keeps the name as given ('../x', '/x')
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def _zeros_zip(name: str, sizes: list[int]) -> bytes:
    """A zip bomb: members of zeros, ~1000:1 compressed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for i, size in enumerate(sizes):
            with zf.open(f"{name}{i}.png", "w", force_zip64=True) as fh:
                chunk = b"\x00" * (1 << 20)
                for _ in range(size >> 20):
                    fh.write(chunk)
    return buf.getvalue()


# ---------------------------------------------------------------- refused uploads

MB = 1 << 20

REFUSED = [
    # (row id, file name, bytes factory, message expected in the file's error)
    ("zero-bytes", "empty.jpg", lambda: b"", "the file is empty"),
    ("text-with-jpg-name", "notes.jpg", lambda: b"this is not an image at all\n" * 10, "not a recognised image format"),
    ("pdf-with-png-name", "doc.png", lambda: b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "not a recognised image format"),
    ("svg-with-png-name", "logo.png", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>',
     "not a recognised image format"),
    ("html-with-jpg-name", "page.jpg", lambda: b"<!doctype html><html><body>hi</body></html>",
     "not a recognised image format"),
    ("jpeg-header-corrupt", "corrupt-header.jpg", lambda: photo()[:20] + b"\x00" * 580 + photo()[600:],
     "not a recognised image format"),
    ("jpeg-scan-corrupt", "corrupt-scan.jpg", lambda: _flip(photo(), len(photo()) // 2, len(photo()) // 2 + 2000),
     "not a readable image"),
    ("jpeg-truncated", "truncated.jpg", lambda: photo()[:5000], "truncated"),
    ("jpeg-only-soi", "soi.jpg", lambda: b"\xff\xd8\xff\xe0", "not a recognised image format"),
    ("png-idat-corrupt", "corrupt.png", lambda: _flip(small_png(), small_png().index(b"IDAT") + 8,
                                                       small_png().index(b"IDAT") + 12, 1), "not a readable image"),
    ("png-truncated", "truncated.png", lambda: small_png()[:-30], "truncated"),
    ("png-header-only", "header.png", lambda: small_png()[:60], "not a readable image"),
    ("format-not-allowed-ppm", "photo.ppm", lambda: _encode(PILImage.new("RGB", (8, 8)), "PPM"),
     "unsupported image format PPM"),
    ("format-not-allowed-ico", "favicon.png", lambda: _encode(PILImage.new("RGB", (16, 16)), "ICO"),
     "unsupported image format ICO"),
    # 30000x30000 = 900 MP, over Pillow's bomb limit (2 x 89.5 MP): refused before decoding.
    ("decompression-bomb-900MP", "bomb.png", lambda: blank_png(30000, 30000), "too large to decode safely"),
    # The stated policy for very large photos: refused above 100 MP, with the limit named.
    ("very-large-20000x15000", "huge.png", lambda: blank_png(20000, 15000), "over the limit of 100000000 pixels"),
    ("over-our-limit-11000x10000", "big.png", lambda: blank_png(11000, 10000),
     "the image is 11000x10000 pixels, over the limit of 100000000 pixels; downscale it first"),
    ("nested-zip-member", "outer.zip", lambda: _zip([("inner.zip", _zip([("a.jpg", photo())]))]),
     "not a recognised image format"),
]


@pytest.mark.parametrize("name,make,message", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_bad_upload_is_refused_whole_with_a_clear_message(api_client, user, no_new_files, name, make, message):
    project = services.project_create(name="P", user=user)
    res = _upload(api_client, project.pk, grabcut_photo("llama.bmp"), (name, make()))
    assert res.status_code == 400, res.content
    body = res.json()
    text = " ".join(" ".join(v) for k, v in body.items() if k.startswith(name))
    assert message in text, body
    assert "llama.bmp" not in body  # the good file was fine...
    assert not Image.objects.exists()  # ...and not stored either


# ---------------------------------------------------------------- accepted uploads, and what the model sees

def _cmyk_jpeg() -> bytes:
    return _encode(PILImage.new("CMYK", (40, 30), (255, 0, 0, 0)), "JPEG", quality=95)  # cyan


def _gray16_png() -> bytes:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    return _encode(PILImage.fromarray(ramp), "PNG")


def _rgb48_png() -> bytes:
    # Pillow cannot write 48-bit PNG; build the rows by hand: 16-bit big-endian R, G, B.
    w, h = 16, 8
    px = np.zeros((h, w, 3), ">u2")
    px[..., 0] = 0xC000
    px[..., 2] = 0x4000
    raw = b"".join(b"\x00" + px[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw))
            + _png_chunk(b"IEND", b""))


def _rgba_png() -> bytes:
    img = PILImage.new("RGBA", (20, 10), (255, 255, 255, 0))  # invisible white
    img.paste((0, 0, 255, 255), (10, 0, 20, 10))  # opaque blue right half
    return _encode(img, "PNG")


def _palette_png_with_transparency() -> bytes:
    img = PILImage.new("P", (12, 12), 0)
    img.putpalette([255, 255, 255, 200, 0, 0] + [0] * 762)
    img.paste(1, (6, 0, 12, 12))
    return _encode(img, "PNG", transparency=0)


def _animated(fmt: str) -> bytes:
    frames = [PILImage.new("RGB", (24, 16), c) for c in [(250, 0, 0), (0, 250, 0), (0, 0, 250)]]
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


# (row id, name, bytes factory, (width, height) shown, (x, y) probed, RGB the model must see there, tolerance)
ACCEPTED = [
    ("cmyk-jpeg", "cmyk.jpg", _cmyk_jpeg, (40, 30), (20, 15), (0, 255, 255), 6),
    ("gray8-png", "gray.png", lambda: _encode(PILImage.new("L", (30, 20), 77), "PNG"), (30, 20), (5, 5), (77, 77, 77), 0),
    ("gray16-png-scaled-not-clipped", "gray16.png", _gray16_png, (64, 32), (63, 0), (255, 255, 255), 0),
    ("gray16-png-midtone", "gray16.png", _gray16_png, (64, 32), (32, 0), (130, 130, 130), 1),
    ("rgb48-png", "rgb48.png", _rgb48_png, (16, 8), (3, 3), (192, 0, 64), 1),
    ("gray-alpha-png", "la.png", lambda: _encode(PILImage.new("LA", (10, 10), (200, 255)), "PNG"), (10, 10),
     (1, 1), (200, 200, 200), 0),
    ("rgba-transparent-is-background", "rgba.png", _rgba_png, (20, 10), (2, 2), (0, 0, 0), 0),
    ("rgba-opaque-kept", "rgba.png", _rgba_png, (20, 10), (15, 5), (0, 0, 255), 0),
    ("palette-png-transparency", "pal.png", _palette_png_with_transparency, (12, 12), (9, 3), (200, 0, 0), 0),
    ("animated-gif-first-frame", "anim.gif", lambda: _animated("GIF"), (24, 16), (5, 5), (250, 0, 0), 8),
    ("animated-png-first-frame", "anim.png", lambda: _animated("PNG"), (24, 16), (5, 5), (250, 0, 0), 0),
    ("tiff-gets-a-png-for-the-browser", "scan.tif", lambda: _encode(PILImage.new("RGB", (33, 22), (1, 2, 3)), "TIFF"),
     (33, 22), (0, 0), (1, 2, 3), 0),
    ("webp", "photo.webp", lambda: _encode(PILImage.new("RGB", (18, 12), (0, 128, 0)), "WEBP", lossless=True),
     (18, 12), (3, 3), (0, 128, 0), 0),
    ("mpo-camera-jpeg", "IMG_0001.JPG", lambda: _encode(PILImage.new("RGB", (40, 30), (200, 100, 0)), "MPO",
     save_all=True, append_images=[PILImage.new("RGB", (40, 30), (0, 0, 200))]), (40, 30), (5, 5), (200, 100, 0), 4),
    ("bmp", "llama.bmp", lambda: grabcut_photo("llama.bmp")[1], (513, 371), None, None, 0),
]


@pytest.mark.parametrize("name,make,size,probe,rgb,tol", [r[1:] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED])
def test_unusual_image_is_accepted_and_the_model_sees_what_the_browser_shows(api_client, user, name, make, size,
                                                                            probe, rgb, tol):
    project = services.project_create(name="P", user=user)
    res = _upload(api_client, project.pk, (name, make()))
    assert res.status_code == 201, res.content
    info = res.json()[0]
    assert (info["width"], info["height"]) == size
    served = b"".join(api_client.get(info["file_url"]).streaming_content)
    shown = PILImage.open(io.BytesIO(served))
    assert shown.format in services.BROWSER_FORMATS and shown.size == size
    # A still picture for the canvas (an MPO is a JPEG to the browser: it shows the first image).
    assert getattr(shown, "n_frames", 1) == 1 or shown.format == "MPO"
    image = Image.objects.get(pk=info["id"])
    source = image.display_file if image.display_file else image.file
    with source.open("rb") as fh:
        pixels = engine.load_image(fh.read())  # what embedding_compute feeds the model
    assert pixels.shape == (size[1], size[0], 3) and pixels.dtype == np.uint8
    if probe is not None:
        x, y = probe
        np.testing.assert_allclose(pixels[y, x].astype(int), rgb, atol=tol)


@pytest.mark.parametrize("orientation,shown", [(3, (60, 40)), (6, (40, 60)), (8, (40, 60))])
def test_exif_rotated_photo_masks_line_up_and_coco_export_uses_the_rotated_size(api_client, user, orientation,
                                                                                 shown, tmp_path):
    # Stored 60x40 with a red block in its top-left corner; the user sees it rotated.
    stored = PILImage.new("RGB", (60, 40), (0, 0, 0))
    stored.paste((255, 0, 0), (0, 0, 15, 10))
    exif = stored.getexif()
    exif[0x0112] = orientation
    project = services.project_create(name="P", user=user)
    res = _upload(api_client, project.pk, ("rotated.jpg", _encode(stored, "JPEG", exif=exif, quality=95)))
    assert res.status_code == 201
    info = res.json()[0]
    assert (info["width"], info["height"]) == shown
    w, h = shown
    served = np.asarray(PILImage.open(io.BytesIO(b"".join(api_client.get(info["file_url"]).streaming_content))))
    assert served.shape[:2] == (h, w)
    red = (served[..., 0] > 128) & (served[..., 1] < 100)
    # The user outlines the red block where they see it; the model must see it there too.
    res = api_client.post(f"/api/images/{info['id']}/annotations/",
                          {"segmentation": mask_to_rle(red.astype(np.uint8))}, format="json")
    assert res.status_code == 201, res.content
    image = Image.objects.get(pk=info["id"])
    pixels = engine.load_image(image.display_file.open("rb").read())
    assert pixels.shape[:2] == (h, w)
    assert (pixels[red][:, 0] > 128).mean() > 0.9 and (pixels[~red][:, 0] < 100).mean() > 0.9
    path = tmp_path / "coco.json"
    path.write_bytes(api_client.get(f"/api/projects/{project.pk}/export/coco").content)
    coco = COCO(str(path))
    img = coco.imgs[info["id"]]
    assert (img["width"], img["height"]) == (w, h)
    (ann,) = coco.loadAnns(coco.getAnnIds())
    np.testing.assert_array_equal(coco.annToMask(ann), red)


# ---------------------------------------------------------------- zip uploads

def test_zip_upload_stores_each_image_under_its_path_in_the_archive(api_client, user):
    project = services.project_create(name="P", user=user)
    archive = _zip([("birds/a.jpg", photo()), ("b.png", small_png()), ("__MACOSX/birds/._a.jpg", b"\x00\x05"),
                    (".DS_Store", b"\x00\x00\x00\x01Bud1")])
    res = _upload(api_client, project.pk, ("batch.zip", archive), grabcut_photo("llama.bmp"))
    assert res.status_code == 201, res.content
    assert [(i["file_name"], i["width"], i["height"]) for i in res.json()] == [
        ("birds/a.jpg", 481, 321), ("b.png", 64, 48), ("llama.bmp", 513, 371)]
    stored = Image.objects.get(file_name="birds/a.jpg")
    assert Path(stored.file.path).resolve().is_relative_to(Path(settings.MEDIA_ROOT).resolve())
    assert stored.file.read() == photo()


ZIP_REFUSED = [
    # (row id, archive bytes factory, error key, message)
    ("dot-dot-path", lambda: _zip([("ok.jpg", photo()), ("../../evil.jpg", photo())]), "up.zip/../../evil.jpg",
     "unsafe path"),
    ("dot-dot-inside-path", lambda: _zip([("a/../../evil.jpg", photo())]), "up.zip/a/../../evil.jpg", "unsafe path"),
    ("absolute-path", lambda: _zip([("/tmp/evil.jpg", photo())]), "up.zip//tmp/evil.jpg", "unsafe path"),
    ("windows-absolute-path", lambda: _zip([("C:\\evil.jpg", photo())]), "up.zip/C:\\evil.jpg", "unsafe path"),
    ("symlink", lambda: _zip([("ok.jpg", photo())], symlinks={"passwd.jpg": "/etc/passwd"}), "up.zip/passwd.jpg",
     "symbolic link"),
    ("member-not-an-image", lambda: _zip([("ok.jpg", photo()), ("README.txt", b"hello")]), "up.zip/README.txt",
     "not a recognised image format"),
    ("member-truncated", lambda: _zip([("cut.jpg", photo()[:5000])]), "up.zip/cut.jpg", "truncated"),
    ("not-a-zip", lambda: b"PK\x03\x04 but nothing after", "up.zip", "not a readable zip archive"),
    ("empty-zip", lambda: _zip([]), "up.zip", "holds no images"),
    ("only-folders-and-metadata", lambda: _zip([("__MACOSX/._x.jpg", b"x"), (".hidden.jpg", photo())]), "up.zip",
     "holds no images"),
    # A member that inflates past the 50 MB per-file limit: reading stops at 50 MB + 1 byte.
    ("zip-bomb-one-member", lambda: _zeros_zip("bomb", [64 * MB]), "up.zip/bomb0.png", "expands to more than"),
    # Members under 50 MB each that together inflate past the 200 MB archive limit.
    ("zip-bomb-total", lambda: _zeros_zip("part", [45 * MB] * 5), "up.zip", "the archive expands to more than"),
]


@pytest.mark.parametrize("make,key,message", [r[1:] for r in ZIP_REFUSED], ids=[r[0] for r in ZIP_REFUSED])
def test_unsafe_or_bad_zip_is_refused_whole_and_each_member_reported(api_client, user, no_new_files, make, key,
                                                                    message):
    project = services.project_create(name="P", user=user)
    media = Path(settings.MEDIA_ROOT)
    beside = [media.parent, media.parent.parent, Path("/tmp")]
    res = _upload(api_client, project.pk, ("up.zip", make()))
    assert res.status_code == 400, res.content
    body = res.json()
    assert message in " ".join(body.get(key, [])), body
    assert not Image.objects.exists()
    for folder in beside:  # nothing written where a '..' or absolute member points either
        assert not (folder / "evil.jpg").exists() and not (folder / "passwd.jpg").exists()


def test_zip_with_too_many_images_is_refused(api_client, user, settings, no_new_files):
    settings.ANNOTATOR_MAX_FILES_PER_UPLOAD = 3
    project = services.project_create(name="P", user=user)
    res = _upload(api_client, project.pk, ("many.zip", _zip([(f"{i}.png", small_png()) for i in range(5)])))
    assert res.status_code == 400 and "more than 3 images" in " ".join(res.json()["many.zip"])
    assert not Image.objects.exists()


def test_storage_failing_midway_leaves_no_row_and_no_file(user, monkeypatch, no_new_files):
    project = services.project_create(name="P", user=user)
    real_save = Image.save
    calls = []

    def failing_save(self, *args, **kwargs):
        calls.append(self.file_name)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        services.images_upload(project=project, user=user,
                               files=[grabcut_photo("124080.jpg"), grabcut_photo("llama.bmp")])
    assert not Image.objects.exists()


# ---------------------------------------------------------------- malformed RLE on save

def _image(user):
    return project_with_photos(user=user).images.get()


RLE_BAD = [
    # (row id, segmentation factory given (H, W), message)
    ("runs-do-not-sum-to-HxW", lambda h, w: {"size": [h, w], "counts": [h * w - 5, 3]}, "runs sum to"),
    ("compressed-runs-short", lambda h, w: dict(mask_to_rle(np.ones((h, w - 1), np.uint8)), size=[h, w]),
     "runs sum to"),
    ("wrong-size", lambda h, w: mask_to_rle(np.ones((10, 10), np.uint8)), "does not match the image size"),
    ("size-transposed", lambda h, w: mask_to_rle(np.ones((w, h), np.uint8)), "does not match the image size"),
    ("size-strings", lambda h, w: {"size": [str(h), str(w)], "counts": [h * w]}, "positive integers"),
    ("size-one-number", lambda h, w: {"size": [h], "counts": [h * w]}, "positive integers"),
    ("size-zero", lambda h, w: {"size": [0, w], "counts": []}, "positive integers"),
    ("size-bools", lambda h, w: {"size": [True, True], "counts": [1]}, "positive integers"),
    ("counts-number", lambda h, w: {"size": [h, w], "counts": 12}, "must be a string or a list"),
    ("counts-null", lambda h, w: {"size": [h, w], "counts": None}, "must be a string or a list"),
    ("counts-negative", lambda h, w: {"size": [h, w], "counts": [h * w + 5, -5]}, "non-negative integers"),
    ("counts-floats", lambda h, w: {"size": [h, w], "counts": [h * w / 2, h * w / 2]}, "non-negative integers"),
    ("counts-bad-characters", lambda h, w: {"size": [h, w], "counts": "~~~~"}, "invalid character"),
    ("counts-cut-mid-value", lambda h, w: {"size": [h, w], "counts": "0P"}, "ends in the middle of a value"),
    ("polygon-instead-of-rle", lambda h, w: [[0, 0, 10, 0, 10, 10]], "must be an object"),
    ("string-instead-of-rle", lambda h, w: "0P10", "must be an object"),
    ("empty-mask", lambda h, w: mask_to_rle(np.zeros((h, w), np.uint8)), "The mask is empty"),
]


@pytest.mark.parametrize("make,message", [r[1:] for r in RLE_BAD], ids=[r[0] for r in RLE_BAD])
def test_malformed_rle_is_refused_and_nothing_is_stored(api_client, user, make, message):
    image = _image(user)
    res = api_client.post(f"/api/images/{image.pk}/annotations/",
                          {"segmentation": make(image.height, image.width)}, format="json")
    assert res.status_code == 400, res.content
    assert message in " ".join(res.json()["segmentation"]), res.json()
    assert not Annotation.objects.exists() and not AnnotationEvent.objects.exists()


def test_malformed_rle_is_refused_on_edit_and_the_mask_kept(api_client, user):
    image = _image(user)
    mask = np.zeros((image.height, image.width), np.uint8)
    mask[10:20, 10:20] = 1
    ann = services.annotation_create(image=image, user=user, segmentation=mask_to_rle(mask))
    res = api_client.patch(f"/api/annotations/{ann.pk}/",
                           {"version": 1, "segmentation": {"size": [image.height, image.width], "counts": [7]}},
                           format="json")
    assert res.status_code == 400 and "runs sum to" in res.json()["segmentation"][0]
    ann.refresh_from_db()
    assert ann.version == 1 and ann.area == 100


def test_missing_segmentation_is_a_field_error(api_client, user):
    image = _image(user)
    res = api_client.post(f"/api/images/{image.pk}/annotations/", {"category": None}, format="json")
    assert res.status_code == 400 and "required" in res.json()["segmentation"][0]


# ---------------------------------------------------------------- prompts outside the image

PROMPTS_BAD = [
    # (row id, prompts factory given (H, W), field, message)
    ("point-left-of-image", lambda h, w: {"point_coords": [[-1, 5]], "point_labels": [1]}, "prompts", "outside"),
    ("point-right-of-image", lambda h, w: {"point_coords": [[w + 0.5, 5]], "point_labels": [1]}, "prompts", "outside"),
    ("point-below-image", lambda h, w: {"point_coords": [[5, h + 1]], "point_labels": [0]}, "prompts", "outside"),
    ("point-far-away", lambda h, w: {"point_coords": [[1e12, -1e12]], "point_labels": [1]}, "prompts", "outside"),
    ("box-outside", lambda h, w: {"box": [0, 0, w + 10, h]}, "prompts", "outside"),
    ("box-inverted", lambda h, w: {"box": [50, 50, 10, 10]}, "prompts", "inverted"),
    ("box-three-numbers", lambda h, w: {"box": [1, 2, 3]}, "prompts", "at least 4"),
    ("label-2", lambda h, w: {"point_coords": [[5, 5]], "point_labels": [2]}, "prompts", "less than or equal to 1"),
    ("lengths-differ", lambda h, w: {"point_coords": [[5, 5], [6, 6]], "point_labels": [1]}, "prompts",
     "same length"),
    ("point-three-numbers", lambda h, w: {"point_coords": [[5, 5, 5]], "point_labels": [1]}, "prompts",
     "no more than 2"),
    ("point-strings", lambda h, w: {"point_coords": [["a", "b"]], "point_labels": [1]}, "prompts",
     "valid number"),
]


@pytest.mark.parametrize("make,field,message", [r[1:] for r in PROMPTS_BAD], ids=[r[0] for r in PROMPTS_BAD])
def test_prompts_outside_the_image_are_refused(api_client, user, make, field, message):
    image = _image(user)
    mask = np.zeros((image.height, image.width), np.uint8)
    mask[10:20, 10:20] = 1
    res = api_client.post(f"/api/images/{image.pk}/annotations/",
                          {"segmentation": mask_to_rle(mask), "prompts": make(image.height, image.width)},
                          format="json")
    assert res.status_code == 400, res.content
    assert message in json.dumps(res.json()[field]), res.json()
    assert not Annotation.objects.exists()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(api_client, user, literal):
    image = _image(user)
    mask = np.zeros((image.height, image.width), np.uint8)
    mask[10:20, 10:20] = 1
    body = json.dumps({"segmentation": mask_to_rle(mask), "prompts": {"point_coords": [[1, 1]], "point_labels": [1]}})
    body = body.replace('[[1, 1]]', f'[[{literal}, 1]]')
    res = api_client.post(f"/api/images/{image.pk}/annotations/", body, content_type="application/json")
    assert res.status_code == 400, res.content
    assert not Annotation.objects.exists()


def test_non_finite_predicted_iou_on_edit_is_refused(api_client, user):
    image = _image(user)
    mask = np.zeros((image.height, image.width), np.uint8)
    mask[10:20, 10:20] = 1
    ann = services.annotation_create(image=image, user=user, segmentation=mask_to_rle(mask))
    res = api_client.patch(f"/api/annotations/{ann.pk}/", '{"version": 1, "predicted_iou": 1e999}',
                           content_type="application/json")
    assert res.status_code == 400, res.content
    assert api_client.get(f"/api/annotations/{ann.pk}/").status_code == 200


def test_points_on_the_image_border_are_accepted(api_client, user):
    image = _image(user)
    mask = np.zeros((image.height, image.width), np.uint8)
    mask[10:20, 10:20] = 1
    prompts = {"point_coords": [[0, 0], [image.width, image.height]], "point_labels": [1, 0],
               "box": [0, 0, image.width, image.height]}
    res = api_client.post(f"/api/images/{image.pk}/annotations/", {"segmentation": mask_to_rle(mask),
                                                                   "prompts": prompts}, format="json")
    assert res.status_code == 201, res.content
    assert res.json()["prompts"]["point_coords"] == [[0, 0], [image.width, image.height]]


# ---------------------------------------------------------------- oversized requests

def test_oversized_json_body_gets_413_json(api_client, user):
    image = _image(user)
    body = '{"segmentation": {"size": [1, 1], "counts": "' + "0" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + '"}}'
    res = api_client.post(f"/api/images/{image.pk}/annotations/", body, content_type="application/json")
    assert res.status_code == 413
    assert res["Content-Type"] == "application/json" and "over the limit" in res.json()["detail"]
    assert not Annotation.objects.exists()


def test_oversized_upload_request_gets_413_json(api_client, user, settings, no_new_files):
    settings.ANNOTATOR_MAX_REQUEST_BYTES = 1 * MB
    project = services.project_create(name="P", user=user)
    res = _upload(api_client, project.pk, ("big.bmp", b"BM" + b"\x00" * (2 * MB)))
    assert res.status_code == 413 and "for an upload" in res.json()["detail"]
    assert not Image.objects.exists()


def test_file_over_the_per_file_limit_gets_a_clear_400(api_client, user, settings, no_new_files):
    settings.ANNOTATOR_MAX_UPLOAD_BYTES = 10_000
    project = services.project_create(name="P", user=user)
    res = _upload(api_client, project.pk, grabcut_photo("124080.jpg"))
    assert res.status_code == 400 and "over the limit of 10000" in res.json()["124080.jpg"][0]


def test_too_many_files_in_one_request_gets_a_json_400(api_client, user, settings, no_new_files):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    project = services.project_create(name="P", user=user)
    res = _upload(api_client, project.pk, *[(f"{i}.png", small_png()) for i in range(5)])
    assert res.status_code == 400 and "Too many files" in res.json()["detail"]
    assert not Image.objects.exists()
