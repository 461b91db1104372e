"""HTML pages: the project list and the annotate page (the latter is a shell for the
TypeScript app in frontend/)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from . import selectors


@login_required
def project_list(request):
    return render(request, "core/project_list.html", {"projects": selectors.projects_for_user(user=request.user)})


@login_required
def annotate(request, project_id: int):
    project = selectors.project_get(user=request.user, project_id=project_id)
    image_id = request.GET.get("image")
    if not image_id or not image_id.isdigit():
        first = project.images.order_by("id").values_list("id", flat=True).first()
        if first is not None:
            return redirect(f"{request.path}?image={first}")
    return render(request, "core/annotate.html", {"project": project, "image_id": image_id or ""})
