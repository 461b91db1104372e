"""HTML pages: the project list, the "New project" form, a project's upload, exports and
settings pages (TypeScript over the API), the annotate page (a shell for the TypeScript app in frontend/),
the review list and the managers' dashboard."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import redirect, render

from . import selectors, stats, workflow
from .models import Image, ImageReview
from .permissions import Action, NotAllowed, can, project_role, refusal
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


# What the exports page says of each format (ExportJob.Format; docs/api.md "Export").
EXPORT_FORMAT_NOTES = {
    "coco": "one JSON file, segmentations as compressed RLE (pycocotools); with the images: a zip of "
            "annotations/instances.json + images/",
    "coco_polygons": "one JSON file, segmentations as polygons (holes bridged, decode to the same pixels); "
                     "with the images: a zip",
    "sa1b": "a zip with one JSON per image in the SA-1B layout (RLE, point_coords, crop_box)",
    "png": "a zip with one 16-bit PNG instance map per image (value k = instance k) and its JSON",
}


@login_required
def exports(request, project_id: int):
    """A project's "Exports" page (frontend/src/exports.ts over ``/api/projects/<id>/exports/``,
    ``/api/exports/<id>/`` and ``/api/projects/<id>/imports/coco``): start a background export
    and follow the project's export jobs, for roles with the ``export`` action (what those
    endpoints require: 403 for the others, 404 for non-members); the COCO import section only
    for roles with the ``import`` action."""
    from django.conf import settings

    from .models import ExportJob

    project = selectors.project_get(user=request.user, project_id=project_id)
    _require_page(request, project, Action.EXPORT)
    formats = [{"value": value, "label": label, "note": EXPORT_FORMAT_NOTES.get(value, "")}
               for value, label in ExportJob.Format.choices]
    return render(request, "core/exports.html", {
        "project": project, "formats": formats,
        "may_import": can(user=request.user, project=project, action=Action.IMPORT),
        "retention_hours": settings.ANNOTATOR_EXPORT_RETENTION_HOURS,
        "max_import_bytes": settings.ANNOTATOR_MAX_REQUEST_BYTES,
    })


# The pre-fill section's fields: engine.AutomaticMaskParams name, label, what it does; the
# first ones are shown, the others under "More generator parameters".
PREFILL_FIELDS = [
    ("pred_iou_thresh", "Predicted IoU threshold", "keep masks whose predicted IoU is above this (0 keeps all)"),
    ("stability_score_thresh", "Stability score threshold",
     "keep masks at least this stable under a shift of the mask threshold (0 keeps all)"),
    ("points_per_side", "Grid points per side", "the image is prompted with this many² single points"),
    ("box_nms_thresh", "Box NMS threshold", "of two masks whose boxes overlap more than this IoU, the weaker is dropped"),
    ("min_mask_region_area", "Minimum region area (pixels)", "holes and islands smaller than this are removed (0: off)"),
    ("points_per_batch", "Points per batch", "prompts per decoder call: only speed and memory depend on it"),
    ("stability_score_offset", "Stability score offset", "the logit shift the stability score is measured with"),
    ("crop_n_layers", "Crop layers", "extra layers of image crops (each crop needs an encoder pass)"),
    ("crop_nms_thresh", "Crop NMS threshold", "box IoU for NMS between masks of different crops"),
    ("crop_overlap_ratio", "Crop overlap ratio", "overlap of neighbouring crops, as a fraction of the short side"),
    ("crop_n_points_downscale_factor", "Crop points downscale factor", "crop layer i uses points per side / factor^i"),
]
PREFILL_MAIN_FIELDS = 5
SETTINGS_ACTIONS = (Action.SETTINGS, Action.MODEL, Action.MEMBERS)


def may_open_settings(*, user, project, role: str | None = None) -> bool:
    """Whether the project's settings page (and its links) is for ``user``: any of its
    sections' actions (settings, model, members)."""
    if role is None and not user.is_superuser:
        role = project_role(user=user, project_id=project.pk)
    return any(can(user=user, project=project, action=a, role=role) for a in SETTINGS_ACTIONS)


@login_required
def project_settings(request, project_id: int):
    """A project's settings page (frontend/src/settings.ts over the API): General (name and
    labels: the ``settings`` action), Pre-fill (``settings``), Model (``model``), Members
    (``members``; the admin role needs ``administer``). Each section is rendered only for a
    role whose action allows it; a role allowed none gets 403, non-members 404."""
    from django.db.models import Count

    from engine.automatic_params import AutomaticMaskParams, param_range

    from .models import Annotation, Membership
    from .model_versions import project_model_version
    from .services import PALETTE

    project = selectors.project_get(user=request.user, project_id=project_id)
    role = project_role(user=request.user, project_id=project.pk)
    may = {a: can(user=request.user, project=project, action=a, role=role)
           for a in (*SETTINGS_ACTIONS, Action.ADMINISTER)}
    if not any(may[a] for a in SETTINGS_ACTIONS):
        raise PermissionDenied("Your role may not change this project's settings.")
    context = {"project": project, "role": role or "", "may_settings": may[Action.SETTINGS],
               "may_model": may[Action.MODEL], "may_members": may[Action.MEMBERS],
               "may_administer": may[Action.ADMINISTER]}
    if may[Action.SETTINGS]:
        masks = dict(Annotation.objects.filter(image__project=project, category__isnull=False)
                     .values_list("category").annotate(n=Count("id")).values_list("category", "n"))
        defaults = AutomaticMaskParams().to_dict()
        fields = []
        for name, label, help_text in PREFILL_FIELDS:
            kind, allowed = param_range(name)
            fields.append({"name": name, "label": label, "help": help_text, "kind": kind, "range": allowed,
                           "default": f"{defaults[name]:.4g}" if kind == "float" else defaults[name]})
        context.update({
            "palette": PALETTE,
            "categories": [{"id": c.pk, "name": c.name, "color": c.color, "masks": masks.get(c.pk, 0)}
                           for c in project.categories.all()],
            "prefill_fields": fields[:PREFILL_MAIN_FIELDS], "prefill_more_fields": fields[PREFILL_MAIN_FIELDS:],
        })
    if may[Action.MODEL]:
        context["model_version"] = project_model_version(project)
        context["follows_default"] = project.model_version_id is None
    if may[Action.MEMBERS]:
        context["roles"] = [r for r in Membership.Role.values if may[Action.ADMINISTER] or r != Membership.Role.ADMIN]
    return render(request, "core/project_settings.html", context)


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
        "may_settings": may_open_settings(user=request.user, project=project, role=role),
    })


def _require_page(request, project, action: Action) -> None:
    if not can(user=request.user, project=project, action=action):
        raise PermissionDenied(refusal(project_role(user=request.user, project_id=project.pk), action))


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
        "may_settings": may_open_settings(user=request.user, project=project),
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
