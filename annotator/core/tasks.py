"""Celery tasks: load the row, call a service, own retries and the failure path."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from .models import ExportJob, Image
from .services import (
    embedding_compute,
    embedding_run_retrying,
    embedding_run_started,
    embeddings_reconcile,
    export_mark_failed,
    exports_expire,
    export_run,
    image_mark_embedding_failed,
)

log = logging.getLogger(__name__)

TRANSIENT = (OperationalError, ConnectionError, TimeoutError)
"""Errors a task retries (database or broker unreachable for a moment)."""

RETRYING = dict(bind=True, acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT, retry_backoff=2)
"""Options every work task shares: late ack + reject on worker lost (a run whose worker dies
is delivered again), automatic retry with backoff on TRANSIENT errors."""


@shared_task(**RETRYING, max_retries=5)
def embed_image(self, image_id: int) -> None:
    """Compute the embedding of one image (idempotent; retried on transient errors).

    Late ack + reject on worker lost: a run whose worker dies (SIGKILL, OOM) is delivered
    again. An image whose runs keep killing their worker is marked failed after
    ``ANNOTATOR_EMBED_MAX_UNFINISHED_RUNS`` instead of being redelivered forever.
    """
    import engine

    image = Image.objects.filter(pk=image_id).first()
    if image is None:
        log.info("embed_image: image %s no longer exists", image_id)
        return
    runs = embedding_run_started(image_id=image_id)
    if runs > settings.ANNOTATOR_EMBED_MAX_UNFINISHED_RUNS:
        image_mark_embedding_failed(
            image_id=image_id,
            reason=f"the worker died {runs - 1} times while embedding this image (out of memory?); not tried again",
        )
        return
    try:
        embedding_compute(image=image)
    except engine.ImageError as exc:
        image_mark_embedding_failed(image_id=image_id, reason=f"cannot decode the image: {exc}")
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            image_mark_embedding_failed(image_id=image_id, reason=f"gave up after retries: {exc}")
            return
        embedding_run_retrying(image_id=image_id)
        raise
    except Exception as exc:  # a bug or a broken model: say so on the image, keep the trace in the log
        log.exception("embed_image %s failed", image_id)
        image_mark_embedding_failed(image_id=image_id, reason=f"{type(exc).__name__}: {exc}")
    else:
        from .prefill import after_embedding

        after_embedding(image_id=image_id)


@shared_task(**RETRYING, max_retries=5)
def generate_proposals(self, image_id: int) -> None:
    """Pre-fill one image with automatic-mask proposals from its stored embedding
    (idempotent: a rerun replaces the image's pending automatic proposals)."""
    import engine

    from .prefill import proposals_generate, proposals_mark_failed

    image = Image.objects.select_related("project").filter(pk=image_id).first()
    if image is None:
        log.info("generate_proposals: image %s no longer exists", image_id)
        return
    if image.proposals_status == Image.ProposalsStatus.NONE:
        # Queued, then cancelled: the project's pre-fill was turned off meanwhile.
        log.info("generate_proposals: image %s was taken off the queue (pre-fill turned off)", image_id)
        return
    try:
        proposals_generate(image=image)
    except engine.ImageError as exc:
        proposals_mark_failed(image_id=image_id, reason=f"cannot decode the image: {exc}")
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            proposals_mark_failed(image_id=image_id, reason=f"gave up after retries: {exc}")
            return
        raise
    except Exception as exc:  # a bug or bad parameters: say so on the image, keep the trace in the log
        log.exception("generate_proposals %s failed", image_id)
        proposals_mark_failed(image_id=image_id, reason=f"{type(exc).__name__}: {exc}")


@shared_task(**RETRYING, max_retries=3)
def run_export(self, job_id: int) -> None:
    """Write one export job (idempotent: a finished job is not written again)."""
    job = ExportJob.objects.select_related("project").filter(pk=job_id).first()
    if job is None:
        log.info("run_export: export %s no longer exists", job_id)
        return
    try:
        export_run(job=job)
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            export_mark_failed(job_id=job_id, reason=f"gave up after retries: {exc}")
            return
        raise
    except Exception as exc:  # say so on the job, keep the trace in the log
        log.exception("run_export %s failed", job_id)
        export_mark_failed(job_id=job_id, reason=f"{type(exc).__name__}: {exc}")


@shared_task(**RETRYING, max_retries=3)
def retrain_model(self, job_id: int) -> None:
    """Run one retrain job (routed to ``CELERY_RETRAIN_QUEUE``; idempotent: a finished job
    is not run again, one another live worker runs is skipped)."""
    from .model_runtime import ModelUnavailable
    from .models import RetrainJob
    from .retrain import RetrainRefused, retrain_mark_failed, retrain_run

    job = RetrainJob.objects.select_related("project", "base_version", "created_by").filter(pk=job_id).first()
    if job is None:
        log.info("retrain_model: job %s no longer exists", job_id)
        return
    try:
        retrain_run(job=job)
    except (RetrainRefused, ModelUnavailable) as exc:
        retrain_mark_failed(job_id=job_id, reason=str(exc))
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            retrain_mark_failed(job_id=job_id, reason=f"gave up after retries: {exc}")
            return
        # The retry must be able to claim the job again (it is "running" with this run's
        # heartbeat): hand it back as pending.
        RetrainJob.objects.filter(pk=job_id, status=RetrainJob.Status.RUNNING).update(
            status=RetrainJob.Status.PENDING, phase=f"retrying after: {exc}"[:200])
        raise
    except Exception as exc:  # a bug or a broken model: say so on the job, keep the trace in the log
        log.exception("retrain_model %s failed", job_id)
        retrain_mark_failed(job_id=job_id, reason=f"{type(exc).__name__}: {exc}")


@shared_task(ignore_result=True)
def reconcile_embeddings() -> int:
    """Periodic (Celery beat): queue again embeddings pending for longer than
    ``ANNOTATOR_EMBED_STALE_MINUTES``. Returns how many were queued."""
    return len(embeddings_reconcile(older_than=timedelta(minutes=settings.ANNOTATOR_EMBED_STALE_MINUTES)))


@shared_task(ignore_result=True)
def expire_exports() -> int:
    """Periodic (Celery beat): delete export files older than
    ``ANNOTATOR_EXPORT_RETENTION_HOURS`` and mark their jobs expired. Returns how many."""
    return len(exports_expire(older_than=timedelta(hours=settings.ANNOTATOR_EXPORT_RETENTION_HOURS)))
