#!/usr/bin/env bash
# Regenerate the pinned, hashed dependency locks used by the Dockerfile:
#   requirements.lock        the app's runtime dependencies (from pyproject.toml)
#   requirements-build.lock  the build backend used to build the project's wheel
# Run from anywhere after changing dependencies in pyproject.toml:
#   deploy/lock.sh            # keep current pins where still allowed
#   deploy/lock.sh --upgrade  # move every pin to the newest allowed release
# It installs uv into a temporary virtualenv (removed afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_VERSION=3.11 # the oldest Python the lock must install on (the image runs 3.13)
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/python" -m pip install --quiet uv
compile=("$tools/bin/uv" pip compile --quiet --universal --python-version "$PYTHON_VERSION"
  --generate-hashes --no-emit-index-url --custom-compile-command "deploy/lock.sh" "$@")
"${compile[@]}" pyproject.toml -o requirements.lock
# The build-system requirement of pyproject.toml, pinned the same way.
printf 'setuptools>=77\n' >"$tools/build-requirements.in"
"${compile[@]}" "$tools/build-requirements.in" -o requirements-build.lock
sed -i "s|$tools/build-requirements.in|pyproject.toml [build-system]|" requirements-build.lock
echo "Wrote requirements.lock and requirements-build.lock"
