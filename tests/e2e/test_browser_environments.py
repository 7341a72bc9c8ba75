"""An admin manages environments on the Environments page, in a real browser."""

from __future__ import annotations

import re
import subprocess

from playwright.sync_api import expect

from .browser import chromium
from .environments_client import EnvironmentsClient
from .harness import edit_file


def image_id(image: str) -> str:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_admin_adds_watches_and_deletes_an_environment(stack, admin_password, gitserver, artifacts):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(stack.url("/hub/login"))
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", admin_password)
        page.click("input[type=submit]")
        page.wait_for_url("**/hub/home")

        # The hub's navigation bar links to the page; the hub's OAuth logs us in there.
        page.get_by_role("link", name="Environments").click()
        page.wait_for_url(re.compile(r".*/services/environments/$"))
        expect(page.locator("#add-environment")).to_be_visible()
        page.screenshot(path=str(artifacts / "environments-empty.png"))

        page.click("#add-environment")
        form = page.locator("#environment-form")
        expect(form).to_be_visible()
        form.locator("input[name=repository]").fill(f"{gitserver}/public/demo.git")
        # The name the server would give it, as the name field's placeholder.
        expect(form.locator("input[name=name]")).to_have_attribute("placeholder", "demo")
        form.locator("input[name=name]").fill("browser-demo")
        # The form checks nothing itself: the server's message shows next to the field.
        form.locator("input[name=memory]").fill("lots")
        form.locator("button[type=submit]").click()
        expect(page.locator("#environment-memory-error")).to_have_text(
            "must be a number like 2 or 0.5"
        )
        expect(form.locator("input[name=memory]")).to_have_class(re.compile("is-invalid"))
        page.screenshot(path=str(artifacts / "environments-field-error.png"))
        form.locator("input[name=memory]").fill("1")
        form.locator("button[type=submit]").click()

        # The log dialog opens on the new build and follows it live.
        dialog = page.locator("#log-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#log-state")).to_have_text("built", timeout=300_000)
        expect(page.locator("#log-terminal")).to_contain_text("browser-demo")
        page.screenshot(path=str(artifacts / "environments-log-dialog.png"))
        dialog.get_by_role("button", name="Close").last.click()
        expect(dialog).to_be_hidden()

        row = page.locator("tr[data-image='browser-demo:main']")
        expect(row).to_have_attribute("data-state", "built", timeout=30_000)
        expect(row).to_contain_text("1")  # the memory limit
        page.screenshot(path=str(artifacts / "environments-built.png"))

        row.locator("[data-action=delete]").click()
        expect(page.locator("#delete-dialog")).to_be_visible()
        page.click("#delete-confirm")
        expect(row).to_have_count(0, timeout=30_000)
        page.screenshot(path=str(artifacts / "environments-deleted.png"))


def test_admin_rolls_back_to_the_previous_image(
    stack, admin_password, admin_token, gitserver, artifacts
):
    client = EnvironmentsClient(stack.base_url, admin_token)
    repository = f"{gitserver}/public/editions.git"
    first = client.wait(client.create(repository=repository, name="rollback-demo").json()["id"])
    first_id = image_id("rollback-demo:main")
    edit_file(stack, "editions", "edition.txt", b"rolled-back edition\n")
    second = client.wait(client.create(repository=repository, name="rollback-demo").json()["id"])
    assert (first["state"], second["state"]) == ("built", "built")
    assert image_id("rollback-demo:main") != first_id
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(stack.url("/hub/login?next=/services/environments/"))
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", admin_password)
            page.click("input[type=submit]")
            page.wait_for_url(re.compile(r".*/services/environments/$"))
            expect(page.locator("#disk-usage")).to_contain_text("free of")
            row = page.locator("tr[data-image='rollback-demo:main']")
            expect(row.locator("[data-field=previous]")).to_contain_text(
                f"previous {first['resolved_commit'][:7]}"
            )
            page.screenshot(path=str(artifacts / "environments-previous-image.png"))
            row.locator("[data-action=rollback]").click()
            expect(page.locator("#rollback-dialog")).to_be_visible()
            expect(page.locator("#rollback-commit")).to_have_text(first["resolved_commit"][:7])
            page.click("#rollback-confirm")
            expect(page.locator("#page-alert")).to_contain_text(
                f"back at commit {first['resolved_commit'][:7]}", timeout=30_000
            )
            # The row now shows the rolled-back commit, and the replaced image as previous.
            expect(row.locator("[data-field=commit]")).to_have_text(first["resolved_commit"][:7])
            expect(row.locator("[data-field=previous]")).to_contain_text(
                f"previous {second['resolved_commit'][:7]}"
            )
            page.screenshot(path=str(artifacts / "environments-rolled-back.png"))
        assert image_id("rollback-demo:main") == first_id
    finally:
        current = {env["image"]: env for env in client.list()}
        if "rollback-demo:main" in current:
            client.request("DELETE", f"/{current['rollback-demo:main']['id']}")
