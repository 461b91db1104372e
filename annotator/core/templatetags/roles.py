"""Template filter for the role table: ``{% if project|can:"review" %}`` on a project from
``selectors.projects_for_user`` (annotated with the user's ``my_role``)."""

from django import template

from ..permissions import ROLE_ACTIONS

register = template.Library()


@register.filter
def can(project, action: str) -> bool:
    if getattr(project, "my_superuser", False):
        return True
    return action in ROLE_ACTIONS.get(getattr(project, "my_role", None), frozenset())


@register.filter
def can_any(project, actions: str) -> bool:
    """``{% if project|can_any:"settings,model,members" %}``: any one of the actions."""
    return any(can(project, action.strip()) for action in actions.split(","))
