"""Write a project's COCO instances export (RLE, or polygons with holes) to a file."""

from ._export_cmd import ExportCommand


class Command(ExportCommand):
    help = "COCO instances JSON of a project (compressed RLE; --polygons for polygons with holes bridged)."

    def add_arguments(self, parser):
        self.add_common_arguments(parser)
        parser.add_argument("--polygons", action="store_true", help="polygons instead of compressed RLE")

    def handle(self, *args, polygons, **options):
        self.run_export(format="coco_polygons" if polygons else "coco", project=options["project"],
                        output=options["output"], only_approved=options["only_approved"],
                        include_images=options["include_images"], no_progress=options["no_progress"])
