"""A person opens the site in a browser and signs in as the admin."""

from __future__ import annotations

from .browser import chromium


def test_admin_signs_in_in_a_browser(stack, admin_password, artifacts):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(stack.url("/hub/login"))
        page.screenshot(path=str(artifacts / "login-page.png"))
        assert page.get_by_role("heading", name="Sign in").is_visible()

        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "not-the-password")
        page.click("input[type=submit]")
        assert page.get_by_text("Invalid username or password").is_visible()

        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", admin_password)
        page.click("input[type=submit]")
        page.wait_for_url("**/hub/**")
        assert "/hub/login" not in page.url
        page.screenshot(path=str(artifacts / "after-login.png"))
        assert page.get_by_role("link", name="Admin").first.is_visible()
