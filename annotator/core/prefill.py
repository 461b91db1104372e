"""Semi-automatic mode (SAM paper §4, data engine stage 2): the model pre-fills the masks it
is confident about as *proposals*; annotators accept, fix or reject them.

Writes only, in the style of ``services.py``: keyword-only functions, rows written in
``transaction.atomic``, worker jobs enqueued with ``transaction.on_commit``.

Generation reuses the image's stored embedding (no second encoder pass) and runs
``engine.generate_masks`` (SAM's automatic mask generator: point grid, batched decoder,
predicted-IoU and stability filters, box NMS). Records that duplicate a mask the project
already has (IoU >= ``DUPLICATE_IOU`` with an annotation) or that a person already
rejected on this image are dropped, so running it again only proposes what is missing.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
from django.db import transaction
from django.utils import timezone

from .models import Annotation, AnnotationEvent, Embedding, Image, Project, Proposal
from .permissions import Action, require_role, roles_for
from .services import ValidationError, _clean_category, _clean_mask, annotation_create, embedding_compute

log = logging.getLogger(__name__)

ANNOTATE_ROLES = roles_for(Action.ANNOTATE)
PREFILL_ROLES = roles_for(Action.SETTINGS)

DUPLICATE_IOU = 0.5
"""A record overlapping an existing annotation at this IoU or more is not proposed."""
REJECTED_IOU = 0.8
"""A record this close to a proposal someone rejected on the image is not proposed again."""


class ProposalDecided(Exception):
    """Accepting or rejecting a proposal that somebody already decided (the API answers 409)."""

    def __init__(self, proposal: Proposal):
        super().__init__(f"proposal {proposal.pk} is already {proposal.status}")
        self.proposal = proposal


# ---------------------------------------------------------------- settings

def prefill_params(*, project: Project):
    """The project's ``engine.AutomaticMaskParams``: defaults with the project's overrides.

    Raises:
        ValidationError: stored overrides that are no longer valid (keyed ``params``).
    """
    from engine.automatic_params import AutomaticMaskParams

    try:
        return AutomaticMaskParams.from_dict(project.automatic_params or {})
    except (TypeError, ValueError) as exc:
        raise ValidationError({"params": [str(exc)]}) from exc


@transaction.atomic
def prefill_settings_update(*, project: Project, user, enabled: bool | None = None,
                            params: dict[str, Any] | None = None) -> Project:
    """Turn pre-fill on/off and change generator parameters (merged into the stored ones).
    Turning it off also cancels the generation of the project's images still queued.

    Raises:
        ValidationError: unknown parameters or values of the wrong type or out of range, as
            ``{"params": {<field>: [message naming its range]}}``, every bad field at once.
        permissions.NotAllowed: the role may not change project settings.
    """
    from engine.automatic_params import AutomaticMaskParams

    require_role(user=user, project=project, roles=PREFILL_ROLES, action="change pre-fill settings")
    if params is not None:
        if not isinstance(params, dict):
            raise ValidationError({"params": ["Must be an object of generator parameters."]})
        merged = {**(project.automatic_params or {}), **params}
        # Every bad field at once, each under its own name (DRF's nested error shape).
        problems = AutomaticMaskParams.errors(merged)
        if problems:
            raise ValidationError({"params": problems})
        checked = AutomaticMaskParams.from_dict(merged)
        defaults = AutomaticMaskParams().to_dict()
        project.automatic_params = {k: v for k, v in checked.to_dict().items() if defaults.get(k) != v}
    if enabled is not None:
        project.prefill_enabled = bool(enabled)
    project.save(update_fields=["automatic_params", "prefill_enabled"])
    if enabled is not None and not enabled:
        # Turned off: images still waiting in the queue are not generated (their tasks see
        # "none" and skip them); one a worker is running now finishes.
        Image.objects.filter(project=project, proposals_status=Image.ProposalsStatus.PENDING).update(
            proposals_status=Image.ProposalsStatus.NONE)
    return project


# ---------------------------------------------------------------- generation

def prefill_request(*, image_ids: list[int]) -> None:
    """Mark images' proposals pending and queue their generation (after commit)."""
    if not image_ids:
        return
    with transaction.atomic():
        Image.objects.filter(pk__in=image_ids).update(proposals_status=Image.ProposalsStatus.PENDING,
                                                      proposals_error="")
        transaction.on_commit(lambda: _enqueue(list(image_ids)))


def _enqueue(image_ids: list[int]) -> None:
    from .tasks import generate_proposals

    for image_id in image_ids:
        generate_proposals.delay(image_id)


def prefill_run_project(*, project: Project, user, image_ids: list[int] | None = None) -> int:
    """(Re)generate proposals for a project's images (all, or ``image_ids``) whose
    embedding is ready and that are not already queued; images still embedding get theirs
    when the embedding lands.

    Returns:
        the number of images queued.

    Raises:
        permissions.NotAllowed: the role may not run pre-fill.
    """
    require_role(user=user, project=project, roles=PREFILL_ROLES, action="run pre-fill")
    # Images still queued are left alone: their task reads the project's parameters when it
    # runs, so queueing them again would only generate twice.
    qs = Image.objects.filter(project=project, embedding_status=Image.EmbeddingStatus.READY).exclude(
        proposals_status=Image.ProposalsStatus.PENDING)
    if image_ids is not None:
        qs = qs.filter(pk__in=image_ids)
    ids = list(qs.values_list("pk", flat=True))
    prefill_request(image_ids=ids)
    return len(ids)


def after_embedding(*, image_id: int) -> None:
    """Called by the embedding task once an image's embedding is stored."""
    image = Image.objects.select_related("project").filter(pk=image_id).first()
    if image is not None and image.project.prefill_enabled and image.proposals_status == Image.ProposalsStatus.NONE:
        prefill_request(image_ids=[image_id])


def _load_embedding(image: Image, model_id: str) -> np.ndarray:
    """The 1x256x64x64 float32 embedding of ``image`` by ``model_id`` (its project's version),
    computing it first if there is none yet.

    Raises:
        RuntimeError: the project switched to another version meanwhile (the switch queued
            the image again; this run's masks would come from the wrong model).
    """
    import engine

    emb = Embedding.objects.filter(image=image, model_id=model_id).first() or embedding_compute(image=image)
    if emb.model_id != model_id:
        raise RuntimeError(f"the project switched from model {model_id} to {emb.model_id} meanwhile")
    with emb.file.open("rb") as fh:
        return engine.embedding_from_bytes(fh.read())


def _mask_iou_matrix(records_rle: list[dict], others_rle: list[dict]) -> np.ndarray:
    """len(records) x len(others) mask IoU, computed on RLE (pycocotools ``iou``)."""
    from pycocotools import mask as mask_utils

    if not records_rle or not others_rle:
        return np.zeros((len(records_rle), len(others_rle)))

    def enc(r: dict) -> dict:
        return {"size": r["size"], "counts": r["counts"].encode() if isinstance(r["counts"], str) else r["counts"]}

    return np.asarray(mask_utils.iou([enc(r) for r in records_rle], [enc(r) for r in others_rle],
                                     [0] * len(others_rle)))


def proposals_generate(*, image: Image, progress: Callable[[int, int], None] | None = None) -> list[Proposal]:
    """Run the automatic mask generator on ``image``'s stored embedding and store its
    records as pending proposals, replacing the image's earlier pending automatic ones.

    Decided proposals (accepted, edited, rejected) are kept. Empty records, and records
    duplicating an annotation (mask IoU >= DUPLICATE_IOU) or a rejected proposal
    (>= REJECTED_IOU), are dropped.

    Raises:
        engine.ImageError: the embedding had to be computed and the image cannot be decoded.
        ValidationError: the project's stored parameters are invalid.
    """
    from engine.automatic import generate_masks

    from .model_runtime import model_for_version
    from .model_versions import project_model_version

    params = prefill_params(project=image.project)
    Image.objects.filter(pk=image.pk).update(proposals_status=Image.ProposalsStatus.RUNNING, proposals_error="")
    model = model_for_version(project_model_version(image.project))
    model_id = model.model_id
    embedding = _load_embedding(image, model_id)
    records = generate_masks(model.sam, embedding, (image.height, image.width), params=params,
                             progress=progress)
    annotations = list(Annotation.objects.filter(image=image).values_list("rle", flat=True))
    rejected = list(Proposal.objects.filter(image=image, status=Proposal.Status.REJECTED).values_list("rle", flat=True))
    rles = [r["segmentation"] for r in records]
    # An empty mask is no proposal (SAM's generator keeps them when no stability floor is set).
    keep = np.array([int(r["area"]) > 0 for r in records], dtype=bool)
    if annotations:
        keep &= (_mask_iou_matrix(rles, annotations) < DUPLICATE_IOU).all(axis=1)
    if rejected:
        keep &= (_mask_iou_matrix(rles, rejected) < REJECTED_IOU).all(axis=1)
    rows = [
        Proposal(image=image, source=Proposal.Source.AUTOMATIC, model_id=model_id, rle=r["segmentation"],
                 bbox=[float(v) for v in r["bbox"]], area=int(r["area"]),
                 predicted_iou=float(r["predicted_iou"]), stability_score=float(r["stability_score"]),
                 point_coords=[[float(x), float(y)] for x, y in r["point_coords"]],
                 crop_box=[float(v) for v in r["crop_box"]] if r.get("crop_box") is not None else None)
        for r, k in zip(records, keep) if k
    ]
    with transaction.atomic():
        Proposal.objects.filter(image=image, status=Proposal.Status.PENDING,
                                source=Proposal.Source.AUTOMATIC).delete()
        created = Proposal.objects.bulk_create(rows)
        Image.objects.filter(pk=image.pk).update(proposals_status=Image.ProposalsStatus.READY, proposals_error="")
    log.info("image %s: %d automatic masks, %d proposed (model %s)", image.pk, len(records), len(created), model_id)
    return created


def proposals_mark_failed(*, image_id: int, reason: str) -> None:
    Image.objects.filter(pk=image_id).update(proposals_status=Image.ProposalsStatus.FAILED,
                                             proposals_error=reason[:2000])


# ---------------------------------------------------------------- decisions

def _lock_pending(proposal_id: int) -> Proposal:
    proposal = Proposal.objects.select_for_update().select_related("image", "image__project").get(pk=proposal_id)
    if proposal.status != Proposal.Status.PENDING:
        raise ProposalDecided(proposal)
    return proposal


_UNSET = object()


@transaction.atomic
def proposal_accept(*, proposal_id: int, user, category: Any = _UNSET, segmentation: Any = None,
                    prompts: Any = None, predicted_iou: float | None = None,
                    candidate_index: int | None = None, model_id: str = "",
                    active_ms: int | None = None) -> Annotation:
    """Turn a pending proposal into an annotation.

    Without ``segmentation`` (or with one equal to the proposal's mask) the annotation is the
    proposal as it was: origin ``prefill_accepted``. With a different mask (the annotator
    refined it with clicks) it is origin ``prefill_edited``, with the prompts that made it.

    Args:
        category: a category id of the project; default the proposal's (imported ones carry one).

    Raises:
        ProposalDecided: somebody already accepted or rejected it.
        ValidationError: bad RLE, category or prompts (as ``services.annotation_create``).
        permissions.NotAllowed: the role may not annotate.
    """
    from engine.rle import rle_to_mask

    proposal = _lock_pending(proposal_id)
    image = proposal.image
    require_role(user=user, project=image.project_id, roles=ANNOTATE_ROLES, action="annotate")
    edited = False
    if segmentation is not None:
        rle, _bbox, _area = _clean_mask(segmentation, image)
        edited = not np.array_equal(rle_to_mask(rle), rle_to_mask(proposal.rle))
    if category is _UNSET:
        category = proposal.category_id
    _clean_category(category, image)
    if edited:
        annotation = annotation_create(
            image=image, user=user, segmentation=segmentation, category=category, prompts=prompts,
            predicted_iou=predicted_iou, candidate_index=candidate_index, model_id=model_id or proposal.model_id,
            origin=Annotation.Origin.PREFILL_EDITED, active_ms=active_ms)
    else:
        annotation = annotation_create(
            image=image, user=user, segmentation=proposal.rle, category=category, prompts=None,
            predicted_iou=proposal.predicted_iou, candidate_index=None, model_id=proposal.model_id,
            origin=Annotation.Origin.PREFILL_ACCEPTED, active_ms=active_ms)
    proposal.status = Proposal.Status.EDITED if edited else Proposal.Status.ACCEPTED
    proposal.annotation = annotation
    proposal.decided_by = user
    proposal.decided_at = timezone.now()
    proposal.save(update_fields=["status", "annotation", "decided_by", "decided_at"])
    return annotation


@transaction.atomic
def proposal_reject(*, proposal_id: int, user, active_ms: int | None = None) -> Proposal:
    """Mark a pending proposal rejected (kept, and not proposed again on this image).

    Raises:
        ProposalDecided: somebody already accepted or rejected it.
        permissions.NotAllowed: the role may not annotate.
        workflow.StateConflict, workflow.LeaseConflict: the image is done, or someone else
            holds its lease (as for accepting, which goes through ``annotation_create``).
    """
    from .workflow import image_lock_for_write

    proposal = _lock_pending(proposal_id)
    require_role(user=user, project=proposal.image.project_id, roles=ANNOTATE_ROLES, action="annotate")
    image_lock_for_write(user=user, image_id=proposal.image_id)
    proposal.status = Proposal.Status.REJECTED
    proposal.decided_by = user
    proposal.decided_at = timezone.now()
    proposal.save(update_fields=["status", "decided_by", "decided_at"])
    AnnotationEvent.objects.create(
        kind=AnnotationEvent.Kind.PROPOSAL_REJECT, user=user, project_id=proposal.image.project_id,
        image=proposal.image, annotation_id=None, model_id=proposal.model_id, origin="prefill",
        active_ms=active_ms,
    )
    return proposal


def proposals_accept_above(*, image: Image, user, min_predicted_iou: float,
                           category: int | None | object = _UNSET) -> list[Annotation]:
    """Accept, as proposed, every pending proposal of ``image`` whose predicted IoU is at
    least ``min_predicted_iou`` (one transaction: all or none).

    Raises:
        ValidationError: a threshold outside [0, 1], a bad category.
        permissions.NotAllowed: the role may not annotate.
    """
    if not (0.0 <= float(min_predicted_iou) <= 1.0):
        raise ValidationError({"min_predicted_iou": ["Must be between 0 and 1."]})
    require_role(user=user, project=image.project_id, roles=ANNOTATE_ROLES, action="annotate")
    with transaction.atomic():
        ids = list(Proposal.objects.select_for_update()
                   .filter(image=image, status=Proposal.Status.PENDING, predicted_iou__gte=min_predicted_iou)
                   .order_by("-predicted_iou", "id").values_list("pk", flat=True))
        return [proposal_accept(proposal_id=pid, user=user, category=category) for pid in ids]

