"""Install an official SAM checkpoint (vit_b, vit_l, vit_h) as a model version that projects
can switch to (issue 9)."""

from django.core.management.base import BaseCommand, CommandError

from annotator.core.model_versions import INSTALLABLE, model_version_install


class Command(BaseCommand):
    help = ("Load an official SAM checkpoint strictly, record its SHA-256, export its decoder ONNX (fp32 and "
            "quantized) and register it as a model version.")

    def add_arguments(self, parser):
        parser.add_argument("architecture", choices=INSTALLABLE)
        parser.add_argument("path", help="the checkpoint file (e.g. sam_vit_h_4b8939.pth); it stays there, and "
                                         "every embedding worker must be able to read this path")
        parser.add_argument("--name", default="", help="what people see (default: 'SAM ViT-H (<file name>)')")

    def handle(self, *args, architecture, path, name="", **options):
        import engine

        try:
            version, created = model_version_install(architecture=architecture, checkpoint=path, name=name)
        except engine.CheckpointError as exc:
            raise CommandError(f"not installed: {exc}")
        q = version.metrics.get("decoder_quantized_vs_fp32", {})
        self.stdout.write(
            f"{'installed' if created else 'already installed'}: version {version.pk} {version.model_id} "
            f"({version.name})\n  sha256 {version.sha256}\n  quantized decoder vs fp32: mask IoU mean "
            f"{q.get('mask_iou_mean')}, min {q.get('mask_iou_min')}\n"
            f"  switch a project: PATCH /api/projects/<id>/model {{\"model_version\": {version.pk}}}")
