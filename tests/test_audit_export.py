"""Audit exports: exactly the filter's entries, streamed, as CSV and NDJSON."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import event, text

from tests.support.profiles import create_profile
from webapp.extensions import db
from webapp.services import audit_export, spreadsheet_cells
from webapp.services.audit_filter import AuditFilter


@pytest.fixture
def entries(client):
    ada = create_profile(client, "Ada Lovelace", "ada@example.com", reason='=HYPERLINK("http://x")')
    client.patch(f"/api/v1/users/{ada['id']}", json={"name": '=HYPERLINK("http://evil")'})
    client.patch(f"/api/v1/users/{ada['id']}", json={"email": "ada@example.org"}, headers={})
    bob = create_profile(client, "Bob", "bob@example.com", reason="+1 -2 @3")
    client.delete(f"/api/v1/users/{bob['id']}")
    return {"ada": ada["id"], "bob": bob["id"]}


def csv_rows(response):
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_csv_export_is_an_attachment_with_every_column(auditor, entries, database):
    response = auditor.get("/audit/export.csv")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    assert response.headers["Cache-Control"] == "no-store"
    rows = csv_rows(response)
    assert list(rows[0]) == list(audit_export.CSV_COLUMNS)
    assert [int(row["id"]) for row in rows] == database.audit_ids_newest_first()
    stored = {row["id"]: row for row in database.audit()}
    for row in rows:
        entry = stored[int(row["id"])]
        assert int(row["user_id"]) == entry["user_id"]
        assert row["operation"] == entry["operation"]
        assert int(row["version"]) == entry["version"]
        assert row["changed_fields"] == ",".join(entry["changed_fields"])
        assert row["actor"] == "test-admin"
        assert row["channel"] == "api"
        assert json.loads(row["new_data"]) == entry["new_data"]
        if entry["previous_data"] is None:
            assert row["previous_data"] == ""
        else:
            assert json.loads(row["previous_data"]) == entry["previous_data"]


def test_csv_cells_cannot_run_as_formulas(auditor, entries):
    rows = csv_rows(auditor.get("/audit/export.csv"))
    reasons = {row["reason"] for row in rows}
    assert '\'=HYPERLINK("http://x")' in reasons
    assert "'+1 -2 @3" in reasons
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    # the snapshot cells are JSON objects, so a formula-like name inside them is inert
    renamed = next(row for row in rows if "evil" in row["new_data"])
    assert json.loads(renamed["new_data"])["name"] == '=HYPERLINK("http://evil")'


@pytest.mark.parametrize(
    "value", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x","y")']
)
def test_neutralise(value):
    assert spreadsheet_cells.neutralise(value) == "'" + value


@pytest.mark.parametrize("value", ["Ada", "", "1-2", "a=b", '{"name": "=x"}', "a; b", "x\ty"])
def test_neutralise_leaves_other_text_alone(value):
    assert spreadsheet_cells.neutralise(value) == value


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("ok;=cmd|' /C calc'!A0", "ok;'=cmd|' /C calc'!A0"),
        ("ok\t=cmd|' /C calc'!A0", "ok\t'=cmd|' /C calc'!A0"),
        ("a;+1;-2;@SUM(A1)", "a;'+1;'-2;'@SUM(A1)"),
        ("ok; =1+1", "ok;' =1+1"),
        (" =1+1", "' =1+1"),
        ("=a;=b", "'=a;'=b"),
    ],
)
def test_neutralise_formulas_after_a_separator(value, safe):
    """A spreadsheet splitting on ";" or tabs starts a new cell there."""
    assert spreadsheet_cells.neutralise(value) == safe


def test_no_cell_part_can_run_as_a_formula_whatever_the_separator(client, auditor):
    """Opened with ";" or tabs as the separator, every piece of every cell is
    text; the snapshots still read back as the same JSON."""
    name = "Ada;=cmd|' /C calc'!A0"
    created = create_profile(client, name, "ada@example.com", reason="ok;=cmd|' /C calc'!A0\t@x")
    text = auditor.get("/audit/export.csv").get_data(as_text=True)
    [row] = csv.DictReader(io.StringIO(text))
    assert row["reason"] == "ok;'=cmd|' /C calc'!A0\t'@x"
    assert json.loads(row["new_data"])["name"] == name
    assert ";" not in row["new_data"]
    for line in text.splitlines():
        for separator in (";", "\t"):
            for piece in line.split(separator)[1:]:
                assert not piece.lstrip(" ").startswith(("=", "+", "-", "@")), (line, piece)
    assert created["name"] == name


def test_ndjson_has_one_json_object_per_line(auditor, entries, database):
    response = auditor.get("/audit/export.ndjson")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "application/x-ndjson"
    assert "attachment" in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True)
    assert text.endswith("\n")
    objects = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(item, dict) for item in objects)
    assert [item["id"] for item in objects] == database.audit_ids_newest_first()
    assert objects[0]["actor"]["label"] == "test-admin"


@pytest.mark.parametrize(
    ("query", "condition"),
    [
        ("operation=update", "operation = 'update'"),
        ("user_id={ada}&field=email", "user_id = :ada AND 'email' = ANY(changed_fields)"),
        ("user=bob@example", "user_id = :bob"),
        ("actor=test-admin&operation=create&operation=delete", "operation IN ('create', 'delete')"),
        ("since=2999-01-01", "FALSE"),
    ],
)
def test_exports_hold_exactly_the_filter(auditor, entries, database, query, condition):
    query = query.format(**entries)
    expected = database.audit_ids_newest_first(condition, **entries)
    csv_ids = [int(row["id"]) for row in csv_rows(auditor.get("/audit/export.csv?" + query))]
    ndjson = auditor.get("/audit/export.ndjson?" + query).get_data(as_text=True)
    assert csv_ids == expected
    assert [json.loads(line)["id"] for line in ndjson.splitlines()] == expected


def test_page_links_to_exports_of_its_filter(auditor, entries):
    page = auditor.get("/audit?operation=update&field=name").get_data(as_text=True)
    assert 'href="/audit/export.csv?operation=update&amp;field=name"' in page
    assert 'href="/audit/export.ndjson?operation=update&amp;field=name"' in page


def test_export_of_ambiguous_user_is_400(auditor, entries):
    response = auditor.get("/audit/export.csv?user=example")
    assert response.status_code == 400
    assert "exactly one profile" in response.get_data(as_text=True)


@pytest.mark.parametrize("kind", ["csv", "ndjson"])
def test_export_comes_in_chunks_of_whole_entries(app_context, client, entries, database, kind):
    """Large chunks for speed, each ending with an entry, and the count of each told."""
    counts = []
    lines = audit_export.csv_lines if kind == "csv" else audit_export.ndjson_lines
    chunks = list(
        lines(AuditFilter(operations=("update",)), batch_size=2, on_entries=counts.append)
    )
    updates = len(database.audit_ids_newest_first("operation = 'update'"))
    header = 1 if kind == "csv" else 0
    assert len(chunks) == header + -(-updates // 2)
    assert counts == [2] * (updates // 2) + ([updates % 2] if updates % 2 else [])
    ending = b"\r\n" if kind == "csv" else b"\n"
    assert all(chunk.endswith(ending) for chunk in chunks)


def test_export_by_username_reads_entries_of_that_account(app_context, entries, database):
    text = b"".join(audit_export.ndjson_lines(AuditFilter(actor_label="TEST-ADMIN")))
    ids = [json.loads(line)["id"] for line in text.splitlines()]
    assert ids == database.audit_ids_newest_first("actor_label = 'test-admin'")
    assert ids


def test_export_by_username_looks_the_account_up_once(app_context, entries, database):
    statements = []

    def record(connection, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        # Case does not matter, as on the timeline. Chunks of two entries: the
        # look-up must not be repeated per chunk.
        text = b"".join(
            audit_export.ndjson_lines(AuditFilter(actor_label="TEST-ADMIN"), batch_size=2)
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", record)

    ids = [json.loads(line)["id"] for line in text.splitlines()]
    assert len(ids) >= 3
    assert ids == database.audit_ids_newest_first("actor_label = 'test-admin'")
    assert len([s for s in statements if "FROM staff" in s]) == 1


def test_export_file_names_carry_the_filter(auditor, entries):
    query = f"user_id={entries['ada']}&operation=update&since=2026-11-01&until=2026-11-30"
    named = auditor.get("/audit/export.csv?" + query).headers["Content-Disposition"]
    assert (
        named
        == f'attachment; filename="audit_user-{entries["ada"]}_update_2026-11-01_2026-11-30.csv"'
    )
    everything = auditor.get("/audit/export.ndjson").headers["Content-Disposition"]
    assert everything == 'attachment; filename="audit_all.ndjson"'
    by_actor = auditor.get("/audit/export.csv?actor=cli:ops&field=email&operation=create,delete")
    assert by_actor.headers["Content-Disposition"] == (
        'attachment; filename="audit_create_delete_field-email_actor-cli-ops.csv"'
    )


def test_csv_for_excel_starts_with_a_byte_order_mark(auditor, entries):
    plain = auditor.get("/audit/export.csv").get_data()
    excel = auditor.get("/audit/export.csv?excel=1")
    assert excel.headers["Content-Disposition"] == 'attachment; filename="audit_all_excel.csv"'
    assert excel.get_data() == audit_export.EXCEL_BOM + plain
    assert not plain.startswith(audit_export.EXCEL_BOM)


def test_long_csv_has_one_row_per_changed_field(auditor, entries, database):
    response = auditor.get(f"/audit/export.csv?form=long&user_id={entries['ada']}")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].endswith(f'_user-{entries["ada"]}_long.csv"')
    rows = csv_rows(response)
    assert list(rows[0]) == list(audit_export.LONG_CSV_COLUMNS)
    stored = database.rows(
        "SELECT id, changed_fields FROM user_audit WHERE user_id = :ada "
        "ORDER BY timestamp DESC, id DESC",
        ada=entries["ada"],
    )
    assert [(int(row["entry"]), row["field"]) for row in rows] == [
        (entry["id"], field) for entry in stored for field in entry["changed_fields"]
    ]
    renamed = next(row for row in rows if row["field"] == "name" and row["operation"] == "update")
    # Values are text, neutralised as in the wide form.
    assert (renamed["before"], renamed["after"]) == ("Ada Lovelace", '\'=HYPERLINK("http://evil")')
    created = next(row for row in rows if row["operation"] == "create" and row["field"] == "email")
    assert (created["before"], created["after"]) == ("", "ada@example.com")
    assert created["reason"] == '\'=HYPERLINK("http://x")'


def test_an_unknown_export_form_is_400(auditor, entries):
    response = auditor.get("/audit/export.csv?form=tall")
    assert response.status_code == 400
    assert "form: must be wide or long" in response.get_data(as_text=True)


def test_page_links_to_excel_and_long_exports(auditor, entries):
    page = auditor.get("/audit?operation=update").get_data(as_text=True)
    assert 'href="/audit/export.csv?operation=update&amp;excel=1"' in page
    assert 'href="/audit/export.csv?operation=update&amp;form=long&amp;excel=1"' in page


@pytest.mark.parametrize("kind", ["csv", "ndjson"])
def test_an_export_closed_early_leaves_the_connection_usable(app_context, client, entries, kind):
    """A download cancelled halfway closes the export: its COPY ends and the same
    transaction goes on (the connection is not left waiting for the COPY)."""
    lines = audit_export.csv_lines if kind == "csv" else audit_export.ndjson_lines
    chunks = lines(AuditFilter(), batch_size=1)
    next(chunks)
    next(chunks)
    chunks.close()
    assert db.session.execute(text("SELECT count(*) FROM user_audit")).scalar_one() >= 5
