"""Zip uploads of images: members read in memory under size limits, never written to disk
by the names the archive gives them.

An archive is refused whole when any member is unsafe (``..`` or absolute path, a
symbolic link, too large or expanding like a bomb), each such member named with its
reason. Directories and OS metadata (``__MACOSX/``, names starting with ``.``) are skipped.
"""

from __future__ import annotations

import posixpath
import stat
import zipfile
from dataclasses import dataclass, field
from io import BytesIO

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive


def is_zip(name: str, data: bytes) -> bool:
    """An upload is an archive by its content (no image format starts with ``PK``) or by a
    ``.zip`` name (so a broken archive gets an archive's error message)."""
    return data.startswith(ZIP_MAGIC) or name.lower().endswith(".zip")


@dataclass
class ZipContents:
    files: list[tuple[str, bytes]] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def error(self, key: str, message: str) -> None:
        self.errors.setdefault(key, []).append(message)


def _member_name(raw: str) -> str | None:
    """The member's path as a clean relative POSIX path, or None when it would escape."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):  # /etc/x, C:/x
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return posixpath.join(*parts)


def zip_extract(*, name: str, data: bytes, max_member_bytes: int, max_total_bytes: int,
                max_members: int) -> ZipContents:
    """Read the image members of a zip archive into memory.

    Sizes are enforced on the bytes actually decompressed (a header may lie about them):
    reading stops one byte past a limit.

    Args:
        name: the archive's upload name; errors are keyed ``"<name>/<member>"``.
        max_member_bytes: the most one member may expand to.
        max_total_bytes: the most all members together may expand to.
        max_members: the most image members.

    Returns:
        ``files``: (member path inside the archive, bytes) pairs; ``errors``: member key ->
        messages (the caller refuses the upload when there are any).
    """
    out = ZipContents()
    try:
        archive = zipfile.ZipFile(BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        out.error(name, f"not a readable zip archive ({exc})")
        return out
    total = 0
    with archive:
        members = archive.infolist()
        for info in members:
            key = f"{name}/{info.filename}"
            if info.is_dir():
                continue
            clean = _member_name(info.filename)
            if clean is None:
                out.error(key, "unsafe path in the archive (absolute or with '..'); refused")
                continue
            base = posixpath.basename(clean)
            if clean.startswith("__MACOSX/") or base.startswith("."):
                continue  # Finder and editor metadata, not photos
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                out.error(key, "a symbolic link; archives may hold only regular files")
                continue
            if info.flag_bits & 0x1:
                out.error(key, "encrypted; not supported")
                continue
            if len(out.files) >= max_members:
                out.error(name, f"more than {max_members} images in one upload")
                break
            budget = min(max_member_bytes, max_total_bytes - total)
            try:
                with archive.open(info) as fh:
                    content = fh.read(budget + 1)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, OSError, ValueError) as exc:
                out.error(key, f"cannot be read from the archive ({exc})")
                continue
            if len(content) > budget:
                if budget < max_member_bytes:
                    out.error(name, f"the archive expands to more than {max_total_bytes} bytes; refused")
                    break
                out.error(key, f"expands to more than {max_member_bytes} bytes; refused")
                continue
            total += len(content)
            out.files.append((clean, content))
        if not out.files and not out.errors:
            out.error(name, "the archive holds no images")
    return out
