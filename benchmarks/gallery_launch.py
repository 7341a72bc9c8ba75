"""Benchmark: gallery click-to-rendered latency against `docker run` of the same image.

Brings up the real stack (as the end-to-end tests do), builds the demo environment and
serves a gallery whose example opens its notebook with Voila. In one run:
- floor: `docker run` of the image with Voila alone, timed until Voila answers with the
  notebook's output (the least any launch could take on this host);
- sequential: 20 launches, each as a new visitor, from the POST of the Launch form until
  the rendered Voila page shows the output; p50 and p95, and their ratio to the floor;
- simultaneous: 10 launches at once, time until the last one is rendered.

Usage: .venv/bin/python -m benchmarks.gallery_launch [--launches 20] [--simultaneous 10]
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.e2e import harness as e2e
from tests.e2e.environments_client import EnvironmentsClient

OUTPUT = "The answer is 42"
XSRF_FIELD = re.compile(r'name="_xsrf" value="([^"]+)"')
VISITOR = re.compile(r"/spawn-pending/(gallery-[0-9a-f]{16})/")


def wait_for(url: str, session: requests.Session, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            page = session.get(url, timeout=30)
            if page.status_code == 200 and OUTPUT in page.text:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never showed the output")


def floor(image: str) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    container = subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--rm",
            "-p",
            f"127.0.0.1:{port}:8866",
            image,
            "voila",
            "app.ipynb",
            "--port=8866",
            "--Voila.ip=0.0.0.0",
            "--no-browser",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        wait_for(f"http://127.0.0.1:{port}/", requests.Session())
        return time.perf_counter() - start
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def launch(stack) -> float:
    """One new visitor: load the gallery, click Launch, wait for the rendered app."""
    session = requests.Session()
    xsrf = XSRF_FIELD.search(session.get(stack.url("/hub/gallery"), timeout=30).text).group(1)
    start = time.perf_counter()
    answer = session.post(
        stack.url("/hub/gallery/launch/demo"),
        data={"_xsrf": xsrf},
        allow_redirects=False,
        timeout=300,
    )
    assert answer.status_code == 303, (answer.status_code, answer.text[:300])
    visitor = VISITOR.search(answer.headers["Location"]).group(1)
    wait_for(stack.url(f"/user/{visitor}/demo/voila/render/app.ipynb"), session)
    return time.perf_counter() - start


def stop_visitors(stack, token: str) -> None:
    api = f"{stack.base_url}/hub/api"
    headers = {"Authorization": f"token {token}"}
    users = requests.get(f"{api}/groups/gallery-visitors", headers=headers, timeout=30).json()
    for name in users["users"]:
        requests.delete(
            f"{api}/users/{name}/servers/demo", headers=headers, json={"remove": True}, timeout=60
        )
        requests.delete(f"{api}/users/{name}", headers=headers, timeout=60)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=20)
    parser.add_argument("--simultaneous", type=int, default=10)
    args = parser.parse_args()

    e2e.ARTIFACTS.mkdir(exist_ok=True)
    with e2e.running_stack(e2e.ARTIFACTS) as stack:
        gitserver = e2e.start_gitserver(stack)
        token = e2e.make_admin_token(stack, e2e.read_admin_password(stack))
        client = EnvironmentsClient(stack.base_url, token)
        build = client.create(repository=f"{gitserver}/public/demo.git", name="gallery-demo")
        image = client.wait(build.json()["id"])["image"]
        limits = {
            "GALLERY_MAX_SERVERS": "40",
            "GALLERY_LAUNCHES_PER_MINUTE": "1000",
        }
        with stack.hub_settings(**limits):
            floors = [floor(image) for _ in range(3)]
            sequential = []
            for _ in range(args.launches):
                sequential.append(launch(stack))
                stop_visitors(stack, token)
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.simultaneous) as pool:
                list(pool.map(lambda _: launch(stack), range(args.simultaneous)))
            simultaneous = time.perf_counter() - start
            stop_visitors(stack, token)
        base = statistics.median(floors)
        p50, p95 = percentile(sequential, 0.5), percentile(sequential, 0.95)
        print(f"floor (docker run until Voila answers): median {base:.2f} s of {len(floors)}")
        print(
            f"click-to-rendered, {len(sequential)} sequential launches: "
            f"p50 {p50:.2f} s ({p50 / base:.2f}x floor), p95 {p95:.2f} s ({p95 / base:.2f}x)"
        )
        print(
            f"{args.simultaneous} simultaneous launches: last rendered after "
            f"{simultaneous:.2f} s ({simultaneous / base:.2f}x floor)"
        )


if __name__ == "__main__":
    main()
