"""Container health check: exit 0 when the app answers 200 on /healthz, else 1.

The image has no curl; this uses the standard library only. Usage:

    python deploy/healthcheck.py [PATH]    # PATH defaults to /healthz

It asks 127.0.0.1 on $PORT (default 8000), the port gunicorn binds in the
image, with a short timeout so a hung worker counts as unhealthy.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/healthz"
    url = f"http://127.0.0.1:{os.environ.get('PORT') or '8000'}{path}"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (OSError, ValueError) as error:
        print(f"unhealthy: {url}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
