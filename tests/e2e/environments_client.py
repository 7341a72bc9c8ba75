"""A small client for the environments API, as a script would use it (token auth)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import requests

TERMINAL = {"built", "failed", "cancelled"}


@dataclass
class EnvironmentsClient:
    base_url: str
    token: str

    @property
    def api(self) -> str:
        return f"{self.base_url}/services/environments/api/environments"

    def request(self, method: str, path: str = "", **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.api + path, headers=headers, timeout=30, **kwargs)

    def create(self, **body) -> requests.Response:
        return self.request("POST", json=body)

    def get(self, build_id: str) -> dict:
        response = self.request("GET", f"/{build_id}")
        response.raise_for_status()
        return response.json()

    def list(self) -> list[dict]:
        response = self.request("GET")
        response.raise_for_status()
        return response.json()["environments"]

    def wait(self, build_id: str, states=TERMINAL, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            build = self.get(build_id)
            if build["state"] in states:
                return build
            time.sleep(1)
        raise AssertionError(f"build {build_id} still {build['state']} after {timeout}s")

    def log_events(self, build_id: str, last_event_id: int | None = None, timeout: float = 600):
        """Read the SSE stream to its end; returns [(event, id, data)] in order."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        response = self.request("GET", f"/{build_id}/log", headers=headers, stream=True)
        response.raise_for_status()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events, event, event_id, data = [], "message", None, []
        deadline = time.monotonic() + timeout
        for line in response.iter_lines(decode_unicode=True):
            if time.monotonic() > deadline:
                raise AssertionError("log stream did not end in time")
            if line == "":
                if data:
                    events.append((event, event_id, json.loads("\n".join(data))))
                    if event == "state":
                        break
                event, event_id, data = "message", None, []
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                data.append(line[6:])
        response.close()
        return events

    def log_text(self, build_id: str) -> str:
        return "".join(data for event, _, data in self.log_events(build_id) if event == "log")
