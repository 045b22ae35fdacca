"""What operators see of the running app: logs, health checks, metrics, error reports.

``init_app`` is called first in ``create_app``, so its hooks time the whole
request and its last hook sees the response as it leaves.
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, request

from webapp.audit.context import current_actor
from webapp.observability import health, logs, metrics, sentry

bp = Blueprint("observability", __name__)
bp.add_url_rule("/healthz", "healthz", health.healthz, methods=["GET"])
bp.add_url_rule("/readyz", "readyz", health.readyz, methods=["GET"])
bp.add_url_rule("/metrics", "metrics", metrics.metrics_view, methods=["GET"])

#: Probes and scrapes arrive every few seconds; their lines are written only
#: when the answer is not a success, so that failures stand out.
QUIET_ENDPOINTS = frozenset(
    {"observability.healthz", "observability.readyz", "observability.metrics"}
)


def init_app(app: Flask) -> None:
    """Wire logging, Sentry, the request hooks and the three endpoints into ``app``."""
    app.config["LOG_FORMAT"] = app.config.get("LOG_FORMAT") or (
        "json" if app.config["APP_ENV"] == "production" else "text"
    )
    logs.configure_logging(app)
    sentry.init_sentry(app)
    state = metrics.ObservabilityState(app)
    app.extensions["observability"] = state

    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    # Registered first, so Flask runs it after every other after_request hook.
    @app.after_request
    def record_request(response: Response) -> Response:
        started = g.get("request_started")
        seconds = time.perf_counter() - started if started is not None else 0.0
        state.metrics.observe(request.method, request.endpoint, response.status_code, seconds)
        if request.endpoint in QUIET_ENDPOINTS and response.status_code < 400:
            return response
        actor = current_actor()
        logs.log_request(
            {
                "method": request.method,
                "path": logs.loggable_path(request.path),
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 1),
                "request_id": g.get("request_id"),
                "client_request_id": g.get("client_request_id"),
                "actor": actor.label if actor else None,
                "remote_addr": request.remote_addr,
            }
        )
        return response

    app.register_blueprint(bp)
