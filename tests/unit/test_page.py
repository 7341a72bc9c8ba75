"""The Environments page renders inside JupyterHub's page.html with every hook the JS uses."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from jupyterhub._data import DATA_FILES_PATH

from gallery_builder.page import (
    STATIC_DIR,
    TEMPLATE_DIR,
    PageUser,
    make_template_env,
    render_environments_page,
)

REPO = Path(__file__).resolve().parents[2]
TOKEN = "2|abc:def|1700000000|tok"  # made up
ADMIN = {"name": "alice", "admin": True, "kind": "user", "groups": []}


class Elements(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.form_fields: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if attributes.get("id") == "environment-form":
            self.stack.append("form")
        elif tag == "form":
            self.stack.append("other-form")
        elif self.stack and self.stack[-1] == "form" and tag in {"input", "button", "select"}:
            self.form_fields.append({"tag": tag, **attributes})

    def handle_endtag(self, tag):
        if tag == "form" and self.stack:
            self.stack.pop()

    def by_id(self, element_id: str) -> tuple[str, dict[str, str | None]]:
        found = [t for t in self.tags if t[1].get("id") == element_id]
        assert len(found) == 1, f"expected one #{element_id}, found {len(found)}"
        return found[0]

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def render(user=None, **kwargs) -> str:
    # StrictUndefined: page.html must get every variable it reads.
    env = make_template_env().overlay(undefined=jinja2.StrictUndefined)
    options = {"xsrf_token": TOKEN, "max_memory_gb": 16.0, "max_cpu": 4.0}
    options.update(kwargs)
    return render_environments_page(env, user=user or ADMIN, **options)


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def page() -> str:
    return render()


@pytest.fixture(scope="module")
def elements(page) -> Elements:
    return parse(page)


def test_template_and_static_dirs_ship_the_page_files():
    assert (TEMPLATE_DIR / "environments.html").is_file()
    assert (STATIC_DIR / "environments.js").is_file()
    assert (STATIC_DIR / "environments.css").is_file()


def test_environment_finds_jupyterhub_page_template_and_autoescapes():
    env = make_template_env()
    assert env.autoescape is True or env.autoescape("x.html")
    source, filename, _ = env.loader.get_source(env, "page.html")
    assert Path(filename) == Path(DATA_FILES_PATH) / "templates" / "page.html"
    assert "{% block main %}" in source
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"


def test_extends_hub_page_with_navbar_and_hub_assets(page, elements):
    assert 'id="jupyterhub-logo"' in page
    assert elements.by_id("thenavbar")
    hrefs = [a.get("href") for a in elements.all("a")]
    assert "/hub/home" in hrefs
    assert "/hub/logout" in hrefs
    stylesheets = [link.get("href") for link in elements.all("link")]
    assert "/hub/static/css/style.min.css" in stylesheets
    scripts = [s.get("src") for s in elements.all("script") if s.get("src")]
    bundle = "/hub/static/components/bootstrap/dist/js/bootstrap.bundle.min.js"
    assert bundle in scripts
    assert (Path(DATA_FILES_PATH) / "static" / bundle.removeprefix("/hub/static/")).is_file()
    assert "/hub/static/js/darkmode.js" in scripts
    assert re.search(r"<title>\s*Environments", page)


def test_our_scripts_and_styles(elements):
    scripts = [s.get("src") for s in elements.all("script") if s.get("src")]
    prefix = "/services/environments/static/"
    for src in ("vendor/xterm/xterm.js", "vendor/xterm/addon-fit.js", "environments.js"):
        assert prefix + src in scripts
    # xterm's UMD bundles must run before require.js defines `define.amd`, or they become
    # AMD modules instead of window.Terminal / window.FitAddon.
    require = scripts.index("/hub/static/components/requirejs/require.js")
    assert scripts.index(prefix + "vendor/xterm/xterm.js") < require
    assert scripts.index(prefix + "vendor/xterm/addon-fit.js") < require
    assert scripts[-1] == prefix + "environments.js"
    stylesheets = [link.get("href") for link in elements.all("link")]
    assert prefix + "vendor/xterm/xterm.css" in stylesheets
    assert prefix + "environments.css" in stylesheets


def test_xsrf_token_is_in_a_meta_tag_and_jhdata(page, elements):
    metas = [m for m in elements.all("meta") if m.get("name") == "xsrf-token"]
    assert [m.get("content") for m in metas] == [TOKEN]
    assert f'xsrf_token: "{TOKEN}"' in page


def test_page_hooks(elements):
    _, root = elements.by_id("environments-page")
    assert root["data-api-url"] == "/services/environments/api/"
    assert elements.by_id("add-environment")[0] == "button"
    assert elements.by_id("environment-form")[0] == "form"
    assert elements.by_id("environments-table")[0] == "table"
    assert elements.by_id("environments-body")[0] == "tbody"
    _, empty = elements.by_id("environments-empty")
    assert "hidden" in empty
    for element_id in ("page-alert", "log-dialog", "log-terminal", "log-state", "delete-dialog"):
        elements.by_id(element_id)
    _, add = elements.by_id("add-environment")
    assert add["data-bs-target"] == "#environment-dialog"
    assert "Add new" in render()


def test_form_fields(elements):
    inputs = {f["name"]: f for f in elements.form_fields if f["tag"] == "input"}
    assert set(inputs) == {"repository", "ref", "name", "memory", "cpu", "username", "password"}
    assert "required" in inputs["repository"]
    assert inputs["ref"]["placeholder"] == "default branch"
    # Numbers are typed as text: the server checks them and says what is wrong.
    assert (inputs["memory"]["type"], inputs["memory"]["inputmode"]) == ("text", "decimal")
    assert (inputs["cpu"]["type"], inputs["cpu"]["inputmode"]) == ("text", "decimal")
    assert inputs["password"]["type"] == "password"
    submits = [f for f in elements.form_fields if f["tag"] == "button" and f["type"] == "submit"]
    assert len(submits) == 1
    # Each field has an error slot the JS fills from the API's {"error", "field"}.
    for field in inputs.values():
        elements.by_id(f"{field['id']}-error")
    elements.by_id("environment-credentials")


def test_limits_are_rendered():
    html = render(max_memory_gb=2.5, max_cpu=0.5)
    assert "at most 2.5 GB" in html and "at most 0.5 cores" in html


def test_user_content_is_escaped():
    user = {"name": '<script>alert("x")</script>&', "admin": False}
    html = render(user=user, xsrf_token='"><img src=x>')
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;" in html
    assert "<img src=x>" not in html
    assert 'content="&#34;&gt;&lt;img src=x&gt;"' in html
    # jhdata's user string: no way out of the JS string or the <script> element.
    assert "\\u003c/script\\u003e" in html


def test_json_escaped_name():
    assert PageUser(name='a"b\\c</x>&').json_escaped_name == 'a\\"b\\\\c\\u003c/x\\u003e\\u0026'


def test_admin_link_only_for_admins():
    assert 'href="/hub/admin"' in render()
    manager = {"name": "bob", "admin": False, "scopes": ["custom:environments:manage"]}
    assert 'href="/hub/admin"' not in render(user=manager)


def test_environments_nav_link_is_active(elements):
    links = [a for a in elements.all("a") if a.get("href") == "/services/environments/"]
    assert len(links) == 1
    assert "active" in links[0]["class"]


def test_custom_prefixes():
    html = render(
        prefix="/base/services/environments",
        hub_prefix="/base/hub",
        static_prefix="/base/services/environments/static",
    )
    elements = parse(html)
    assert elements.by_id("environments-page")[1]["data-api-url"] == (
        "/base/services/environments/api/"
    )
    scripts = [s.get("src") for s in elements.all("script") if s.get("src")]
    assert "/base/hub/static/components/bootstrap/dist/js/bootstrap.bundle.min.js" in scripts
    assert "/base/services/environments/static/environments.js" in scripts
    assert 'href="/base/hub/logout"' in html
    assert 'base_url: "/base/hub/"' in html
    assert 'prefix: "/base/"' in html


def test_no_inline_handlers_and_no_external_urls(page, elements):
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", page, re.IGNORECASE)
    for tag, attrs in elements.tags:
        for key in ("src", "href"):
            url = attrs.get(key)
            if url and tag in {"script", "link", "img"}:
                assert url.startswith("/"), (tag, url)
    assert "javascript:" not in page.lower()


def test_row_actions_exist_in_the_script():
    script = "\n".join(path.read_text() for path in sorted(STATIC_DIR.rglob("*.js")))
    for action in ("logs", "rebuild", "cancel", "delete"):
        assert f'"{action}"' in script
    assert '"X-XSRFToken"' in script
    assert 'credentials: "same-origin"' in script
    assert "new EventSource(" in script
    assert "innerHTML" not in script


def test_the_page_loads_the_script_as_a_module():
    assert '<script type="module" src="/services/environments/static/environments.js">' in render()
    # The form has no copies of the server's rules: errors come from the API.
    script = "\n".join(path.read_text() for path in sorted(STATIC_DIR.rglob("*.js")))
    for copied in ("deriveName", "numberField", "must be a number", "must be at most"):
        assert copied not in script


def test_frontend_pins_match_the_lock():
    frontend = REPO / "builder" / "frontend"
    package = json.loads((frontend / "package.json").read_text())
    lock = json.loads((frontend / "package-lock.json").read_text())
    for name in ("@xterm/xterm", "@xterm/addon-fit"):
        pinned = package["dependencies"][name]
        assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"{name} is not pinned exactly"
        assert lock["packages"][f"node_modules/{name}"]["version"] == pinned
