"""Team work: the annotators' queue (leases), marking images done, review, assignment and
project members. Writes, in the style of ``services.py``; who may do what is the table in
``permissions.py``.

Image states: ``new`` -> ``in_progress`` (leased or a mask saved) -> ``done`` (the annotator
says so) -> ``reviewed`` (a reviewer approved) or ``rejected`` (back to its annotator, with
the reviewer's comment) -> ``in_progress`` -> ``done`` ...
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Case, F, IntegerField, Q, Value, When
from django.utils import timezone

from .models import Annotation, AnnotationEvent, Image, ImageReview, Membership, Project
from .permissions import Action, NotAllowed, can, project_role, require
from .services import ValidationError

S = Image.WorkStatus
# States in which an annotator may still change an image (done/reviewed wait for a reviewer).
WORKABLE = (S.NEW, S.IN_PROGRESS, S.REJECTED)


class LeaseConflict(Exception):
    """Someone else holds the image's lease (the API answers 409 with who and until when)."""

    def __init__(self, image: Image, holder_name: str):
        super().__init__(f"{holder_name} is working on this image (lease until "
                         f"{image.lease_expires_at:%H:%M:%S} UTC).")
        self.image = image
        self.holder_name = holder_name


class StateConflict(Exception):
    """The image is not in a state that allows the action (409)."""


class LeaseElsewhere(Exception):
    """A renew from a page of the holder whose lease another page of theirs (a second tab)
    has taken over since (409 ``lease_elsewhere``): that page is told, and stops renewing."""

    def __init__(self, image: Image):
        super().__init__("You opened this image in another tab or window, which holds it now: work there, or "
                         "press \"Work here\" (or reload) to work in this one.")
        self.image = image


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.ANNOTATOR_LEASE_SECONDS)


def lease_is_active(image: Image, now: datetime | None = None) -> bool:
    return (image.lease_holder_id is not None and image.lease_expires_at is not None
            and image.lease_expires_at > (now or timezone.now()))


def _free_for(user, now: datetime) -> Q:
    """Images whose lease ``user`` may take: nobody's, expired, or already theirs."""
    return Q(lease_holder__isnull=True) | Q(lease_expires_at__lte=now) | Q(lease_holder=user)


def _username(user_id: int | None) -> str:
    if user_id is None:
        return "nobody"
    return get_user_model().objects.filter(pk=user_id).values_list("username", flat=True).first() or f"user {user_id}"


def image_check_annotatable(*, user, image: Image, check_lease: bool = True) -> None:
    """Whether ``user`` may change ``image``'s masks now.

    Managers and admins may change any image; annotators only images assigned to them or to
    nobody, and not while the image waits for (or passed) review.

    Raises:
        permissions.NotAllowed: the role may not annotate, or the image is someone else's.
        StateConflict: an annotator on a done or reviewed image.
        LeaseConflict: another user holds an active lease (``check_lease``).
    """
    role = None if user.is_superuser else project_role(user=user, project_id=image.project_id)
    if not can(user=user, project=image.project_id, action=Action.ANNOTATE, role=role):
        raise NotAllowed(f"Your role ({role or 'none'}) may not annotate in this project.")
    if not can(user=user, project=image.project_id, action=Action.ASSIGN, role=role):
        if image.assignee_id not in (None, user.pk):
            raise NotAllowed(f"This image is assigned to {_username(image.assignee_id)}.")
        if image.status not in WORKABLE:
            raise StateConflict(f"This image is {image.status}: it waits for review or passed it, and cannot be "
                                f"changed now.")
    if check_lease and lease_is_active(image) and image.lease_holder_id != user.pk:
        raise LeaseConflict(image, _username(image.lease_holder_id))


def image_lock_for_write(*, user, image_id: int) -> Image:
    """Lock the image row and check that ``user`` may write its masks (see
    :func:`image_check_annotatable`); a first write moves a ``new`` image to ``in_progress``.

    Call inside ``transaction.atomic``: the lock keeps a lease from changing hands meanwhile.
    """
    image = Image.objects.select_for_update().get(pk=image_id)
    image_check_annotatable(user=user, image=image)
    if image.status == S.NEW:
        image.status = S.IN_PROGRESS
        image.save(update_fields=["status", "updated_at"])
    return image


# ---------------------------------------------------------------- queue and leases

@transaction.atomic
def queue_next(*, user, project: Project) -> Image | None:
    """Lease the next image of ``user``'s queue in ``project`` (None when it is empty).

    A user who already holds a lease in the project gets that image again (renewed): a
    reload or a second tab never takes a second image. Otherwise the order is: images
    rejected back to this user, then images assigned to them, then open ones (assigned to
    nobody), each by id; images with a failed embedding are skipped. The candidate row is
    taken with ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL) so concurrent requests
    pass over each other's rows instead of waiting for them or taking the same one; the
    lease is then written by a conditional UPDATE, which also makes it safe on SQLite.

    Raises:
        permissions.NotAllowed: the role may not annotate.
    """
    require(user=user, project=project, action=Action.ANNOTATE)
    now = timezone.now()
    held = (Image.objects.select_for_update().filter(project=project, lease_holder=user, lease_expires_at__gt=now,
                                                     status__in=WORKABLE).order_by("id").first())
    if held is not None:
        return _lease_write(image_id=held.pk, user=user, now=now)
    for _ in range(10):
        candidate = (
            _queue(user=user, project_id=project.pk, now=now)
            .order_by("priority", "id")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)
            .first()
        )
        if candidate is None:
            return None
        image = _lease_write(image_id=candidate, user=user, now=now)
        if image is not None:
            return image
    return None  # lost every race: the caller may ask again


def _queue(*, user, project_id: int, now: datetime):
    """The images of ``user``'s queue in the project, each annotated with its ``priority``
    (0 rejected back to them, 1 assigned to them, 2 open); the queue's order is
    (priority, id). Images with a failed embedding, or leased by someone else, are not in it."""
    return (
        Image.objects.filter(project_id=project_id, status__in=WORKABLE)
        .exclude(embedding_status=Image.EmbeddingStatus.FAILED)
        .filter(Q(assignee__isnull=True) | Q(assignee=user))
        .filter(_free_for(user, now))
        .annotate(priority=Case(When(status=S.REJECTED, assignee=user, then=Value(0)),
                                When(assignee=user, then=Value(1)), default=Value(2),
                                output_field=IntegerField()))
    )


def queue_neighbours(*, user, image: Image) -> tuple[int | None, int | None]:
    """(previous id, next id) of ``image`` in ``user``'s queue order (see :func:`queue_next`),
    among the images of the queue now; nothing is leased. An image that is not in the queue
    (done, someone else's) is placed where its priority and id would put it."""
    mine = image.assignee_id is not None and image.assignee_id == user.pk
    priority = 0 if mine and image.status == S.REJECTED else 1 if mine else 2
    queue = _queue(user=user, project_id=image.project_id, now=timezone.now()).exclude(pk=image.pk)
    nxt = (queue.filter(Q(priority__gt=priority) | Q(priority=priority, id__gt=image.pk))
           .order_by("priority", "id").values_list("pk", flat=True).first())
    prev = (queue.filter(Q(priority__lt=priority) | Q(priority=priority, id__lt=image.pk))
            .order_by("-priority", "-id").values_list("pk", flat=True).first())
    return prev, nxt


def _lease_write(*, image_id: int, user, now: datetime, token: str | None = None, force: bool = False) -> Image | None:
    """Give the lease to ``user`` if it is free for them; None if someone else got it first.

    Args:
        token: the page that holds it now (see :func:`lease_acquire`); None keeps the page
            of a lease that was already ``user``'s (a renew from the queue), else blank.
        force: give it to ``user`` even from someone else (a manager's take-over; the
            caller checked the right and holds the row lock).
    """
    page = (Value(token) if token is not None
            else Case(When(lease_holder=user, then=F("lease_token")), default=Value("")))
    rows = Image.objects.filter(pk=image_id)
    if not force:
        rows = rows.filter(_free_for(user, now))
    updated = rows.update(
        lease_holder=user, lease_expires_at=now + lease_duration(), lease_token=page,
        status=Case(When(status__in=[S.NEW, S.REJECTED], then=Value(S.IN_PROGRESS)), default=F("status")),
        updated_at=now,
    )
    return Image.objects.get(pk=image_id) if updated else None


def may_take_over_lease(*, user, image: Image) -> bool:
    """Whether ``user`` may take over the lease someone else holds on ``image``: the roles
    that may break anyone's lease (``Action.ASSIGN`` in permissions.py: managers, admins)."""
    return can(user=user, project=image.project_id, action=Action.ASSIGN)


@transaction.atomic
def lease_acquire(*, user, image: Image, token: str = "", renew: bool = False, takeover: bool = False) -> Image:
    """Take or renew (heartbeat) the lease of ``image`` for ``settings.ANNOTATOR_LEASE_SECONDS``.

    A lease is a user's, held by one page of theirs: ``token`` is a random id the page
    (browser tab) chose, so that two tabs of one user on one image do not share it. Opening
    the image (``renew`` false) takes the lease, also from another page of the same user
    (the newest tab wins: a reload or a second tab works at once); a heartbeat (``renew``
    true) from a page whose lease another page of the user took over since is refused, so
    that page can say so instead of "yours". An expired or released lease is taken either
    way. Without a token (older clients) the lease is the user's, as before: taken or
    renewed whatever page held it.

    ``takeover`` (the annotate page's "Take over", a manager or admin): the lease is taken
    also when someone else holds it; their page is refused at its next renew or mask write
    (409 naming the new holder) and says so. Anyone else gets NotAllowed for it (without
    ``takeover`` a manager gets LeaseConflict, as anyone: opening an image never takes it
    from its holder by accident).

    Raises:
        permissions.NotAllowed, StateConflict: as :func:`image_check_annotatable`; a
            ``takeover`` of someone else's lease by a role that may not break leases.
        LeaseConflict: someone else holds it (and no ``takeover``).
        LeaseElsewhere: a renew (with a token) of a lease another page of the user holds.
    """
    locked = Image.objects.select_for_update().get(pk=image.pk)
    if takeover and lease_is_active(locked) and locked.lease_holder_id != user.pk:
        image_check_annotatable(user=user, image=locked, check_lease=False)
        if not may_take_over_lease(user=user, image=locked):
            raise NotAllowed(f"The lease is {_username(locked.lease_holder_id)}'s; only a manager or an admin may "
                             f"take it over.")
        return _lease_write(image_id=locked.pk, user=user, now=timezone.now(), token=token, force=True)
    image_check_annotatable(user=user, image=locked)
    if (renew and token and lease_is_active(locked) and locked.lease_holder_id == user.pk
            and locked.lease_token and locked.lease_token != token):
        raise LeaseElsewhere(locked)
    leased = _lease_write(image_id=locked.pk, user=user, now=timezone.now(), token=token)
    if leased is None:  # cannot happen under the row lock; kept for SQLite's sake
        raise LeaseConflict(locked, _username(locked.lease_holder_id))
    return leased


@transaction.atomic
def lease_release(*, user, image: Image, token: str = "") -> Image:
    """Give the lease back (leaving the image, or "skip"). Managers may break anyone's lease;
    releasing a lease nobody holds is a no-op.

    With a ``token`` (the page's, see :func:`lease_acquire`), the user's own lease is given
    back only if that page holds it: a tab leaving the image does not end the hold of
    another tab that took it over (a no-op then). Without one, the user's lease is released
    whatever page holds it (older clients).

    Raises:
        permissions.NotAllowed: the role may not annotate; the lease is someone else's and
            the role may not assign.
    """
    require(user=user, project=image.project_id, action=Action.ANNOTATE)
    locked = Image.objects.select_for_update().get(pk=image.pk)
    if lease_is_active(locked) and locked.lease_holder_id != user.pk:
        if not can(user=user, project=locked.project_id, action=Action.ASSIGN):
            raise NotAllowed(f"The lease is {_username(locked.lease_holder_id)}'s; only they or a manager "
                             f"may release it.")
    elif token and lease_is_active(locked) and locked.lease_token and locked.lease_token != token:
        return locked  # another page of this user holds it now
    locked.lease_holder = None
    locked.lease_expires_at = None
    locked.lease_token = ""
    locked.save(update_fields=["lease_holder", "lease_expires_at", "lease_token", "updated_at"])
    return locked


@transaction.atomic
def image_mark_done(*, user, image: Image) -> Image:
    """The annotator's "Done": the image waits for review; its lease is released.

    Raises:
        permissions.NotAllowed, StateConflict, LeaseConflict: as :func:`image_check_annotatable`
            (a manager marking a done image done again gets StateConflict too).
    """
    locked = Image.objects.select_for_update().get(pk=image.pk)
    image_check_annotatable(user=user, image=locked)
    if locked.status not in WORKABLE:
        raise StateConflict(f"This image is already {locked.status}.")
    locked.status = S.DONE
    locked.done_by = user
    locked.lease_holder = None
    locked.lease_expires_at = None
    locked.save(update_fields=["status", "done_by", "lease_holder", "lease_expires_at", "updated_at"])
    return locked


@transaction.atomic
def images_assign(*, user, project: Project, image_ids: list[int], assignee_id: int | None) -> int:
    """Assign images of ``project`` to an annotator (or to nobody: open to all). Returns the
    number of images assigned.

    Raises:
        permissions.NotAllowed: the role may not assign.
        ValidationError: an image not in the project; an assignee who is not a member whose
            role may annotate.
    """
    require(user=user, project=project, action=Action.ASSIGN)
    ids = sorted(set(image_ids))
    found = set(Image.objects.filter(project=project, pk__in=ids).values_list("pk", flat=True))
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationError({"images": [f"No image {', '.join(map(str, missing))} in this project."]})
    if assignee_id is not None:
        target = get_user_model().objects.filter(pk=assignee_id).first()
        if target is None or not can(user=target, project=project, action=Action.ANNOTATE):
            raise ValidationError({"user": [f"User {assignee_id} is not a member of this project who may annotate."]})
    return Image.objects.filter(project=project, pk__in=ids).update(assignee_id=assignee_id, updated_at=timezone.now())


# ---------------------------------------------------------------- review

def log_review_event(annotation: Annotation, user, status: str) -> None:
    kind = (AnnotationEvent.Kind.REVIEW_APPROVE if status == Annotation.ReviewStatus.APPROVED
            else AnnotationEvent.Kind.REVIEW_REJECT)
    AnnotationEvent.objects.create(
        kind=kind, user=user, project_id=annotation.image.project_id, image_id=annotation.image_id,
        annotation_id=annotation.pk, model_id=annotation.model_id, origin=annotation.origin,
        candidate_index=annotation.candidate_index, mask_author_id=annotation.author_id,
    )


def _review_one(annotation: Annotation, user, status: str, comment: str, now: datetime) -> Annotation:
    annotation.review_status = status
    annotation.review_comment = comment
    annotation.reviewed_by = user
    annotation.reviewed_at = now
    annotation.version += 1
    annotation.save(update_fields=["review_status", "review_comment", "reviewed_by", "reviewed_at", "version",
                                   "updated_at"])
    if status in (Annotation.ReviewStatus.APPROVED, Annotation.ReviewStatus.REJECTED):
        log_review_event(annotation, user, status)
    return annotation


@transaction.atomic
def annotation_review(*, user, annotation_id: int, status: str, comment: str = "") -> Annotation:
    """Approve or reject one mask, with a comment for its annotator; logs a review event.

    Raises:
        permissions.NotAllowed: the role may not review.
        ValidationError: a status other than approved/rejected.
    """
    annotation = Annotation.objects.select_for_update().select_related("image").get(pk=annotation_id)
    require(user=user, project=annotation.image.project_id, action=Action.REVIEW)
    if status not in (Annotation.ReviewStatus.APPROVED, Annotation.ReviewStatus.REJECTED):
        raise ValidationError({"status": ["Must be approved or rejected."]})
    return _review_one(annotation, user, status, comment.strip(), timezone.now())


@dataclass(frozen=True)
class MaskDecision:
    annotation_id: int
    status: str
    comment: str = ""


@transaction.atomic
def image_review(*, user, image: Image, decision: str, comment: str = "",
                 annotations: list[MaskDecision] | None = None) -> ImageReview:
    """A reviewer's verdict on a done image.

    ``approve``: every mask still pending is approved; the image becomes ``reviewed``.
    ``reject``: the listed mask decisions are applied (when none are listed, every pending
    mask is rejected with ``comment``); the image becomes ``rejected`` and goes back to the
    annotator who marked it done (its assignee), with ``comment`` shown to them.

    Raises:
        permissions.NotAllowed: the role may not review.
        StateConflict: the image is not done (or reviewed, for a second opinion).
        ValidationError: an unknown decision; a rejection without a comment; a mask not of
            this image; an approval that rejects a mask.
    """
    require(user=user, project=image.project_id, action=Action.REVIEW)
    locked = Image.objects.select_for_update().get(pk=image.pk)
    if locked.status not in (S.DONE, S.REVIEWED):
        raise StateConflict(f"Only done images can be reviewed; this one is {locked.status}.")
    comment = comment.strip()
    decisions = annotations or []
    if decision not in ("approve", "reject"):
        raise ValidationError({"decision": ["Must be approve or reject."]})
    if decision == "reject" and not comment:
        raise ValidationError({"comment": ["Say what to fix: a rejection goes back to the annotator with it."]})
    if decision == "approve" and any(d.status == Annotation.ReviewStatus.REJECTED for d in decisions):
        raise ValidationError({"annotations": ["A rejected mask cannot be part of an approval: reject the image."]})
    masks = {a.pk: a for a in Annotation.objects.select_for_update().select_related("image")
             .filter(image=locked).order_by("id")}
    unknown = [d.annotation_id for d in decisions if d.annotation_id not in masks]
    if unknown:
        raise ValidationError({"annotations": [f"No annotation {', '.join(map(str, unknown))} on this image."]})
    now = timezone.now()
    for d in decisions:
        _review_one(masks[d.annotation_id], user, d.status, d.comment.strip(), now)
    decided = {d.annotation_id for d in decisions}
    pending = [a for pk, a in masks.items() if pk not in decided and a.review_status == Annotation.ReviewStatus.PENDING]
    if decision == "approve":
        for a in pending:
            _review_one(a, user, Annotation.ReviewStatus.APPROVED, "", now)
        locked.status = S.REVIEWED
    else:
        if not decisions:
            for a in pending:
                _review_one(a, user, Annotation.ReviewStatus.REJECTED, comment, now)
        locked.status = S.REJECTED
        if locked.done_by_id is not None:
            locked.assignee_id = locked.done_by_id
    locked.lease_holder = None
    locked.lease_expires_at = None
    locked.save(update_fields=["status", "assignee", "lease_holder", "lease_expires_at", "updated_at"])
    return ImageReview.objects.create(
        image=locked, reviewer=user, comment=comment, annotator_id=locked.done_by_id,
        decision=ImageReview.Decision.APPROVED if decision == "approve" else ImageReview.Decision.REJECTED,
    )


# ---------------------------------------------------------------- members

def _check_admin_change(*, user, project: Project, old_role: str | None, new_role: str | None) -> None:
    if Membership.Role.ADMIN in (old_role, new_role):
        require(user=user, project=project, action=Action.ADMINISTER)
    if old_role == Membership.Role.ADMIN and new_role != Membership.Role.ADMIN:
        if Membership.objects.filter(project=project, role=Membership.Role.ADMIN).count() <= 1:
            raise ValidationError({"role": ["A project keeps at least one admin."]})


def _check_role(role: Any) -> None:
    if role not in Membership.Role.values:
        raise ValidationError({"role": [f"Must be one of {', '.join(Membership.Role.values)}."]})


@transaction.atomic
def member_add(*, user, project: Project, username: str, role: str) -> Membership:
    """Add a user to the project with ``role``.

    Raises:
        permissions.NotAllowed: the role may not manage members (or grant admin).
        ValidationError: unknown user or role; already a member.
    """
    require(user=user, project=project, action=Action.MEMBERS)
    _check_role(role)
    target = get_user_model().objects.filter(username=username).first()
    if target is None:
        raise ValidationError({"username": [f"No user {username!r}."]})
    existing = Membership.objects.filter(project=project, user=target).first()
    if existing is not None:
        raise ValidationError({"username": [f"{username} is already a member ({existing.role}); change the role "
                                            f"instead."]})
    _check_admin_change(user=user, project=project, old_role=None, new_role=role)
    return Membership.objects.create(project=project, user=target, role=role)


@transaction.atomic
def member_update(*, user, project: Project, member_id: int, role: str) -> Membership:
    """Change a member's role.

    Raises:
        Membership.DoesNotExist: not a member (404).
        permissions.NotAllowed, ValidationError: as :func:`member_add`; the last admin.
    """
    require(user=user, project=project, action=Action.MEMBERS)
    _check_role(role)
    membership = Membership.objects.select_for_update().select_related("user").get(project=project, user_id=member_id)
    _check_admin_change(user=user, project=project, old_role=membership.role, new_role=role)
    membership.role = role
    membership.save(update_fields=["role"])
    if not can(user=membership.user, project=project, action=Action.ANNOTATE, role=role):
        _drop_work(project=project, user_id=member_id)
    return membership


@transaction.atomic
def member_remove(*, user, project: Project, member_id: int) -> None:
    """Remove a member: their leases are released and their unfinished images opened to all.

    Raises:
        Membership.DoesNotExist: not a member (404).
        permissions.NotAllowed, ValidationError: as :func:`member_update`.
    """
    require(user=user, project=project, action=Action.MEMBERS)
    membership = Membership.objects.select_for_update().get(project=project, user_id=member_id)
    _check_admin_change(user=user, project=project, old_role=membership.role, new_role=None)
    membership.delete()
    _drop_work(project=project, user_id=member_id)


def _drop_work(*, project: Project, user_id: int) -> None:
    now = timezone.now()
    Image.objects.filter(project=project, lease_holder_id=user_id).update(
        lease_holder=None, lease_expires_at=None, updated_at=now)
    Image.objects.filter(project=project, assignee_id=user_id, status__in=WORKABLE).update(
        assignee=None, updated_at=now)
