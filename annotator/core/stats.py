"""Throughput statistics of a project from its annotation events (reads): the numbers the
SAM paper judged its data engine by (§4: seconds per mask, masks per image), per annotator,
per day and per model version. The dashboard page, the stats API and its CSV all use
:func:`project_stats`.

Definitions (one group = one annotator, one UTC day or one model version):

- ``masks``: masks saved (``create`` events; COCO imports make no events).
- ``images``: distinct images those masks are on; ``masks_per_image`` = masks / images.
- ``seconds_per_mask_median`` / ``_p90``: over the saved masks that carry ``active_ms``
  (browser-measured, first prompt to save, idle gaps over 30 s removed); percentiles by
  linear interpolation (numpy's default).
- ``active_seconds``: ``active_ms`` summed over saves, edits and proposal rejections;
  ``masks_per_hour`` = masks / active hours.
- ``clicks_per_mask``: (positive + negative clicks + boxes) of the saves / masks.
- ``prefill_acceptance_rate``: pre-fill proposals accepted as they were or after an edit
  (saves with origin ``prefill_accepted`` / ``prefill_edited``) over proposals decided
  (those plus ``proposal_reject`` events).
- ``review_rejection_rate``: masks rejected over masks reviewed (``review_reject`` /
  ``review_approve`` + ``review_reject`` events). Per annotator, a review counts for the
  mask's author (not the reviewer); per day, on the day of the review.

Rates and averages are null when their denominator is 0. Aggregation runs in Python over
one narrow query (exact percentiles, the same on PostgreSQL and SQLite); a project with
millions of events would want the counts in SQL and percentiles by ``percentile_cont``.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from typing import Any, Iterable

from django.utils import timezone

from .models import Annotation, AnnotationEvent, Project

GROUPS = ("user", "day", "model")
E = AnnotationEvent.Kind
PREFILL_ORIGINS = (Annotation.Origin.PREFILL_ACCEPTED, Annotation.Origin.PREFILL_EDITED)
PROPOSAL_REJECT = "proposal_reject"  # logged when a pre-fill proposal is rejected (prefill.py)
COLUMNS = [
    "masks", "images", "masks_per_image", "seconds_per_mask_median", "seconds_per_mask_p90", "active_seconds",
    "masks_per_hour", "clicks", "clicks_per_mask", "edits", "prefill_accepted", "prefill_edited",
    "prefill_rejected", "prefill_acceptance_rate", "reviewed", "review_rejected", "review_rejection_rate",
]


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The ``q`` (0..100) percentile of ascending values by linear interpolation between the
    closest ranks (numpy's default method); None for no values."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _ratio(num: float, den: float, digits: int = 4) -> float | None:
    return round(num / den, digits) if den else None


class _Group:
    __slots__ = ("masks", "images", "seconds", "active_ms", "clicks", "edits", "accepted", "edited", "rejected",
                 "reviewed", "review_rejected")

    def __init__(self) -> None:
        self.masks = 0
        self.images: set[int] = set()
        self.seconds: list[float] = []
        self.active_ms = 0
        self.clicks = 0
        self.edits = 0
        self.accepted = 0
        self.edited = 0
        self.rejected = 0
        self.reviewed = 0
        self.review_rejected = 0

    def row(self) -> dict[str, Any]:
        secs = sorted(self.seconds)
        median, p90 = percentile(secs, 50), percentile(secs, 90)
        decided = self.accepted + self.edited + self.rejected
        return {
            "masks": self.masks,
            "images": len(self.images),
            "masks_per_image": _ratio(self.masks, len(self.images)),
            "seconds_per_mask_median": None if median is None else round(median, 3),
            "seconds_per_mask_p90": None if p90 is None else round(p90, 3),
            "active_seconds": round(self.active_ms / 1000, 3),
            "masks_per_hour": _ratio(self.masks * 3_600_000, self.active_ms, 2),
            "clicks": self.clicks,
            "clicks_per_mask": _ratio(self.clicks, self.masks),
            "edits": self.edits,
            "prefill_accepted": self.accepted,
            "prefill_edited": self.edited,
            "prefill_rejected": self.rejected,
            "prefill_acceptance_rate": _ratio(self.accepted + self.edited, decided),
            "reviewed": self.reviewed,
            "review_rejected": self.review_rejected,
            "review_rejection_rate": _ratio(self.review_rejected, self.reviewed),
        }


def _add(g: _Group, ev: dict[str, Any]) -> None:
    kind = ev["kind"]
    if kind == E.CREATE:
        g.masks += 1
        g.images.add(ev["image_id"])
        g.clicks += ev["positive_clicks"] + ev["negative_clicks"] + ev["boxes"]
        if ev["active_ms"] is not None:
            g.seconds.append(ev["active_ms"] / 1000)
            g.active_ms += ev["active_ms"]
        if ev["origin"] == Annotation.Origin.PREFILL_ACCEPTED:
            g.accepted += 1
        elif ev["origin"] == Annotation.Origin.PREFILL_EDITED:
            g.edited += 1
    elif kind == E.EDIT:
        g.edits += 1
        g.active_ms += ev["active_ms"] or 0
    elif kind == PROPOSAL_REJECT:
        g.rejected += 1
        g.active_ms += ev["active_ms"] or 0
    elif kind in (E.REVIEW_APPROVE, E.REVIEW_REJECT):
        g.reviewed += 1
        g.review_rejected += kind == E.REVIEW_REJECT


def _key(ev: dict[str, Any], group_by: str, names: dict[int, str]) -> str:
    if group_by == "day":
        return timezone.localtime(ev["created_at"]).date().isoformat()
    if group_by == "model":
        return ev["model_id"] or "(none)"
    review = ev["kind"] in (E.REVIEW_APPROVE, E.REVIEW_REJECT)
    user_id = ev["mask_author_id"] if review and ev["mask_author_id"] is not None else ev["user_id"]
    return names.get(user_id, f"user {user_id}")


def project_stats(*, project: Project, group_by: str) -> dict[str, Any]:
    """Throughput of ``project`` grouped by ``user`` (username), ``day`` (UTC date, ISO) or
    ``model`` (model id): ``{"group_by", "columns", "rows": [{"key", <column>: ...}],
    "total": {<column>: ...}, "labels": {key: name}}``, rows sorted by key. ``labels`` names
    the registered model versions among the keys (grouping by model; empty otherwise). See
    the module docstring for each column.

    Raises:
        ValueError: an unknown ``group_by``.
    """
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    from django.contrib.auth import get_user_model

    events = list(
        AnnotationEvent.objects.filter(project=project)
        .exclude(kind=E.DELETE)
        .order_by("id")
        .values("kind", "user_id", "mask_author_id", "image_id", "model_id", "origin", "positive_clicks",
                "negative_clicks", "boxes", "active_ms", "created_at")
    )
    user_ids = {ev["user_id"] for ev in events} | {ev["mask_author_id"] for ev in events if ev["mask_author_id"]}
    names = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
    groups: dict[str, _Group] = defaultdict(_Group)
    total = _Group()
    for ev in events:
        _add(groups[_key(ev, group_by, names)], ev)
        _add(total, ev)
    labels: dict[str, str] = {}
    if group_by == "model":
        from .models import ModelVersion

        labels = {mid: f"{name} ({source})" for mid, name, source in
                  ModelVersion.objects.filter(model_id__in=list(groups)).values_list("model_id", "name", "source")}
    return {
        "group_by": group_by,
        "columns": COLUMNS,
        "rows": [{"key": key, **groups[key].row()} for key in sorted(groups)],
        "total": total.row(),
        "labels": labels,
    }


def stats_csv(stats: dict[str, Any]) -> str:
    """The rows of :func:`project_stats` and a ``total`` row as CSV (empty cell for null)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([stats["group_by"], *stats["columns"]])
    rows: Iterable[tuple[str, dict[str, Any]]] = [(r["key"], r) for r in stats["rows"]]
    for key, row in [*rows, ("total", stats["total"])]:
        writer.writerow([key, *("" if row[c] is None else row[c] for c in stats["columns"])])
    return buf.getvalue()
