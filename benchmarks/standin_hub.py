"""A stand-in for JupyterHub's REST API, for the launch benchmark's floor only.

`jupyterhub-singleuser` asks the hub who a request's token belongs to and reports its
activity; this answers every request at once, as the user "floor" who may use the server.
It runs in its own container next to the floor's server (see gallery_launch.floor).
"""

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USER = {
    "kind": "user",
    "name": "floor",
    "admin": False,
    "groups": [],
    "session_id": None,
    "scopes": ["access:servers!user=floor"],
}


class StandInHub(BaseHTTPRequestHandler):
    def answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.answer(USER if self.path.startswith("/hub/api/user") else {})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.answer({})

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8081), StandInHub).serve_forever()  # noqa: S104
