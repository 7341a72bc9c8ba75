"""The hub's own REST API, as the gallery's in-hub components call it with a service token."""

from __future__ import annotations

import json

from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse


class HubAPI:
    """Requests to the hub's API with one service's token (its role limits what it may do)."""

    def __init__(self, api_url: str, token: str):
        self.api_url = api_url.rstrip("/")
        self.token = token

    async def request(
        self, method: str, path: str, body: dict | None = None, timeout_s: float = 120
    ) -> HTTPResponse:
        """One call; the answer whatever its status (the caller decides what is an error)."""
        request = HTTPRequest(
            f"{self.api_url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
            body=json.dumps(body) if body is not None else (None if method == "GET" else ""),
            request_timeout=timeout_s,
            allow_nonstandard_methods=True,
        )
        return await AsyncHTTPClient().fetch(request, raise_error=False)
