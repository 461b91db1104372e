"""Shared body of the export commands: write an export of a project to a local file."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotator.core.exports import export_write
from annotator.core.models import Project

from ._progress import progress_bar


class ExportCommand(BaseCommand):
    formats: tuple[str, ...] = ()

    def add_common_arguments(self, parser) -> None:
        parser.add_argument("--project", type=int, required=True, help="project id")
        parser.add_argument("--output", required=True, help="file to write (.json, or .zip for zips)")
        parser.add_argument("--only-approved", action="store_true", help="only annotations with review_status approved")
        parser.add_argument("--include-images", action="store_true", help="a zip with the images beside the masks")
        parser.add_argument("--no-progress", action="store_true")

    def run_export(self, *, project: int, output: str, format: str, only_approved: bool, include_images: bool,
                   no_progress: bool) -> None:
        project_obj = Project.objects.filter(pk=project).first()
        if project_obj is None:
            raise CommandError(f"no project {project}")
        path = Path(output)
        started = time.perf_counter()
        with path.open("wb") as fh, progress_bar(f"{format} export", "mask", disable=no_progress) as progress:
            stats, ext = export_write(project=project_obj, format=format, out=fh, only_approved=only_approved,
                                      include_images=include_images, progress=progress)
        if path.suffix.lstrip(".") != ext:
            self.stderr.write(f"note: the export is a .{ext} file")
        seconds = time.perf_counter() - started
        summary = ", ".join(f"{k}={v}" for k, v in stats.as_dict().items() if v not in (None, 0))
        self.stdout.write(f"wrote {path} in {seconds:.1f} s: {summary}")
