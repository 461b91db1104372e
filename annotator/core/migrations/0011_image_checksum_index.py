"""Duplicate uploads are found by content: an index on (project, checksum), and the checksum
(SHA-256 of the stored file's bytes) filled in for rows that lack one."""

import hashlib

from django.db import migrations, models


def fill_checksums(apps, schema_editor):
    """Rows written without a checksum (bulk inserts, the admin) get the SHA-256 of their
    stored file; a file that cannot be read is left blank (it matches no upload)."""
    Image = apps.get_model("core", "Image")
    for image in Image.objects.filter(checksum="").only("pk", "file").iterator():
        digest = hashlib.sha256()
        try:
            with image.file.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        except (OSError, ValueError):
            continue
        Image.objects.filter(pk=image.pk).update(checksum=digest.hexdigest())


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0010_exportjob_expired'),
    ]

    operations = [
        migrations.AlterField(
            model_name='image',
            name='checksum',
            field=models.CharField(help_text='SHA-256 of the uploaded bytes (an upload whose bytes are already in the project is not stored again)', max_length=64),
        ),
        migrations.RunPython(fill_checksums, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='image',
            index=models.Index(fields=['project', 'checksum'], name='core_image_project_f32663_idx'),
        ),
    ]
