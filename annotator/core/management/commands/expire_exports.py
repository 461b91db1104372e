"""Delete export files past their retention and mark the jobs expired (what beat runs hourly)."""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from annotator.core.services import exports_expire


class Command(BaseCommand):
    help = "Delete the files of exports finished longer ago than --older-than-hours and mark them expired."

    def add_arguments(self, parser):
        parser.add_argument("--older-than-hours", type=float, default=None,
                            help=f"default: ANNOTATOR_EXPORT_RETENTION_HOURS ({settings.ANNOTATOR_EXPORT_RETENTION_HOURS:g})")
        parser.add_argument("--limit", type=int, default=1000, help="at most this many exports per run")

    def handle(self, *args, older_than_hours=None, limit=1000, **options):
        hours = settings.ANNOTATOR_EXPORT_RETENTION_HOURS if older_than_hours is None else older_than_hours
        ids = exports_expire(older_than=timedelta(hours=hours), limit=limit)
        self.stdout.write(f"expired {len(ids)} export(s) finished over {hours:g} h ago"
                          + (f": {', '.join(map(str, ids))}" if ids else ""))
