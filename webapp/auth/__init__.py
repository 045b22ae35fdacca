"""Who is asking: dashboard sessions, API tokens, roles, and the request's actor.

Every request gets an ``Origin`` (channel, address, request id) bound for the
audit code; once the caller is authenticated, an ``Actor`` is bound too.
"""

from __future__ import annotations

from flask import Flask, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from webapp.audit.context import Origin, bind_origin, unbind
from webapp.http.api_paths import is_api_request


def init_app(app: Flask) -> None:
    proxies = app.config["PROXY_COUNT"]
    if proxies:
        # Trust exactly as many X-Forwarded-* hops as there are proxies in
        # front of the app; anything a client adds beyond that is ignored.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies
        )

    @app.before_request
    def bind_request_origin() -> None:
        origin = Origin(
            channel="api" if is_api_request() else "web",
            remote_addr=request.remote_addr,
            request_id=g.get("request_id"),
            client_request_id=g.get("client_request_id"),
        )
        g.origin_token = bind_origin(origin)

    @app.teardown_request
    def unbind_request_context(error: BaseException | None) -> None:
        for name in ("actor_token", "origin_token"):
            token = g.pop(name, None)
            if token is not None:
                unbind(token)

    from webapp.auth import bearer, web_session

    web_session.init_app(app)
    bearer.init_app(app)
