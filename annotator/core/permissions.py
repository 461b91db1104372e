"""Who may do what in a project, per role. Membership itself is checked by the selectors
(non-members get 404); these tables decide what members may do (403 otherwise).

| action            | admin | manager | reviewer | annotator |
|-------------------|:-----:|:-------:|:--------:|:---------:|
| export (start, see, download) | yes | yes | yes | no |
| import COCO       | yes   | yes     | no       | no        |
| set review_status | yes   | yes     | yes      | no        |

Superusers may do everything.
"""

from __future__ import annotations

from .models import Membership, Project

R = Membership.Role
EXPORT_ROLES = frozenset({R.ADMIN, R.MANAGER, R.REVIEWER})
IMPORT_ROLES = frozenset({R.ADMIN, R.MANAGER})
REVIEW_ROLES = frozenset({R.ADMIN, R.MANAGER, R.REVIEWER})


class NotAllowed(Exception):
    """A member whose role does not allow the action (the API answers 403)."""


def project_role(*, user, project_id: int) -> str | None:
    return Membership.objects.filter(project_id=project_id, user=user).values_list("role", flat=True).first()


def require_role(*, user, project: Project | int, roles: frozenset[str], action: str) -> None:
    """Raises NotAllowed unless ``user`` is a superuser or has one of ``roles`` in the project."""
    if user.is_superuser:
        return
    project_id = project if isinstance(project, int) else project.pk
    role = project_role(user=user, project_id=project_id)
    if role not in roles:
        raise NotAllowed(f"Your role ({role or 'none'}) may not {action} in this project.")
