"""Strict reading of API input: JSON bodies, query strings, preconditions.

Anything unexpected is refused with a 4xx problem before a service is called.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from flask import current_app, json, request
from werkzeug.exceptions import HTTPException

from webapp.http.problems import problem
from webapp.services.errors import ValidationFailed
from webapp.services.pagination import parse_limit
from webapp.typed_text import parse_flag, parse_whole_number

_ETAG = re.compile(r'^\s*(W/)?"([^"]*)"\s*$')
#: the most digits a version in ``If-Match`` may have (a larger one is no version of ours)
VERSION_DIGITS_MAX = 18


class InputRejected(HTTPException):
    """Raised to answer at once with a prepared problem response."""

    def __init__(self, response: object) -> None:
        super().__init__(response=response)  # type: ignore[arg-type]


def read_json_object(allowed: Collection[str]) -> dict[str, object]:
    """The request body as a JSON object whose keys are all in ``allowed``."""
    if not request.mimetype or not (
        request.mimetype == "application/json" or request.mimetype.endswith("+json")
    ):
        raise InputRejected(
            problem(415, detail="Send the body as JSON with Content-Type: application/json.")
        )
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise InputRejected(problem(400, detail=f"The body is not valid JSON: {error}")) from None
    except RecursionError:
        raise InputRejected(problem(400, detail="The body's JSON is nested too deeply.")) from None
    if not isinstance(body, dict):
        raise InputRejected(problem(400, detail="The body must be a JSON object."))
    unknown = [key for key in body if key not in allowed]
    if unknown:
        raise ValidationFailed(
            "Unknown field(s): " + ", ".join(sorted(unknown)),
            errors={key: ["is not a known field"] for key in unknown},
        )
    return body


def query_args(
    allowed: Collection[str], *, repeatable: Collection[str] = ()
) -> dict[str, list[str]]:
    """The query string as name → values, refusing unknown or repeated names."""
    args = request.args.to_dict(flat=False)
    errors: dict[str, list[str]] = {}
    for name, values in args.items():
        if name not in allowed:
            errors[name] = ["is not a known query parameter"]
        elif len(values) > 1 and name not in repeatable:
            errors[name] = ["may be given only once"]
    if errors:
        raise ValidationFailed(
            "Bad query parameter(s): " + ", ".join(sorted(errors)), errors=errors
        )
    return args


def single(args: dict[str, list[str]], name: str) -> str | None:
    values = args.get(name)
    return values[0] if values else None


def parse_bool(args: dict[str, list[str]], name: str) -> bool:
    flag = parse_flag(single(args, name), default=False)
    if flag is not None:
        return flag
    raise ValidationFailed.of_field(name, "must be true or false")


def if_match_version() -> int | None:
    """The profile version named by ``If-Match``, or ``None`` when absent or ``*``.

    A well-formed tag that is not a version of ours can never match: 412. Nor
    can a weak one (``W/"3"``): ``If-Match`` compares strongly (RFC 9110,
    13.1.1), and a write must not proceed on "about the same" version.
    """
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    match = _ETAG.match(header)
    if match is None:
        raise InputRejected(
            problem(400, detail='If-Match must be one entity tag, like "3" (with the quotes).')
        )
    weak, tag = match.groups()
    if weak:
        raise InputRejected(
            problem(
                412,
                detail=f"If-Match {header.strip()} is a weak entity tag, which never matches "
                "(RFC 9110 strong comparison); send the ETag as given.",
            )
        )
    version = parse_whole_number(tag, minimum=0, maximum=10**VERSION_DIGITS_MAX - 1)
    if version is None:
        raise InputRejected(
            problem(412, detail=f"If-Match {header.strip()} does not match the profile's ETag.")
        )
    return version


def page_limit(args: dict[str, list[str]]) -> int:
    """The ``limit`` query parameter, within the configured page sizes."""
    return parse_limit(
        single(args, "limit"),
        default=current_app.config["PAGE_SIZE_DEFAULT"],
        maximum=current_app.config["PAGE_SIZE_MAX"],
    )
