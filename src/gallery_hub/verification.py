"""The verification: every example launched as a visitor would, and rendered in a browser.

Inside the hub, like the warm pool. When an example is due (verification_plan), the hub
starts it on the system visitor's named server of the example's id, through its own REST
API with a token limited to the system visitor's group (service `gallery-verification`),
so the server is made exactly as a visitor's is, only outside the caps. It then asks the
verifier service (headless chromium) to render the example's Voila page through the hub's
proxy, logged in as the system visitor with a one-time secret (never in a URL or log),
stores the answer (verification_results) and stops the server again. One example at a
time, and only while no visitor's launch waits for a start slot.

A verification that could not run (the verifier unreachable, the start refused for lack
of disk) records nothing: the example keeps its last result and is tried again later.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from gallery_common.gallery_file import Example
from gallery_common.verifier_contract import HUB_ORIGIN, RENDER_PATH, RenderError
from gallery_hub.background_loop import run_steps
from gallery_hub.gallery_source import GallerySource
from gallery_hub.hub_api_client import HubAPI
from gallery_hub.system_visitor import SYSTEM_VISITOR, ensure_system_visitor
from gallery_hub.verification_plan import due_examples, fingerprint
from gallery_hub.verification_results import VerificationResult, VerificationResults, utc_now

log = logging.getLogger("gallery_hub")

RETRY_AFTER_S = 300  # after a verification that could not run
LOGIN_SECRET_TTL_S = 120
LOGIN_PATH = "/hub/gallery/verification/login"


class CouldNotVerify(Exception):
    """Not the example's fault: try again later, record nothing."""


class Verification:
    """Decides what to verify, launches it, has it rendered, keeps the result."""

    def __init__(
        self,
        app,
        *,
        source: GallerySource,
        results: VerificationResults,
        hub_api: HubAPI,
        worker_url: str,
        worker_token: str,
        timeout_s: float,
        every_s: float,
        image_details: Callable[[set[str]], dict[str, tuple[str, str | None] | None]],
        built_at: Callable[[], dict[str, datetime]],
        launches_waiting: Callable[[], int],
        on_result: Callable[[VerificationResult], None] = lambda result: None,
        can_run: Callable[[Example], bool] = lambda example: True,
        building: Callable[[], set[str]] = set,
        interval_s: float = 5.0,
    ):
        self.app = app
        self.source = source
        self.results = results
        self.hub_api = hub_api
        self.worker_url = worker_url.rstrip("/")
        self.worker_token = worker_token
        self.timeout_s = timeout_s
        self.every_s = every_s
        self.image_details = image_details
        self.built_at = built_at
        self.launches_waiting = launches_waiting
        self.on_result = on_result
        self.can_run = can_run  # False: the image check says the hub cannot run it
        self.building = building  # images the builder is building (or filling) now
        self.interval_s = interval_s
        self.requested: set[str] = set()
        self.running: str | None = None  # the example being verified now
        self._retry_at: dict[str, datetime] = {}
        self._login_secrets: dict[str, float] = {}  # secret -> expiry (monotonic)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    # -- what the pages ask -------------------------------------------------------------

    def request(self, example_id: str) -> None:
        """An admin asked: verify this example next."""
        self.requested.add(example_id)
        self._wake.set()

    def accept_login(self, secret: str) -> bool:
        """True once for a secret this verification handed the verifier (and not expired)."""
        now = time.monotonic()
        for known, expiry in list(self._login_secrets.items()):
            if expiry < now:
                del self._login_secrets[known]
            elif hmac.compare_digest(known, secret):
                del self._login_secrets[known]
                return True
        return False

    # -- the background loop --------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        await asyncio.sleep(self.interval_s)  # let the hub finish starting
        try:
            await self._stop_leftovers()
        except Exception:
            log.exception("verification: could not stop the servers left from before")
        await run_steps(self.step, self._wake, self.interval_s, "verification")

    async def step(self) -> bool:
        """Verify the most urgent due example; True if more are due."""
        # Not while its build (or the data fill that ends it) is still running.
        building = await asyncio.to_thread(self.building)
        examples = {
            example.id: example
            for example in self.source.current().examples.values()
            if example.image_name not in building and await asyncio.to_thread(self.can_run, example)
        }
        details = await asyncio.to_thread(
            self.image_details, {e.image_name for e in examples.values()}
        )
        image_ids = {name: d[0] if d else None for name, d in details.items()}
        due = due_examples(
            examples,
            self.results.all(),
            image_ids,
            await asyncio.to_thread(self.built_at),
            now=utc_now(),
            every_s=self.every_s,
            requested=self.requested,
            retry_at=self._retry_at,
        )
        if not due or self.launches_waiting():
            return False
        example = examples[due[0].example]
        self.requested.discard(example.id)
        image_id, commit = details[example.image_name] or (None, None)
        log.info("verification: %s is due (%s)", example.id, due[0].reason)
        try:
            self.running = example.id
            result, screenshot, thumbnail = await self.verify(example, image_id, commit)
        except CouldNotVerify as e:
            log.warning("verification: could not verify %s (trying again later): %s", example.id, e)
            self._retry_at[example.id] = utc_now() + timedelta(seconds=RETRY_AFTER_S)
            return len(due) > 1
        finally:
            self.running = None
        self._retry_at.pop(example.id, None)
        await asyncio.to_thread(self.results.record, result, screenshot, thumbnail)
        self.on_result(result)
        if result.passed:
            log.info(
                "verification: %s passed: rendered in %.2fs, %.1fs in all",
                example.id,
                result.render_s or 0,
                result.total_s,
            )
        else:
            log.warning("verification: %s is broken: %s", example.id, result.error.summary())
        return len(due) > 1

    # -- one verification -----------------------------------------------------------------

    async def verify(
        self, example: Example, image_id: str | None, commit: str | None
    ) -> tuple[VerificationResult, bytes | None, bytes | None]:
        """Launch, render, stop. Raises CouldNotVerify when it could not be tried."""
        started = time.monotonic()
        user = ensure_system_visitor(self.app)
        await self._stop(example.id)
        try:
            error = await self._launch(example)
            answer: dict = {}
            if error is None:
                answer = await self._render(user.server_url(example.id), example)
                error = RenderError.from_json(answer.get("error"))
        finally:
            await self._stop(example.id)
        result = VerificationResult(
            example=example.id,
            passed=error is None,
            at=utc_now().isoformat(timespec="seconds"),
            image=example.image_name,
            image_id=image_id,
            commit=commit,
            fingerprint=fingerprint(example),
            render_s=answer.get("render_s"),
            total_s=round(time.monotonic() - started, 2),
            error=error,
            page_errors=list(answer.get("page_errors") or []),
        )
        return result, _png(answer.get("screenshot_png")), _png(answer.get("thumbnail_png"))

    async def _launch(self, example: Example) -> RenderError | None:
        """Start the example's server; a start that fails is the example's error."""
        path = f"/users/{SYSTEM_VISITOR}/servers/{example.id}"
        answer = await self.hub_api.request("POST", path, {"image": example.image_name})
        if answer.code in (400, 403, 404, 429, 503):
            raise CouldNotVerify(f"the hub refused the start: {answer.code} {_message(answer)}")
        if answer.code not in (201, 202):
            return RenderError("start-failed", f"the server did not start: {_message(answer)}")
        spawner = self.app.users[SYSTEM_VISITOR].spawners[example.id]
        deadline = time.monotonic() + self.timeout_s
        while spawner.pending == "spawn" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if spawner.ready:
            return None
        future = getattr(spawner, "_spawn_future", None)
        reason = ""
        if future is not None and future.done() and future.exception() is not None:
            reason = f": {future.exception()}"
        return RenderError("start-failed", f"the server did not start{reason}"[:500])

    async def _render(self, server_url: str, example: Example) -> dict:
        secret = secrets.token_urlsafe(32)
        self._login_secrets[secret] = time.monotonic() + LOGIN_SECRET_TTL_S
        body = {
            "page_url": f"{HUB_ORIGIN}{server_url}voila/render/{quote(example.path)}",
            "login_url": HUB_ORIGIN + LOGIN_PATH,
            "login_secret": secret,
            "timeout_s": self.timeout_s,
        }
        request = HTTPRequest(
            self.worker_url + RENDER_PATH,
            method="POST",
            headers={"Authorization": f"token {self.worker_token}"},
            body=json.dumps(body),
            request_timeout=self.timeout_s + 120,
        )
        try:
            answer = await AsyncHTTPClient().fetch(request, raise_error=False)
        finally:
            self._login_secrets.pop(secret, None)
        if answer.code != 200:
            raise CouldNotVerify(f"the verifier answered {answer.code}: {_message(answer)}")
        return json.loads(answer.body)

    async def _stop(self, server: str) -> None:
        user = self.app.users[SYSTEM_VISITOR]
        spawner = user.spawners.get(server) if server in user.orm_user.orm_spawners else None
        if spawner is None:
            return
        await self.hub_api.request(
            "DELETE", f"/users/{SYSTEM_VISITOR}/servers/{server}", {"remove": True}
        )
        for _ in range(300):
            if not spawner.active:
                return
            await asyncio.sleep(0.2)

    async def _stop_leftovers(self) -> None:
        """Servers of a verification cut off by a hub restart."""
        user = ensure_system_visitor(self.app)
        for name in [n for n, s in user.spawners.items() if s.active]:
            log.info("verification: stopping the leftover server %s", name)
            await self._stop(name)


def _png(data: str | None) -> bytes | None:
    return base64.b64decode(data) if data else None


def _message(answer) -> str:
    try:
        body = json.loads(answer.body or b"{}")
    except ValueError:
        return (answer.body or b"")[:200].decode(errors="replace")
    return str(body.get("message") or body.get("error") or "")[:300]
