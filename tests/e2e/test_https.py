"""HTTPS with the site's own certificate: TLS at Traefik, Secure cookies, HSTS."""

from __future__ import annotations

import re
import subprocess

import pytest
import requests

from .hub_login import XSRF_INPUT
from .visitors import VISITOR, remove_visitors, wait_rendered


@pytest.fixture(scope="module")
def certificate(artifacts):
    """A self-signed certificate for 127.0.0.1 (and localhost), made for this run."""
    folder = artifacts / "tls"
    folder.mkdir(exist_ok=True)
    cert, key = folder / "site.crt", folder / "site.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o644)  # Traefik runs unprivileged and reads it through a bind mount
    return cert, key


@pytest.fixture(scope="module")
def https(stack, certificate, demo_image, admin_token):
    cert, key = certificate
    settings = {"GALLERY_TLS_CERT_FILE": str(cert), "GALLERY_TLS_KEY_FILE": str(key)}
    with stack.settings(("traefik", "hub"), **settings):
        yield f"https://127.0.0.1:{stack.env['GALLERY_HTTPS_PORT']}", str(cert)
    remove_visitors(stack, admin_token)


def tls_session(ca: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment wins over verify
    session.verify = ca
    return session


def cookies_set(response: requests.Response) -> dict[str, str]:
    """Each Set-Cookie of a response and of the redirects before it: name -> header."""
    found = {}
    for answer in [*response.history, response]:
        for header in answer.raw.headers.getlist("Set-Cookie"):
            found[header.split("=", 1)[0]] = header
    return found


def test_https_serves_the_sites_certificate_with_hsts(stack, https):
    base, ca = https
    page = requests.get(f"{base}/hub/login", verify=ca, timeout=30)
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    plain = requests.get(stack.url("/hub/login"), allow_redirects=False, timeout=30)
    assert plain.status_code in (301, 302, 307, 308)
    assert plain.headers["Location"].startswith("https://")


def test_login_and_launch_cookies_are_secure(stack, https, admin_password):
    base, ca = https
    session = tls_session(ca)
    form = session.get(f"{base}/hub/login", timeout=30)
    xsrf = XSRF_INPUT.search(form.text).group(1)
    for name, header in cookies_set(form).items():
        assert "secure" in header.lower(), (name, header)
    login = session.post(
        f"{base}/hub/login",
        data={"username": "admin", "password": admin_password, "_xsrf": xsrf},
        allow_redirects=False,
        timeout=30,
    )
    assert login.status_code == 302
    login_cookies = cookies_set(login)
    assert "jupyterhub-hub-login" in login_cookies
    for name, header in login_cookies.items():
        assert "secure" in header.lower(), (name, header)

    visitor = tls_session(ca)
    gallery = visitor.get(f"{base}/hub/gallery", timeout=30)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', gallery.text).group(1)
    launch = visitor.post(
        f"{base}/hub/gallery/launch/demo",
        data={"_xsrf": xsrf, "view": "voila"},
        allow_redirects=False,
        timeout=120,
    )
    assert launch.status_code == 303, launch.text[:500]
    assert "jupyterhub-hub-login" in cookies_set(launch)
    name = VISITOR.search(launch.headers["Location"]).group(0)
    wait_rendered(visitor, f"{base}/user/{name}/demo/voila/render/app.ipynb")
    # The hub's cookies and the example server's own (its OAuth login), all Secure.
    names = {c.name for c in visitor.cookies}
    assert "jupyterhub-hub-login" in names
    assert [n for n in names if n.startswith("jupyterhub-user-")], names
    assert all(c.secure for c in visitor.cookies), [(c.name, c.secure) for c in visitor.cookies]
