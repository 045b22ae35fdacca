"""Pooled connections: no ping round trip on a healthy checkout, and a connection
the server closed while it sat in the pool is replaced before a request uses it."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text

from webapp import pool_checks
from webapp.extensions import db


def _pooled_backend_pid(app) -> int:
    """The server process of a connection now idle in the app's pool."""
    with app.app_context():
        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        db.session.rollback()
        db.session.remove()
    return pid


def _backend_alive(engine: Engine, pid: int) -> int:
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).scalar_one()


def test_a_healthy_idle_connection_is_not_pinged(app):
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_pre_ping"] is False
    _pooled_backend_pid(app)
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            assert pool_checks.needs_ping(raw.driver_connection) is False
        finally:
            raw.close()


def test_a_connection_terminated_in_the_pool_is_replaced_without_a_failed_request(
    app, client, engine
):
    client.get("/api/v1/users")  # every pooled connection has served once
    pid = _pooled_backend_pid(app)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
    deadline = time.monotonic() + 5
    while _backend_alive(engine, pid) and time.monotonic() < deadline:
        time.sleep(0.05)

    for _ in range(6):  # more than the pool holds: every pooled connection is used
        response = client.get("/api/v1/users")
        assert response.status_code == 200, response.get_data(as_text=True)
    assert _pooled_backend_pid(app) != pid
