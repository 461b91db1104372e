"""Throughput statistics: a scripted session through the API (tests/scripted_session.py)
gives exactly the aggregates worked out by hand, from the API, its CSV and the dashboard."""

import csv
import io

import pytest

from annotator.core.stats import percentile
from tests.annotator.test_workflow import client_for
from tests.scripted_session import EXPECTED, run_session, setup_team

pytestmark = pytest.mark.django_db


def test_percentile_is_linear_interpolation_like_numpy():
    import numpy as np

    for values in ([5.0], [10.0, 20.0, 30.0, 40.0], [2.0, 6.0, 8.0, 12.0, 40.0], [3.0, 1.0, 2.0, 10.0, 7.0, 7.0]):
        for q in (0, 10, 50, 90, 100):
            assert percentile(sorted(values), q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([], 50) is None


@pytest.fixture
def session():
    project, users = setup_team()
    clients = {name: client_for(u) for name, u in users.items()}
    run_session(project, clients)
    return project, clients


@pytest.mark.parametrize("group_by", ["user", "day", "model"])
def test_scripted_session_gives_the_hand_computed_aggregates(session, group_by):
    project, clients = session
    res = clients["mona"].get(f"/api/projects/{project.pk}/stats", {"group_by": group_by})
    assert res.status_code == 200, res.content
    body = res.json()
    assert body["group_by"] == group_by
    assert {row.pop("key"): row for row in body["rows"]} == EXPECTED[group_by]
    assert body["total"] == EXPECTED["total"]


def test_stats_csv_has_the_same_numbers(session):
    project, clients = session
    res = clients["mona"].get(f"/api/projects/{project.pk}/stats.csv", {"group_by": "model"})
    assert res.status_code == 200 and res["Content-Type"].startswith("text/csv")
    assert "attachment" in res["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(res.content.decode())))
    assert [r["model"] for r in rows] == ["m1", "m2", "total"]
    for r in rows:
        expected = EXPECTED["total"] if r["model"] == "total" else EXPECTED["model"][r["model"]]
        for column, value in expected.items():
            assert r[column] == ("" if value is None else str(value)), (r["model"], column)


def test_stats_refuse_other_roles_and_bad_grouping(session):
    project, clients = session
    assert clients["mona"].get(f"/api/projects/{project.pk}/stats", {"group_by": "week"}).status_code == 400
    for name in ("alice", "rita"):
        assert clients[name].get(f"/api/projects/{project.pk}/stats").status_code == 403
        assert clients[name].get(f"/api/projects/{project.pk}/stats.csv").status_code == 403
    assert clients["owner"].get(f"/api/projects/{project.pk}/stats").status_code == 200
