"""Real examples: a repository shaped like NeuroLang/neurolang_web runs as its authors wrote it.

- `neurogallery` (tests/fixtures/repos/): jupytext percent-format examples in gallery/ whose
  header selects the Voila template the repository ships, and a gallery/neurolang_data/
  folder with one committed file. Its example "downloads" a file from the tests' internet
  (a server only the egress proxy reaches) into its data folder when it is missing, and
  reads it otherwise. The build's data fill downloads it once; visitors read it, read-only.
- `oldhub`: an image with jupyterhub 1.4.0 (as NeuroLang pins): marked incompatible with
  the reason, and no visitor can launch it.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from .browser import chromium
from .environments_client import EnvironmentsClient
from .harness import run, start_outside
from .visitors import (
    VISITOR,
    anonymous_launch_form,
    container_of,
    docker,
    launch,
    remove_visitors,
    wait_rendered,
)

DATASET = "dataset-from-the-outside-42"
NEURO_IMAGE = "gallery-neuro:main"
OLD_IMAGE = "gallery-oldhub:main"
DATA_FOLDER = "/srv/gallery-data/images/gallery-neuro"  # in the hub's mount of the volume


@pytest.fixture(scope="module")
def client(stack, admin_token) -> EnvironmentsClient:
    return EnvironmentsClient(stack.base_url, admin_token)


@pytest.fixture(scope="module")
def neuro(stack, client, gitserver, admin_token):
    """The neurogallery environment, built (and its data filled by the build), and the
    build's record; the dataset server is gone again before any visitor comes."""
    outside = start_outside(stack, "outside-data", "dataset.txt", DATASET)  # via the proxy only
    try:
        started = time.monotonic()
        response = client.create(
            repository=f"{gitserver}/public/neurogallery.git", name="gallery-neuro"
        )
        assert response.status_code == 202, response.text
        build = client.wait(response.json()["id"], timeout=900)
        build["seconds"] = time.monotonic() - started
    finally:
        run(["docker", "rm", "-f", outside], check=False)
    assert build["state"] == "built", build
    yield build
    remove_visitors(stack, admin_token)
    deadline = time.monotonic() + 60  # until the visitors' containers are gone
    while client.request("DELETE", f"/{build['id']}").status_code == 409:
        assert time.monotonic() < deadline, "the neurogallery environment stayed in use"
        time.sleep(2)
    stack.compose("exec", "-T", "hub", "rm", "-rf", DATA_FOLDER, check=False)


@pytest.fixture(scope="module")
def oldhub(stack, client, gitserver):
    response = client.create(repository=f"{gitserver}/public/oldhub.git", name="gallery-oldhub")
    build = client.wait(response.json()["id"])
    assert build["state"] == "built", build
    yield build
    client.request("DELETE", f"/{build['id']}")


def login_admin(page, stack, admin_password: str) -> None:
    page.goto(stack.url("/hub/login"))
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", admin_password)
    page.click("input[type=submit]")
    page.wait_for_url("**/hub/home")


def in_volume(stack, *command: str) -> str:
    return stack.compose("exec", "-T", "hub", *command).stdout


def test_the_build_checks_the_image_and_fills_its_data_once(stack, client, neuro, artifacts):
    log = client.log_text(neuro["id"])
    (artifacts / "real-example-build-log.txt").write_text(log)
    # The check: versions from inside the image, the example's file found, nothing wrong.
    assert "Image check: jupyterhub 6." in log and "jupytext 1." in log, log
    assert "Image check: gallery/Cached.py found" in log
    assert "Image check: the hub can run this image" in log
    listed = {e["image"]: e for e in client.list()}[NEURO_IMAGE]
    assert listed["check"]["checked"] is True and listed["check"]["problems"] == []
    # The fill: sealed network, through the egress proxy, every cell of the example.
    assert "sealed; the internet through the egress proxy http://egress:3128" in log
    assert f"cell 2: downloaded into the cache -> {DATASET}" in log
    assert "cell 3: the data folder is writable" in log
    assert "Data filled: data fill: 1 of 1 example(s) ran" in log
    # The volume: the download, next to the file the repository committed.
    assert in_volume(stack, "cat", f"{DATA_FOLDER}/cache/dataset.txt").strip() == DATASET
    committed = in_volume(stack, "cat", f"{DATA_FOLDER}/committed.txt").strip()
    assert committed == "committed with the repository"
    print(f"\nneurogallery: build + check + fill took {neuro['seconds']:.1f} s")


def test_a_visitor_gets_every_cell_with_the_template_and_the_filled_data(stack, neuro, artifacts):
    session, xsrf = anonymous_launch_form(stack)
    response = launch(session, stack, xsrf, example="cached")
    assert response.status_code == 303, response.text
    visitor = VISITOR.search(response.headers["Location"]).group(0)
    url = stack.url(f"/user/{visitor}/cached/voila/render/gallery/Cached.py")
    started = time.monotonic()
    wait_rendered(session, url, text="cell 4: the end", timeout=180)
    print(f"\nfirst render of the filled example: {time.monotonic() - started:.1f} s")
    html = session.get(url, timeout=120).text
    (artifacts / "real-example-voila.html").write_text(html)
    # jupytext read the .py as a notebook: the header chose the repository's own template,
    # the markdown cell is rendered, and every cell's output is there, in order.
    assert 'id="fixture-template-marker"' in html
    assert re.search(r"<h1[^>]*>Cached data, shaped like a NeuroLang example", html), html[:2000]
    outputs = [
        "cell 1: committed file says committed with the repository",
        f"cell 2: read from the cache -&gt; {DATASET}",
        "cell 3: the data folder is read-only",
        "cell 4: the end",
    ]
    positions = [html.find(text) for text in outputs]
    assert -1 not in positions, list(zip(outputs, positions, strict=True))
    assert positions == sorted(positions)
    # The data folder is mounted read-only at the path the example expects.
    container = container_of(visitor, "cached")
    mounts = docker("inspect", "--format", "{{json .Mounts}}", container).stdout
    assert '"Destination":"/home/jovyan/gallery/neurolang_data"' in mounts, mounts
    assert re.search(r'"Destination":"/home/jovyan/gallery/neurolang_data","Mode":"ro"', mounts)


def test_fill_data_from_the_environments_page_reads_the_cache(
    stack, client, neuro, admin_password, artifacts
):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        login_admin(page, stack, admin_password)
        page.goto(stack.url("/services/environments/"))
        row = page.locator(f"tr[data-image='{NEURO_IMAGE}']")
        expect(row.locator(".check-ok")).to_have_text("checked", timeout=30_000)
        row.locator("[data-action=fill]").click()
        # The fill's log streams like a build's.
        expect(page.locator("#log-dialog")).to_be_visible()
        expect(page.locator("#log-state")).to_have_text("built", timeout=300_000)
        expect(page.locator("#log-terminal")).to_contain_text("Data filled")
        page.screenshot(path=str(artifacts / "environments-fill-log.png"))
    fill = {e["image"]: e for e in client.list()}[NEURO_IMAGE]
    assert fill["id"] != neuro["id"] and fill["state"] == "built", fill
    log = client.log_text(fill["id"])
    assert "Filling the data of gallery-neuro:main (no build)" in log
    assert f"cell 2: read from the cache -> {DATASET}" in log  # no download this time


def test_an_image_with_jupyterhub_1_is_marked_and_cannot_be_launched(
    stack, client, oldhub, admin_password, artifacts
):
    reason = "the image has jupyterhub 1.4.0, the hub runs JupyterHub 6"
    listed = {e["image"]: e for e in client.list()}[OLD_IMAGE]
    assert any(reason in p for p in listed["check"]["problems"]), listed["check"]
    log = client.log_text(oldhub["id"])
    assert "Image check: INCOMPATIBLE: " + reason in log
    assert "gives images.gallery-oldhub no `data:`; skipped" in log  # nothing to fill
    nothing = client.request("POST", f"/{oldhub['id']}/fill")
    assert nothing.status_code == 409 and "no `data:` folder" in nothing.json()["error"]

    # A visitor: the card says why and offers no launch; a launch anyway is refused.
    session, xsrf = anonymous_launch_form(stack)
    page = session.get(stack.url("/hub/gallery"), timeout=30).text
    card = page.split('data-example="oldhub"', 1)[1].split("</article>", 1)[0]
    assert 'data-state="incompatible"' in page.split('data-example="oldhub"', 1)[1][:40]
    assert reason in card and "launch-button" not in card
    refused = launch(session, stack, xsrf, example="oldhub")
    assert refused.status_code == 409 and reason in refused.text, refused.text

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(stack.url("/hub/gallery"))
        card = page.locator("article[data-example=oldhub]")
        expect(card).to_have_attribute("data-state", "incompatible")
        expect(card).to_contain_text(reason)
        expect(card.get_by_role("button", name="Launch")).to_be_disabled()
        page.screenshot(path=str(artifacts / "gallery-incompatible.png"), full_page=True)

        login_admin(page, stack, admin_password)
        page.goto(stack.url("/services/environments/"))
        row = page.locator(f"tr[data-image='{OLD_IMAGE}']")
        expect(row).to_contain_text("incompatible", timeout=30_000)
        expect(row).to_contain_text(reason)
        page.screenshot(path=str(artifacts / "environments-incompatible.png"), full_page=True)

        # The spawn page shows it marked and does not let it be chosen.
        page.goto(stack.url("/hub/spawn"))
        choice = page.locator(f".environment-choice[data-image='{OLD_IMAGE}']")
        expect(choice).to_contain_text(reason)
        expect(choice.locator("input[name=image]")).to_be_disabled()
