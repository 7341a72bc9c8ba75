"""Log in to the hub through its login form, as a browser would (XSRF token included)."""

from __future__ import annotations

import re

import requests

XSRF_INPUT = re.compile(r'name="_xsrf"\s+value="([^"]+)"')


def login(
    base_url: str, username: str, password: str
) -> tuple[requests.Session, requests.Response]:
    """POST the login form; returns the session (with cookies) and the final response."""
    session = requests.Session()
    page = session.get(f"{base_url}/hub/login", timeout=10)
    page.raise_for_status()
    match = XSRF_INPUT.search(page.text)
    assert match, "the login form carries an _xsrf field"
    response = session.post(
        f"{base_url}/hub/login",
        data={"username": username, "password": password, "_xsrf": match.group(1)},
        timeout=30,
    )
    return session, response
