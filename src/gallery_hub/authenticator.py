"""Log in the gallery's admin with a hashed password; other authenticators plug in instead."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

import docker
from jupyterhub.auth import Authenticator
from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from gallery_hub.admin_password import verify_password
from gallery_hub.environments import built_environment_images
from gallery_hub.gallery_handlers import GalleryContext, gallery_handlers
from gallery_hub.gallery_limits import GalleryLimits
from gallery_hub.gallery_source import gallery_source
from gallery_hub.gallery_state import CachedValue, builds_in_progress
from gallery_hub.visitors import is_visitor, strip_default_role_from_visitors


class GalleryHandlersMixin(LoggingConfigurable):
    """Adds the public gallery's pages to any authenticator (Authenticator.get_handlers).

    To keep the gallery with another identity provider, combine them, e.g.
    `class MyAuthenticator(GalleryHandlersMixin, GitHubOAuthenticator): pass`.
    """

    gallery_file = Unicode(
        "/srv/gallery/gallery.yaml", config=True, help="The gallery file (re-read on change)."
    )
    thumbnails_dir = Unicode(
        "/srv/gallery/thumbnails", config=True, help="Folder of the examples' thumbnails."
    )
    gallery_token = Unicode(
        "", config=True, help="API token of the `gallery` service (reads build states)."
    )
    builder_api_url = Unicode(
        "", config=True, help="The environments API, for examples that are being built."
    )

    def get_handlers(self, app):
        handlers = list(super().get_handlers(app))
        repaired = strip_default_role_from_visitors(app.db)
        if repaired:
            self.log.warning("Removed the default `user` role from %d gallery visitors", repaired)
        client = docker.from_env()
        context = GalleryContext(
            source=gallery_source(Path(self.gallery_file)),
            built_images=CachedValue(partial(built_environment_images, client)),
            images_in_progress=CachedValue(
                partial(builds_in_progress, self.builder_api_url, self.gallery_token)
            ),
            admission=lambda: GalleryLimits.instance(config=self.config).admission(),
            thumbnails_dir=self.thumbnails_dir,
        )
        handlers.extend(gallery_handlers(context))
        return handlers

    def add_user(self, user):
        """Visitors never join `allowed_users` (JupyterHub would give them the `user` role)."""
        if is_visitor(user):
            return None
        return super().add_user(user)


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
        # PBKDF2 takes a fraction of a second on purpose: not on the hub's event loop.
        if not await asyncio.to_thread(verify_password, password, self.admin_password_hash):
            return None
        return {"name": username, "admin": True}
