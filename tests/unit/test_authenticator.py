"""The admin logs in with the right password only."""

import asyncio

from gallery_hub.admin_password import hash_password
from gallery_hub.authenticator import GalleryAuthenticator


def login(authenticator, username, password):
    return asyncio.run(
        authenticator.authenticate(None, {"username": username, "password": password})
    )


def make_authenticator(**kwargs):
    return GalleryAuthenticator(
        admin_user="admin",
        admin_password_hash=hash_password("the-right-password", iterations=1000),
        **kwargs,
    )


def test_admin_with_right_password():
    assert login(make_authenticator(), "admin", "the-right-password") == {
        "name": "admin",
        "admin": True,
    }


def test_username_is_normalised():
    assert login(make_authenticator(), "Admin", "the-right-password")["name"] == "admin"


def test_wrong_password_or_other_user_is_refused():
    authenticator = make_authenticator()
    assert login(authenticator, "admin", "the-wrong-password") is None
    assert login(authenticator, "admin", "") is None
    assert login(authenticator, "bob", "the-right-password") is None


def test_no_hash_configured_refuses_everyone():
    assert login(GalleryAuthenticator(admin_user="admin"), "admin", "") is None


def test_no_login_as_a_visitor_or_the_system_visitor():
    from gallery_hub.authenticator import GalleryAuthenticator

    authenticator = GalleryAuthenticator()
    assert not authenticator.check_blocked_users("gallery-verifier")
    assert not authenticator.check_blocked_users("gallery-0123456789abcdef")
    assert authenticator.check_blocked_users("gallery-fan")
    assert authenticator.check_blocked_users("admin")
