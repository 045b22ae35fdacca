"""Bad input of every kind gets a clear 4xx problem and changes nothing; good
input of unusual kinds is accepted and normalized."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.support.api import PROBLEM
from tests.support.pages import form_token
from webapp.services.errors import ValidationFailed
from webapp.services.profile_rules import FieldError, clean_email, clean_name, clean_profile


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


# Characters that show nothing on their own: format characters, fillers,
# bidirectional marks and overrides.
INVISIBLE = {
    "zero-width-space": "\u200b",
    "byte-order-mark": "\ufeff",
    "word-joiner": "\u2060",
    "soft-hyphen": "\u00ad",
    "hangul-filler": "\u3164",
    "halfwidth-hangul-filler": "\uffa0",
    "right-to-left-mark": "\u200f",
    "left-to-right-mark": "\u200e",
    "arabic-letter-mark": "\u061c",
    "right-to-left-override": "\u202e",
    "first-strong-isolate": "\u2068",
    "braille-blank": "\u2800",
    "zero-width-joiner": "\u200d",
    "variation-selector": "\ufe0f",
    "tag-space": "\U000e0020",
    "mixed": " \u200b\u3164\u00ad\ufeff ",
}


@pytest.mark.parametrize("raw", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_names_of_only_invisible_characters_are_blank(raw):
    with pytest.raises(FieldError, match="must not be blank"):
        clean_name(raw)
    with pytest.raises(FieldError, match="must not be blank"):
        clean_name(raw * 3)


@pytest.mark.parametrize("control", ["\u200e", "\u200f", "\u061c", "\u202e", "\u2066"])
def test_names_with_bidirectional_controls_are_refused(control):
    """They could make a name, and the text printed after it, read as something else."""
    with pytest.raises(FieldError, match="control characters"):
        clean_name(f"evil{control}gnp.exe")


@pytest.mark.parametrize(
    "raw",
    ["Ada\u00adLovelace", "\u05e9\u05dc\u05d5\u05dd", "\u0645\u0631\u062d\u0628\u0627"],
    ids=["soft-hyphen-inside", "hebrew", "arabic"],
)
def test_names_with_something_visible_are_accepted(raw):
    assert clean_name(raw) == raw


@pytest.mark.parametrize("raw", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_invisible_names_are_refused_by_the_api_and_the_form(client, signed_in, database, raw):
    response = client.post("/api/v1/users", json={"name": raw, "email": "a@example.com"})
    assert response.status_code == 400
    assert response.get_json()["errors"]["name"] == ["must not be blank"]

    browser = signed_in("support")
    form = browser.post(
        "/users/new",
        data={"csrf_token": form_token(browser, "/users/new"), "name": raw, "email": "a@x.org"},
    )
    assert form.status_code == 400
    assert "must not be blank" in form.get_data(as_text=True)
    assert database.fingerprint() == [[], []]


def test_a_reason_of_only_invisible_characters_is_no_reason(client, database):
    created = client.post(
        "/api/v1/users", json={"name": "Ada", "email": "a@example.com", "reason": "\u200b\u3164"}
    )
    assert created.status_code == 201
    assert database.audit()[0]["reason"] is None


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


def test_an_override_already_stored_is_shown_as_its_code_point(client, signed_in, engine):
    """Older rows, or a write behind the app's back, may still hold one: pages
    print it as [U+202E], which reorders nothing."""
    user_id = client.post("/api/v1/users", json={"name": "Ada", "email": "a@example.com"}).json[
        "id"
    ]
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE users SET name = :name WHERE id = :id"),
            {"name": "evil\u202egnp.exe", "id": user_id},
        )
    page = signed_in("support").get(f"/users/{user_id}").get_data(as_text=True)
    assert "\u202e" not in page
    assert "<h1>evil[U+202E]gnp.exe</h1>" in page
