"""One render of one example page in Debian's chromium, driven by Playwright.

The browser logs in the way the gallery logs in its visitors (the hub's own login cookie,
set by one request that carries a one-time secret in a header), opens the example's Voila
page through the hub's proxy, and waits until Voila has finished: the streamed page is
complete once every cell has run (or the first one raised). Then it reads the page (the
cells Voila rendered, their stderr outputs, the kernel), and takes two screenshots: the
whole page for admins and the top 16:9 of it as the thumbnail. A fresh browser for every
render, so nothing carries over from one example to the next.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import time
from dataclasses import dataclass

from PIL import Image
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from gallery_common.verifier_contract import (
    HUB_ORIGIN,
    LOGIN_HEADER,
    MAX_SCREENSHOT_HEIGHT,
    THUMBNAIL_SIZE,
    VIEWPORT,
    RenderError,
)
from gallery_verifier.render_result import first_error, progress_of

# Debian's chromium, never a browser Playwright downloads. The end-to-end tests use the same.
CHROMIUM = os.environ.get("GALLERY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Behind HTTPS every cookie of the hub and the user servers is Secure; the verifier reaches
# them over the stack's plain-HTTP network, which chromium then has to count as secure.
VERIFIER_ARGS = [*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={HUB_ORIGIN}"]
# After Voila has finished: time for widgets and images before the screenshot.
SETTLE_TIMEOUT_MS = 10_000

# What the page says: Voila's cells, their stderr outputs, its progress calls, the kernel.
READ_PAGE = """() => {
  const config = document.getElementById("jupyter-config-data");
  const cells = [...document.querySelectorAll("div[cell-index]")];
  const outputs = [];
  for (const cell of cells) {
    for (const o of cell.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')) {
      outputs.push({cell: Number(cell.getAttribute("cell-index")), text: o.innerText});
    }
  }
  return {
    config: config ? config.textContent : null,
    scripts: cells.map((c) => (c.querySelector("script") || {}).textContent || ""),
    outputs: outputs,
    height: document.documentElement.scrollHeight,
  };
}"""


class RenderFailed(Exception):
    """The render could not be tried (login refused, browser crashed): not the example's fault."""


@dataclass
class Render:
    passed: bool
    render_s: float
    status: int | None
    error: RenderError | None
    page_errors: list[str]
    screenshot_png: bytes
    thumbnail_png: bytes

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "render_s": round(self.render_s, 3),
            "status": self.status,
            "error": self.error.to_json() if self.error else None,
            "page_errors": self.page_errors,
            "screenshot_png": base64.b64encode(self.screenshot_png).decode(),
            "thumbnail_png": base64.b64encode(self.thumbnail_png).decode(),
        }


def thumbnail(png: bytes) -> bytes:
    """The screenshot scaled to the card's thumbnail size (PNG)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = VIEWPORT
    image = image.crop((0, 0, width, min(height, image.height)))
    out = io.BytesIO()
    image.resize(THUMBNAIL_SIZE, Image.Resampling.LANCZOS).save(out, "PNG", optimize=True)
    return out.getvalue()


def render(page_url: str, login_url: str, login_secret: str, timeout_s: float) -> Render:
    """Log in, open `page_url`, wait for Voila (at most `timeout_s`), read and photograph it."""
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=VERIFIER_ARGS)
        except PlaywrightError as e:
            raise RenderFailed(f"chromium did not start: {e}") from e
        try:
            width, height = VIEWPORT
            context = browser.new_context(viewport={"width": width, "height": height})
            login = context.request.post(
                login_url, headers={LOGIN_HEADER: login_secret}, max_redirects=0
            )
            if login.status != 204:
                raise RenderFailed(f"the hub refused the verifier's login ({login.status})")
            page = context.new_page()
            return _render_page(page, page_url, timeout_s)
        except PlaywrightError as e:
            raise RenderFailed(f"the browser failed: {str(e)[:500]}") from e
        finally:
            browser.close()


def _render_page(page: Page, page_url: str, timeout_s: float) -> Render:
    page_errors: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)[:300]))
    started = time.monotonic()
    status = None
    timed_out = False
    try:
        # The document is complete once Voila has streamed every cell it ran.
        response = page.goto(page_url, wait_until="domcontentloaded", timeout=timeout_s * 1000)
        status = response.status if response else None
    except PlaywrightTimeoutError:
        timed_out = True
    render_s = time.monotonic() - started
    if not timed_out:
        # A page that keeps loading is still judged by what it shows.
        with contextlib.suppress(PlaywrightTimeoutError):
            page.wait_for_load_state("networkidle", timeout=SETTLE_TIMEOUT_MS)
    found = page.evaluate(READ_PAGE)
    error = _judge(page, found, status, timed_out, timeout_s)
    screenshot = page.screenshot(
        full_page=True,
        clip={
            "x": 0,
            "y": 0,
            "width": VIEWPORT[0],
            "height": max(VIEWPORT[1], min(found["height"], MAX_SCREENSHOT_HEIGHT)),
        },
    )
    return Render(
        passed=error is None,
        render_s=render_s,
        status=status,
        error=error,
        page_errors=page_errors[:20],
        screenshot_png=screenshot,
        thumbnail_png=thumbnail(screenshot),
    )


def _judge(
    page: Page, found: dict, status: int | None, timed_out: bool, timeout_s: float
) -> RenderError | None:
    last, cells = progress_of(found["scripts"])
    if timed_out:
        running = min((last or 0) + 1, cells) if cells else None
        where = f" (still running cell {running} of {cells})" if running else ""
        return RenderError(
            "timeout", f"Voila did not finish within {timeout_s:g} s{where}", running, cells
        )
    if status != 200:
        return RenderError("http-status", f"the page answered {status}")
    if found["config"] is None:
        return RenderError("no-voila", "the page is not a Voila page")
    error = first_error(found["outputs"], cells)
    if error is not None:
        return error
    return _kernel_death(page, json.loads(found["config"]), cells)


def _kernel_death(page: Page, config: dict, cells: int | None) -> RenderError | None:
    """A kernel that died while (or right after) the notebook ran."""
    kernel_id = config.get("kernelId")
    if not kernel_id:
        return None
    origin = page.url.split("/", 3)[:3]
    url = "/".join(origin) + f"{config.get('baseUrl', '/')}api/kernels/{kernel_id}"
    answer = page.context.request.get(url)
    if answer.status == 404:
        return RenderError("kernel-died", "the kernel is gone after the notebook ran", None, cells)
    if answer.ok and answer.json().get("execution_state") == "dead":
        return RenderError("kernel-died", "the kernel died", None, cells)
    return None
