"""HTML pages: the project list, the "New project" form and a project's upload page
(TypeScript over the API), the annotate page (a shell for the TypeScript app in frontend/),
the review list and the managers' dashboard."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import redirect, render

from . import selectors, stats, workflow
from .models import Image, ImageReview
from .permissions import Action, NotAllowed, can, project_role
from .services import ValidationError


@login_required
def project_list(request):
    projects = list(selectors.projects_for_user(user=request.user))
    for p in projects:  # pre-fill progress per project (a handful of projects per user)
        p.prefill = selectors.prefill_summary(project=p)
    return render(request, "core/project_list.html", {"projects": projects})


@login_required
def project_new(request):
    """The "New project" form (frontend/src/projectNew.ts). It posts to ``POST /api/projects/``,
    which every signed-in user may call (the creator becomes the project's admin), so the
    page needs only a login; the API validates and its errors are shown by the fields."""
    from django.conf import settings

    from .services import PALETTE

    return render(request, "core/project_new.html", {"prefill_default": settings.ANNOTATOR_PREFILL_DEFAULT,
                                                     "palette": PALETTE})


@login_required
def upload(request, project_id: int):
    """A project's "Upload images" page (frontend/src/upload.ts over
    ``POST /api/projects/<id>/images/``): for roles with the ``settings`` action, which is
    what that endpoint requires (403 for the others, 404 for non-members)."""
    from django.conf import settings

    project = selectors.project_get(user=request.user, project_id=project_id)
    _require_page(request, project, Action.SETTINGS)
    return render(request, "core/upload.html", {
        "project": project, "max_upload_bytes": settings.ANNOTATOR_MAX_UPLOAD_BYTES,
        "max_megapixels": settings.ANNOTATOR_MAX_IMAGE_PIXELS // 1_000_000,
        "max_files": settings.ANNOTATOR_MAX_FILES_PER_UPLOAD,
    })


@login_required
def annotate(request, project_id: int):
    """The annotate page. A role that may view but not annotate (a reviewer) gets it
    read-only: the page reads ``may_annotate`` from the template and sends no write (the
    API refuses them anyway)."""
    project = selectors.project_get(user=request.user, project_id=project_id)
    role = project_role(user=request.user, project_id=project.pk)
    may_annotate = can(user=request.user, project=project, action=Action.ANNOTATE, role=role)
    image_id = request.GET.get("image")
    if not image_id or not image_id.isdigit():
        # Annotators start at the next image of their queue (leased to them); others, or an
        # empty queue, at the first image.
        target = None
        if may_annotate:
            leased = workflow.queue_next(user=request.user, project=project)
            target = leased.pk if leased is not None else None
        if target is None:
            target = project.images.order_by("id").values_list("id", flat=True).first()
        if target is not None:
            return redirect(f"{request.path}?image={target}")
    return render(request, "core/annotate.html", {
        "project": project, "image_id": image_id or "", "role": role or "", "may_annotate": may_annotate,
        "may_review": can(user=request.user, project=project, action=Action.REVIEW, role=role),
    })


def _require_page(request, project, action: Action) -> None:
    if not can(user=request.user, project=project, action=action):
        raise PermissionDenied(f"Your role may not {action} in this project.")


# Column headings of the dashboard tables (stats.COLUMNS order).
STATS_LABELS = {
    "masks": "Masks", "images": "Images", "masks_per_image": "Masks / image",
    "seconds_per_mask_median": "s / mask (median)", "seconds_per_mask_p90": "s / mask (p90)",
    "active_seconds": "Active s", "masks_per_hour": "Masks / hour", "clicks": "Clicks",
    "clicks_per_mask": "Clicks / mask", "edits": "Edits", "prefill_accepted": "Pre-fill accepted",
    "prefill_edited": "Pre-fill edited", "prefill_rejected": "Pre-fill rejected",
    "prefill_acceptance_rate": "Pre-fill acceptance", "reviewed": "Reviewed", "review_rejected": "Rejected",
    "review_rejection_rate": "Review rejection",
}


@login_required
def dashboard(request, project_id: int):
    """Throughput per annotator, day and model version: charts (frontend/src/dashboard.ts)
    and tables of the same numbers as ``GET /api/projects/<id>/stats``."""
    project = selectors.project_get(user=request.user, project_id=project_id)
    _require_page(request, project, Action.DASHBOARD)
    groups = {g: stats.project_stats(project=project, group_by=g) for g in stats.GROUPS}
    labels = [(c, STATS_LABELS.get(c, c)) for c in stats.COLUMNS]
    tables = [
        {"group_by": g, "title": title, "labels": labels,
         "rows": [(row["key"], groups[g]["labels"].get(row["key"], ""), [(c, row[c]) for c, _ in labels])
                  for row in groups[g]["rows"]],
         "total": [(c, groups[g]["total"][c]) for c, _ in labels]}
        for g, title in (("user", "Per annotator"), ("day", "Per day (UTC)"), ("model", "Per model version"))
    ]
    by_status = dict(project.images.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    return render(request, "core/dashboard.html", {
        "project": project, "stats": groups, "tables": tables,
        "work": [(value, label.lower(), by_status.get(value, 0)) for value, label in Image.WorkStatus.choices],
        "model_panel": _model_panel(request, project),
    })


def _model_panel(request, project) -> dict | None:
    """The dashboard's "Model" section (the ``model`` action: admins, managers): the current
    version and how many accepted masks a retrain would use; the jobs come from the API."""
    from django.conf import settings

    from .model_versions import project_model_version
    from .retrain import HELDOUT_FRACTION, retrain_counts

    if not can(user=request.user, project=project, action=Action.MODEL):
        return None
    version = project_model_version(project)
    return {"version": version, "counts": retrain_counts(project=project, model_id=version.model_id),
            "min_train": settings.ANNOTATOR_RETRAIN_MIN_TRAIN_MASKS,
            "min_heldout": settings.ANNOTATOR_RETRAIN_MIN_HELDOUT_MASKS,
            "heldout_percent": int(HELDOUT_FRACTION * 100), "steps": settings.ANNOTATOR_RETRAIN_STEPS}


@login_required
def review(request, project_id: int):
    """Reviewers' list of done images, with approve / reject (and a comment) per image; the
    masks are seen on the annotate page."""
    project = selectors.project_get(user=request.user, project_id=project_id)
    _require_page(request, project, Action.REVIEW)
    error = None
    if request.method == "POST":
        image_id = request.POST.get("image", "")
        try:
            image = selectors.image_get(user=request.user, image_id=int(image_id))
            if image.project_id != project.pk:
                raise ValueError
            workflow.image_review(user=request.user, image=image, decision=request.POST.get("decision", ""),
                                  comment=request.POST.get("comment", ""))
            return redirect(request.path)
        except ValidationError as exc:  # before ValueError: services.ValidationError subclasses it
            error = " ".join(m for msgs in exc.errors.values() for m in msgs)
        except ValueError:
            error = f"No image {image_id} in this project."
        except (NotAllowed, workflow.StateConflict) as exc:
            error = str(exc)
    images = selectors.images_for_user(user=request.user).filter(project=project, status=Image.WorkStatus.DONE)
    recent = (ImageReview.objects.filter(image__project=project).select_related("image", "reviewer", "annotator")
              .order_by("-id")[:20])
    return render(request, "core/review.html", {"project": project, "images": images.order_by("id"),
                                                "recent": recent, "error": error})
