"""Staff accounts and their API tokens, made directly for tests."""

from __future__ import annotations

import uuid

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from webapp.audit.context import Actor, Origin, acting_as
from webapp.extensions import db
from webapp.models import Staff
from webapp.services import api_tokens
from webapp.services.staff import hash_password

# Hashing is slow on purpose; the suite hashes this password once.
PASSWORD = "correct horse battery staple"
_PASSWORD_HASH = hash_password(PASSWORD)


class StaffFactory:
    """Makes staff accounts (password ``PASSWORD``) and API tokens for them."""

    password = PASSWORD

    def __init__(self, app: Flask, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    def account(self, role: str, username: str | None = None) -> Staff:
        username = username or f"{role}-{uuid.uuid4().hex[:6]}"
        with self.engine.begin() as connection:
            staff_id = connection.execute(
                text(
                    "INSERT INTO staff (username, password_hash, role) "
                    "VALUES (:u, :h, :r) RETURNING id"
                ),
                {"u": username, "h": _PASSWORD_HASH, "r": role},
            ).scalar_one()
        with self.app.app_context():
            staff = db.session.get(Staff, staff_id)
            db.session.expunge(staff)
        return staff

    def token(
        self,
        staff: Staff,
        name: str = "tests",
        *,
        created_by: Staff | None = None,
        **kwargs: object,
    ) -> str:
        """A token acting as ``staff``, created by ``created_by`` (else from the command line)."""
        creator = (
            Actor(created_by.id, created_by.username)
            if created_by is not None
            else Actor(None, "cli:tests", channel_detail="tests")
        )
        with self.app.app_context(), acting_as(creator, Origin("cli")):
            _, secret = api_tokens.create_token(db.session.get(Staff, staff.id), name, **kwargs)
        return secret

    def client(self, role: str | None, username: str | None = None) -> FlaskClient:
        """A test client that sends a token of a new ``role`` account (none for None)."""
        test_client = self.app.test_client()
        if role is not None:
            staff = self.account(role, username)
            secret = self.token(staff)
            test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
            test_client.staff = staff  # type: ignore[attr-defined]
        return test_client


def client_like(app: Flask, template: FlaskClient) -> FlaskClient:
    """A client of its own (one per thread) that authenticates like ``template``."""
    fresh = app.test_client()
    fresh.environ_base.update(template.environ_base)
    return fresh
