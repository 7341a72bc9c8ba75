"""The warm pool: a click lands on an app that is already running, and only one click."""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .harness import TEST_GALLERY
from .hub_login import login
from .visitors import (
    VISITOR,
    XSRF_FIELD,
    anonymous_launch_form,
    container_of,
    docker,
    hub_api,
    launch,
    remove_visitors,
    visitor_names,
    wait_rendered,
)

APP = "/warmdemo/voila/render/app.ipynb"


def warm_servers(stack, admin_token) -> dict[str, dict]:
    """The warm pool's visitors and their servers (name -> servers)."""
    group = hub_api(stack, admin_token, "GET", "/groups/gallery-warm").json()
    return {
        name: hub_api(stack, admin_token, "GET", f"/users/{name}").json()["servers"]
        for name in group["users"]
    }


def admin_gallery(stack, admin) -> str:
    """The gallery page as the admin sees it (with each example's warm count)."""
    page = admin.get(stack.url("/hub/gallery"), timeout=30)
    assert page.status_code == 200
    return page.text


def wait_warm(stack, admin_token, admin, count=1, timeout=180, example="warmdemo"):
    """Until `count` warm servers of `example` are ready and shown to the admin as warm."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        servers = warm_servers(stack, admin_token)
        ready = [n for n, s in servers.items() if s.get(example, {}).get("ready")]
        card = admin_gallery(stack, admin).split(f'data-example="{example}"', 1)[-1]
        if len(ready) >= count and f"{count}/1 warm" in card.split("</article>", 1)[0]:
            return servers
        time.sleep(1)
    raise AssertionError(
        f"no {count} warm servers after {timeout}s: {warm_servers(stack, admin_token)}"
    )


def wait_pool_empty(stack, admin_token, timeout=120) -> None:
    deadline = time.monotonic() + timeout
    while warm_servers(stack, admin_token):
        assert time.monotonic() < deadline, "the warm pool's visitors were not removed"
        time.sleep(2)


def test_a_crowd_against_a_small_cap_ends_on_apps_or_the_busy_page(stack, demo_image, admin_token):
    remove_visitors(stack, admin_token)
    with stack.hub_settings(GALLERY_MAX_SERVERS="4", GALLERY_LAUNCHES_PER_MINUTE="100"):
        forms = [anonymous_launch_form(stack) for _ in range(12)]
        with ThreadPoolExecutor(max_workers=len(forms)) as threads:
            answers = list(threads.map(lambda f: launch(f[0], stack, f[1], "demo"), forms))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [303] * 4 + [429] * 8, statuses
        launched = [(f[0], a) for f, a in zip(forms, answers, strict=True) if a.status_code == 303]
        for session, answer in launched:
            name = VISITOR.search(answer.headers["Location"]).group(0)
            wait_rendered(
                session, stack.url(f"/user/{name}/demo/voila/render/app.ipynb"), timeout=240
            )
        for answer in answers:
            if answer.status_code == 429:
                assert "capacity" in answer.text
        names = visitor_names(stack, admin_token)
        assert len(names) == 4
        for name in names:  # no visitor without its server
            servers = hub_api(stack, admin_token, "GET", f"/users/{name}").json()["servers"]
            assert servers and all(s["ready"] for s in servers.values())
    remove_visitors(stack, admin_token)


@pytest.fixture(scope="module")
def admin(stack, admin_password) -> requests.Session:
    """The admin's browser session (the gallery shows admins the warm counts)."""
    return login(stack.base_url, "admin", admin_password)[0]


@pytest.fixture(scope="module")
def pool(stack, demo_image, admin_token, admin):
    remove_visitors(stack, admin_token)
    with stack.hub_settings(GALLERY_WARM_MAX="2", GALLERY_LAUNCHES_PER_MINUTE="100"):
        wait_warm(stack, admin_token, admin)
        yield
    wait_pool_empty(stack, admin_token)  # GALLERY_WARM_MAX=0 again: the pool retires all
    remove_visitors(stack, admin_token)


def test_a_click_lands_on_the_running_app_and_the_pool_refills(stack, pool, admin_token, admin):
    before = set(warm_servers(stack, admin_token))
    session, xsrf = anonymous_launch_form(stack)
    started = time.perf_counter()
    answer = launch(session, stack, xsrf, "warmdemo")
    assert answer.status_code == 303
    # Straight to the app, not the progress page.
    assert re.fullmatch(rf"/user/gallery-[0-9a-f]{{16}}{APP}", answer.headers["Location"])
    visitor = VISITOR.search(answer.headers["Location"]).group(0)
    assert visitor in before
    wait_rendered(session, stack.url(answer.headers["Location"]))
    print(f"warm click to rendered: {time.perf_counter() - started:.2f}s")
    # It is an ordinary visitor now (the culler sees it), and a new warm one is coming.
    assert visitor in visitor_names(stack, admin_token)
    assert visitor not in warm_servers(stack, admin_token)
    servers = hub_api(stack, admin_token, "GET", f"/users/{visitor}").json()["servers"]
    assert servers["warmdemo"]["ready"]
    wait_warm(stack, admin_token, admin)
    assert visitor not in warm_servers(stack, admin_token)


def test_a_claim_renders_on_the_kernel_started_ahead_and_its_share_link_reaches_it(
    stack, pool, admin_token, admin
):
    share = {**TEST_GALLERY["examples"]["share"], "warm": 1}
    with stack.examples_changed(share=share):
        wait_warm(stack, admin_token, admin, example="share")
        session, xsrf = anonymous_launch_form(stack)
        answer = session.post(
            stack.url("/hub/gallery/launch/share"),
            data={"_xsrf": xsrf, "view": "voila", "p.query": "left amygdala & <b>"},
            allow_redirects=False,
            timeout=120,
        )
        assert answer.status_code == 303
        location = answer.headers["Location"]
        assert re.search(r"/share/voila/render/share\.ipynb\?query=left", location), location
        visitor = VISITOR.search(location).group(0)
        # The kernel was started before the click, and was told the click's query string.
        wait_rendered(session, stack.url(location), text="Query: left amygdala")
        log = docker("logs", container_of(visitor, "share")).stderr
        assert "A render got the spare kernel" in log, log[-2000:]
    remove_visitors(stack, admin_token)


def test_a_warm_server_is_never_claimed_twice(stack, pool, admin_token, admin):
    wait_warm(stack, admin_token, admin)
    forms = [anonymous_launch_form(stack) for _ in range(8)]
    with ThreadPoolExecutor(max_workers=len(forms)) as threads:
        answers = list(threads.map(lambda f: launch(f[0], stack, f[1], "warmdemo"), forms))
    assert [a.status_code for a in answers] == [303] * len(forms)
    direct = [a for a in answers if a.headers["Location"].endswith(APP)]
    assert len(direct) == 1, [a.headers["Location"] for a in answers]
    visitors = [VISITOR.search(a.headers["Location"]).group(0) for a in answers]
    assert len(set(visitors)) == len(visitors)  # eight browsers, eight visitors
    for (session, _), answer in zip(forms, answers, strict=True):
        name = VISITOR.search(answer.headers["Location"]).group(0)
        wait_rendered(session, stack.url(f"/user/{name}{APP}"), timeout=240)
    remove_visitors(stack, admin_token)


def test_a_browser_with_a_visitor_gets_its_own_server_not_a_second_identity(
    stack, pool, admin_token, admin
):
    wait_warm(stack, admin_token, admin)
    session, xsrf = anonymous_launch_form(stack)
    first = launch(session, stack, xsrf, "demo")
    visitor = VISITOR.search(first.headers["Location"]).group(0)
    # Back on the gallery (a new page, with the visitor's own XSRF token), another click.
    xsrf = XSRF_FIELD.search(session.get(stack.url("/hub/gallery"), timeout=30).text).group(1)
    second = launch(session, stack, xsrf, "warmdemo")
    assert VISITOR.search(second.headers["Location"]).group(0) == visitor
    assert "/spawn-pending/" in second.headers["Location"]
    remove_visitors(stack, admin_token)


def test_a_rebuilt_image_replaces_the_warm_servers(stack, pool, admin_token, admin, demo_image):
    old = set(wait_warm(stack, admin_token, admin))
    # A new image under the same name, as a rebuild makes (the labels stay).
    subprocess.run(
        ["docker", "build", "-q", "-t", demo_image, "-"],
        input=f"FROM {demo_image}\nLABEL org.neurolang-gallery.test-rebuild={time.time()}\n",
        text=True,
        check=True,
        capture_output=True,
        env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    image_id = docker("image", "inspect", "-f", "{{.Id}}", demo_image).stdout.strip()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        servers = warm_servers(stack, admin_token)
        fresh = [
            n for n, s in servers.items() if n not in old and s.get("warmdemo", {}).get("ready")
        ]
        if fresh and not old & set(servers):
            break
        time.sleep(2)
    else:
        raise AssertionError(f"the warm servers were not replaced: {servers}")
    running = docker("inspect", "-f", "{{.Image}}", container_of(fresh[0], "warmdemo")).stdout
    assert running.strip() == image_id


def test_the_pool_survives_a_hub_restart_and_is_not_culled(stack, pool, admin_token, admin):
    warm = set(wait_warm(stack, admin_token, admin))
    with stack.hub_settings(GALLERY_WARM_MAX="2", GALLERY_IDLE_TIMEOUT="10"):
        time.sleep(35)  # three idle timeouts, two culler rounds
        assert warm <= set(warm_servers(stack, admin_token))
        session, xsrf = anonymous_launch_form(stack)
        answer = launch(session, stack, xsrf, "warmdemo")
        assert answer.headers["Location"].endswith(APP)
        assert VISITOR.search(answer.headers["Location"]).group(0) in warm
        wait_rendered(session, stack.url(answer.headers["Location"]))
