"""The contract between the hub and the verifier (the headless browser that checks examples).

The hub decides what to verify and when, starts the example on a server of its system
visitor, and asks the verifier to render one page of it. The verifier runs Debian's
chromium through Playwright and answers how the render went, with screenshots. Both sides
import this module (standard library only), so they agree on the address, the token and
the fields of a request.
"""

from __future__ import annotations

from pathlib import PurePosixPath

VERIFIER_HOST = "verifier"
VERIFIER_PORT = 8095
VERIFIER_URL = f"http://{VERIFIER_HOST}:{VERIFIER_PORT}"
RENDER_PATH = "/render"

# The origin the verifier's browser reaches the gallery through: the hub's proxy on the
# stack's network, the very next hop after Traefik for every visitor. The verifier
# refuses to open anything else.
HUB_ORIGIN = "http://hub:8000"

# The verifier's token: made by the hub on its first start, on the `service-tokens`
# volume (read-write in the hub, read-only in the verifier). Sent as
# `Authorization: token <token>` with every render request.
TOKEN_FILE = PurePosixPath("/srv/service-tokens/verifier-token")

# The header the browser sends, once, to log in as the system visitor (a one-time secret
# the hub hands out with each render request: never in a URL).
LOGIN_HEADER = "X-Gallery-Verifier-Login"

# Screenshot sizes: the viewport is 16:9 (the gallery card's shape), the thumbnail is the
# top of the page, scaled down; the admins' screenshot is the whole page, cut off here.
VIEWPORT = (1280, 720)
THUMBNAIL_SIZE = (640, 360)
MAX_SCREENSHOT_HEIGHT = 4000

# Fields of a render request (JSON) and of its answer.
REQUEST_FIELDS = ("page_url", "login_url", "login_secret", "timeout_s")
ANSWER_FIELDS = (
    "passed",  # bool
    "render_s",  # float: navigation until Voila finished (or until the timeout)
    "status",  # int: the page's HTTP status
    "error",  # null or {kind, cell, cells, exception, message, traceback}
    "page_errors",  # list of uncaught JavaScript errors (not a failure by themselves)
    "screenshot_png",  # base64
    "thumbnail_png",  # base64
)
