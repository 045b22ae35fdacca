"""What the JSON API answers: problem documents, and the answer when the
database cannot be reached."""

from __future__ import annotations

from typing import Any

from werkzeug.test import TestResponse

from webapp import create_app

#: The media type of every error the API answers (RFC 9457).
PROBLEM = "application/problem+json"


def assert_problem(response: TestResponse, status: int) -> dict[str, Any]:
    """``response`` is a problem document of ``status``; its body."""
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    return body


def answer_without_a_database() -> TestResponse:
    """An authenticated-looking ``GET /api/v1/users`` to an app whose database
    cannot be reached."""
    unreachable = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://nobody@/nodb?host=/nonexistent",
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        }
    )
    return unreachable.test_client().get(
        "/api/v1/users", headers={"Authorization": "Bearer pa_anything"}
    )
