"""``GET /api/v1/audit/export``: the timeline's filters, roles, safe CSV cells, streaming."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from tests.support.profiles import post_profile
from webapp.api import audit as audit_api

PROBLEM = "application/problem+json"
FORMULA_STARTS = ("=", "+", "-", "@")


@pytest.fixture
def history(client) -> dict[str, int]:
    """Two profiles with a few changes each, one named like a spreadsheet formula."""
    ada = post_profile(client, "Ada", "ada@example.com")
    grace = post_profile(client, "Grace", "grace@example.com")
    client.patch(f"/api/v1/users/{ada}", json={"name": "=cmd()", "reason": "=cmd()"})
    client.patch(
        f"/api/v1/users/{grace}", json={"email": "hopper@example.com", "reason": "@SUM(1)"}
    )
    client.delete(f"/api/v1/users/{grace}")
    return {"ada": ada, "grace": grace}


def exported_ids(client, query: str) -> list[int]:
    response = client.get("/api/v1/audit/export?format=ndjson&" + query)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/x-ndjson"
    return [json.loads(line)["id"] for line in response.get_data(as_text=True).splitlines()]


def timeline_ids(client, query: str) -> list[int]:
    response = client.get("/api/v1/audit?limit=200&" + query)
    assert response.status_code == 200, response.get_json()
    return [entry["id"] for entry in response.get_json()["items"]]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "operation=update",
        "operation=update,delete&field=email",
        "operation=create&operation=delete",
        "actor=test-admin",
        "since=2000-01-01&until=2999-12-31",
        "until=2000-01-01",
    ],
)
def test_the_export_holds_what_the_timeline_lists(client, history, query):
    assert exported_ids(client, query) == timeline_ids(client, query)


def test_the_export_filters_by_profile(client, history):
    ada = history["ada"]
    ids = exported_ids(client, f"user_id={ada}")
    assert len(ids) == 2
    assert ids == timeline_ids(client, f"user_id={ada}")


def test_each_entry_is_in_the_api_shape(client, history):
    response = client.get("/api/v1/audit/export?format=ndjson&operation=create")
    first = json.loads(response.get_data(as_text=True).splitlines()[0])
    listed = client.get("/api/v1/audit?operation=create").get_json()["items"][0]
    assert first == listed


@pytest.mark.parametrize(("role", "status"), [("auditor", 200), ("admin", 200), ("support", 403)])
def test_auditors_and_admins_may_export_support_may_not(staff_factory, history, role, status):
    response = staff_factory.client(role).get("/api/v1/audit/export?format=csv")
    assert response.status_code == status
    if status != 200:
        assert response.mimetype == PROBLEM


def test_an_export_needs_a_token(anonymous_client, history):
    response = anonymous_client.get("/api/v1/audit/export")
    assert response.status_code == 401
    assert response.mimetype == PROBLEM


def test_formulas_come_out_neutralised_in_csv(client, history):
    response = client.get("/api/v1/audit/export?format=csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    # Named after the filter, as the dashboard's and the command line's files are.
    assert response.headers["Content-Disposition"] == 'attachment; filename="audit_all.csv"'
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:4] == ["id", "timestamp", "user_id", "operation"]
    cells = [cell for row in rows[1:] for cell in row]
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
    # Reasons are cells of their own; names are inside the snapshots' JSON cells.
    assert "'=cmd()" in cells
    assert "'@SUM(1)" in cells
    assert any('"name":"=cmd()"' in cell.replace(" ", "") for cell in cells)


def test_the_file_is_named_after_the_filter(client, history):
    named = client.get(f"/api/v1/audit/export?format=ndjson&user_id={history['ada']}")
    assert named.get_data(as_text=True)
    assert named.headers["Content-Disposition"] == (
        f'attachment; filename="audit_user-{history["ada"]}.ndjson"'
    )


def test_csv_is_the_default_format(client, history):
    response = client.get("/api/v1/audit/export")
    assert response.mimetype == "text/csv"
    assert response.get_data(as_text=True).startswith("id,timestamp,")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("format=xlsx", "format"),
        ("format=csv&format=ndjson", "format"),
        ("since=never", "since"),
        ("since=2026-01-02&until=2026-01-01", "until"),
        ("operation=rename", "operation"),
        ("user_id=abc", "user_id"),
        ("user_id=1&user_id=2", "user_id"),
        ("actor=0", "actor"),
        ("cursor=abc", "cursor"),  # an export has no pages
        ("limit=1", "limit"),
        ("colour=blue", "colour"),
    ],
)
def test_bad_filters_are_400_problems_and_record_nothing(
    client, history, database, query, parameter
):
    response = client.get("/api/v1/audit/export?" + query)
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    assert parameter in response.get_json()["errors"]
    assert (
        database.scalar("SELECT count(*) FROM security_events WHERE event = 'audit_exported'") == 0
    )


def test_an_export_is_a_security_event_naming_its_filter(staff_factory, history, database):
    auditor = staff_factory.client("auditor", "audrey")
    assert auditor.get("/api/v1/audit/export?format=ndjson&operation=update").status_code == 200
    assert auditor.head("/api/v1/audit/export").status_code == 200  # a HEAD exports nothing
    exports = database.rows(
        "SELECT actor_label, details FROM security_events "
        "WHERE event = 'audit_exported' ORDER BY id"
    )
    assert [e["actor_label"] for e in exports] == ["audrey"]
    assert exports[0]["details"] == {"format": "ndjson", "filter": "operation=update"}


def test_the_first_lines_leave_before_the_last_row_is_read(client, history, monkeypatch):
    media_type, lines = audit_api.EXPORT_FORMATS["csv"]
    read_to_the_end = []

    def watched(audit_filter):
        yield from lines(audit_filter)
        read_to_the_end.append(True)

    monkeypatch.setitem(audit_api.EXPORT_FORMATS, "csv", (media_type, watched))
    response = client.get("/api/v1/audit/export?format=csv", buffered=False)
    chunks = iter(response.response)
    first = next(chunks)
    assert first.startswith(b"id,timestamp,")
    assert read_to_the_end == []
    rest = b"".join(chunks)
    response.close()
    assert read_to_the_end == [True]
    assert (first + rest).count(b"\r\n") == 1 + 5


def test_the_export_service_imports_before_the_api():
    """The command line imports the export service first; the API's table of
    formats must not need it complete by then."""
    subprocess.run([sys.executable, "-c", "import webapp.services.audit_export"], check=True)
