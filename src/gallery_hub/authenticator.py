"""Log in the gallery's admin with a hashed password; other authenticators plug in instead."""

from __future__ import annotations

from jupyterhub.auth import Authenticator
from traitlets import Any, Unicode
from traitlets.config import LoggingConfigurable

from gallery_hub.admin_password import verify_password
from gallery_hub.gallery_handlers import gallery_handlers, make_gallery_context


class GalleryHandlersMixin(LoggingConfigurable):
    """Adds the public gallery's pages to any authenticator (Authenticator.get_handlers).

    To keep the gallery with another identity provider, combine them, e.g.
    `class MyAuthenticator(GalleryHandlersMixin, GitHubOAuthenticator): pass`.
    """

    gallery_settings = Any(None, config=True, help="The hub's HubSettings (gallery limits).")
    gallery_token = Unicode(
        "", config=True, help="API token of the `gallery` service (reads build states)."
    )

    def get_handlers(self, app):
        handlers = list(super().get_handlers(app))
        if self.gallery_settings is not None:
            context = make_gallery_context(self.gallery_settings, self.gallery_token)
            handlers.extend(gallery_handlers(context))
        return handlers


class GalleryAuthenticator(GalleryHandlersMixin, Authenticator):
    """Accepts exactly one account: the configured admin, checked against a PBKDF2 hash.

    Self-hosters who need more accounts set `c.JupyterHub.authenticator_class` to a real
    identity provider (for example OAuthenticator); see the README.
    """

    admin_user = Unicode(
        "admin",
        config=True,
        help="Name of the admin account this authenticator logs in.",
    )
    admin_password_hash = Unicode(
        "",
        config=True,
        help="PBKDF2 hash of the admin's password (see gallery_hub.admin_password).",
    )

    async def authenticate(self, handler, data):
        username = self.normalize_username(data.get("username", ""))
        password = data.get("password", "")
        if not (self.admin_password_hash and username == self.admin_user):
            return None
        if not verify_password(password, self.admin_password_hash):
            return None
        return {"name": username, "admin": True}
