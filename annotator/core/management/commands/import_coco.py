"""Import a COCO instances JSON file into a project as annotations (origin "imported") or as
pre-fill proposals (``--as-proposals``)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotator.core import services
from annotator.core.models import Project
from annotator.core.permissions import NotAllowed

from ._progress import progress_bar


class Command(BaseCommand):
    help = "Import COCO annotations (polygons, compressed or uncompressed RLE), matching images by file name."

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True, help="project id")
        parser.add_argument("--file", required=True, help="COCO instances JSON")
        parser.add_argument("--user", required=True, help="username recorded as the author (admin/manager)")
        parser.add_argument("--as-proposals", action="store_true",
                            help="store them as pre-fill proposals to accept, fix or reject, not as annotations")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, project, file, user, no_progress, as_proposals=False, **options):
        project_obj = Project.objects.filter(pk=project).first()
        if project_obj is None:
            raise CommandError(f"no project {project}")
        author = get_user_model().objects.filter(username=user).first()
        if author is None:
            raise CommandError(f"no user {user!r}")
        try:
            fh = open(file, "rb")
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}")
        try:
            # Streamed (ijson): files larger than memory import with bounded memory.
            with fh, progress_bar("import", "annotation", disable=no_progress) as progress:
                report = services.annotations_import_coco(
                    project=project_obj, user=author, fh=fh, progress=progress,
                    mode="proposals" if as_proposals else "annotations")
        except (services.ValidationError, NotAllowed) as exc:
            raise CommandError(str(exc))
        for item in report["unmatched_images"]:
            self.stdout.write(f"unmatched image {item['id']} {item['file_name']!r}: {item['reason']}")
        for item in report["skipped"]:
            self.stdout.write(f"skipped annotation #{item['index']} (id {item['id']}): {item['reason']}")
        self.stdout.write(
            f"imported {report['imported']}, skipped {len(report['skipped'])}, unmatched images "
            f"{len(report['unmatched_images'])}, categories created {report['categories_created']}, "
            f"area/bbox recomputed differently from the file for {report['area_bbox_corrected']}")
