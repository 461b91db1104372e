"""Export files do not stay forever: after ANNOTATOR_EXPORT_RETENTION_HOURS the periodic
cleanup (Celery beat, or ``manage.py expire_exports`` by hand) deletes the file and marks the
job expired; its download then answers 410 Gone with a message."""

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone

from annotator.core import tasks
from annotator.core.models import ExportJob
from tests.factories import project_with_photos

pytestmark = pytest.mark.django_db


def _done_export(project, user, *, age: timedelta) -> ExportJob:
    job = ExportJob.objects.create(project=project, format="coco", created_by=user, status=ExportJob.Status.DONE,
                                   progress=1.0, finished_at=timezone.now() - age)
    job.file.save(f"project-{project.pk}-export-{job.pk}-coco.json", ContentFile(b'{"images": []}'))
    return job


def test_default_retention_is_a_week_and_beat_runs_the_cleanup():
    assert settings.ANNOTATOR_EXPORT_RETENTION_HOURS == 7 * 24
    entry = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "annotator.core.tasks.expire_exports"]
    assert len(entry) == 1 and entry[0]["schedule"] > 0


def test_old_export_files_are_deleted_and_their_download_is_gone(api_client, user, settings):
    settings.ANNOTATOR_EXPORT_RETENTION_HOURS = 24
    project = project_with_photos(user=user)
    old = _done_export(project, user, age=timedelta(hours=25))
    fresh = _done_export(project, user, age=timedelta(hours=23))
    running = ExportJob.objects.create(project=project, format="sa1b", created_by=user,
                                       status=ExportJob.Status.RUNNING)
    ExportJob.objects.filter(pk=running.pk).update(created_at=timezone.now() - timedelta(days=30))
    old_name = old.file.name
    assert default_storage.exists(old_name)
    assert api_client.get(f"/api/exports/{old.pk}/download").status_code == 200
    body = api_client.get(f"/api/exports/{old.pk}/").json()
    assert body["expires_at"] is not None and body["download_url"]

    assert tasks.expire_exports() == 1  # what beat runs
    old.refresh_from_db()
    assert old.status == "expired" and not old.file
    assert not default_storage.exists(old_name)
    res = api_client.get(f"/api/exports/{old.pk}/download")
    assert res.status_code == 410
    detail = res.json()["detail"]
    assert "expired" in detail and "24 h" in detail and "start a new export" in detail.lower()
    body = api_client.get(f"/api/exports/{old.pk}/").json()
    assert body["status"] == "expired" and body["download_url"] is None and body["expires_at"] is None
    # The newer file and a job still running are left alone; a second run finds nothing.
    fresh.refresh_from_db()
    assert fresh.status == "done" and default_storage.exists(fresh.file.name)
    assert api_client.get(f"/api/exports/{fresh.pk}/download").status_code == 200
    assert ExportJob.objects.get(pk=running.pk).status == "running"
    assert tasks.expire_exports() == 0


def test_the_command_expires_with_its_own_age(user, settings):
    settings.ANNOTATOR_EXPORT_RETENTION_HOURS = 24
    project = project_with_photos(user=user)
    two_hours = _done_export(project, user, age=timedelta(hours=2))
    ten_minutes = _done_export(project, user, age=timedelta(minutes=10))
    out = StringIO()
    call_command("expire_exports", "--older-than-hours", "1", stdout=out)
    assert f"expired 1 export(s) finished over 1 h ago: {two_hours.pk}" in out.getvalue()
    assert ExportJob.objects.get(pk=two_hours.pk).status == "expired"
    assert ExportJob.objects.get(pk=ten_minutes.pk).status == "done"
