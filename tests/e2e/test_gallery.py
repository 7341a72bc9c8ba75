"""The public gallery: one click gives any visitor a running example."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from playwright.sync_api import expect

from .browser import chromium
from .harness import TEST_GALLERY
from .visitors import (
    VISITOR,
    anonymous_launch_form,
    docker,
    hub_api,
    launch,
    remove_visitors,
    visitor_names,
)


def test_a_visitor_launches_examples_with_one_click(stack, demo_image, admin_token, artifacts):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
        urls: list[str] = []
        page.on("request", lambda r: urls.append(r.url) if r.is_navigation_request() else None)

        page.goto(stack.url("/"))
        assert page.url.endswith("/hub/gallery")
        demo = page.locator("article[data-example=demo]")
        # Ready, or verified already (the verification runs right after the build).
        expect(demo).to_have_attribute("data-state", re.compile(r"^(ready|verified)$"))
        expect(demo).to_contain_text("Demo notebook")
        expect(page.locator("article[data-example=unbuilt]")).to_contain_text("not built yet")
        page.screenshot(path=str(artifacts / "gallery-phone.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=str(artifacts / "gallery.png"), full_page=True)

        demo.get_by_role("button", name="Launch").click()
        expect(page.get_by_text("The answer is 42")).to_be_visible(timeout=120_000)
        visitor = VISITOR.search(page.url).group(0)
        assert re.search(rf"/user/{visitor}/demo/voila/render/app\.ipynb$", page.url), page.url
        page.screenshot(path=str(artifacts / "gallery-launched-app.png"))
        assert not [u for u in urls if "token" in u.lower()], urls

        # The same browser launches a second example: same visitor, second named server.
        page.goto(stack.url("/hub/gallery"))
        page.locator("article[data-example=pyapp]").get_by_role("button", name="Launch").click()
        expect(page.get_by_text("Hello from the NeuroLang Gallery demo app")).to_be_visible(
            timeout=120_000
        )
        assert f"/user/{visitor}/pyapp/voila/render/app.py" in page.url
        assert not [u for u in urls if "token" in u.lower()], urls

        # What the visitor may not do, with its own login cookie.
        xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")
        headers = {"X-XSRFToken": xsrf}
        api = page.request
        assert (
            api.post(stack.url(f"/hub/api/users/{visitor}/tokens"), headers=headers, data={}).status
            == 403
        )
        assert api.get(stack.url("/hub/api/users"), headers=headers).status == 403
        assert api.get(
            stack.url("/user/admin/api/status"), headers=headers, max_redirects=0
        ).status in (302, 403, 404)
        other = api.post(
            stack.url(f"/hub/api/users/{visitor}/servers/extra"),
            headers=headers,
            data={"image": "neurolang-gallery/singleuser:latest"},
        )
        assert other.status in (400, 403), other.text()
        offsite = api.get(
            stack.url(f"/hub/spawn-pending/{visitor}/demo?next=https://evil.example/x"),
            max_redirects=0,
        )
        assert "evil.example" not in offsite.headers.get("location", "")

    servers = hub_api(stack, admin_token, "GET", f"/users/{visitor}").json()["servers"]
    assert set(servers) == {"demo", "pyapp"}
    assert servers["demo"]["user_options"]["image"] == demo_image


def test_launch_needs_the_xsrf_token_and_a_known_example(stack, demo_image):
    session, xsrf = anonymous_launch_form(stack)
    refused = session.post(stack.url("/hub/gallery/launch/demo"), allow_redirects=False)
    assert refused.status_code == 403
    unknown = launch(session, stack, xsrf, example="no-such-example")
    assert unknown.status_code == 404


def test_gallery_file_changes_apply_and_bad_edits_keep_the_old_gallery(stack, demo_image):
    with stack.examples_changed(extra=TEST_GALLERY["examples"]["demo"]):
        deadline = time.monotonic() + 20
        while (
            'data-example="extra"' not in requests.get(stack.url("/hub/gallery"), timeout=30).text
        ):
            assert time.monotonic() < deadline, "the new example never appeared"
            time.sleep(1)

        with Path(stack.env["GALLERY_FILE"]).open("r+") as f:  # in place, as an admin edits
            f.seek(0)
            f.write("examples:\n  broken: {title: 1}\n")
            f.truncate()
        time.sleep(2)
        page = requests.get(stack.url("/hub/gallery"), timeout=30)
        assert page.status_code == 200
        assert 'data-example="demo"' in page.text and 'data-example="extra"' in page.text
        assert "keeping the last good one" in stack.logs("hub")


def test_idle_examples_are_cleaned_up(stack, demo_image, admin_token):
    remove_visitors(stack, admin_token)
    with stack.hub_settings(GALLERY_IDLE_TIMEOUT="15"):
        session, xsrf = anonymous_launch_form(stack)
        response = launch(session, stack, xsrf)
        assert response.status_code == 303, response.text
        visitor = VISITOR.search(response.headers["Location"]).group(0)
        # DockerSpawner escapes '-' in user names: match on the random part.
        container = f"{visitor.removeprefix('gallery-')}--demo"
        deadline = time.monotonic() + 120
        while not docker("ps", "-q", "--filter", f"name={container}").stdout.strip():
            assert time.monotonic() < deadline, "the example never started"
            time.sleep(1)

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            gone = hub_api(stack, admin_token, "GET", f"/users/{visitor}").status_code == 404
            if gone and not docker("ps", "-aq", "--filter", f"name={container}").stdout.strip():
                break
            time.sleep(3)
        else:
            raise AssertionError(f"{visitor} or its container is still there")
        routes = hub_api(stack, admin_token, "GET", "/proxy").json()
        assert not [r for r in routes if visitor in r]


def test_capacity_gives_friendly_answers_and_leaves_nothing_behind(stack, demo_image, admin_token):
    remove_visitors(stack, admin_token)
    limit, extra = 2, 5
    with stack.hub_settings(GALLERY_MAX_SERVERS=str(limit), GALLERY_LAUNCHES_PER_MINUTE="100"):
        forms = [anonymous_launch_form(stack) for _ in range(limit + extra)]
        with ThreadPoolExecutor(max_workers=len(forms)) as pool:
            answers = list(pool.map(lambda f: launch(f[0], stack, f[1]), forms))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [303] * limit + [429] * extra, statuses
        for answer in answers:
            if answer.status_code == 429:
                assert int(answer.headers["Retry-After"]) > 0
                assert "capacity" in answer.text
        assert len(visitor_names(stack, admin_token)) == limit  # no orphaned visitors
        remove_visitors(stack, admin_token)
