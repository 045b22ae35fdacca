"""CPU time of this process per API request, in-process (Flask test client), no HTTP server.

Less noisy than ``http_load.py`` on a shared machine: it counts only this
process's CPU (``time.process_time``), not the database's nor other jobs', so
a change in the request's own Python work (parsing, serialising) shows even
when the machine is loaded. On a throwaway embedded PostgreSQL (or
``BENCH_DATABASE_URL``'s server): 60 profiles, about 200 audit entries, an
admin token; then ``--rounds`` rounds of ``--requests`` requests per case,
reporting the median over rounds of CPU µs per request.

    .venv/bin/python -m bench.api_request_cpu [--rounds 5] [--requests 200]
"""

from __future__ import annotations

import argparse
import logging
import secrets
import statistics
import time

from bench._common import database_server, migrated_app, start_run
from webapp.audit.context import Actor, Origin, acting_as
from webapp.extensions import db
from webapp.services import api_tokens, staff

CASES = {
    "GET profile": "/api/v1/users/{user_id}",
    "list profiles (50)": "/api/v1/users?limit=50",
    "timeline JSON (50)": "/api/v1/audit?limit=50",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = start_run(parse_args, argv)
    with database_server(keep=False) as url:
        run(url, args)


def run(url: str, args: argparse.Namespace) -> None:
    app = migrated_app(url, AUDIT_SEALER="off")
    logging.disable(logging.INFO)  # no line per request
    with app.app_context(), acting_as(Actor(None, "cli:bench"), Origin("cli")):
        admin = staff.create_staff("bench-admin", secrets.token_urlsafe(16), "admin")
        _, token = api_tokens.create_token(admin, "bench")
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    ids = []
    for number in range(60):
        created = client.post(
            "/api/v1/users", json={"name": f"P {number}", "email": f"p{number}@x.example"}
        )
        ids.append(created.get_json()["id"])
    for number in range(140):
        client.patch(f"/api/v1/users/{ids[number % 60]}", json={"name": f"Q {number}"})
    print("| Request | CPU µs/request (median of rounds) | rounds |")
    print("|---|---:|---|")
    for label, path in CASES.items():
        per_round = []
        for _ in range(args.rounds):
            started = time.process_time()
            for number in range(args.requests):
                response = client.get(path.format(user_id=ids[number % 60]))
                assert response.status_code == 200, response.status_code
            per_round.append((time.process_time() - started) / args.requests * 1e6)
        rounds = ", ".join(f"{value:.0f}" for value in per_round)
        print(f"| {label} | {statistics.median(per_round):.0f} | {rounds} |")
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


if __name__ == "__main__":
    main()
