"""Every card tells the truth: examples are launched and rendered in a real browser.

The hub's verification launches each built example as its system visitor and has the
verifier service (Debian's chromium, Playwright) render it; the cards, the example pages,
the status API, the badges and the metrics show what it found.
"""

from __future__ import annotations

import re
import shutil
import struct
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from .browser import chromium
from .environments_client import EnvironmentsClient
from .visitors import VISITOR, anonymous_launch_form, hub_api, launch, remove_visitors

ROOT = Path(__file__).resolve().parents[2]
DOCS_IMAGES = ROOT / "docs" / "images"
VERIFY_TIMEOUT_S = 300  # GALLERY_VERIFY_TIMEOUT's default, which the test stack keeps


@pytest.fixture(scope="module", autouse=True)
def verification_on(stack):
    """The test stack runs without the verification (harness: GALLERY_VERIFY=false)."""
    with stack.hub_settings(GALLERY_VERIFY="true"):
        yield


def examples(stack, token: str | None = None) -> dict[str, dict]:
    headers = {"Authorization": f"token {token}"} if token else {}
    answer = requests.get(stack.url("/hub/gallery/api/examples"), headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return {e["id"]: e for e in answer.json()["examples"]}


def wait_state(stack, example: str, states: set[str], timeout: float = VERIFY_TIMEOUT_S + 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = examples(stack)[example]
        if info["state"] in states:
            return info
        time.sleep(2)
    raise AssertionError(f"{example} is {info['state']}, not {states}, after {timeout}s")


def browser_login(page, stack, admin_password) -> None:
    page.goto(stack.url("/hub/login"))
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", admin_password)
    page.click("input[type=submit]")
    page.wait_for_url("**/hub/home")


def keep_for_readme(artifacts: Path, name: str) -> None:
    """The README shows a few of the browser tests' screenshots (test-artifacts/ is ignored)."""
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifacts / name, DOCS_IMAGES / name)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def broken_image(stack, admin_token, gitserver):
    """The fixture repository `broken` built as gallery-broken:main."""
    client = EnvironmentsClient(stack.base_url, admin_token)
    response = client.create(repository=f"{gitserver}/public/broken.git", name="gallery-broken")
    build = client.wait(response.json()["id"])
    assert build["state"] == "built", build
    yield build["image"]
    remove_visitors(stack, admin_token)
    # The admin launched it too (admins may launch a broken example).
    hub_api(stack, admin_token, "DELETE", "/users/admin/servers/broken", json={"remove": True})
    deadline = time.monotonic() + 60
    while client.request("DELETE", f"/{build['id']}").status_code == 409:
        assert time.monotonic() < deadline, "the broken environment stayed in use"
        time.sleep(2)


def test_a_broken_example_is_shown_broken_and_visitors_cannot_launch_it(
    stack, demo_image, broken_image, admin_password, artifacts
):
    started = time.monotonic()
    info = wait_state(stack, "broken", {"broken"})
    print(f"broken shown {time.monotonic() - started:.1f}s after its build")
    error = info["last_verification"]["error"]
    assert error["exception"] == "KeyError"
    assert (error["cell"], error["cells"]) == (3, 4)
    assert "traceback" not in error  # the public API says what raised, not the code
    assert info["last_verification"]["passed"] is False

    # A visitor's launch is refused with the explanation, and no visitor is made.
    session, xsrf = anonymous_launch_form(stack)
    refused = launch(session, stack, xsrf, "broken")
    assert refused.status_code == 503, refused.text
    assert "being fixed" in refused.text and "KeyError" in refused.text
    screenshot = requests.get(stack.url("/hub/gallery/broken/screenshot.png"), timeout=30)
    assert screenshot.status_code == 403

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(stack.url("/hub/gallery"))
        card = page.locator("article[data-example=broken]")
        expect(card).to_have_attribute("data-state", "broken")
        expect(card).to_contain_text("being fixed")
        expect(card.get_by_role("button", name="Launch")).to_be_disabled()

        # Admins see the error and the screenshot, and may still launch it.
        browser_login(page, stack, admin_password)
        page.goto(stack.url("/hub/gallery/broken"))
        expect(page.locator(".verification-error")).to_contain_text("KeyError in cell 3 of 4")
        expect(page.locator("pre.traceback")).to_contain_text("KeyError: 'sessions'")
        expect(page.locator("img.screenshot")).to_be_visible()
        page.wait_for_function("document.querySelector('img.screenshot').naturalWidth > 0")
        assert page.evaluate("document.querySelector('img.screenshot').naturalWidth") == 1280
        page.screenshot(path=str(artifacts / "gallery-broken-admin.png"), full_page=True)
        keep_for_readme(artifacts, "gallery-broken-admin.png")
        page.get_by_role("button", name="Launch").click()
        page.wait_for_url(
            re.compile(r".*/user/admin/broken/voila/render/app\.ipynb$"), timeout=120_000
        )
        expect(page.get_by_text("Loaded 12 subjects")).to_be_visible(timeout=60_000)


def test_a_visitor_cannot_start_a_broken_example_through_the_api(stack, broken_image):
    wait_state(stack, "broken", {"broken"})
    session, xsrf = anonymous_launch_form(stack)
    first = launch(session, stack, xsrf, "demo")  # a visitor, with its own login cookie
    assert first.status_code == 303, first.text
    visitor = VISITOR.search(first.headers["Location"]).group(0)
    answer = session.post(
        stack.url(f"/hub/api/users/{visitor}/servers/broken"),
        headers={"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/")},
        json={},
        timeout=60,
    )
    assert answer.status_code == 503, answer.text
    assert "being fixed" in answer.text


def test_the_working_example_is_verified_with_its_render_time(stack, demo_image, artifacts):
    info = wait_state(stack, "demo", {"verified"})
    verification = info["last_verification"]
    assert verification["passed"] is True and verification["error"] is None
    assert 0 < verification["render_s"] < VERIFY_TIMEOUT_S
    print(
        f"demo: render {verification['render_s']:.2f}s, "
        f"verification {verification['total_s']:.2f}s in all"
    )
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(stack.url("/hub/gallery"))
        card = page.locator("article[data-example=demo]")
        expect(card).to_have_attribute("data-state", "verified")
        expect(card.locator(".state-badge")).to_have_text(
            re.compile(r"verified (just now|\d+ min ago)")
        )
        expect(card.get_by_role("button", name="Launch")).to_be_enabled()
        wait_state(stack, "share", {"verified"})
        page.reload()
        page.screenshot(path=str(artifacts / "gallery-verified.png"), full_page=True)
        keep_for_readme(artifacts, "gallery-verified.png")


def test_an_example_without_image_url_shows_a_png_of_its_render(stack, demo_image):
    info = wait_state(stack, "share", {"verified"})
    thumbnail = info["thumbnail_url"]
    assert thumbnail and "/hub/gallery/share/thumbnail.png" in thumbnail
    page = requests.get(stack.url("/hub/gallery"), timeout=30).text
    card = page.split('data-example="share"', 1)[1].split("</article>", 1)[0]
    src = re.search(r'<img src="([^"]+)"', card).group(1).replace("&amp;", "&")
    image = requests.get(stack.url(src), timeout=30)
    assert image.status_code == 200
    assert image.headers["Content-Type"] == "image/png"
    width, height = png_size(image.content)
    assert width * 9 == height * 16  # the card's 16:9


def test_the_example_page_carries_opengraph_tags_and_share_parameters_reach_the_app(
    stack, demo_image, artifacts
):
    wait_state(stack, "share", {"verified"})
    link = "/hub/gallery/share?p.query=left+amygdala%20%26%20%3Cb%3E"
    page = requests.get(stack.url(link), timeout=30)
    assert page.status_code == 200
    tags = dict(re.findall(r'<meta (?:property|name)="([^"]+)" content="([^"]*)"', page.text))
    assert tags["og:title"] == "Share links"
    assert tags["og:description"].startswith("Shows the parameters")
    assert re.fullmatch(
        rf"http://127\.0\.0\.1:{stack.http_port}/hub/gallery/share/thumbnail\.png\?v=\d+",
        tags["og:image"],
    ), tags["og:image"]
    assert tags["twitter:card"] == "summary_large_image"
    assert requests.get(tags["og:image"], timeout=30).headers["Content-Type"] == "image/png"
    assert "<b>" not in page.text  # shown, escaped, never interpreted
    too_long = requests.get(stack.url("/hub/gallery/share?p.query=" + "x" * 201), timeout=30)
    assert too_long.status_code == 400

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(stack.url(link))
        expect(page.locator("#share-params .param-value")).to_have_text("left amygdala & <b>")
        page.screenshot(path=str(artifacts / "gallery-example-page.png"), full_page=True)
        keep_for_readme(artifacts, "gallery-example-page.png")
        page.get_by_role("button", name="Launch").click()
        expect(page.get_by_text("Query: left amygdala & <b>")).to_be_visible(timeout=120_000)
        assert re.search(r"/share/voila/render/share\.ipynb\?query=left", page.url), page.url


def test_status_api_and_badges_answer_for_every_example(stack, demo_image, broken_image):
    wait_state(stack, "demo", {"verified"})
    found = examples(stack)
    assert set(found) >= {"demo", "pyapp", "warmdemo", "share", "broken", "unbuilt"}
    assert found["unbuilt"]["state"] == "not-built"
    assert found["demo"]["image"] == "gallery-demo:main"
    assert re.fullmatch(r"[0-9a-f]{40}", found["demo"]["commit"])
    for example, info in found.items():
        assert info["state"] in {"not-built", "building", "ready", "verified", "broken"}
        assert isinstance(info["servers_running"], int)
        badge = requests.get(stack.url(f"/hub/gallery/{example}/badge.svg"), timeout=30)
        assert badge.status_code == 200, example
        assert badge.headers["Content-Type"].startswith("image/svg+xml")
        # The verification may finish between the listing and the badge (ready → verified):
        # the badge then tells the state read just after it.
        states = {info["state"], examples(stack)[example]["state"]}
        words = {{"not-built": "not built"}.get(state, state) for state in states}
        assert any(f">{word}</text>" in badge.text for word in words), (example, badge.text)
    assert requests.get(stack.url("/hub/gallery/nothing/badge.svg"), timeout=30).status_code == 404


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? ([0-9.e+-]+)$"
    for match in re.finditer(pattern, text, flags=re.MULTILINE):
        if all(part in (match.group(1) or "") for part in wanted.split(",") if part):
            return float(match.group(2))
    return 0.0


def test_metrics_move_after_a_launch_and_a_build(stack, demo_image, admin_token):
    auth = {"Authorization": f"Bearer {admin_token}"}
    hub_metrics, builder_metrics = "/hub/metrics", "/services/environments/metrics"
    assert requests.get(stack.url(hub_metrics), timeout=30).status_code in (401, 403)
    assert requests.get(stack.url(builder_metrics), timeout=30).status_code == 401
    before = requests.get(stack.url(hub_metrics), headers=auth, timeout=30).text
    ready = metric(before, "gallery_launches_total", example="demo", outcome="ready")
    latency = metric(before, "gallery_launch_duration_seconds_count", example="demo")

    session, xsrf = anonymous_launch_form(stack)
    answer = launch(session, stack, xsrf, "demo")
    assert answer.status_code == 303
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        after = requests.get(stack.url(hub_metrics), headers=auth, timeout=30).text
        if metric(after, "gallery_launches_total", example="demo", outcome="ready") > ready:
            break
        time.sleep(1)
    assert metric(after, "gallery_launch_duration_seconds_count", example="demo") == latency + 1
    assert metric(after, "gallery_visitor_servers", example="demo", state="ready") >= 1
    assert metric(after, "gallery_verifications_total", example="demo", result="passed") >= 0
    assert metric(after, "gallery_example_verified", example="demo") == 1
    assert metric(after, "gallery_example_verified", example="broken") in (0, 0.0)
    assert "gallery_refusals_total" in after

    client = EnvironmentsClient(stack.base_url, admin_token)
    built = {e["image"]: e for e in client.list()}["gallery-demo:main"]
    text = requests.get(stack.url(builder_metrics), headers=auth, timeout=30)
    assert text.status_code == 200, text.text
    reused = metric(text.text, "gallery_builder_builds_total", outcome="reused")
    assert metric(text.text, "gallery_builder_image_size_bytes", image="gallery-demo:main") > 0
    rebuild = client.request("POST", f"/{built['id']}/rebuild")
    assert rebuild.status_code == 202
    assert client.wait(rebuild.json()["id"])["state"] == "built"
    text = requests.get(stack.url(builder_metrics), headers=auth, timeout=30).text
    assert metric(text, "gallery_builder_builds_total", outcome="reused") == reused + 1
    assert metric(text, "gallery_builder_build_duration_seconds_count", outcome="reused") >= 1
    assert "gallery_builder_queue_length 0.0" in text
    remove_visitors(stack, admin_token)


def test_a_culled_example_leads_to_the_stopped_page_and_launch_again_works(
    stack, demo_image, admin_token, artifacts
):
    remove_visitors(stack, admin_token)
    with stack.hub_settings(GALLERY_IDLE_TIMEOUT="15"), chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(stack.url("/hub/gallery"))
        page.locator("article[data-example=demo]").get_by_role("button", name="Launch").click()
        expect(page.get_by_text("The answer is 42")).to_be_visible(timeout=120_000)
        app_url = page.url
        visitor = VISITOR.search(app_url).group(0)
        page.goto("about:blank")  # the visitor leaves; the example goes idle
        deadline = time.monotonic() + 180
        while hub_api(stack, admin_token, "GET", f"/users/{visitor}").status_code != 404:
            assert time.monotonic() < deadline, f"the culler never removed {visitor}"
            time.sleep(3)

        page.goto(app_url)
        expect(page.locator("#example-stopped")).to_have_text("This example has stopped")
        expect(page.get_by_text("stopped after 1 minute without activity")).to_be_visible()
        page.screenshot(path=str(artifacts / "gallery-stopped.png"))
        page.get_by_role("button", name="Launch again").click()
        expect(page.get_by_text("The answer is 42")).to_be_visible(timeout=120_000)
        again = VISITOR.search(page.url).group(0)
        assert again != visitor and "/demo/voila/render/app.ipynb" in page.url
    remove_visitors(stack, admin_token)
