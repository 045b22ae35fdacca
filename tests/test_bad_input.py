"""Bad input of every kind gets a clear 4xx problem and changes nothing; good
input of unusual kinds is accepted and normalized."""

from __future__ import annotations

import pytest

from webapp.services.errors import ValidationFailed
from webapp.services.profile_rules import FieldError, clean_email, clean_name, clean_profile

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("Zoë Ångström", "Zoë Ångström"),
        ("李小龙", "李小龙"),
        ("O'Brien-Smith", "O'Brien-Smith"),
        ("  padded  ", "padded"),
        ("<script>alert(1)</script>", "<script>alert(1)</script>"),
        ("x" * 255, "x" * 255),
        ("👩‍💻 Dev", "👩‍💻 Dev"),  # a zero-width joiner inside an emoji sequence
        ("Zoe\u0308", "Zoë"),  # combining diaeresis, stored composed (NFC)
    ],
)
def test_names_accepted_and_normalized(raw, stored):
    assert clean_name(raw) == stored


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "must not be blank"),
        ("   \t ", "must not be blank"),
        ("\u3000", "must not be blank"),  # ideographic space
        ("x" * 256, "at most 255"),
        ("Ada\x00", "control characters"),
        ("Ada\nLovelace", "control characters"),
        ("Ada\x1b[31m", "control characters"),
        ("Ada\u2028Lovelace", "control characters"),
        ("evil\u202egnp.exe", "control characters"),
        ("\ud800", "control characters"),
        (42, "must be a string"),
        (None, "must be a string"),
        (["Ada"], "must be a string"),
    ],
)
def test_names_refused(raw, message):
    with pytest.raises(FieldError, match=message):
        clean_name(raw)


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("ada@example.com", "ada@example.com"),
        ("Ada@EXAMPLE.COM", "Ada@example.com"),
        ("ada+audit@example.com", "ada+audit@example.com"),
        ("  ada@example.com ", "ada@example.com"),
        ("用户@例子.广告", "用户@例子.广告"),
        ("ada@bücher.example", "ada@bücher.example"),
        ("ada@xn--bcher-kva.example", "ada@bücher.example"),
    ],
)
def test_emails_accepted_and_normalized(raw, stored):
    assert clean_email(raw) == stored


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "plainaddress",
        "@example.com",
        "ada@",
        "ada@@example.com",
        "ada@example",
        "ada example@example.com",
        "ada@exa mple.com",
        "<script>@example.com",
        "ada@example.com\x00",
        "a" * 250 + "@example.com",
        "ada@" + "a" * 250 + ".com",
        "ada@" + ".".join(["abcdefghij"] * 25) + ".com",
        "ada.@example.com",
        12,
    ],
)
def test_emails_refused(raw):
    with pytest.raises(FieldError):
        clean_email(raw)


def test_all_field_problems_are_reported_at_once():
    with pytest.raises(ValidationFailed) as caught:
        clean_profile({"name": " ", "email": "nope", "age": 3}, partial=False)
    assert set(caught.value.errors) == {"name", "email", "age"}


BAD_BODIES = [
    pytest.param({"name": "", "email": "a@example.com"}, "name", id="blank-name"),
    pytest.param({"name": "   ", "email": "a@example.com"}, "name", id="whitespace-name"),
    pytest.param({"name": "x" * 256, "email": "a@example.com"}, "name", id="256-char-name"),
    pytest.param({"name": "A\u0000B", "email": "a@example.com"}, "name", id="nul-in-name"),
    pytest.param({"name": "A\u0007", "email": "a@example.com"}, "name", id="bell-in-name"),
    pytest.param({"name": "\ud83d", "email": "a@example.com"}, "name", id="lone-surrogate"),
    pytest.param({"name": 5, "email": "a@example.com"}, "name", id="number-name"),
    pytest.param({"name": None, "email": "a@example.com"}, "name", id="null-name"),
    pytest.param({"name": {"first": "A"}, "email": "a@example.com"}, "name", id="object-name"),
    pytest.param({"name": "Ada", "email": "not-an-email"}, "email", id="invalid-email"),
    pytest.param({"name": "Ada", "email": ["a@example.com"]}, "email", id="list-email"),
    pytest.param({"name": "Ada", "email": "a@\u0000.com"}, "email", id="nul-in-email"),
    pytest.param({"name": "Ada"}, "email", id="missing-email"),
    pytest.param({"name": "Ada", "email": "a@example.com", "id": 7}, "id", id="unknown-id"),
    pytest.param({"name": "Ada", "email": "a@example.com", "version": 9}, "version", id="version"),
    pytest.param({"name": "Ada", "email": "a@example.com", "reason": 5}, "reason", id="int-reason"),
    pytest.param(
        {"name": "Ada", "email": "a@example.com", "reason": "r" * 1001}, "reason", id="long-reason"
    ),
    pytest.param(
        {"name": "Ada", "email": "a@example.com", "reason": "a\x00b"}, "reason", id="nul-reason"
    ),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_create_bodies_are_400_and_change_nothing(client, database, body, field):
    response = client.post("/api/v1/users", json=body)

    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    assert field in response.get_json()["errors"]
    assert database.fingerprint() == [[], []]


# A PATCH may leave fields out, so a missing email is no error there.
BAD_PATCH_BODIES = [param for param in BAD_BODIES if param.id != "missing-email"]


@pytest.mark.parametrize(("body", "field"), BAD_PATCH_BODIES)
def test_bad_patch_bodies_are_400_and_change_nothing(client, database, body, field):
    user = client.post("/api/v1/users", json={"name": "Ok", "email": "ok@example.com"}).get_json()
    before = database.fingerprint()

    response = client.patch(f"/api/v1/users/{user['id']}", json=body)

    assert response.status_code == 400
    assert field in response.get_json()["errors"]
    assert database.fingerprint() == before


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        pytest.param("{", "application/json", 400, id="malformed-json"),
        pytest.param("[1, 2]", "application/json", 400, id="json-array"),
        pytest.param('"Ada"', "application/json", 400, id="json-string"),
        pytest.param("null", "application/json", 400, id="json-null"),
        pytest.param("", "application/json", 400, id="empty-body"),
        pytest.param(b"\xff\xfe{}", "application/json", 400, id="not-utf8"),
        pytest.param("name=Ada", "application/x-www-form-urlencoded", 415, id="form-encoded"),
        pytest.param('{"name": "Ada"}', "text/plain", 415, id="text-plain"),
        pytest.param('{"name": "Ada"}', None, 415, id="no-content-type"),
        pytest.param("<user/>", "application/xml", 415, id="xml"),
        pytest.param("[" * 30000 + "]" * 30000, "application/json", 400, id="deeply-nested"),
        pytest.param('{"name": "A", "name": 5}', "application/json", 400, id="duplicate-key"),
    ],
)
def test_unreadable_bodies(client, database, data, content_type, status):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/v1/users", data=data, headers=headers)
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    assert database.fingerprint() == [[], []]


def test_huge_body_is_413(client, database):
    body = '{"name": "' + "x" * 200_000 + '", "email": "a@example.com"}'
    response = client.post("/api/v1/users", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.mimetype == PROBLEM
    assert database.fingerprint() == [[], []]


@pytest.mark.parametrize(
    "query",
    [
        "?q=%00",
        "?q=" + "x" * 300,
        "?limit=-5",
        "?limit=1e3",
        "?include_deleted=maybe",
        "?cursor=%%%",
        "?cursor=" + "A" * 500,
        "?sort=name",
    ],
)
def test_bad_list_queries_are_400(client, query):
    response = client.get("/api/v1/users" + query)
    assert response.status_code == 400
    assert response.mimetype == PROBLEM


def test_search_with_odd_but_valid_text_works(client):
    client.post("/api/v1/users", json={"name": "Zoë \\ Ångström", "email": "zoe@example.com"})
    for q in ["ë", "\\", "'; DROP TABLE users; --", "😀", "%_"]:
        assert client.get("/api/v1/users", query_string={"q": q}).status_code == 200
    found = client.get("/api/v1/users", query_string={"q": "ë \\"}).get_json()["items"]
    assert [u["email"] for u in found] == ["zoe@example.com"]
