"""The Environments page: the builder's admin web page, rendered inside JupyterHub's look.

Rendering only: the tornado handler that serves it calls :func:`render_environments_page`.
The template extends JupyterHub's own ``page.html`` (found next to the installed
``jupyterhub`` package), so the page has the hub's navbar, CSS, dark mode and Bootstrap;
the browser loads those from the hub (``/hub/static/``) and our script, stylesheet and the
vendored xterm.js from the service's static prefix. Everything the page shows comes from the
environments API, fetched by ``static/environments.js``.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jupyterhub._data import DATA_FILES_PATH

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATE_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
HUB_TEMPLATE_DIR = Path(DATA_FILES_PATH) / "templates"

# page.html shows the hub's Admin link for this scope; the hub gives it to admins.
_ADMIN_UI_SCOPE = "admin-ui"


@dataclass(frozen=True)
class PageUser:
    """What JupyterHub's page.html reads from ``user`` (its ORM user has these too)."""

    name: str
    admin: bool = False
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def json_escaped_name(self) -> str:
        # page.html puts this inside a JS string literal in an inline <script> with `| safe`.
        # json.dumps escapes quotes and backslashes; <, > and & are escaped too, so a name can
        # never close the script element or open a comment.
        quoted = json.dumps(self.name)[1:-1]
        return quoted.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def make_template_env() -> jinja2.Environment:
    """Our templates first, then JupyterHub's (for ``page.html``); autoescape on."""
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
            jinja2.FileSystemLoader(str(HUB_TEMPLATE_DIR)),
        ]
    )
    return jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
    )


def _with_slash(prefix: str) -> str:
    return prefix if prefix.endswith("/") else prefix + "/"


def _hub_static_url(hub_prefix: str) -> Callable[..., str]:
    base = _with_slash(hub_prefix) + "static/"

    def static_url(path: str, include_version: bool = True, **_ignored: Any) -> str:
        # The hub serves these files itself (with its own cache headers); the version
        # argument only matters for tornado's hashed URLs, which we do not have here.
        return base + path.lstrip("/")

    return static_url


def _server_root(hub_prefix: str) -> str:
    """JupyterHub's ``prefix`` (the whole server's base URL): "/hub/" → "/"."""
    parent = posixpath.dirname(_with_slash(hub_prefix).rstrip("/"))
    return _with_slash(parent or "/")


def _page_user(user: Mapping[str, Any]) -> PageUser:
    scopes = user.get("scopes") or ()
    if isinstance(scopes, str):
        scopes = scopes.split()
    elif not isinstance(scopes, Iterable):
        scopes = ()
    return PageUser(
        name=str(user.get("name") or ""),
        admin=bool(user.get("admin")),
        scopes=frozenset(str(s) for s in scopes),
    )


def _limit(value: float) -> str:
    """A limit for an HTML attribute: 16.0 → "16", 0.5 → "0.5"."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def render_environments_page(
    env: jinja2.Environment,
    *,
    user: dict,
    xsrf_token: str,
    prefix: str = "/services/environments/",
    hub_prefix: str = "/hub/",
    static_prefix: str = "/services/environments/static/",
    max_memory_gb: float,
    max_cpu: float,
) -> str:
    """The Environments page as HTML.

    ``user`` is the JupyterHub user model (``{"name": ..., "admin": ..., "scopes": [...]}``);
    ``xsrf_token`` is the handler's ``xsrf_token`` (the browser echoes it in ``X-XSRFToken``).
    ``prefix`` is the service's URL prefix (the API is ``{prefix}api/``), ``hub_prefix`` the
    hub's, ``static_prefix`` where our static files (and ``vendor/xterm/``) are served.
    ``max_memory_gb`` and ``max_cpu`` bound the form's limit fields.
    """
    page_user = _page_user(user)
    hub_prefix = _with_slash(hub_prefix)
    prefix = _with_slash(prefix)
    static_prefix = _with_slash(static_prefix)
    parsed_scopes = set(page_user.scopes)
    if page_user.admin:
        parsed_scopes.add(_ADMIN_UI_SCOPE)
    template = env.get_template("environments.html")
    return template.render(
        # What JupyterHub's page.html reads (see its BaseHandler.template_namespace).
        base_url=hub_prefix,
        prefix=_server_root(hub_prefix),
        user=page_user,
        admin_access=page_user.admin,
        no_spawner_check=True,
        static_url=_hub_static_url(hub_prefix),
        version_hash="",
        logo_url=hub_prefix,
        login_url=hub_prefix + "login",
        logout_url=hub_prefix + "logout",
        login_service="",
        services=[],
        parsed_scopes=parsed_scopes,
        expanded_scopes=parsed_scopes,
        announcement=None,
        xsrf_token=xsrf_token,
        xsrf=xsrf_token,
        # Ours.
        service_prefix=prefix,
        api_url=prefix + "api/",
        static_prefix=static_prefix,
        max_memory_gb=_limit(max_memory_gb),
        max_cpu=_limit(max_cpu),
    )
