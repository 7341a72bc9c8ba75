"""Log in the gallery's admin with a hashed password; other authenticators plug in instead."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

import docker
from jupyterhub.auth import Authenticator
from traitlets import Integer, Unicode
from traitlets.config import LoggingConfigurable

from gallery_hub.admin_password import verify_password
from gallery_hub.admission import visitor_servers
from gallery_hub.environments import (
    built_environment_facts,
    built_environment_images,
    container_images,
    image_ids,
)
from gallery_hub.gallery_handlers import GalleryContext, gallery_handlers
from gallery_hub.gallery_limits import GalleryLimits
from gallery_hub.gallery_source import gallery_source
from gallery_hub.gallery_state import CachedValue, builds_in_progress
from gallery_hub.visitors import is_visitor, strip_default_role_from_visitors
from gallery_hub.warm_pool import WarmPool


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
    warm_pool_token = Unicode(
        "", config=True, help="API token of the `gallery-warm-pool` service; empty: no pool."
    )
    warm_max = Integer(5, config=True, help="Warm servers in all (GALLERY_WARM_MAX).")
    max_age_s = Integer(
        14400, config=True, help="GALLERY_MAX_AGE: warm servers are replaced after half of it."
    )
    hub_api_url = Unicode(
        "http://127.0.0.1:8081/hub/api", config=True, help="The hub's API, as the pool calls it."
    )

    def get_handlers(self, app):
        handlers = list(super().get_handlers(app))
        repaired = strip_default_role_from_visitors(app.db)
        if repaired:
            self.log.warning("Removed the default `user` role from %d gallery visitors", repaired)
        client = docker.from_env()
        limits = GalleryLimits.instance(config=self.config)
        source = gallery_source(Path(self.gallery_file))
        context = GalleryContext(
            source=source,
            built_images=CachedValue(partial(built_environment_images, client)),
            images_in_progress=CachedValue(
                partial(builds_in_progress, self.builder_api_url, self.gallery_token)
            ),
            admission=limits.admission,
            thumbnails_dir=self.thumbnails_dir,
            image_facts=CachedValue(partial(built_environment_facts, client), empty=dict),
        )
        if self.warm_pool_token:  # with warm_max 0 it only retires what is left
            context.pool = WarmPool(
                app,
                source=source,
                api_url=self.hub_api_url,
                token=self.warm_pool_token,
                max_warm=self.warm_max,
                max_age_s=self.max_age_s,
                room=lambda: (
                    limits.max_servers
                    - limits.admission().in_use(visitor_servers(app.users.values(), is_visitor))
                ),
                launches_waiting=lambda: limits.start_queue().waiting(),
                image_ids=partial(image_ids, client),
                container_images=partial(container_images, client),
                set_cpu_shares=lambda container, shares: client.api.update_container(
                    container, cpu_shares=shares
                ),
            )
            context.pool.start()
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
