"""The contract between the hub and the verifier (the headless browser that checks examples).

The hub decides what to verify and when, starts the example on a server of its system
visitor, and asks the verifier to render one page of it. The verifier runs Debian's
chromium through Playwright and answers how the render went, with screenshots. Both sides
import this module (standard library only), so they agree on the address, the token and
the fields of a request.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
# The verifier runs unprivileged as this uid; the hub gives it the token file (mode 600).
VERIFIER_UID = 1000

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


@dataclass(frozen=True)
class RenderError:
    """Why a verification failed.

    `kind`: error-output, timeout, kernel-died, http-status, no-voila (the verifier's
    findings) or start-failed (the hub's: the example's server did not start).
    """

    kind: str
    message: str
    cell: int | None = None  # 1-based, markdown cells included (as Voila counts them)
    cells: int | None = None  # cells in the notebook
    exception: str | None = None  # e.g. ZeroDivisionError
    traceback: list[str] = field(default_factory=list)  # its last lines

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | None) -> RenderError | None:
        if not data:
            return None
        known = {k: data.get(k) for k in cls.__dataclass_fields__ if k in data}
        known["traceback"] = list(known.get("traceback") or [])
        return cls(**known)

    def summary(self) -> str:
        """One line for a card or a log: `ZeroDivisionError in cell 3 of 4: division by zero`."""
        where = f" in cell {self.cell}" if self.cell else ""
        if self.cell and self.cells:
            where += f" of {self.cells}"
        what = self.exception or self.kind
        return f"{what}{where}: {self.message}" if self.message else f"{what}{where}"
