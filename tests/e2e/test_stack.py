"""The three-container stack, through Traefik's published port, as a user meets it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import requests

from .hub_login import login

ROOT = Path(__file__).resolve().parents[2]


def test_every_service_is_running_and_healthy(stack):
    services = {s["Service"]: s for s in stack.services()}
    assert set(services) == {"traefik", "hub", "builder", "egress", "verifier"}
    for name, service in services.items():
        assert service["State"] == "running", name
        assert service["Health"] == "healthy", name


def test_only_traefik_publishes_a_port(stack):
    published = {
        s["Service"]: sorted({p["PublishedPort"] for p in s["Publishers"] if p["PublishedPort"]})
        for s in stack.services()
    }
    assert published["hub"] == []
    assert published["builder"] == []
    assert published["verifier"] == []
    assert stack.http_port in published["traefik"]


def test_hub_health_through_traefik(stack):
    response = requests.get(stack.url("/hub/health"), timeout=10)
    assert response.status_code == 200


def test_builder_reports_healthy_checks(stack):
    out = stack.compose(
        "exec",
        "-T",
        "builder",
        "python3",
        "-c",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8090/health').read().decode())",
    ).stdout
    body = json.loads(out)
    assert body["ok"] is True
    assert body["checks"]["docker"]["ok"] is True
    assert body["checks"]["state_dir"]["ok"] is True


def test_login_page_renders(stack):
    response = requests.get(stack.url("/hub/login"), timeout=10)
    assert response.status_code == 200
    assert 'name="username"' in response.text
    assert 'name="password"' in response.text
    assert "Sign in" in response.text


def test_admin_logs_in_with_the_generated_password(stack, admin_password):
    session, response = login(stack.base_url, "admin", admin_password)
    assert response.status_code == 200
    assert "/hub/login" not in response.url
    user = session.get(
        stack.url("/hub/api/user"),
        headers={"X-XSRFToken": session.cookies.get("_xsrf", "")},
        timeout=10,
    )
    assert user.status_code == 200
    assert user.json()["name"] == "admin"
    assert user.json()["admin"] is True


def test_wrong_password_is_refused(stack, admin_password):
    session, response = login(stack.base_url, "admin", admin_password + "x")
    assert response.status_code == 403
    assert "Invalid username or password" in response.text
    assert session.get(stack.url("/hub/api/user"), timeout=10).status_code == 403


def test_responses_carry_security_headers(stack):
    for path in ["/hub/login", "/hub/health", "/no-such-page"]:
        headers = requests.get(stack.url(path), timeout=10).headers
        assert headers.get("X-Content-Type-Options") == "nosniff", path
        assert headers.get("X-Frame-Options") == "SAMEORIGIN", path
        assert headers.get("Referrer-Policy") == "strict-origin-when-cross-origin", path


def test_traefik_api_and_dashboard_are_not_served(stack):
    for path in ["/api/rawdata", "/dashboard/", "/api/overview"]:
        response = requests.get(stack.url(path), timeout=10)
        assert response.status_code == 404, path
        assert "traefik" not in response.text.lower(), path


def test_secrets_are_private_files_and_nowhere_else(stack, admin_password):
    state = stack.hub_state_secrets()
    assert {"jupyterhub_cookie_secret", "proxy-auth-token", "admin-password.hash"} <= set(state)
    for name, (_, mode) in state.items():
        assert mode == "0o600", name
    secrets = [value for value, _ in state.values()] + [admin_password]
    assert all(len(s) >= 20 for s in secrets)

    tracked = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for relative in tracked:
        path = ROOT / relative
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            for secret in secrets:
                assert secret not in text, f"a hub secret appears in {relative}"

    images = sorted({s["Image"] for s in stack.services()})
    for image in images:
        inspect = subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, text=True, check=True
        ).stdout
        history = subprocess.run(
            ["docker", "history", "--no-trunc", image], capture_output=True, text=True, check=True
        ).stdout
        labels = json.loads(inspect)[0]["Config"].get("Labels") or {}
        for secret in secrets:
            assert secret not in inspect, f"a hub secret appears in docker inspect {image}"
            assert secret not in history, f"a hub secret appears in the layers of {image}"
            assert secret not in json.dumps(labels), f"a hub secret is in a label of {image}"


def test_hub_restart_keeps_state_and_prints_the_password_once(stack, admin_password):
    since = stack.compose("exec", "-T", "hub", "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout
    stack.compose("restart", "hub")
    stack.wait_healthy()
    after_restart = stack.compose("logs", "--no-color", "--since", since.strip(), "hub").stdout
    assert "Running JupyterHub" in after_restart
    assert "Generated a password" not in after_restart
    _, response = login(stack.base_url, "admin", admin_password)
    assert response.status_code == 200
    assert "/hub/login" not in response.url


# Keep this the last test of the session (test_stack.py sorts last): it empties the login bucket of
# 127.0.0.1 at Traefik, and the bucket refills slowly (10 a minute).
def test_traefik_rate_limits_password_guessing(stack):
    answers = []
    for _ in range(25):
        response = requests.post(
            stack.url("/hub/login"), data={"username": "admin", "password": "guess"}, timeout=10
        )
        answers.append(response.status_code)
        if response.status_code == 429:
            break
    assert answers[-1] == 429, answers
    assert len(answers) >= 5  # a few honest mistakes are fine
