"""A person opens the site in a browser and signs in as the admin."""

from __future__ import annotations

from playwright.sync_api import expect

from .browser import chromium


def test_admin_signs_in_in_a_browser(stack, admin_password, artifacts):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(stack.url("/hub/login"))
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.screenshot(path=str(artifacts / "login-page.png"))

        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "not-the-password")
        page.click("input[type=submit]")
        expect(page.get_by_text("Invalid username or password")).to_be_visible()

        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", admin_password)
        page.click("input[type=submit]")
        page.wait_for_url("**/hub/home")
        expect(page.get_by_role("link", name="Admin").first).to_be_visible()
        expect(page.get_by_role("link", name="Environments")).to_be_visible()
        page.screenshot(path=str(artifacts / "after-login.png"))
