"""Reads: every query a user makes goes through membership, so another project's objects
are indistinguishable from missing ones (404)."""

from __future__ import annotations

from django.db.models import Count, OuterRef, QuerySet, Subquery, Value
from django.http import Http404

from .models import Annotation, ExportJob, Image, Membership, Project


def projects_for_user(*, user) -> QuerySet[Project]:
    """The user's projects, each annotated with ``my_role`` (their role, or None for a site
    admin who is no member) and ``my_superuser``."""
    qs = Project.objects.all() if user.is_superuser else Project.objects.filter(members=user)
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    return (qs.select_related("model_version").prefetch_related("categories").annotate(image_count=Count("images", distinct=True))
            .annotate(my_role=Subquery(role), my_superuser=Value(user.is_superuser)).order_by("id"))


def project_get(*, user, project_id: int) -> Project:
    try:
        return projects_for_user(user=user).get(pk=project_id)
    except Project.DoesNotExist:
        raise Http404("No such project.")


def images_for_user(*, user) -> QuerySet[Image]:
    qs = Image.objects.all() if user.is_superuser else Image.objects.filter(project__members=user)
    return (qs.select_related("project", "project__model_version", "assignee", "lease_holder", "done_by")
            .prefetch_related("embeddings")
            .annotate(annotation_count=Count("annotations", distinct=True)))


def image_get(*, user, image_id: int) -> Image:
    try:
        return images_for_user(user=user).get(pk=image_id)
    except Image.DoesNotExist:
        raise Http404("No such image.")


def image_neighbours(*, image: Image) -> tuple[int | None, int | None]:
    """(previous id, next id) of an image within its project, by id."""
    siblings = Image.objects.filter(project_id=image.project_id)
    prev = siblings.filter(pk__lt=image.pk).order_by("-pk").values_list("pk", flat=True).first()
    nxt = siblings.filter(pk__gt=image.pk).order_by("pk").values_list("pk", flat=True).first()
    return prev, nxt


def image_navigation(*, user, image: Image) -> tuple[int | None, int | None, str]:
    """(previous id, next id, order) that the annotate page's P / N follow from ``image``:
    for a member whose role is annotator, the neighbours in their work queue's order
    (``"queue"``, workflow.queue_neighbours); for everyone else, by id in the project
    (``"project"``)."""
    from .permissions import project_role
    from .workflow import queue_neighbours

    if not user.is_superuser and project_role(user=user, project_id=image.project_id) == Membership.Role.ANNOTATOR:
        return (*queue_neighbours(user=user, image=image), "queue")
    return (*image_neighbours(image=image), "project")


def annotation_get(*, user, annotation_id: int) -> Annotation:
    qs = Annotation.objects.select_related("image", "category", "author")
    if not user.is_superuser:
        qs = qs.filter(image__project__members=user)
    try:
        return qs.get(pk=annotation_id)
    except Annotation.DoesNotExist:
        raise Http404("No such annotation.")


def annotations_for_image(*, image: Image) -> QuerySet[Annotation]:
    return image.annotations.select_related("category", "author").order_by("id")


def export_get(*, user, export_id: int) -> ExportJob:
    """An export job of a project the user belongs to (404 otherwise)."""
    qs = ExportJob.objects.select_related("project", "created_by")
    if not user.is_superuser:
        qs = qs.filter(project__members=user)
    try:
        return qs.get(pk=export_id)
    except ExportJob.DoesNotExist:
        raise Http404("No such export.")


def exports_for_project(*, project: Project) -> QuerySet[ExportJob]:
    return ExportJob.objects.filter(project=project).select_related("created_by").order_by("-id")


def retrain_jobs_for_project(*, project: Project) -> QuerySet["RetrainJob"]:
    from .models import RetrainJob

    return (RetrainJob.objects.filter(project=project)
            .select_related("created_by", "base_version", "new_version").order_by("-id"))


def retrain_job_get(*, user, job_id: int) -> "RetrainJob":
    """A retrain job of a project the user belongs to (404 otherwise)."""
    from .models import RetrainJob

    qs = RetrainJob.objects.select_related("project", "created_by", "base_version", "new_version")
    if not user.is_superuser:
        qs = qs.filter(project__members=user)
    try:
        return qs.get(pk=job_id)
    except RetrainJob.DoesNotExist:
        raise Http404("No such retrain job.")


def proposal_get(*, user, proposal_id: int) -> "Proposal":
    """A pre-fill proposal of a project the user belongs to (404 otherwise)."""
    from .models import Proposal

    qs = Proposal.objects.select_related("image", "image__project", "decided_by")
    if not user.is_superuser:
        qs = qs.filter(image__project__members=user)
    try:
        return qs.get(pk=proposal_id)
    except Proposal.DoesNotExist:
        raise Http404("No such proposal.")


def proposals_for_image(*, image: Image, status: str | None = "pending") -> "QuerySet":
    """An image's proposals, best predicted IoU first; ``status`` None = all of them."""
    qs = image.proposals.select_related("decided_by").order_by("-predicted_iou", "id")
    return qs if status is None else qs.filter(status=status)


def prefill_summary(*, project: Project) -> dict:
    """Pre-fill progress and outcome counts of a project: images by proposal status,
    proposals by decision, annotations by origin."""
    from .models import Proposal

    images = dict(Image.objects.filter(project=project).values_list("proposals_status")
                  .annotate(n=Count("id")).values_list("proposals_status", "n"))
    proposals = dict(Proposal.objects.filter(image__project=project).values_list("status")
                     .annotate(n=Count("id")).values_list("status", "n"))
    origins = dict(Annotation.objects.filter(image__project=project).values_list("origin")
                   .annotate(n=Count("id")).values_list("origin", "n"))
    return {
        "images": {s: images.get(s, 0) for s in Image.ProposalsStatus.values},
        "proposals": {s: proposals.get(s, 0) for s in Proposal.Status.values},
        "annotations_by_origin": {s: origins.get(s, 0) for s in Annotation.Origin.values},
    }


def members_of(*, project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user").order_by("user__username")


def annotation_by_client_key(*, image: Image, user, client_key: str) -> Annotation | None:
    """The annotation ``user`` saved on ``image`` with this idempotency key, if any."""
    if not client_key:
        return None
    return Annotation.objects.select_related("image", "category", "author").filter(
        image=image, author=user, client_key=client_key).first()
