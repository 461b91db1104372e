"""Who may do what in a project: one table of allowed actions per role.

Membership itself is checked by the selectors (a non-member gets 404 for every object of
the project, as if it did not exist); this table decides what members may do (403
otherwise). Superusers (site admins) may do everything.

| action (``Action``)   | what it covers                                        | admin | manager | reviewer | annotator |
|-----------------------|-------------------------------------------------------|:-----:|:-------:|:--------:|:---------:|
| ``view``              | project, images, files, embeddings, masks, own queue  | yes   | yes     | yes      | yes       |
| ``annotate``          | save/edit/delete masks, lease, mark done, queue next  | yes   | yes     | no       | yes (1)   |
| ``review``            | approve/reject masks and images, list images to review | yes  | yes     | yes      | no        |
| ``settings``          | rename the project, upload images                     | yes   | yes     | no       | no        |
| ``members``           | list, add, change, remove members (2)                 | yes   | yes     | no       | no        |
| ``assign``            | assign images, break or take over anyone's lease (4)  | yes   | yes     | no       | no        |
| ``dashboard``         | throughput statistics (API, page, CSV)                | yes   | yes     | no       | no        |
| ``export``            | start, see and download exports                       | yes   | yes     | yes (3)  | no        |
| ``import``            | import COCO annotations                               | yes   | yes     | no       | no        |
| ``model``             | switch the project's model version, retrain it        | yes   | yes     | no       | no        |
| ``administer``        | grant or change the admin role                        | yes   | no      | no       | no        |

(1) only images assigned to them or to nobody, not yet done (services.image_check_annotatable).
(2) a manager cannot make, change or remove an admin (that needs ``administer``).
(3) reviewers kept the export they had before roles were a table: they check what leaves.
(4) "Take over" on the annotate page (workflow.lease_acquire ``takeover``, may_take_over_lease).
"""

from __future__ import annotations

from enum import StrEnum

from .models import Membership, Project

R = Membership.Role


class Action(StrEnum):
    VIEW = "view"
    ANNOTATE = "annotate"
    REVIEW = "review"
    SETTINGS = "settings"
    MEMBERS = "members"
    ASSIGN = "assign"
    DASHBOARD = "dashboard"
    EXPORT = "export"
    IMPORT = "import"
    MODEL = "model"
    ADMINISTER = "administer"


A = Action
ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    R.ADMIN: frozenset(Action),
    R.MANAGER: frozenset({A.VIEW, A.ANNOTATE, A.REVIEW, A.SETTINGS, A.MEMBERS, A.ASSIGN, A.DASHBOARD, A.EXPORT,
                          A.IMPORT, A.MODEL}),
    R.REVIEWER: frozenset({A.VIEW, A.REVIEW, A.EXPORT}),
    R.ANNOTATOR: frozenset({A.VIEW, A.ANNOTATE}),
}


# How an action reads in a refusal: "Your role (reviewer) may not see the dashboard ...".
ACTION_PHRASES: dict[str, str] = {
    A.VIEW: "open", A.ANNOTATE: "annotate images", A.REVIEW: "review images",
    A.SETTINGS: "change the settings", A.MEMBERS: "manage the members", A.ASSIGN: "assign images",
    A.DASHBOARD: "see the dashboard", A.EXPORT: "export", A.IMPORT: "import",
    A.MODEL: "change the model", A.ADMINISTER: "administer",
}


def refusal(role: str | None, action: str) -> str:
    """The words of a refusal: ``Your role (<role>) may not <what the action does> in this
    project.`` (an action missing from ACTION_PHRASES is used as it is)."""
    return f"Your role ({role or 'none'}) may not {ACTION_PHRASES.get(action, action)} in this project."


def roles_for(action: Action) -> frozenset[str]:
    """The roles whose row of the table allows ``action``."""
    return frozenset(role for role, actions in ROLE_ACTIONS.items() if action in actions)


# Kept for callers written before the table (same sets, now read from it).
EXPORT_ROLES = roles_for(A.EXPORT)
IMPORT_ROLES = roles_for(A.IMPORT)
REVIEW_ROLES = roles_for(A.REVIEW)


class NotAllowed(Exception):
    """A member whose role does not allow the action (the API answers 403)."""


def project_role(*, user, project_id: int) -> str | None:
    return Membership.objects.filter(project_id=project_id, user=user).values_list("role", flat=True).first()


def can(*, user, project: Project | int, action: Action, role: str | None = None) -> bool:
    """Whether ``user`` may do ``action`` in the project (``role`` saves a query when known)."""
    if user.is_superuser:
        return True
    if role is None:
        project_id = project if isinstance(project, int) else project.pk
        role = project_role(user=user, project_id=project_id)
    return role is not None and action in ROLE_ACTIONS.get(role, frozenset())


def allowed_actions(*, user, project: Project | int) -> list[str]:
    """The actions ``user`` may do in the project, sorted (what the pages and API report)."""
    if user.is_superuser:
        return sorted(Action)
    project_id = project if isinstance(project, int) else project.pk
    role = project_role(user=user, project_id=project_id)
    return sorted(ROLE_ACTIONS.get(role, frozenset())) if role else []


def require(*, user, project: Project | int, action: Action) -> None:
    """Raises NotAllowed unless the table allows ``action`` to the user's role in the project."""
    if user.is_superuser:
        return
    project_id = project if isinstance(project, int) else project.pk
    role = project_role(user=user, project_id=project_id)
    if role is None or action not in ROLE_ACTIONS.get(role, frozenset()):
        raise NotAllowed(refusal(role, action))


def require_role(*, user, project: Project | int, roles: frozenset[str], action: str) -> None:
    """Raises NotAllowed unless ``user`` is a superuser or has one of ``roles`` in the project.

    Prefer :func:`require` with an ``Action`` of the table; this stays for older callers."""
    if user.is_superuser:
        return
    project_id = project if isinstance(project, int) else project.pk
    role = project_role(user=user, project_id=project_id)
    if role not in roles:
        raise NotAllowed(refusal(role, action))
