"""The verifier's HTTP surface, on the stack's network only (no published port).

    POST /render   {page_url, login_url, login_secret, timeout_s} -> the render (JSON)
    GET  /health   200 once chromium and the token are in place

Only the hub calls it, with the token from the shared `service-tokens` volume; it renders
only pages of the hub's own proxy (verifier_contract.HUB_ORIGIN), one at a time.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import signal
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from gallery_common.verifier_contract import HUB_ORIGIN, RENDER_PATH, TOKEN_FILE, VERIFIER_PORT
from gallery_verifier.browser_render import CHROMIUM, RenderFailed, render

log = logging.getLogger("gallery_verifier")
MAX_BODY_BYTES = 16 * 1024
MAX_TIMEOUT_S = 3600


class RenderRequestError(ValueError):
    """A render request this server does not take (400)."""


def parse_render_request(body: bytes) -> tuple[str, str, str, float]:
    """Check a render request: hub pages only, a login secret, a sane timeout."""
    try:
        data = json.loads(body)
    except ValueError:
        raise RenderRequestError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise RenderRequestError("the body must be a JSON object")
    page_url, login_url, secret = (data.get(k) for k in ("page_url", "login_url", "login_secret"))
    for name, url in (("page_url", page_url), ("login_url", login_url)):
        if not isinstance(url, str) or not url.startswith(HUB_ORIGIN + "/"):
            raise RenderRequestError(f"{name} must be a page of {HUB_ORIGIN}")
    if not isinstance(secret, str) or len(secret) < 32:
        raise RenderRequestError("login_secret is missing")
    timeout_s = data.get("timeout_s")
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not 1 <= timeout_s <= MAX_TIMEOUT_S
    ):
        raise RenderRequestError(f"timeout_s must be 1 to {MAX_TIMEOUT_S} seconds")
    return page_url, login_url, secret, float(timeout_s)


class VerifierHandler(BaseHTTPRequestHandler):
    token = ""
    one_at_a_time = threading.Lock()

    def do_GET(self) -> None:
        if self.path != "/health":
            self._answer(HTTPStatus.NOT_FOUND, {"error": "not found"})
        elif not (self.token and os.access(CHROMIUM, os.X_OK)):
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, {"ok": False})
        else:
            self._answer(HTTPStatus.OK, {"ok": True})

    def do_POST(self) -> None:
        if self.path != RENDER_PATH:
            self._answer(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        given = self.headers.get("Authorization", "").removeprefix("token ").strip()
        if not (self.token and hmac.compare_digest(given, self.token)):
            self._answer(HTTPStatus.FORBIDDEN, {"error": "a valid token is required"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "too large"})
            return
        try:
            page_url, login_url, secret, timeout_s = parse_render_request(self.rfile.read(length))
        except RenderRequestError as e:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            return
        with self.one_at_a_time:
            started = time.monotonic()
            try:
                result = render(page_url, login_url, secret, timeout_s)
            except RenderFailed as e:
                log.warning("render of %s could not run: %s", page_url, e)
                self._answer(HTTPStatus.BAD_GATEWAY, {"error": str(e)})
                return
        log.info(
            "rendered %s in %.2fs (%s), %.2fs in all",
            page_url,
            result.render_s,
            "passed" if result.passed else f"failed: {result.error.summary()}",
            time.monotonic() - started,
        )
        self._answer(HTTPStatus.OK, result.to_json())

    def _answer(self, status: HTTPStatus, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        log.debug(format, *args)


def read_token(path: Path, wait_s: float = 120) -> str:
    """The token the hub made for the verifier (the hub starts first)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            token = ""
        if token:
            return token
        time.sleep(1)
    raise SystemExit(f"no verifier token at {path}: is the hub running?")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    VerifierHandler.token = read_token(Path(str(TOKEN_FILE)))
    server = ThreadingHTTPServer(("0.0.0.0", VERIFIER_PORT), VerifierHandler)  # noqa: S104
    log.info("verifier listening on port %d (chromium: %s)", VERIFIER_PORT, CHROMIUM)
    # As PID 1 there is no default SIGTERM action: `docker stop` would wait 10 s for nothing.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    server.serve_forever()


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
