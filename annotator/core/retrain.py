"""Retraining from accepted masks (issue 9, part 3): the data engine's model-in-the-loop.

A job fine-tunes the project's model version (prompt encoder + mask decoder, on the
embeddings the server already stored: ``engine.training.finetune``) on the project's
accepted masks, measures NoC@85 / NoC@90 on a fixed held-out slice of the project's images
before and after, and promotes the candidate only if it is better (:func:`retrain_better`).
A promoted candidate becomes the project's version at once: its image encoder is the base's,
so the base's stored embeddings are copied to the new ``model_id`` instead of recomputed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import Annotation, Embedding, Image, ModelVersion, Project, RetrainJob

log = logging.getLogger(__name__)

# The held-out slice: images whose content hash falls below this fraction (about 20%).
HELDOUT_FRACTION = 0.2
# The last tie-break of retrain_better: mean IoU over the 20 clicks must rise by this much.
MIN_MIOU_GAIN = 0.005
# A running job whose worker has not saved progress for this long is taken over by a
# redelivered task (its worker died); a live worker saves at least every fine-tune step.
STALE_AFTER = timedelta(minutes=10)
MAX_CLICKS = 20


class RetrainRefused(ValueError):
    """The project cannot be retrained now (too few masks, no embeddings); says why."""


# ---------------------------------------------------------------- the fixed held-out slice

def heldout_key(checksum: str) -> float:
    """Where an image falls in [0, 1) for the held-out split: from its content's SHA-256
    (``Image.checksum``), so the slice is the same on every run, in every database, and an
    image re-uploaded elsewhere lands on the same side."""
    return int(hashlib.sha256(f"retrain-heldout:{checksum}".encode()).hexdigest()[:12], 16) / 16 ** 12


def retrain_split(*, project: Project) -> tuple[list[int], list[int]]:
    """(training image ids, held-out image ids) of the project.

    Held out: the images whose :func:`heldout_key` is below ``HELDOUT_FRACTION``; when none
    is (a small project), the one with the smallest key. Adding images never moves an image
    from one side to the other (except that fallback, once a real held-out image exists).
    """
    rows = list(Image.objects.filter(project=project).values_list("pk", "checksum"))
    keyed = sorted((heldout_key(c), pk) for pk, c in rows)
    held = {pk for key, pk in keyed if key < HELDOUT_FRACTION}
    if not held and len(keyed) >= 2:
        held = {keyed[0][1]}
    return sorted(pk for _, pk in keyed if pk not in held), sorted(held)


def _accepted(project: Project, model_id: str):
    """Accepted masks: not rejected in review, not crowd regions, on images that have an
    embedding of ``model_id``."""
    with_emb = Embedding.objects.filter(image__project=project, model_id=model_id).values("image_id")
    return (Annotation.objects.filter(image__project=project, image_id__in=with_emb, iscrowd=False)
            .exclude(review_status=Annotation.ReviewStatus.REJECTED))


def retrain_counts(*, project: Project, model_id: str) -> dict[str, int]:
    """Accepted masks usable for a retrain from ``model_id``: ``{"train_masks",
    "heldout_masks", "train_images", "heldout_images"}`` (images with at least one mask)."""
    _, held = retrain_split(project=project)
    held = set(held)
    per_image = list(_accepted(project, model_id).values_list("image_id", flat=True))
    train = [i for i in per_image if i not in held]
    heldout = [i for i in per_image if i in held]
    return {"train_masks": len(train), "heldout_masks": len(heldout),
            "train_images": len(set(train)), "heldout_images": len(set(heldout))}


def _check_counts(counts: dict[str, int]) -> None:
    need_train = settings.ANNOTATOR_RETRAIN_MIN_TRAIN_MASKS
    need_held = settings.ANNOTATOR_RETRAIN_MIN_HELDOUT_MASKS
    if counts["train_masks"] < need_train or counts["heldout_masks"] < need_held:
        raise RetrainRefused(
            f"Too few accepted masks to retrain: {counts['train_masks']} on training images (at least {need_train} "
            f"needed) and {counts['heldout_masks']} on the held-out images (at least {need_held} needed; about "
            f"{int(HELDOUT_FRACTION * 100)}% of the project's images, always the same ones, are held out to measure "
            f"the model before and after). Annotate more images that have an embedding of the current model.")


def retrain_objects(*, project: Project, model_id: str):
    """The accepted masks with their stored embeddings, as ``engine.training.finetune``
    objects: (training objects, held-out objects, held-out image ids).

    An image's embedding is decoded once (256x64x64 float32, 4 MiB) and shared by its
    masks: memory grows by about 4 MiB per annotated image.
    """
    import engine
    from engine.rle import rle_to_mask
    from engine.training.finetune import EmbeddedObject

    _, held = retrain_split(project=project)
    held = set(held)
    masks = list(_accepted(project, model_id).select_related("image").order_by("image_id", "pk"))
    embeddings = {e.image_id: e for e in Embedding.objects.filter(image_id__in={a.image_id for a in masks},
                                                                   model_id=model_id)}
    train, heldout = [], []
    loaded: dict[int, np.ndarray] = {}
    for a in masks:
        if a.image_id not in loaded:
            with embeddings[a.image_id].file.open("rb") as fh:
                loaded[a.image_id] = np.ascontiguousarray(engine.embedding_from_bytes(fh.read())[0])
        mask = rle_to_mask(a.rle).astype(bool)
        if not mask.any():
            continue
        obj = EmbeddedObject(f"{a.image_id}/{a.pk}", loaded[a.image_id], (a.image.height, a.image.width), mask)
        (heldout if a.image_id in held else train).append(obj)
    return train, heldout, sorted(held & set(loaded))


# ---------------------------------------------------------------- the decision

def _mean_iou(summary: dict[str, Any]) -> float:
    return float(np.mean(summary["mIoU_by_click"]))


def retrain_better(before: dict[str, Any], after: dict[str, Any]) -> tuple[bool, str]:
    """Whether the candidate (``after``) beats the base (``before``) on the held-out slice,
    and why. The rule, in order:

    1. NoC@85 lower -> better; higher -> not better.
    2. NoC@85 equal: NoC@90 lower -> better; higher -> not better.
    3. both equal: the mean IoU over the 20 clicks must rise by at least ``MIN_MIOU_GAIN``
       (0.005), so that noise alone never promotes a version.
    """
    b85, a85, b90, a90 = before["NoC@85"], after["NoC@85"], before["NoC@90"], after["NoC@90"]
    if a85 < b85:
        return True, f"held-out NoC@85 {b85:.2f} -> {a85:.2f} (lower is better)"
    if a85 > b85:
        return False, f"held-out NoC@85 {b85:.2f} -> {a85:.2f}: worse"
    if a90 < b90:
        return True, f"held-out NoC@85 equal ({a85:.2f}); NoC@90 {b90:.2f} -> {a90:.2f}"
    if a90 > b90:
        return False, f"held-out NoC@85 equal ({a85:.2f}); NoC@90 {b90:.2f} -> {a90:.2f}: worse"
    bm, am = _mean_iou(before), _mean_iou(after)
    if am >= bm + MIN_MIOU_GAIN:
        return True, f"held-out NoC@85 and NoC@90 equal; mean IoU over {MAX_CLICKS} clicks {bm:.3f} -> {am:.3f}"
    return False, (f"held-out NoC@85 ({a85:.2f}) and NoC@90 ({a90:.2f}) equal; mean IoU over {MAX_CLICKS} clicks "
                   f"{bm:.3f} -> {am:.3f} (needs +{MIN_MIOU_GAIN}): not better")


# ---------------------------------------------------------------- writes

def retrain_start(*, project: Project, user, steps: int | None = None, lr: float | None = None) -> RetrainJob:
    """Create a retrain job of the project's current version and queue it (after commit).

    ``steps`` of fine-tuning (``ANNOTATOR_RETRAIN_STEPS`` when None; 0 only measures the base
    on the held-out slice); ``lr`` the learning rate (``ANNOTATOR_RETRAIN_LR`` when None).

    Raises:
        permissions.NotAllowed: the role may not change the project's model.
        services.ValidationError: ``steps`` out of range, or too few accepted masks (the
            message states the minimums).
        workflow.StateConflict: a retrain of this project is already pending or running.
    """
    from .model_versions import project_model_version
    from .permissions import Action, require
    from .services import ValidationError
    from .workflow import StateConflict

    require(user=user, project=project, action=Action.MODEL)
    steps = settings.ANNOTATOR_RETRAIN_STEPS if steps is None else int(steps)
    if not 0 <= steps <= settings.ANNOTATOR_RETRAIN_MAX_STEPS:
        raise ValidationError({"steps": [f"Must be between 0 and {settings.ANNOTATOR_RETRAIN_MAX_STEPS}."]})
    base = project_model_version(project)
    try:
        _check_counts(retrain_counts(project=project, model_id=base.model_id))
    except RetrainRefused as exc:
        raise ValidationError({"masks": [str(exc)]}) from exc
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # one start at a time per project
        busy = RetrainJob.objects.filter(project=project, status__in=[RetrainJob.Status.PENDING,
                                                                      RetrainJob.Status.RUNNING]).first()
        if busy is not None:
            raise StateConflict(f"A retrain of this project is already {busy.status} (job {busy.pk}).")
        options = {"steps": steps} | ({} if lr is None else {"lr": float(lr)})
        job = RetrainJob.objects.create(project=project, base_version=base, options=options,
                                        created_by=user, phase="queued")
        transaction.on_commit(lambda: _enqueue_retrain(job.pk))
    return job


def _enqueue_retrain(job_id: int) -> None:
    from .tasks import retrain_model

    retrain_model.delay(job_id)


def _claim(job_id: int) -> bool:
    """Take the job for this run: pending, or running with a stale heartbeat (its worker
    died). A duplicate delivery while another worker runs it gets False."""
    now = timezone.now()
    stale = Q(status=RetrainJob.Status.RUNNING) & (Q(heartbeat_at__lt=now - STALE_AFTER) | Q(heartbeat_at__isnull=True))
    return bool(RetrainJob.objects.filter(Q(pk=job_id) & (Q(status=RetrainJob.Status.PENDING) | stale)).update(
        status=RetrainJob.Status.RUNNING, phase="starting", progress=0.0, error="", metrics={},
        started_at=now, heartbeat_at=now))


class _Progress:
    """Saves phase and progress at most every second (and always on a new phase)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.last = 0.0
        self.phase = ""

    def __call__(self, phase: str, progress: float, force: bool = False) -> None:
        now = time.monotonic()
        if force or phase.split(":")[0] != self.phase.split(":")[0] or now - self.last >= 1.0:
            self.last = now
            self.phase = phase
            RetrainJob.objects.filter(pk=self.job_id).update(phase=phase[:200], progress=min(1.0, max(0.0, progress)),
                                                             heartbeat_at=timezone.now())


def _evaluate(sam, objects, report, label: str, lo: float, hi: float) -> dict[str, Any]:
    """evaluate_objects one object at a time (for progress), summarised as one set."""
    from engine.evaluate import summarize
    from engine.training.finetune import evaluate_objects

    per_item: dict[str, list[float]] = {}
    for k, obj in enumerate(objects):
        report(f"{label}: mask {k + 1}/{len(objects)}", lo + (hi - lo) * k / len(objects))
        per_item.update(evaluate_objects(sam, [obj], max_clicks=MAX_CLICKS)["per_item"])
    out = summarize(per_item, MAX_CLICKS)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items() if k != "mIoU_by_click"} | {
        "mIoU_by_click": [round(x, 4) for x in out["mIoU_by_click"]]}


def _save_candidate(sam, architecture: str) -> tuple[Path, str]:
    """Write the candidate's weights under ``MEDIA_ROOT/models/<model_id>/`` in the format
    its architecture's builder reads; returns (path, sha256)."""
    from engine.identity import file_sha256
    from engine.training.finetune import save_weights

    root = Path(settings.MEDIA_ROOT) / "models"
    root.mkdir(parents=True, exist_ok=True)
    name = "weights.safetensors" if architecture == "default" else "weights.pth"
    tmp = root / f".retrain-{time.monotonic_ns()}-{name}"
    save_weights(sam, tmp, architecture)
    sha = file_sha256(tmp)
    final_dir = root / f"{architecture}-{sha[:12]}"
    final_dir.mkdir(parents=True, exist_ok=True)
    final = final_dir / name
    tmp.replace(final)
    return final, sha


def _copy_embeddings(*, project: Project, from_model_id: str, to_model_id: str) -> int:
    """Copy the project's embeddings of ``from_model_id`` to ``to_model_id`` (same content:
    the image encoder did not change). Idempotent; returns how many were created."""
    have = set(Embedding.objects.filter(image__project=project, model_id=to_model_id).values_list("image_id",
                                                                                                   flat=True))
    created = 0
    for emb in Embedding.objects.filter(image__project=project, model_id=from_model_id).exclude(image_id__in=have):
        with emb.file.open("rb") as fh:
            data = fh.read()
        copy = Embedding(image_id=emb.image_id, model_id=to_model_id, dtype=emb.dtype, shape=emb.shape,
                         sha256=emb.sha256, compute_seconds=0.0)
        copy.file.save(f"{to_model_id}/{emb.image_id}-{emb.sha256[:12]}.f16", ContentFile(data), save=False)
        copy.save()
        created += 1
    return created


def retrain_run(*, job: RetrainJob) -> RetrainJob:
    """Run a retrain job (the worker's part): collect, evaluate the base, fine-tune,
    evaluate the candidate, then promote and switch the project, or record the rejection.

    Idempotent: a finished job is left as it is; a job another live worker is running is
    skipped; registering the same weights again finds the existing version.

    Raises:
        RetrainRefused: too few accepted masks (the task marks the job failed with it).
        model_runtime.ModelUnavailable: the base version's weights cannot be loaded.
    """
    from engine.training.finetune import FinetuneConfig, finetune_decoder

    from .model_runtime import model_for_version

    if job.status in (RetrainJob.Status.DONE, RetrainJob.Status.FAILED) or not _claim(job.pk):
        log.info("retrain %s: %s, not run again", job.pk, job.status)
        return job
    started = time.monotonic()
    report = _Progress(job.pk)
    project = job.project
    base = job.base_version
    report("collecting accepted masks", 0.0, force=True)
    train, heldout, held_images = retrain_objects(project=project, model_id=base.model_id)
    counts = {"train_masks": len(train), "heldout_masks": len(heldout),
              "train_images": len({o.name.split("/")[0] for o in train}), "heldout_images": len(held_images)}
    _check_counts(counts)
    report("loading the model", 0.02, force=True)
    loaded = model_for_version(base)
    steps = int(job.options.get("steps", settings.ANNOTATOR_RETRAIN_STEPS))
    before = _evaluate(loaded, heldout, report, "evaluating the base on the held-out masks", 0.03, 0.15)

    def on_step(step: int, total: int, loss: float) -> None:
        report(f"fine-tuning: step {step}/{total}, loss {loss:.3f}", 0.15 + 0.7 * step / max(1, total))

    report(f"fine-tuning: step 0/{steps}", 0.15, force=True)
    cfg = FinetuneConfig(steps=steps, lr=float(job.options.get("lr", settings.ANNOTATOR_RETRAIN_LR)))
    candidate, ft_stats = finetune_decoder(loaded, train, cfg, progress=on_step)
    after = _evaluate(candidate, heldout, report, "evaluating the candidate on the held-out masks", 0.85, 0.97)
    better, reason = retrain_better(before, after)
    metrics = {"before": before, "after": after, **counts, "heldout_image_ids": held_images[:200],
               "steps": steps, "lr": cfg.lr, "finetune": ft_stats, "decision": "promoted" if better else "rejected",
               "reason": reason}
    new_version = None
    if better:
        report("saving the new version", 0.97, force=True)
        new_version, switched = _promote(job=job, candidate=candidate, metrics=metrics)
        if not switched:
            metrics["reason"] += ("; not switched: the project no longer uses the base version "
                                  f"{base.model_id} (choose the new one under its model settings)")
    metrics["seconds"] = round(time.monotonic() - started, 1)
    metrics = _json_safe(metrics)
    RetrainJob.objects.filter(pk=job.pk).update(status=RetrainJob.Status.DONE, progress=1.0, phase="done",
                                                metrics=metrics, new_version=new_version, error="",
                                                finished_at=timezone.now(), heartbeat_at=timezone.now())
    job.refresh_from_db()
    log.info("retrain %s of project %s: %s (%s)", job.pk, project.pk, metrics["decision"], reason)
    return job


def _promote(*, job: RetrainJob, candidate, metrics: dict[str, Any]) -> tuple[ModelVersion, bool]:
    """Save, register and promote the candidate; copy the base's embeddings to it and switch
    the project to it if the project still uses the base. Returns (version, switched)."""
    import engine

    from .model_versions import _switch, model_version_promote, model_version_register, project_model_id

    base = job.base_version
    path, sha = _save_candidate(candidate, base.architecture)
    loaded = engine.build_model(base.architecture, path)  # what workers will load: check it now
    version_metrics = _json_safe({"retrain_job": job.pk, "reason": metrics["reason"],
                                  "heldout": {"before": metrics["before"], "after": metrics["after"]}})
    version, _ = model_version_register(
        model_id=loaded.model_id, architecture=base.architecture, checkpoint=path, sha256=sha,
        source=ModelVersion.Source.RETRAINED, parent=base, metrics=version_metrics, promoted=False,
        name=f"{base.name.split(' · retrained')[0]} · retrained #{job.pk} ({job.project.name})"[:200],
        user=job.created_by)
    _copy_embeddings(project=job.project, from_model_id=base.model_id, to_model_id=version.model_id)
    with transaction.atomic():
        model_version_promote(version=version, metrics=version_metrics)
        project = Project.objects.select_for_update().get(pk=job.project_id)
        switched = project_model_id(project) == base.model_id
        if switched:
            _switch(project=project, version=version)
    return version, switched


def _json_safe(value):
    """NaN/inf -> None, recursively (JSON columns refuse them)."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def retrain_mark_failed(*, job_id: int, reason: str) -> None:
    RetrainJob.objects.filter(pk=job_id).update(status=RetrainJob.Status.FAILED, error=reason[:2000],
                                                finished_at=timezone.now())
