"""Each refusal carries its HTTP status: one table, read by the dashboard and the API alike."""

from __future__ import annotations

import pytest

from webapp.api import refused as api_refusal
from webapp.services.errors import (
    AlreadyDeleted,
    Conflict,
    DuplicateEmail,
    NotDeleted,
    NotFound,
    ServiceError,
    StaleVersion,
    ValidationFailed,
)
from webapp.services.sign_in_throttle import TooManyAttempts
from webapp.services.staff import InvalidCredentials
from webapp.web import refused as page_refusal


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ServiceError("refused"), 400),
        (ValidationFailed("bad"), 400),
        (NotFound("gone"), 404),
        (Conflict("clash"), 409),
        (DuplicateEmail("taken"), 409),
        (AlreadyDeleted("deleted"), 409),
        (NotDeleted("active"), 409),
        (StaleVersion("stale", expected_version=3), 409),
        (InvalidCredentials("wrong"), 401),
        (TooManyAttempts("slow down", retry_after=30), 429),
    ],
)
def test_each_refusal_names_its_status(error, status):
    assert error.status == status


def test_the_api_answers_a_refusal_with_its_status_and_a_failed_precondition_with_412(app):
    with app.test_request_context("/api/v1/users/1"):
        assert api_refusal(NotFound("Profile 1 does not exist.")).status_code == 404
        assert api_refusal(TooManyAttempts("slow down", retry_after=30)).status_code == 429
        # A lost race without If-Match is a conflict; with it, a failed precondition.
        assert api_refusal(StaleVersion("stale")).status_code == 409
        assert api_refusal(StaleVersion("stale", expected_version=3)).status_code == 412


def test_the_dashboard_shows_a_refusal_with_its_status(app):
    with app.test_request_context("/users/1"):
        assert page_refusal(NotFound("Profile 1 does not exist.")).status_code == 404
        assert page_refusal(DuplicateEmail("taken")).status_code == 409
