"""Profiles made and changed through the JSON API, as a client would."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient


def create_profile(
    client: FlaskClient, name: str = "Ada Lovelace", email: str = "ada@example.com", **extra: object
) -> dict[str, Any]:
    """Create a profile through the API; its representation."""
    response = client.post("/api/v1/users", json={"name": name, "email": email, **extra})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def post_profile(client: FlaskClient, name: str, email: str) -> int:
    """Create a profile through the API; return its id."""
    return create_profile(client, name, email)["id"]


def update_profile(client: FlaskClient, user_id: int, **changes: object) -> dict[str, Any]:
    """Change a profile through the API; its new representation."""
    response = client.patch(f"/api/v1/users/{user_id}", json=changes)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def numbered_profiles(client: FlaskClient, count: int) -> list[int]:
    """``count`` profiles, "Person 0" (p0@example.com) onwards; their ids."""
    return [post_profile(client, f"Person {n}", f"p{n}@example.com") for n in range(count)]
