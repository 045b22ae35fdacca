"""The ``/api/v1/users`` endpoints: success paths, refusals, and what each leaves behind."""

from __future__ import annotations

from itertools import pairwise

import pytest

from tests.support.api import assert_problem
from tests.support.profiles import create_profile


class TestCreate:
    def test_returns_the_profile_with_location_and_etag(self, client, database):
        response = client.post(
            "/api/v1/users", json={"name": "  Ada Lovelace ", "email": "Ada@EXAMPLE.com"}
        )

        assert response.status_code == 201
        body = response.get_json()
        assert body["name"] == "Ada Lovelace"
        assert body["email"] == "Ada@example.com"  # domain lowercased, local part kept
        assert body["version"] == 1
        assert body["deleted_at"] is None
        assert body["created_at"].endswith("Z")
        assert response.headers["Location"] == f"/api/v1/users/{body['id']}"
        assert response.headers["ETag"] == '"1"'
        assert database.user(body["id"])["email"] == "Ada@example.com"

    def test_stores_the_reason_on_the_audit_entry(self, client, database):
        user = create_profile(client, reason="Requested by ticket 42")
        [entry] = database.audit(user["id"])
        assert entry["reason"] == "Requested by ticket 42"

    def test_duplicate_email_is_409_case_insensitively(self, client, database):
        create_profile(client, email="ada@example.com")
        before = database.fingerprint()

        response = client.post("/api/v1/users", json={"name": "Other", "email": "ADA@example.com"})

        body = assert_problem(response, 409)
        assert body["errors"]["email"] == ["is already used by another active profile"]
        assert database.fingerprint() == before

    def test_email_of_a_deleted_profile_can_be_reused(self, client):
        user = create_profile(client)
        client.delete(f"/api/v1/users/{user['id']}")
        assert (
            client.post(
                "/api/v1/users", json={"name": "New", "email": "ada@example.com"}
            ).status_code
            == 201
        )

    def test_missing_fields_are_reported_together(self, client, database):
        body = assert_problem(client.post("/api/v1/users", json={}), 400)
        assert set(body["errors"]) == {"name", "email"}
        assert database.fingerprint() == [[], []]


class TestRead:
    def test_get_returns_profile_and_etag(self, client):
        user = create_profile(client)
        response = client.get(f"/api/v1/users/{user['id']}")
        assert response.status_code == 200
        assert response.get_json() == user
        assert response.headers["ETag"] == '"1"'

    def test_deleted_profiles_are_returned_with_deleted_at(self, client):
        user = create_profile(client)
        client.delete(f"/api/v1/users/{user['id']}")
        body = client.get(f"/api/v1/users/{user['id']}").get_json()
        assert body["deleted_at"] is not None
        assert body["version"] == 2

    @pytest.mark.parametrize("user_id", ["12345", "0", "9223372036854775808", "1" * 40])
    def test_unknown_id_is_404(self, client, user_id):
        assert_problem(client.get(f"/api/v1/users/{user_id}"), 404)

    def test_non_numeric_id_is_404(self, client):
        assert_problem(client.get("/api/v1/users/abc"), 404)


class TestList:
    def test_lists_active_profiles_in_id_order(self, client):
        ids = [create_profile(client, f"User {i}", f"u{i}@example.com")["id"] for i in range(3)]
        client.delete(f"/api/v1/users/{ids[1]}")

        body = client.get("/api/v1/users").get_json()
        assert [u["id"] for u in body["items"]] == [ids[0], ids[2]]
        assert body["next_cursor"] is None

        everyone = client.get("/api/v1/users?include_deleted=true").get_json()
        assert [u["id"] for u in everyone["items"]] == ids

    def test_keyset_pages_cover_everything_once(self, client):
        ids = [create_profile(client, f"User {i}", f"u{i}@example.com")["id"] for i in range(7)]
        seen, cursor = [], None
        while True:
            url = "/api/v1/users?limit=3" + (f"&cursor={cursor}" if cursor else "")
            body = client.get(url).get_json()
            assert len(body["items"]) <= 3
            seen += [u["id"] for u in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == ids

    def test_search_matches_name_or_email_case_insensitively(self, client):
        create_profile(client, "Ada Lovelace", "ada@example.com")
        create_profile(client, "Grace Hopper", "grace@navy.example")
        create_profile(client, "Alan Turing", "alan@LOVELACE.example")

        names = [u["name"] for u in client.get("/api/v1/users?q=loveLACE").get_json()["items"]]
        assert names == ["Ada Lovelace", "Alan Turing"]
        assert client.get("/api/v1/users?q=navy").get_json()["items"][0]["name"] == "Grace Hopper"

    def test_search_treats_like_wildcards_literally(self, client):
        create_profile(client, "100% Real", "real@example.com")
        create_profile(client, "Plain", "plain@example.com")
        assert [u["name"] for u in client.get("/api/v1/users?q=%25").get_json()["items"]] == [
            "100% Real"
        ]
        assert client.get("/api/v1/users?q=_").get_json()["items"] == []


class TestUpdate:
    def test_put_replaces_both_fields(self, client, database):
        user = create_profile(client)
        response = client.put(
            f"/api/v1/users/{user['id']}",
            json={"name": "Augusta Ada King", "email": "augusta@example.com", "reason": "married"},
            headers={"If-Match": '"1"'},
        )
        assert response.status_code == 200
        assert response.headers["ETag"] == '"2"'
        assert response.get_json()["email"] == "augusta@example.com"
        entry = database.audit(user["id"])[-1]
        assert entry["changed_fields"] == ["name", "email"]
        assert entry["reason"] == "married"

    def test_put_requires_every_field(self, client, database):
        user = create_profile(client)
        before = database.fingerprint()
        body = assert_problem(client.put(f"/api/v1/users/{user['id']}", json={"name": "X"}), 400)
        assert body["errors"] == {"email": ["is required"]}
        assert database.fingerprint() == before

    def test_patch_changes_only_what_is_given(self, client, database):
        user = create_profile(client)
        response = client.patch(f"/api/v1/users/{user['id']}", json={"name": "Ada"})
        assert response.get_json()["email"] == "ada@example.com"
        assert database.audit(user["id"])[-1]["changed_fields"] == ["name"]

    def test_patch_without_changes_writes_nothing(self, client, database):
        user = create_profile(client)
        response = client.patch(
            f"/api/v1/users/{user['id']}",
            json={"name": "Ada Lovelace"},
            headers={"If-Match": '"1"'},
        )
        assert response.status_code == 200
        assert response.headers["ETag"] == '"1"'
        assert len(database.audit(user["id"])) == 1

    @pytest.mark.parametrize("if_match", ['"2"', 'W/"7"', '"abc"'])
    def test_stale_if_match_is_412_with_the_current_profile(self, client, database, if_match):
        user = create_profile(client)
        before = database.fingerprint()
        response = client.patch(
            f"/api/v1/users/{user['id']}", json={"name": "Late"}, headers={"If-Match": if_match}
        )
        assert_problem(response, 412)
        assert database.fingerprint() == before

    def test_412_body_shows_what_changed_meanwhile(self, client):
        user = create_profile(client)
        client.patch(f"/api/v1/users/{user['id']}", json={"name": "First"})
        body = client.patch(
            f"/api/v1/users/{user['id']}", json={"name": "Second"}, headers={"If-Match": '"1"'}
        ).get_json()
        assert body["current"]["name"] == "First"
        assert body["current"]["version"] == 2

    def test_if_match_star_is_accepted(self, client):
        user = create_profile(client)
        assert (
            client.patch(
                f"/api/v1/users/{user['id']}", json={"name": "A"}, headers={"If-Match": "*"}
            ).status_code
            == 200
        )

    @pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "restore"])
    def test_a_weak_tag_never_satisfies_if_match(self, client, database, method):
        """RFC 9110: If-Match uses the strong comparison, so ``W/"1"`` does not
        match even the current version ``"1"``."""
        user = create_profile(client)
        url, current, body = f"/api/v1/users/{user['id']}", '"1"', None
        if method == "restore":
            assert client.delete(url).status_code == 204
            url, current, method = f"{url}/restore", '"2"', "POST"
        elif method != "DELETE":
            body = {"name": "B", "email": "b@example.com"}

        def send(if_match: str):
            return client.open(url, method=method, json=body, headers={"If-Match": if_match})

        before = database.fingerprint()
        assert_problem(send(f"W/{current}"), 412)
        assert database.fingerprint() == before
        assert send(current).status_code in {200, 204}

    def test_malformed_if_match_is_400(self, client):
        user = create_profile(client)
        assert_problem(
            client.patch(
                f"/api/v1/users/{user['id']}", json={"name": "A"}, headers={"If-Match": "2"}
            ),
            400,
        )

    def test_email_taken_by_another_profile_is_409(self, client, database):
        create_profile(client, "Ada", "ada@example.com")
        other = create_profile(client, "Grace", "grace@example.com")
        before = database.fingerprint()
        response = client.patch(f"/api/v1/users/{other['id']}", json={"email": "ADA@example.com"})
        assert_problem(response, 409)
        assert database.fingerprint() == before

    def test_editing_a_deleted_profile_is_409(self, client, database):
        user = create_profile(client)
        client.delete(f"/api/v1/users/{user['id']}")
        before = database.fingerprint()
        assert_problem(client.patch(f"/api/v1/users/{user['id']}", json={"name": "X"}), 409)
        assert database.fingerprint() == before

    def test_unknown_profile_is_404(self, client):
        assert_problem(client.put("/api/v1/users/999", json={"name": "A", "email": "a@b.co"}), 404)


class TestDeleteAndRestore:
    def test_delete_is_a_soft_delete(self, client, database):
        user = create_profile(client)
        response = client.delete(f"/api/v1/users/{user['id']}", json={"reason": "left"})
        assert response.status_code == 204
        assert response.data == b""
        row = database.user(user["id"])
        assert row["deleted_at"] is not None
        entry = database.audit(user["id"])[-1]
        assert (entry["operation"], entry["reason"]) == ("delete", "left")

    def test_deleting_twice_is_409(self, client, database):
        user = create_profile(client)
        client.delete(f"/api/v1/users/{user['id']}")
        before = database.fingerprint()
        assert_problem(client.delete(f"/api/v1/users/{user['id']}"), 409)
        assert database.fingerprint() == before

    def test_delete_honours_if_match(self, client, database):
        user = create_profile(client)
        before = database.fingerprint()
        assert_problem(
            client.delete(f"/api/v1/users/{user['id']}", headers={"If-Match": '"9"'}), 412
        )
        assert database.fingerprint() == before

    def test_restore_brings_the_profile_back(self, client, database):
        user = create_profile(client)
        client.delete(f"/api/v1/users/{user['id']}")
        response = client.post(f"/api/v1/users/{user['id']}/restore")
        assert response.status_code == 200
        assert response.get_json()["deleted_at"] is None
        assert response.headers["ETag"] == '"3"'
        assert database.audit(user["id"])[-1]["operation"] == "restore"

    def test_restoring_an_active_profile_is_409(self, client, database):
        user = create_profile(client)
        before = database.fingerprint()
        assert_problem(client.post(f"/api/v1/users/{user['id']}/restore"), 409)
        assert database.fingerprint() == before

    def test_restore_is_refused_when_the_email_was_taken_meanwhile(self, client, database):
        user = create_profile(client, email="ada@example.com")
        client.delete(f"/api/v1/users/{user['id']}")
        create_profile(client, "Someone Else", "ADA@example.com")
        before = database.fingerprint()

        body = assert_problem(client.post(f"/api/v1/users/{user['id']}/restore"), 409)
        assert "email" in body["errors"]
        assert database.fingerprint() == before

    def test_delete_of_unknown_profile_is_404(self, client):
        assert_problem(client.delete("/api/v1/users/404"), 404)


class TestHistory:
    def test_walkthrough_create_update_delete_restore(self, client):
        user = create_profile(client, reason="signup")
        uid = user["id"]
        client.put(
            f"/api/v1/users/{uid}",
            json={"name": "Ada King", "email": "ada@example.com"},
            headers={"If-Match": '"1"'},
        )
        client.delete(f"/api/v1/users/{uid}", headers={"If-Match": '"2"'})
        client.post(f"/api/v1/users/{uid}/restore", json={"reason": "deleted by mistake"})

        items = client.get(f"/api/v1/users/{uid}/history").get_json()["items"]

        assert [e["operation"] for e in items] == ["restore", "delete", "update", "create"]
        assert [e["version"] for e in items] == [4, 3, 2, 1]
        restore, deletion, update, creation = items
        assert creation["previous_data"] is None
        assert creation["new_data"] == {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "deleted_at": None,
        }
        assert update["previous_data"]["name"] == "Ada Lovelace"
        assert update["new_data"]["name"] == "Ada King"
        assert deletion["new_data"]["deleted_at"] is not None
        assert restore["previous_data"] == deletion["new_data"]
        assert restore["reason"] == "deleted by mistake"
        for newer, older in pairwise(items):
            assert newer["previous_data"] == older["new_data"]

    def test_history_of_unknown_profile_is_404(self, client):
        assert_problem(client.get("/api/v1/users/77/history"), 404)

    def test_history_is_paginated(self, client):
        user = create_profile(client)
        for i in range(4):
            client.patch(f"/api/v1/users/{user['id']}", json={"name": f"Name {i}"})
        first = client.get(f"/api/v1/users/{user['id']}/history?limit=3").get_json()
        second = client.get(
            f"/api/v1/users/{user['id']}/history?limit=3&cursor={first['next_cursor']}"
        ).get_json()
        versions = [e["version"] for e in first["items"] + second["items"]]
        assert versions == [5, 4, 3, 2, 1]
        assert second["next_cursor"] is None
