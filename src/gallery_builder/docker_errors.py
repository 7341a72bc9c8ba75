"""How a Docker failure is worded for an admin: one line, no request URLs or parameters.

docker-py's and requests' own messages quote the request URL, whose query holds the build
arguments and labels; these helpers keep only what explains the failure.
"""

from __future__ import annotations

from docker.errors import APIError
from requests.exceptions import RequestException
from urllib3.exceptions import HTTPError as Urllib3HTTPError


def describe_docker_error(error: BaseException) -> str:
    """A one-line description of a Docker failure, without request URLs or parameters."""
    if isinstance(error, APIError):
        explanation = error.explanation
        if isinstance(explanation, bytes):
            explanation = explanation.decode("utf-8", "replace")
        if not explanation and error.response is not None:
            explanation = error.response.reason
        return f"Docker API error {error.status_code}: {explanation or 'no details'}"
    if isinstance(error, RequestException | Urllib3HTTPError):
        reason = os_reason(error)
        suffix = f": {reason}" if reason else ""
        return f"cannot talk to the Docker engine ({type(error).__name__}{suffix})"
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"
    return f"{type(error).__name__}: {error}"


def os_reason(error: BaseException) -> str:
    """The strerror of the first OSError found under `error` ("Connection refused"), or ""."""
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        # requests wraps urllib3's MaxRetryError, whose .reason is the socket error.
        pending.extend([getattr(current, "reason", None), current.__cause__, current.__context__])
        pending.extend(current.args)
    return ""
