"""Queue again the embeddings pending for too long (what the periodic beat task does)."""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from annotator.core.services import embeddings_reconcile


class Command(BaseCommand):
    help = "Queue again images whose embedding has been pending for longer than --older-than-minutes."

    def add_arguments(self, parser):
        parser.add_argument("--older-than-minutes", type=float, default=None,
                            help=f"default: ANNOTATOR_EMBED_STALE_MINUTES ({settings.ANNOTATOR_EMBED_STALE_MINUTES})")
        parser.add_argument("--limit", type=int, default=500, help="at most this many images per run")

    def handle(self, *args, older_than_minutes=None, limit=500, **options):
        minutes = settings.ANNOTATOR_EMBED_STALE_MINUTES if older_than_minutes is None else older_than_minutes
        ids = embeddings_reconcile(older_than=timedelta(minutes=minutes), limit=limit)
        self.stdout.write(f"queued again {len(ids)} image(s) pending for over {minutes:g} min"
                          + (f": {', '.join(map(str, ids))}" if ids else ""))
