# syntax=docker/dockerfile:1
# Profile Audit: production image.
#   docker build -t profile-audit .
#   docker run --env-file .env -p 8000:8000 profile-audit
# Pin the base by digest in your registry mirror for fully repeatable builds
# (PYTHON_IMAGE=python:3.13-slim-trixie@sha256:...).
ARG PYTHON_IMAGE=python:3.13-slim-trixie

# ---------------------------------------------------------------------------
# builder: pinned dependencies into a virtualenv, the project as a wheel
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Runtime dependencies: exactly the pinned, hashed versions, binary wheels only
# (psycopg's wheel brings libpq: no compiler, no system packages).
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: \
        -r requirements.lock \
    && python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps -r requirements-build.lock

# The project's wheel, built with the pinned build backend. It is unpacked into
# /app (not site-packages): the app finds templates/, static/ and migrations/
# next to its package (webapp/config.py: PROJECT_ROOT is webapp's parent).
COPY pyproject.toml README.md ./
COPY webapp ./webapp
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-deps --no-compile --target /app /wheels/*.whl \
    && /opt/venv/bin/python -m compileall -q /app/webapp

# ---------------------------------------------------------------------------
# runtime: the virtualenv, the package and the files it reads at run time
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLASK_APP="webapp.cli:create_cli_app()" \
    APP_ENV=production \
    PORT=8000

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
# Owned by root and read-only for the app's user: the code cannot be changed
# by the process that runs it.
COPY templates ./templates
COPY static ./static
COPY migrations ./migrations
COPY wsgi.py gunicorn.conf.py ./
COPY deploy/healthcheck.py ./deploy/healthcheck.py

USER 10001:10001
EXPOSE 8000

# Liveness only (/healthz does not touch the database): a database outage
# must not get every app container restarted. Orchestrators should use
# /readyz for readiness.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py", "/healthz"]

# Other commands run in the same image, e.g.
#   docker compose run --rm migrate            (flask db upgrade)
#   docker compose run --rm app flask staff create alice --role admin
CMD ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"]
