"""The OpenAPI document: valid OpenAPI 3.1, in step with the routes, and true.

Real responses of every operation, and of every error case a test can
provoke, are checked against the document: the status must be documented, the
content type, the required headers and the body must match. Response schemas
list every member and allow no others, so a changed response shape fails here
until the document says so too.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.api import PROBLEM, answer_without_a_database
from tests.support.profiles import post_profile
from tests.support.staff import StaffFactory
from webapp import create_app
from webapp.api.openapi import build_document

PREFIX = "/api/v1"
DOCUMENT_URI = "urn:profile-audit:openapi"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")

format_checker = jsonschema.FormatChecker()


@format_checker.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    """RFC 3339, checked here so no optional jsonschema extra is needed."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


# --------------------------------------------------------------------------
# The document


@pytest.fixture(scope="module")
def spec(app: Flask) -> dict[str, Any]:
    response = app.test_client().get(PREFIX + "/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_the_document_is_public_valid_openapi_3_1(anonymous_client):
    response = anonymous_client.get(PREFIX + "/openapi.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document = response.get_json()
    OpenAPIV31SpecValidator(document).validate()
    assert document["openapi"].startswith("3.1.")
    assert document["jsonSchemaDialect"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_schema_is_valid_json_schema_2020_12(spec):
    for schema in spec["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_document_follows_the_configured_page_sizes(app):
    config = {**app.config, "PAGE_SIZE_DEFAULT": 10, "PAGE_SIZE_MAX": 30}
    document = build_document(app, config)
    [limit] = [
        p for p in document["paths"]["/users"]["get"]["parameters"] if p.get("name") == "limit"
    ]
    assert limit["schema"]["maximum"] == 30
    assert limit["schema"]["default"] == 10


def _rule_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_every_api_route_is_documented_and_nothing_else(app, spec):
    routes = set()
    outside_v1 = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api"):
            continue
        if not rule.rule.startswith(PREFIX + "/"):
            outside_v1.add(rule.rule)
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((_rule_path(rule.rule.removeprefix(PREFIX)), method.lower()))
    documented = {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }

    assert routes == documented
    # The only page under /api that is not the API itself: its rendering.
    assert outside_v1 == {"/api/docs"}


def test_only_the_document_is_public(app, spec):
    """An operation without a permission is public, in the document and to the token
    check alike: only the description may be one."""
    assert spec["security"] == [{"bearerAuth": []}]
    public = [
        op["operationId"]
        for item in spec["paths"].values()
        for key, op in item.items()
        if key != "parameters" and op.get("security") == []
    ]
    assert public == ["getOpenApiDocument"]
    readable_without_token = {
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint.startswith("api.") and getattr(view, "public_api", False)
    }
    assert readable_without_token == {"api.openapi_document"}


def test_an_undeclared_api_route_fails_the_document(app):
    """A view without ``@documented`` would be missing from the document: refused."""
    undeclared = create_app(dict(app.config))
    undeclared.add_url_rule("/api/v1/undeclared", "api.undeclared", lambda: "")
    with pytest.raises(LookupError, match=r"^api\.undeclared has no @documented"):
        build_document(undeclared)


def test_every_declared_query_parameter_is_read_by_its_view(spec, world):
    """The document's query parameters are the ones the views accept, and no others."""
    checked = 0
    for path, item in spec["paths"].items():
        if "{" in path or "get" not in item:
            continue
        op = item["get"]
        for parameter in (_resolve(spec, p) for p in op["parameters"]):
            if parameter["in"] != "query":
                continue
            response = world.admin.get(f"{PREFIX}{path}?{parameter['name']}=")
            response.close()  # an export streams: end it here
            errors = (response.get_json(silent=True) or {}).get("errors", {})
            assert "is not a known query parameter" not in errors.get(parameter["name"], [])
            checked += 1
        unknown = world.admin.get(f"{PREFIX}{path}?undeclared=1")
        assert unknown.status_code == 400
        assert unknown.get_json()["errors"] == {"undeclared": ["is not a known query parameter"]}
    assert checked >= 20


def test_examples_match_their_schemas(spec):
    checked = 0
    for item in spec["paths"].values():
        for key, op in item.items():
            if key == "parameters":
                continue
            pieces = [op.get("requestBody", {}), *op["responses"].values()]
            for piece in pieces:
                for media in piece.get("content", {}).values():
                    if "example" in media:
                        validator(spec, media["schema"]).validate(media["example"])
                        checked += 1
    assert checked >= 6


# --------------------------------------------------------------------------
# Checking a real response against the document


def validator(spec: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A 2020-12 validator for ``schema`` whose ``#/...`` refs resolve in ``spec``."""
    # The schema is placed inside the document's resource, so that its
    # ``#/components/...`` refs resolve against the document.
    resource = Resource({**spec, "$defs": {"checked": schema}}, DRAFT202012)
    registry = Registry().with_resource(DOCUMENT_URI, resource)
    return jsonschema.Draft202012Validator(
        {"$ref": f"{DOCUMENT_URI}#/$defs/checked"},
        registry=registry,
        format_checker=format_checker,
    )


def _operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    item = spec["paths"].get(path)
    assert item is not None, f"{path} is not in the document"
    assert method.lower() in item, f"{method} {path} is not in the document"
    return item[method.lower()]


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def conforms(spec: dict[str, Any], method: str, path: str, response) -> dict[str, Any]:
    """Assert ``response`` is what the document promises for ``method path``.

    Returns the response's documented description, for further checks.
    """
    op = _operation(spec, method, path)
    status = str(response.status_code)
    assert status in op["responses"], (
        f"{method} {path} answered {status}, which is not documented: "
        f"{response.get_data(as_text=True)[:500]}"
    )
    documented = _resolve(spec, op["responses"][status])

    for name, header in documented.get("headers", {}).items():
        header = _resolve(spec, header)
        value = response.headers.get(name)
        if header.get("required"):
            assert value is not None, f"{method} {path} {status}: no {name} header"
        if value is not None:
            validator(spec, header["schema"]).validate(value)

    content = documented.get("content")
    if not content:
        assert response.get_data() == b"", f"{method} {path} {status} has an undocumented body"
        return documented
    assert response.mimetype in content, (
        f"{method} {path} {status}: {response.mimetype} is not among {sorted(content)}"
    )
    # An export's body is text (CSV, NDJSON); everything else is JSON.
    body = response.get_json() if response.is_json else response.get_data(as_text=True)
    validator(spec, content[response.mimetype]["schema"]).validate(body)
    if response.mimetype == PROBLEM:
        assert body["request_id"] == response.headers["X-Request-ID"]
    return documented


def test_the_checker_notices_a_changed_response_shape(spec, client):
    """The schemas are strict: a new, missing or retyped member fails."""
    created = client.post("/api/v1/users", json={"name": "Ada", "email": "ada@example.com"})
    conforms(spec, "POST", "/users", created)
    schema = spec["paths"]["/users"]["post"]["responses"]["201"]["content"]["application/json"][
        "schema"
    ]
    good = created.get_json()
    check = validator(spec, schema)
    for bad in (
        {**good, "nickname": "Ada"},
        {k: v for k, v in good.items() if k != "updated_at"},
        {**good, "version": "1"},
        {**good, "created_at": "yesterday"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            check.validate(bad)
    problem_schema = spec["paths"]["/users"]["post"]["responses"]["409"]["content"][PROBLEM][
        "schema"
    ]
    duplicate = client.post("/api/v1/users", json={"name": "Ada", "email": "ada@example.com"})
    conforms(spec, "POST", "/users", duplicate)
    with pytest.raises(jsonschema.ValidationError):
        validator(spec, problem_schema).validate({**duplicate.get_json(), "status": 400})
    with pytest.raises(jsonschema.ValidationError):
        validator(spec, problem_schema).validate({**duplicate.get_json(), "trace": "..."})


# --------------------------------------------------------------------------
# Real calls: every operation, every error case that can be provoked


@dataclass
class World:
    """What the calls act on: an admin client, role clients, and some profiles."""

    app: Flask
    admin: FlaskClient
    staff_factory: StaffFactory
    active: int
    deleted: int
    other: int
    clients: dict[str | None, FlaskClient] = field(default_factory=dict)

    def as_role(self, role: str | None) -> FlaskClient:
        if role not in self.clients:
            self.clients[role] = self.staff_factory.client(role)
        return self.clients[role]


@pytest.fixture
def world(app, client, staff_factory) -> World:
    active = post_profile(client, "Ada Lovelace", "ada@example.com")
    other = post_profile(client, "Grace Hopper", "grace@example.com")
    deleted = post_profile(client, "Gone", "gone@example.com")
    assert client.delete(f"/api/v1/users/{deleted}").status_code == 204
    return World(app, client, staff_factory, active, deleted, other)


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # as in the document
    status: int
    call: Callable[[World], Any]
    id: str

    def __str__(self) -> str:
        return self.id


def _json(text: str) -> dict[str, str]:
    return {"data": text, "content_type": "application/json"}


HUGE = {"data": '{"name": "' + "x" * 100_000 + '"}', "content_type": "application/json"}


def _case(method: str, path: str, status: int, call: Callable[[World], Any], why: str) -> Any:
    return pytest.param(Case(method, path, status, call, why), id=f"{method} {path} {status} {why}")


def _verified(w: World) -> Any:
    """The verification endpoint after a `flask audit verify` run: a full record."""
    result = w.app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    return w.admin.get("/api/v1/audit/verify")


U = "/users/{user_id}"

CASES = [
    # The document itself.
    _case(
        "GET",
        "/openapi.json",
        200,
        lambda w: w.as_role(None).get("/api/v1/openapi.json"),
        "anonymous",
    ),
    _case(
        "GET",
        "/openapi.json",
        400,
        lambda w: w.as_role(None).get("/api/v1/openapi.json?v=2"),
        "unknown parameter",
    ),
    # Listing profiles.
    _case("GET", "/users", 200, lambda w: w.admin.get("/api/v1/users?limit=1"), "first page"),
    _case(
        "GET",
        "/users",
        200,
        lambda w: w.admin.get("/api/v1/users?q=ada&include_deleted=true"),
        "search",
    ),
    _case(
        "GET", "/users", 400, lambda w: w.admin.get("/api/v1/users?sort=name"), "unknown parameter"
    ),
    _case("GET", "/users", 400, lambda w: w.admin.get("/api/v1/users?limit=0"), "bad limit"),
    _case("GET", "/users", 400, lambda w: w.admin.get("/api/v1/users?cursor=%25%25"), "bad cursor"),
    _case("GET", "/users", 401, lambda w: w.as_role(None).get("/api/v1/users"), "no token"),
    _case(
        "GET",
        "/users",
        401,
        lambda w: w.as_role(None).get("/api/v1/users", headers={"Authorization": "Bearer pa_nope"}),
        "unknown token",
    ),
    # Creating.
    _case(
        "POST",
        "/users",
        201,
        lambda w: w.admin.post(
            "/api/v1/users", json={"name": "New", "email": "new@example.com", "reason": "signup"}
        ),
        "created",
    ),
    _case(
        "POST", "/users", 400, lambda w: w.admin.post("/api/v1/users", json={}), "missing fields"
    ),
    _case(
        "POST",
        "/users",
        400,
        lambda w: w.admin.post(
            "/api/v1/users", json={"name": "A", "email": "a@example.com", "role": "x"}
        ),
        "unknown field",
    ),
    _case(
        "POST",
        "/users",
        400,
        lambda w: w.admin.post("/api/v1/users", **_json("{")),
        "malformed JSON",
    ),
    _case(
        "POST",
        "/users",
        400,
        lambda w: w.admin.post("/api/v1/users", json={"name": "A", "email": "not an email"}),
        "bad email",
    ),
    _case(
        "POST",
        "/users",
        401,
        lambda w: w.as_role(None).post(
            "/api/v1/users", json={"name": "A", "email": "a@example.com"}
        ),
        "no token",
    ),
    _case(
        "POST",
        "/users",
        403,
        lambda w: w.as_role("auditor").post(
            "/api/v1/users", json={"name": "A", "email": "a@example.com"}
        ),
        "auditor",
    ),
    _case(
        "POST",
        "/users",
        409,
        lambda w: w.admin.post("/api/v1/users", json={"name": "A", "email": "ADA@example.com"}),
        "duplicate email",
    ),
    _case("POST", "/users", 413, lambda w: w.admin.post("/api/v1/users", **HUGE), "huge body"),
    _case(
        "POST",
        "/users",
        415,
        lambda w: w.admin.post(
            "/api/v1/users", data="name=A", content_type="application/x-www-form-urlencoded"
        ),
        "form body",
    ),
    # Reading one.
    _case("GET", U, 200, lambda w: w.admin.get(f"/api/v1/users/{w.active}"), "active"),
    _case("GET", U, 200, lambda w: w.admin.get(f"/api/v1/users/{w.deleted}"), "deleted"),
    _case(
        "GET",
        U,
        400,
        lambda w: w.admin.get(f"/api/v1/users/{w.active}?fields=name"),
        "unknown parameter",
    ),
    _case("GET", U, 401, lambda w: w.as_role(None).get(f"/api/v1/users/{w.active}"), "no token"),
    _case("GET", U, 404, lambda w: w.admin.get("/api/v1/users/999999"), "unknown id"),
    _case("GET", U, 404, lambda w: w.admin.get("/api/v1/users/abc"), "not a number"),
    # Replacing.
    _case(
        "PUT",
        U,
        200,
        lambda w: w.admin.put(
            f"/api/v1/users/{w.active}",
            json={"name": "Augusta Ada King", "email": "ada@example.com"},
            headers={"If-Match": '"1"'},
        ),
        "matching If-Match",
    ),
    _case(
        "PUT",
        U,
        400,
        lambda w: w.admin.put(f"/api/v1/users/{w.active}", json={"name": "Only a name"}),
        "email missing",
    ),
    _case(
        "PUT",
        U,
        401,
        lambda w: w.as_role(None).put(
            f"/api/v1/users/{w.active}", json={"name": "A", "email": "a@example.com"}
        ),
        "no token",
    ),
    _case(
        "PUT",
        U,
        403,
        lambda w: w.as_role("auditor").put(
            f"/api/v1/users/{w.active}", json={"name": "A", "email": "a@example.com"}
        ),
        "auditor",
    ),
    _case(
        "PUT",
        U,
        404,
        lambda w: w.admin.put("/api/v1/users/999999", json={"name": "A", "email": "a@example.com"}),
        "unknown id",
    ),
    _case(
        "PUT",
        U,
        409,
        lambda w: w.admin.put(
            f"/api/v1/users/{w.active}", json={"name": "A", "email": "grace@example.com"}
        ),
        "duplicate email",
    ),
    _case(
        "PUT",
        U,
        409,
        lambda w: w.admin.put(
            f"/api/v1/users/{w.deleted}", json={"name": "A", "email": "a@example.com"}
        ),
        "deleted profile",
    ),
    _case(
        "PUT",
        U,
        412,
        lambda w: w.admin.put(
            f"/api/v1/users/{w.active}",
            json={"name": "A", "email": "a@example.com"},
            headers={"If-Match": '"7"'},
        ),
        "stale If-Match",
    ),
    _case("PUT", U, 413, lambda w: w.admin.put(f"/api/v1/users/{w.active}", **HUGE), "huge body"),
    _case(
        "PUT",
        U,
        415,
        lambda w: w.admin.put(f"/api/v1/users/{w.active}", data="{}", content_type="text/plain"),
        "text body",
    ),
    # Patching.
    _case(
        "PATCH",
        U,
        200,
        lambda w: w.admin.patch(
            f"/api/v1/users/{w.active}", json={"name": "Ada King", "reason": "legal\nname"}
        ),
        "name only",
    ),
    _case(
        "PATCH",
        U,
        200,
        lambda w: w.admin.patch(f"/api/v1/users/{w.active}", json={}, headers={"If-Match": "*"}),
        "nothing",
    ),
    _case(
        "PATCH",
        U,
        400,
        lambda w: w.admin.patch(
            f"/api/v1/users/{w.active}", json={"name": "A"}, headers={"If-Match": "1"}
        ),
        "unquoted If-Match",
    ),
    _case(
        "PATCH",
        U,
        400,
        lambda w: w.admin.patch(f"/api/v1/users/{w.active}", json={"name": "\u202eevil"}),
        "bidi override",
    ),
    _case(
        "PATCH",
        U,
        400,
        lambda w: w.admin.patch(f"/api/v1/users/{w.active}", json={"reason": "x" * 1001}),
        "long reason",
    ),
    _case(
        "PATCH",
        U,
        401,
        lambda w: w.as_role(None).patch(f"/api/v1/users/{w.active}", json={}),
        "no token",
    ),
    _case(
        "PATCH",
        U,
        403,
        lambda w: w.as_role("auditor").patch(f"/api/v1/users/{w.active}", json={}),
        "auditor",
    ),
    _case("PATCH", U, 404, lambda w: w.admin.patch("/api/v1/users/999999", json={}), "unknown id"),
    _case(
        "PATCH",
        U,
        409,
        lambda w: w.admin.patch(f"/api/v1/users/{w.active}", json={"email": "grace@example.com"}),
        "duplicate email",
    ),
    _case(
        "PATCH",
        U,
        412,
        lambda w: w.admin.patch(
            f"/api/v1/users/{w.active}", json={"name": "A"}, headers={"If-Match": '"abc"'}
        ),
        "foreign tag",
    ),
    _case(
        "PATCH", U, 413, lambda w: w.admin.patch(f"/api/v1/users/{w.active}", **HUGE), "huge body"
    ),
    _case(
        "PATCH",
        U,
        415,
        lambda w: w.admin.patch(
            f"/api/v1/users/{w.active}", data="<x/>", content_type="application/xml"
        ),
        "XML body",
    ),
    # Deleting.
    _case("DELETE", U, 204, lambda w: w.admin.delete(f"/api/v1/users/{w.active}"), "no body"),
    _case(
        "DELETE",
        U,
        204,
        lambda w: w.admin.delete(
            f"/api/v1/users/{w.active}", json={"reason": "closed"}, headers={"If-Match": '"1"'}
        ),
        "reason",
    ),
    _case(
        "DELETE",
        U,
        400,
        lambda w: w.admin.delete(f"/api/v1/users/{w.active}", json={"name": "x"}),
        "unknown field",
    ),
    _case(
        "DELETE", U, 401, lambda w: w.as_role(None).delete(f"/api/v1/users/{w.active}"), "no token"
    ),
    _case(
        "DELETE",
        U,
        403,
        lambda w: w.as_role("auditor").delete(f"/api/v1/users/{w.active}"),
        "auditor",
    ),
    _case("DELETE", U, 404, lambda w: w.admin.delete("/api/v1/users/999999"), "unknown id"),
    _case(
        "DELETE", U, 409, lambda w: w.admin.delete(f"/api/v1/users/{w.deleted}"), "already deleted"
    ),
    _case(
        "DELETE",
        U,
        412,
        lambda w: w.admin.delete(f"/api/v1/users/{w.active}", headers={"If-Match": '"5"'}),
        "stale If-Match",
    ),
    _case(
        "DELETE", U, 413, lambda w: w.admin.delete(f"/api/v1/users/{w.active}", **HUGE), "huge body"
    ),
    _case(
        "DELETE",
        U,
        415,
        lambda w: w.admin.delete(
            f"/api/v1/users/{w.active}", data="why", content_type="text/plain"
        ),
        "text body",
    ),
    # Restoring.
    _case(
        "POST",
        U + "/restore",
        200,
        lambda w: w.admin.post(f"/api/v1/users/{w.deleted}/restore", json={"reason": "reopened"}),
        "restored",
    ),
    _case(
        "POST",
        U + "/restore",
        400,
        lambda w: w.admin.post(f"/api/v1/users/{w.deleted}/restore", **_json("[]")),
        "array body",
    ),
    _case(
        "POST",
        U + "/restore",
        401,
        lambda w: w.as_role(None).post(f"/api/v1/users/{w.deleted}/restore"),
        "no token",
    ),
    _case(
        "POST",
        U + "/restore",
        403,
        lambda w: w.as_role("auditor").post(f"/api/v1/users/{w.deleted}/restore"),
        "auditor",
    ),
    _case(
        "POST",
        U + "/restore",
        404,
        lambda w: w.admin.post("/api/v1/users/999999/restore"),
        "unknown id",
    ),
    _case(
        "POST",
        U + "/restore",
        409,
        lambda w: w.admin.post(f"/api/v1/users/{w.active}/restore"),
        "not deleted",
    ),
    _case(
        "POST",
        U + "/restore",
        409,
        lambda w: (
            w.admin.post("/api/v1/users", json={"name": "Taker", "email": "gone@example.com"}),
            w.admin.post(f"/api/v1/users/{w.deleted}/restore"),
        )[1],
        "email taken",
    ),
    _case(
        "POST",
        U + "/restore",
        412,
        lambda w: w.admin.post(f"/api/v1/users/{w.deleted}/restore", headers={"If-Match": '"1"'}),
        "stale If-Match",
    ),
    _case(
        "POST",
        U + "/restore",
        413,
        lambda w: w.admin.post(f"/api/v1/users/{w.deleted}/restore", **HUGE),
        "huge body",
    ),
    _case(
        "POST",
        U + "/restore",
        415,
        lambda w: w.admin.post(
            f"/api/v1/users/{w.deleted}/restore", data="x", content_type="text/plain"
        ),
        "text body",
    ),
    # A profile's history.
    _case(
        "GET",
        U + "/history",
        200,
        lambda w: w.admin.get(f"/api/v1/users/{w.deleted}/history?limit=1"),
        "deleted profile",
    ),
    _case(
        "GET",
        U + "/history",
        200,
        lambda w: w.as_role("support").get(f"/api/v1/users/{w.active}/history"),
        "support",
    ),
    _case(
        "GET",
        U + "/history",
        400,
        lambda w: w.admin.get(f"/api/v1/users/{w.active}/history?cursor=abc"),
        "bad cursor",
    ),
    _case(
        "GET",
        U + "/history",
        401,
        lambda w: w.as_role(None).get(f"/api/v1/users/{w.active}/history"),
        "no token",
    ),
    _case(
        "GET",
        U + "/history",
        404,
        lambda w: w.admin.get("/api/v1/users/999999/history"),
        "unknown id",
    ),
    # Erasure and access.
    _case(
        "POST",
        U + "/erasure",
        200,
        lambda w: w.admin.post(f"/api/v1/users/{w.active}/erasure", json={"reason": "asked"}),
        "erased",
    ),
    _case(
        "POST",
        U + "/erasure",
        400,
        lambda w: w.admin.post(f"/api/v1/users/{w.active}/erasure", json={}),
        "no reason",
    ),
    _case(
        "POST",
        U + "/erasure",
        401,
        lambda w: w.as_role(None).post(f"/api/v1/users/{w.active}/erasure", json={"reason": "x"}),
        "no token",
    ),
    _case(
        "POST",
        U + "/erasure",
        403,
        lambda w: w.as_role("support").post(
            f"/api/v1/users/{w.active}/erasure", json={"reason": "x"}
        ),
        "support",
    ),
    _case(
        "POST",
        U + "/erasure",
        404,
        lambda w: w.admin.post("/api/v1/users/999999/erasure", json={"reason": "x"}),
        "unknown id",
    ),
    _case(
        "POST",
        U + "/erasure",
        409,
        lambda w: (
            w.admin.post(f"/api/v1/users/{w.deleted}/erasure", json={"reason": "first"}),
            w.admin.post(f"/api/v1/users/{w.deleted}/erasure", json={"reason": "again"}),
        )[1],
        "already erased",
    ),
    _case(
        "POST",
        U + "/erasure",
        413,
        lambda w: w.admin.post(f"/api/v1/users/{w.active}/erasure", **HUGE),
        "huge body",
    ),
    _case(
        "POST",
        U + "/erasure",
        415,
        lambda w: w.admin.post(
            f"/api/v1/users/{w.active}/erasure", data="asked", content_type="text/plain"
        ),
        "text body",
    ),
    _case(
        "GET",
        U + "/personal-data",
        200,
        lambda w: w.as_role("auditor").get(f"/api/v1/users/{w.active}/personal-data"),
        "auditor",
    ),
    _case(
        "GET",
        U + "/personal-data",
        200,
        lambda w: (
            w.admin.post(f"/api/v1/users/{w.active}/erasure", json={"reason": "asked"}),
            w.admin.get(f"/api/v1/users/{w.active}/personal-data"),
        )[1],
        "erased",
    ),
    _case(
        "GET",
        U + "/personal-data",
        400,
        lambda w: w.admin.get(f"/api/v1/users/{w.active}/personal-data?limit=1"),
        "query parameter",
    ),
    _case(
        "GET",
        U + "/personal-data",
        401,
        lambda w: w.as_role(None).get(f"/api/v1/users/{w.active}/personal-data"),
        "no token",
    ),
    _case(
        "GET",
        U + "/personal-data",
        403,
        lambda w: w.as_role("support").get(f"/api/v1/users/{w.active}/personal-data"),
        "support",
    ),
    _case(
        "GET",
        U + "/personal-data",
        404,
        lambda w: w.admin.get("/api/v1/users/999999/personal-data"),
        "unknown id",
    ),
    # The timeline.
    _case("GET", "/audit", 200, lambda w: w.admin.get("/api/v1/audit?limit=2"), "first page"),
    _case(
        "GET",
        "/audit",
        200,
        lambda w: w.admin.get(
            "/api/v1/audit?operation=create&operation=delete,restore&field=name"
            "&since=2020-01-01&until=2999-12-31T00:00:00Z&actor=test-admin"
        ),
        "filtered",
    ),
    _case(
        "GET",
        "/audit",
        400,
        lambda w: w.admin.get("/api/v1/audit?operation=drop"),
        "unknown operation",
    ),
    _case(
        "GET", "/audit", 400, lambda w: w.admin.get("/api/v1/audit?since=2026-02-30"), "bad date"
    ),
    _case("GET", "/audit", 401, lambda w: w.as_role(None).get("/api/v1/audit"), "no token"),
    _case("GET", "/audit", 403, lambda w: w.as_role("support").get("/api/v1/audit"), "support"),
    # The chain.
    _case(
        "GET",
        "/audit/export",
        200,
        lambda w: w.admin.get("/api/v1/audit/export?format=csv&operation=create"),
        "csv",
    ),
    _case(
        "GET",
        "/audit/export",
        200,
        lambda w: w.admin.get("/api/v1/audit/export?format=ndjson"),
        "ndjson",
    ),
    _case(
        "GET",
        "/audit/export",
        400,
        lambda w: w.admin.get("/api/v1/audit/export?format=xlsx"),
        "bad format",
    ),
    _case(
        "GET",
        "/audit/export",
        401,
        lambda w: w.as_role(None).get("/api/v1/audit/export"),
        "no token",
    ),
    _case(
        "GET",
        "/audit/export",
        403,
        lambda w: w.as_role("support").get("/api/v1/audit/export"),
        "support",
    ),
    _case(
        "GET",
        "/audit/verify",
        200,
        lambda w: w.as_role("auditor").get("/api/v1/audit/verify"),
        "never verified",
    ),
    _case("GET", "/audit/verify", 200, _verified, "verified"),
    _case(
        "GET",
        "/audit/verify",
        400,
        lambda w: w.admin.get("/api/v1/audit/verify?full=1"),
        "unknown parameter",
    ),
    _case(
        "GET",
        "/audit/verify",
        401,
        lambda w: w.as_role(None).get("/api/v1/audit/verify"),
        "no token",
    ),
    _case(
        "GET",
        "/audit/verify",
        403,
        lambda w: w.as_role("support").get("/api/v1/audit/verify"),
        "support",
    ),
    # Security events.
    _case(
        "GET",
        "/security-events",
        200,
        lambda w: (
            w.as_role("support").get("/api/v1/audit"),
            w.admin.get("/api/v1/security-events"),
        )[1],
        "with a refusal",
    ),
    _case(
        "GET",
        "/security-events",
        400,
        lambda w: w.admin.get("/api/v1/security-events?limit=201"),
        "limit too large",
    ),
    _case(
        "GET",
        "/security-events",
        401,
        lambda w: w.as_role(None).get("/api/v1/security-events"),
        "no token",
    ),
    _case(
        "GET",
        "/security-events",
        403,
        lambda w: w.as_role("support").get("/api/v1/security-events"),
        "support",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_real_responses_match_the_document(spec, world, case):
    response = case.call(world)

    assert response.status_code == case.status, response.get_data(as_text=True)[:500]
    conforms(spec, case.method, case.path, response)


def test_refused_writes_show_the_current_profile(spec, world):
    stale = world.admin.patch(
        f"/api/v1/users/{world.active}", json={"name": "A"}, headers={"If-Match": '"9"'}
    )
    conforms(spec, "PATCH", U, stale)
    assert stale.get_json()["current"]["id"] == world.active


def test_the_cases_provoke_every_documented_status(spec):
    """Each documented (operation, status) has a case above, except those that
    need a broken server (503: see the next test)."""
    documented = {
        (method.upper(), path, int(status))
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method != "parameters"
        for status in op["responses"]
    }
    provoked = {(c.values[0].method, c.values[0].path, c.values[0].status) for c in CASES}
    assert documented - provoked == {(m, p, s) for (m, p, s) in documented if s == 503}
    assert provoked <= documented


def test_an_unreachable_database_is_a_documented_503(spec):
    response = answer_without_a_database()
    assert response.status_code == 503
    conforms(spec, "GET", "/users", response)


def test_a_wrong_method_is_a_problem_with_allow(spec, client):
    """405 belongs to no operation: it answers the methods a path lacks."""
    response = client.put("/api/v1/users")
    assert response.status_code == 405
    assert response.mimetype == PROBLEM
    validator(spec, {"$ref": "#/components/schemas/Problem"}).validate(response.get_json())
    allowed = {m.strip().lower() for m in response.headers["Allow"].split(",")}
    assert {"get", "post"} <= allowed


def test_an_unknown_path_is_a_problem(spec, client):
    response = client.get("/api/v1/nowhere")
    assert response.status_code == 404
    validator(spec, {"$ref": "#/components/schemas/Problem"}).validate(response.get_json())


def test_the_document_is_built_once(app):
    with app.app_context():
        from webapp.api.openapi import document

        assert document() is document()
        copy.deepcopy(document())  # plain data, nothing live inside


# --------------------------------------------------------------------------
# /api/docs


def test_the_docs_page_renders_every_operation_without_scripts(anonymous_client, spec):
    response = anonymous_client.get("/api/docs")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    # Nothing inline that the CSP would block, nothing from elsewhere.
    assert "<style" not in html
    assert " style=" not in html
    assert not re.search(r"<script(?![^>]*\ssrc=)", html)
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", html)
    for item in spec["paths"].values():
        for key, op in item.items():
            if key != "parameters":
                assert f'id="{op["operationId"]}"' in html
    for name in spec["components"]["schemas"]:
        assert f'id="schema-{name}"' in html
    assert "curl -X POST" in html
    assert "Authorization: Bearer $TOKEN" in html
    assert "/api/v1/openapi.json" in html


def test_the_docs_page_escapes_what_it_shows(app):
    from webapp.web.api_docs import api_text

    with app.app_context():
        assert str(api_text("a `<b>` and <i>\n\nnext")) == (
            "<p>a <code>&lt;b&gt;</code> and &lt;i&gt;</p><p>next</p>"
        )
