"""``/metrics`` in the Prometheus text format (0.0.4).

Request counts and latencies are counted in each process. Under gunicorn
every worker is a process of its own and a scrape reaches just one of them, so
when ``PROMETHEUS_MULTIPROC_DIR`` is set prometheus_client's multiprocess mode
keeps the values in files there and a scrape adds up all the workers. (The
directory must be emptied before the server starts, and gunicorn's
``child_exit`` hook should call ``prometheus_client.multiprocess.mark_process_dead``.)

The audit figures are read from the database at scrape time instead: that is
the one place where they are right for every worker, for ``flask`` commands
and for the database's own safety net, and they survive restarts. Entries
written = links in the hash chain + entries waiting to be sealed, since every
entry is either linked or queued; both are cheap to read (the head row and the
small pending queue), unlike ``count(*)`` over the whole audit table.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from webapp.auth.bearer import act_as_token, bearer_secret
from webapp.auth.permissions import AUDIT_READ, role_allows
from webapp.config import parse_networks
from webapp.extensions import db
from webapp.http.problems import problem
from webapp.services.api_tokens import resolve_bearer
from webapp.services.audit_integrity import chain_status
from webapp.services.security_events import record_event
from webapp.timestamps import utcnow

NAMESPACE = "profile_audit"
#: Anything else a client sends as a method is counted as "other", so that a
#: scanner cannot create a new time series per request.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A request that came through a proxy the app was not told about (PROXY_COUNT=0)
# has the proxy's address: 127.0.0.1 for a local nginx, which must not count
# as "the scraper on this machine".
_FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
_REFUSED = "Metrics are available only from allowed addresses or with an admin or auditor token."


def multiprocess_dir() -> str | None:
    """Where gunicorn workers share their counters, if they do."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class RequestMetrics:
    """The counters of one app, in a registry of its own (tests build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by method, endpoint and status.",
            ["method", "endpoint", "status"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to produce the response, by method and endpoint.",
            ["method", "endpoint"],
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(self, method: str, endpoint: str | None, status: int, seconds: float) -> None:
        """Count one answered request."""
        method = method if method in KNOWN_METHODS else "other"
        # The endpoint name, never the path: one series per route, not per URL.
        endpoint = endpoint or "unmatched"
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(method, endpoint).observe(seconds)


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()


class AuditCollector(Collector):
    """The chain's state, read from the database during the scrape."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            f"{NAMESPACE}_database_up", "1 if the database answered this scrape, else 0."
        )
        try:
            status = chain_status()
        except SQLAlchemyError as error:
            db.session.rollback()
            current_app.logger.warning(
                "metrics: could not read the audit chain: %s", getattr(error, "orig", error)
            )
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        entries = CounterMetricFamily(
            f"{NAMESPACE}_audit_entries",
            "Audit entries written: links in the hash chain plus entries waiting for their link.",
        )
        entries.add_metric([], status.head.seq + status.pending_entries)
        yield entries
        yield GaugeMetricFamily(
            f"{NAMESPACE}_audit_chain_head_seq",
            "Number of the newest link of the audit hash chain.",
            value=status.head.seq,
        )
        yield GaugeMetricFamily(
            f"{NAMESPACE}_audit_chain_pending_entries",
            "Entries committed but not linked into the hash chain yet.",
            value=status.pending_entries,
        )
        yield GaugeMetricFamily(
            f"{NAMESPACE}_audit_oldest_unlinked_entry_seconds",
            "How long the oldest entry not linked yet has waited (0 when none waits).",
            value=status.oldest_unlinked_seconds or 0.0,
        )
        run = status.last_verification
        yield GaugeMetricFamily(
            f"{NAMESPACE}_audit_verification_ok",
            "1 if the last `flask audit verify` passed; 0 if it failed or never ran.",
            value=1 if run is not None and run.ok and not status.unsealed_results else 0,
        )
        if run is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_audit_verification_age_seconds",
                "Seconds since the last `flask audit verify` finished (absent: never).",
                value=max(0.0, (utcnow() - run.finished_at).total_seconds()),
            )


def _address_allowed(networks: tuple[Any, ...]) -> bool:
    if not current_app.config["PROXY_COUNT"] and any(
        name in request.headers for name in _FORWARDING_HEADERS
    ):
        return False
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)


def _token_allowed() -> bool:
    secret = bearer_secret()
    token = None if secret is None else resolve_bearer(secret)
    if token is None:
        return False
    staff = token.staff
    if not role_allows(staff.role, AUDIT_READ):
        record_event(
            "forbidden",
            staff_id=staff.id,
            username=staff.username,
            details={"permission": AUDIT_READ, "path": request.path, "method": request.method},
        )
        return False
    # The request line names who scraped.
    act_as_token(token)
    return True


def metrics_view() -> Response:
    """The exposition, or 403 problem+json that says nothing about the data."""
    state: ObservabilityState = current_app.extensions["observability"]
    if not (_address_allowed(state.metrics_networks) or _token_allowed()):
        return problem(403, detail=_REFUSED)
    scrape = CollectorRegistry()
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(scrape)
    else:
        scrape.register(_Forward(state.metrics.registry))
    scrape.register(AuditCollector())
    return Response(generate_latest(scrape), mimetype=None, content_type=CONTENT_TYPE_PLAIN_0_0_4)


class ObservabilityState:
    """What the hooks and views of one app share."""

    def __init__(self, app: Flask) -> None:
        self.metrics = RequestMetrics()
        self.metrics_networks = parse_networks(app.config["METRICS_ALLOWED_IPS"] or "")
