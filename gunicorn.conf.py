"""Gunicorn settings for production (the container image uses exactly this file).

    gunicorn -c gunicorn.conf.py wsgi:app

Everything that differs between deployments comes from the environment:

- ``PORT`` (default 8000): listen on 0.0.0.0:PORT. ``--bind`` on the command
  line overrides it (the deployment test binds 127.0.0.1 on a free port).
- ``WEB_CONCURRENCY``: number of worker processes; default 2 x usable cores + 1,
  capped at ``MAX_WORKERS`` (8). Each sync worker serves one request at a time
  and so uses one database connection at a time; keep
  workers x (DB_POOL_SIZE + DB_MAX_OVERFLOW) x replicas below the server's
  ``max_connections`` or lower the pool settings.
- ``GUNICORN_TIMEOUT`` (30 s), ``GUNICORN_GRACEFUL_TIMEOUT`` (30 s),
  ``GUNICORN_MAX_REQUESTS`` (1000, 0 disables worker recycling).
- ``FORWARDED_ALLOW_IPS`` (default ``127.0.0.1,::1``): the peers whose
  ``X-Forwarded-Proto`` gunicorn believes when it sets ``wsgi.url_scheme``.
  Set it to your reverse proxy's address(es); never ``*`` when the port is
  reachable by anyone else. Keep it consistent with the app's ``PROXY_COUNT``
  (which decides what the app trusts in ``X-Forwarded-For``/``-Proto``/``-Host``).
- ``LOG_FORMAT`` (``json``, the default here, or ``text``): ``json`` writes one
  JSON object per line, for the access log and for gunicorn's own messages.
- ``PROMETHEUS_MULTIPROC_DIR``: when set, stale metric files are removed at
  start and a dead worker's files are marked dead (prometheus_client's
  multiprocess mode); ignored when prometheus_client is not installed.
"""

from __future__ import annotations

import json
import logging
import math
import os
from datetime import UTC, datetime

from gunicorn import glogging

MAX_WORKERS = 8


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def usable_cpus() -> int:
    """Cores this process may really use: CPU affinity, then a cgroup v2 quota.

    ``os.cpu_count()`` reports the host's cores even in a container limited to
    one, which would start far too many workers.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as quota_file:
            quota, period = quota_file.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def default_workers() -> int:
    return min(2 * usable_cpus() + 1, MAX_WORKERS)


# --- Where and how many -------------------------------------------------------

bind = [f"0.0.0.0:{_env_int('PORT', 8000)}"]
workers = _env_int("WEB_CONCURRENCY", 0) or default_workers()
# Sync workers: one request per process, the simplest model with the
# database's per-request transactions. Put a buffering reverse proxy in front
# (slow clients then cost the proxy, not a worker).
worker_class = "sync"

# --- Time limits --------------------------------------------------------------

# A request longer than this kills its worker. The database's
# statement_timeout (DB_STATEMENT_TIMEOUT_MS, 15 s) ends slow queries first.
timeout = _env_int("GUNICORN_TIMEOUT", 30)
# On SIGTERM, workers finish their current request for up to this long. Keep
# the orchestrator's stop timeout above it (compose: stop_grace_period).
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = 5
# Recycle workers now and then so a slow leak cannot grow forever. Workers
# share the load evenly, so with a jitter of a tenth they all reached their
# limit within the same moment and restarted together: requests then waited
# for new workers (p99 of /healthz 802 ms against a p50 of 4 ms in the HTTP
# benchmark). A jitter as large as the limit spreads the restarts over a whole
# period (p99 17 ms).
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 1000)
max_requests_jitter = max_requests

# The heartbeat file of each worker: in a RAM-backed directory, because a
# container's overlay filesystem can stall the heartbeat and get healthy
# workers killed. Docker always mounts /dev/shm; elsewhere keep gunicorn's default.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108

# No control socket (gunicorn >= 25.1 opens one in $XDG_RUNTIME_DIR or
# $HOME/.gunicorn by default): in the image HOME does not exist and the
# filesystem is read-only, workers are managed by the orchestrator, and one
# fixed path would be shared by every gunicorn of a user on a host.
control_socket_disable = True

# --- Proxies ------------------------------------------------------------------

forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# --- Loading the app ----------------------------------------------------------

# preload_app: the app is imported once, in the master, before the workers
# are forked. Why:
# - a bad configuration (missing DATABASE_URL, a weak SECRET_KEY refused in
#   production) stops the master once with one clear traceback and a non-zero
#   exit, instead of every worker failing to boot in turn;
# - workers share the imported code copy-on-write, and recycled workers
#   (max_requests) start at once instead of importing everything again.
# What it costs, and how it is handled:
# - nothing that is not fork-safe may be opened at import: post_fork below
#   drops any database connection the master's pool might hold, so a worker
#   never shares a socket with another process;
# - SIGHUP reloads the configuration but not the code: a new image means a new
#   container, never an in-place reload.
preload_app = True

# --- Logging ------------------------------------------------------------------

JSON_LOGS = os.environ.get("LOG_FORMAT", "json").strip().lower() != "text"
# The app itself writes one JSON line per request (with the actor, without
# query strings, which can hold emails); gunicorn's line is extra, for bytes
# sent and time in the server, and off unless asked for.
accesslog = (
    "-" if os.environ.get("GUNICORN_ACCESS_LOG", "").lower() in {"1", "true", "yes", "on"} else None
)
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Used only with LOG_FORMAT=text: like the combined format, but the path without
# its query string (searches carry emails) and no referer, plus time and request id.
access_log_format = (
    '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s" %(M)sms %({x-request-id}o)s'
)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _JsonFormatter(logging.Formatter):
    """gunicorn's own messages (start, workers, errors) as JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class JsonLogger(glogging.Logger):
    """One JSON object per request on the access log (and JSON error-log lines).

    Built with ``json.dumps``, so quotes or control characters in a path or a
    user agent can never break a line, which a JSON-looking
    ``access_log_format`` cannot promise.
    """

    def setup(self, cfg):
        super().setup(cfg)
        if JSON_LOGS:
            for handler in self.error_log.handlers:
                handler.setFormatter(_JsonFormatter())

    def access(self, resp, req, environ, request_time):
        if not JSON_LOGS:
            super().access(resp, req, environ, request_time)
            return
        if not self.access_log_enabled:
            return
        try:
            status = resp.status
            if isinstance(status, str):
                status = status.split(None, 1)[0]
            response_headers = {name.lower(): value for name, value in (resp.headers or [])}
            entry = {
                "time": _utc_now(),
                "type": "access",
                "remote_addr": environ.get("REMOTE_ADDR"),
                "forwarded_for": environ.get("HTTP_X_FORWARDED_FOR"),
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("PATH_INFO"),
                "protocol": environ.get("SERVER_PROTOCOL"),
                "scheme": environ.get("wsgi.url_scheme"),
                "status": int(status) if str(status).isdigit() else status,
                "bytes": getattr(resp, "sent", None),
                "duration_ms": round(request_time.total_seconds() * 1000, 3),
                "request_id": response_headers.get("x-request-id"),
                "user_agent": environ.get("HTTP_USER_AGENT"),
                "pid": os.getpid(),
            }
            self.access_log.info(json.dumps(entry, ensure_ascii=False))
        except Exception:  # a log line must never fail a request
            self.exception("could not write the access log line")


logger_class = JsonLogger

# --- Hooks --------------------------------------------------------------------


def on_starting(server):
    """prometheus_client multiprocess mode: start from an empty metrics directory."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def when_ready(server):
    """With preload_app, compile every template once in the master, before any fork.

    Jinja compiles a template on its first use in each process: every new or
    recycled worker (max_requests) paid 50-100 ms on its first timeline page,
    which showed as the p99 of a run. Compiled in the master, workers inherit
    them copy-on-write.
    """
    try:
        application = server.app.wsgi()
        environment = application.jinja_env
        for name in environment.list_templates(filter_func=lambda name: name.endswith(".html")):
            environment.get_template(name)
    except Exception:  # a warm-up must never stop the server
        server.log.exception("could not compile the templates ahead of the workers")


def post_fork(server, worker):
    """With preload_app, forget any pooled connection inherited from the master.

    ``dispose(close=False)`` leaves the master's sockets alone (closing them
    here would break them for the master) and gives the worker a fresh pool.
    """
    try:
        from webapp.extensions import db
    except ImportError:
        return
    application = server.app.wsgi()
    with application.app_context():
        for engine in db.engines.values():
            engine.dispose(close=False)


def child_exit(server, worker):
    """prometheus_client multiprocess mode: a dead worker's gauges stop counting."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return
    multiprocess.mark_process_dead(worker.pid)


def worker_abort(worker):
    """A worker killed for exceeding ``timeout``: say which, as one log line."""
    worker.log.warning("worker %s aborted after exceeding the %ss timeout", worker.pid, timeout)
