"""Write a project's SA-1B per-image JSON files (or PNG instance masks) into a zip."""

from ._export_cmd import ExportCommand


class Command(ExportCommand):
    help = "SA-1B per-image JSON in a zip (--png: per-image 16-bit PNG instance masks instead)."

    def add_arguments(self, parser):
        self.add_common_arguments(parser)
        parser.add_argument("--png", action="store_true", help="PNG instance masks instead of SA-1B JSON")

    def handle(self, *args, png, **options):
        self.run_export(format="png" if png else "sa1b", project=options["project"], output=options["output"],
                        only_approved=options["only_approved"], include_images=options["include_images"],
                        no_progress=options["no_progress"])
