"""The stack's floor for ``bench/http_load.py``: Flask + psycopg and nothing else.

Each endpoint sends the same SQL as the application's request it stands for
(the same statement shape, one statement, no authentication, no session, no
ORM, no audit) and answers with output of about the same size, so that the
difference between the two is the application's own cost:

- ``GET /users/<id>``: one profile as JSON, with its ``ETag``;
- ``GET /users``: the first page of 50 active profiles as JSON;
- ``PATCH /users/<id>``: ``UPDATE ... WHERE id AND version ... RETURNING`` on a
  copy of the profiles without triggers (``bench_floor_users``), ``If-Match``
  required, 412 when the version is not the current one;
- ``GET /audit``: the newest 25 audit entries rendered by a small Jinja template
  (each entry with the diff of its snapshots), like the timeline page;
- ``GET /audit.json``: the newest 50 audit entries as JSON, like ``/api/v1/audit``.

The same-work floor, under ``/work/``: each of the GETs above after the same
authentication as the application's API (the bearer token's SHA-256 looked up
in one SELECT joined to its account, refusing revoked and expired tokens and
deactivated accounts; 401 otherwise) and with the application's query of that
request (the timeline's entries joined to the API token they came through):

- ``GET /work/users/<id>``, ``GET /work/users``, ``GET /work/audit.json``;
- ``GET /work/audit``: the timeline page of the application's query, rendered
  by the floor's template above (the application's template needs its whole
  request context: CSRF, session, URL building).

The bare endpoints stay as the reference of Flask + psycopg alone.

One psycopg connection per worker process, opened on the worker's first
request, in autocommit mode (a read is one round trip). Served by gunicorn,
started by ``bench/http_load.py``::

    FLOOR_DATABASE_URL=postgresql://... gunicorn -w 4 -k sync bench.floor_app:app
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from typing import Any

import psycopg
from flask import Flask, Response, jsonify, request
from psycopg.rows import dict_row

#: the copy of ``users`` the floor's updates write to (no audit trigger on it)
FLOOR_USERS = "bench_floor_users"
TIMELINE_PAGE = 25
API_PAGE = 50

USER_COLUMNS = "id, name, email, created_at, updated_at, deleted_at, version"
AUDIT_COLUMNS = (
    "id, user_id, operation, timestamp, previous_data, new_data, changed_fields, version, "
    "reason, actor_id, actor_label, channel, channel_detail, remote_addr, request_id, "
    "unattributed"
)
GET_USER = f"SELECT {USER_COLUMNS} FROM users WHERE id = %s"
LIST_USERS = f"SELECT {USER_COLUMNS} FROM users WHERE deleted_at IS NULL ORDER BY id LIMIT %s"
UPDATE_USER = (
    f"UPDATE {FLOOR_USERS} SET name = %s, updated_at = now(), "
    f"version = version + 1 WHERE id = %s AND version = %s RETURNING {USER_COLUMNS}"
)
LIST_ENTRIES = f'SELECT {AUDIT_COLUMNS} FROM user_audit ORDER BY "timestamp" DESC, id DESC LIMIT %s'
# The application's own statements for the same requests.
AUTHENTICATE = (
    "SELECT api_tokens.id, api_tokens.staff_id, staff.username, staff.role "
    "FROM api_tokens JOIN staff ON staff.id = api_tokens.staff_id "
    "WHERE api_tokens.token_hash = %s AND api_tokens.revoked_at IS NULL "
    "AND (api_tokens.expires_at IS NULL OR api_tokens.expires_at > now()) AND staff.active"
)
LIST_ENTRIES_WITH_TOKENS = (
    f"SELECT {', '.join('user_audit.' + column for column in AUDIT_COLUMNS.split(', '))}, "
    "user_audit.client_request_id, user_audit.token_id, api_tokens.name AS token_name, "
    "api_tokens.created_by_id AS token_created_by_id, "
    "api_tokens.created_by_label AS token_created_by "
    "FROM user_audit LEFT OUTER JOIN api_tokens ON api_tokens.id = user_audit.token_id "
    'ORDER BY user_audit."timestamp" DESC, user_audit.id DESC LIMIT %s'
)

app = Flask(__name__)
app.json.sort_keys = False  # type: ignore[attr-defined]

# Roughly the timeline page: a head and a filter form, then each entry with its
# attribution, both snapshots key by key (changed keys marked) and its links.
# No character-level diff: the floor renders the rows, not the app's features;
# http_load.py prints both pages' sizes side by side.
TIMELINE = app.jinja_env.from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Audit timeline · Profile Audit</title>
<link rel="stylesheet" href="/static/app.css"><script src="/static/htmx.min.js" defer></script>
</head>
<body><header class="site-header"><nav aria-label="Main">
<a href="/">Profiles</a> <a href="/audit" aria-current="page">Audit timeline</a>
<a href="/security-events">Security events</a> <a href="/logout">Sign out</a></nav></header>
<main id="main"><h1>Audit timeline</h1>
<form class="filters" method="get" action="/audit">
{% for name in ["user", "operation", "since", "until", "actor", "field"] %}
<p class="field"><label for="f-{{ name }}">{{ name | capitalize }}</label>
<input id="f-{{ name }}" name="{{ name }}" value="" autocomplete="off"></p>
{% endfor %}<p><button class="button">Filter</button> <a href="/audit">Clear</a></p></form>
<p class="exports">Export this filter: <a href="/audit/export.csv" download>CSV</a> ·
<a href="/audit/export.ndjson" download>NDJSON</a></p>
<ol class="entries" id="entries" aria-label="Audit entries, newest first">
{% for entry in entries %}
<li class="entry" id="entry-{{ entry.id }}">
<div class="entry-head"><span class="op op-{{ entry.operation }}">{{ entry.operation }}</span>
<a class="entry-user" href="/users/{{ entry.user_id }}">#{{ entry.user_id }}
{{ entry.new_data.get("name", "") }}</a>
<span class="tag">v{{ entry.version }}</span>
<time datetime="{{ entry.timestamp }}" data-relative>{{ entry.timestamp }}</time></div>
<p class="entry-meta"><span class="entry-actor">by
<strong>{{ entry.actor_label or "unknown" }}</strong></span>
<span class="entry-channel">via {{ entry.channel or "unknown" }}</span>
{% if entry.request_id %} · request <code>{{ entry.request_id }}</code>{% endif %}</p>
{% if entry.reason %}<p class="entry-reason"><span class="muted">Reason:</span>
{{ entry.reason }}</p>{% endif %}
<div class="diff-wrap"><table class="json-diff">
<caption class="visually-hidden">Profile #{{ entry.user_id }} before and after entry
{{ entry.id }}</caption>
<thead><tr><th scope="col">Previous</th><th scope="col">New</th></tr></thead><tbody>
{% for line in entry.lines %}
<tr class="diff-{{ line.status }}" data-key="{{ line.key }}">
<td class="diff-before"><code class="diff-line">"{{ line.key }}": {{ line.before }}</code></td>
<td class="diff-after"><code class="diff-line">"{{ line.key }}": {{ line.after }}</code></td></tr>
{% endfor %}</tbody></table></div>
<p class="entry-links">{% if entry.version > 1 %}
<a href="/audit/compare?user_id={{ entry.user_id }}&amp;from={{ entry.version - 1 }}&amp;to=
{{- entry.version }}">Compare with v{{ entry.version - 1 }}</a> · {% endif %}
<a href="/audit/as-of?user_id={{ entry.user_id }}&amp;at={{ entry.timestamp }}">Profile as of
this moment</a></p></li>
{% endfor %}
{% if next_cursor %}<li class="load-more"><a class="button" href="/audit?cursor=
{{- next_cursor }}">Load more</a></li>{% endif %}
</ol></main><footer class="site-footer">Profile Audit</footer></body></html>
"""
)

_connection: psycopg.Connection[dict[str, Any]] | None = None
_connection_pid = 0


def connection() -> psycopg.Connection[dict[str, Any]]:
    """This worker's connection, opened after the fork (never shared with the master)."""
    global _connection, _connection_pid
    if _connection is None or _connection_pid != os.getpid():
        _connection = psycopg.connect(
            os.environ["FLOOR_DATABASE_URL"],
            autocommit=True,
            row_factory=dict_row,
            options="-c timezone=UTC",
        )
        _connection_pid = os.getpid()
    return _connection


def close_connection() -> None:
    """Close this process's connection (for in-process use; workers just exit)."""
    global _connection
    if _connection is not None:
        _connection.close()
        _connection = None


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, as the application writes times."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def user_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "email": row["email"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "deleted_at": iso(row["deleted_at"]),
        "version": row["version"],
    }


def entry_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "user_id": row["user_id"],
        "operation": row["operation"],
        "timestamp": iso(row["timestamp"]),
        "version": row["version"],
        "changed_fields": row["changed_fields"],
        "previous_data": row["previous_data"],
        "new_data": row["new_data"],
        "reason": row["reason"],
        "actor": {
            "id": row["actor_id"],
            "label": row["actor_label"],
            "channel": row["channel"],
            "channel_detail": row["channel_detail"],
        },
        "remote_addr": row["remote_addr"],
        "request_id": row["request_id"],
        "unattributed": row["unattributed"],
    }


def time_id_cursor(row: dict[str, Any]) -> str:
    # Not the application's opaque encoding, only a value of similar size.
    return f"{iso(row['timestamp'])}_{row['id']}"


def profile_response(row: dict[str, Any]) -> Response:
    response = jsonify(user_json(row))
    response.headers["ETag"] = f'"{row["version"]}"'
    return response


def problem(status: int, detail: str) -> Response:
    response = jsonify(status=status, detail=detail)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


@app.get("/users/<int:user_id>")
def get_user(user_id: int) -> Response:
    row = connection().execute(GET_USER, (user_id,)).fetchone()
    if row is None:
        return problem(404, f"There is no profile with id {user_id}.")
    return profile_response(row)


@app.get("/users")
def list_users() -> Response:
    rows = connection().execute(LIST_USERS, (API_PAGE + 1,)).fetchall()
    next_cursor = str(rows[API_PAGE - 1]["id"]) if len(rows) > API_PAGE else None
    return jsonify(items=[user_json(row) for row in rows[:API_PAGE]], next_cursor=next_cursor)


@app.patch("/users/<int:user_id>")
def patch_user(user_id: int) -> Response:
    expected = request.headers.get("If-Match", "").strip('"')
    body = request.get_json(silent=True)
    name = body.get("name") if isinstance(body, dict) else None
    if not expected.isdigit() or not isinstance(name, str):
        return problem(400, "Send If-Match and a JSON object with a name.")
    row = connection().execute(UPDATE_USER, (name, user_id, int(expected))).fetchone()
    if row is None:
        return problem(412, f"Profile {user_id} is not at version {expected}.")
    return profile_response(row)


def diff_lines(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Both snapshots key by key, as JSON values, each marked changed or the same."""
    before, after = row["previous_data"] or {}, row["new_data"] or {}
    return [
        {
            "key": key,
            "before": json.dumps(before.get(key)),
            "after": json.dumps(after.get(key)),
            "status": "same" if before.get(key) == after.get(key) else "changed",
        }
        for key in {**before, **after}
    ]


@app.get("/audit")
def timeline_page() -> str:
    rows = connection().execute(LIST_ENTRIES, (TIMELINE_PAGE + 1,)).fetchall()
    entries = [
        {**row, "timestamp": iso(row["timestamp"]), "lines": diff_lines(row)}
        for row in rows[:TIMELINE_PAGE]
    ]
    next_cursor = time_id_cursor(rows[TIMELINE_PAGE - 1]) if len(rows) > TIMELINE_PAGE else None
    return TIMELINE.render(entries=entries, next_cursor=next_cursor)


@app.get("/audit.json")
def timeline_json() -> Response:
    rows = connection().execute(LIST_ENTRIES, (API_PAGE + 1,)).fetchall()
    next_cursor = time_id_cursor(rows[API_PAGE - 1]) if len(rows) > API_PAGE else None
    return jsonify(items=[entry_json(row) for row in rows[:API_PAGE]], next_cursor=next_cursor)


# --------------------------------------------------------------------------- same work


def authenticated() -> dict[str, Any] | None:
    """The bearer token's account, by the application's rule, in one SELECT; None if refused."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    digest = hashlib.sha256(secret.strip().encode()).hexdigest()
    return connection().execute(AUTHENTICATE, (digest,)).fetchone()


def refused() -> Response:
    return problem(401, "A valid API token is required.")


def entry_with_token_json(row: dict[str, Any]) -> dict[str, Any]:
    entry = entry_json(row)
    entry["client_request_id"] = row["client_request_id"]
    token = None
    if row["token_id"] is not None:
        created_by = None
        if row["token_created_by"] is not None:
            created_by = {"id": row["token_created_by_id"], "label": row["token_created_by"]}
        token = {"id": row["token_id"], "name": row["token_name"], "created_by": created_by}
    entry["actor"]["token"] = token
    return entry


@app.get("/work/users/<int:user_id>")
def work_get_user(user_id: int) -> Response:
    if authenticated() is None:
        return refused()
    return get_user(user_id)


@app.get("/work/users")
def work_list_users() -> Response:
    if authenticated() is None:
        return refused()
    return list_users()


@app.get("/work/audit")
def work_timeline_page() -> Response | str:
    if authenticated() is None:
        return refused()
    rows = connection().execute(LIST_ENTRIES_WITH_TOKENS, (TIMELINE_PAGE + 1,)).fetchall()
    entries = [
        {**row, "timestamp": iso(row["timestamp"]), "lines": diff_lines(row)}
        for row in rows[:TIMELINE_PAGE]
    ]
    next_cursor = time_id_cursor(rows[TIMELINE_PAGE - 1]) if len(rows) > TIMELINE_PAGE else None
    return TIMELINE.render(entries=entries, next_cursor=next_cursor)


@app.get("/work/audit.json")
def work_timeline_json() -> Response:
    if authenticated() is None:
        return refused()
    rows = connection().execute(LIST_ENTRIES_WITH_TOKENS, (API_PAGE + 1,)).fetchall()
    next_cursor = time_id_cursor(rows[API_PAGE - 1]) if len(rows) > API_PAGE else None
    return jsonify(
        items=[entry_with_token_json(row) for row in rows[:API_PAGE]], next_cursor=next_cursor
    )
