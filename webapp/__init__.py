"""Profile Audit: edit user profiles and prove who changed what, when and why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from webapp.config import PRODUCTION, PROJECT_ROOT, check_settings, settings_from_environment


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Create and configure the application.

    ``config`` overrides settings read from the environment (tests pass their
    database URL this way).
    """
    app = Flask(
        __name__,
        instance_path=str(PROJECT_ROOT / "instance"),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.from_mapping(settings_from_environment())
    # Keep fields in the order the API documents them.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if config:
        app.config.update(config)
    # Before anything is started: a refused setting must stop the process here.
    check_settings(app.config)
    # Outside development, keep the values of failed statements (emails) out
    # of error messages and therefore out of logs and error reports.
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        "hide_parameters": app.config["APP_ENV"] == PRODUCTION,
        **app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
    }
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        raise RuntimeError(
            "DATABASE_URL is not set. Use `make run` for a local embedded PostgreSQL, "
            "or set DATABASE_URL=postgresql://user:password@host/dbname."
        )

    # Importing the listeners registers them on the session class.
    import webapp.audit.capture  # noqa: F401
    from webapp import errors, observability, pool_checks, request_id, security_headers
    from webapp.extensions import csrf, db, migrate

    # First: its hooks time the whole request and see the final response.
    observability.init_app(app)
    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            pool_checks.install(engine)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))

    request_id.init_app(app)
    security_headers.init_app(app)
    errors.init_app(app)

    from webapp.audit import sealer

    sealer.init_app(app)

    from webapp import auth

    auth.init_app(app)
    # After the request id and origin exist, so a CSRF refusal carries them.
    csrf.init_app(app)

    from webapp.api import bp as api_bp
    from webapp.web import bp as web_bp

    # Scripts authenticate with tokens, never cookies, so CSRF does not apply.
    csrf.exempt(api_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(web_bp)

    from webapp import cli

    cli.init_app(app)
    return app
