"""Log in the gallery's admin with a hashed password; other authenticators plug in instead."""

from __future__ import annotations

import asyncio
import re
from functools import partial
from pathlib import Path

import docker
from jupyterhub.auth import Authenticator
from traitlets import Integer, Unicode
from traitlets.config import LoggingConfigurable

from gallery_hub import gallery_metrics
from gallery_hub.admin_password import verify_password
from gallery_hub.admission import visitor_servers
from gallery_hub.environments import (
    built_environments,
    container_images,
    image_details,
    image_ids,
)
from gallery_hub.example_handlers import example_handlers
from gallery_hub.gallery_handlers import GalleryContext, gallery_handlers
from gallery_hub.gallery_limits import GalleryLimits
from gallery_hub.gallery_source import gallery_source
from gallery_hub.gallery_state import CachedValue, builder_environments, built_at, in_progress
from gallery_hub.gallery_verification import GalleryVerification
from gallery_hub.hub_api_client import HubAPI
from gallery_hub.stopped_example import stopped_example_handlers
from gallery_hub.system_visitor import SYSTEM_VISITOR, is_system_visitor
from gallery_hub.verification import Verification
from gallery_hub.visitors import (
    VISITOR_PREFIX,
    is_visitor,
    is_warm,
    strip_default_role_from_visitors,
)
from gallery_hub.warm_pool import WarmPool

VISITOR_NAME = re.compile(re.escape(VISITOR_PREFIX) + "[0-9a-f]{16}")


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
        verification = GalleryVerification.instance(config=self.config)
        source = gallery_source(Path(self.gallery_file))
        context = GalleryContext(
            source=source,
            built_images=CachedValue(partial(built_environments, client), empty=dict),
            builder_environments=CachedValue(
                partial(builder_environments, self.builder_api_url, self.gallery_token),
                empty=list,
            ),
            admission=limits.admission,
            start_queue=limits.start_queue,
            thumbnails_dir=self.thumbnails_dir,
            verification=verification,
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
                hold_starts=lambda seconds: limits.start_queue().hold(seconds),
            )
            context.pool.start()
        if verification.enabled:
            context.verifier = Verification(
                app,
                source=source,
                results=verification.results(),
                hub_api=HubAPI(self.hub_api_url, verification.service_token),
                worker_url=verification.worker_url,
                worker_token=verification.worker_token,
                timeout_s=verification.timeout_s,
                every_s=verification.every_h * 3600,
                image_details=partial(image_details, client),
                built_at=lambda: built_at(context.builder_environments.get()),
                launches_waiting=lambda: limits.start_queue().waiting(),
                on_result=gallery_metrics.verification_recorded,
                can_run=lambda example: not context.problems(example),
                building=lambda: in_progress(context.builder_environments.get()),
            )
            context.verifier.start()
        gallery_metrics.register_collector(
            gallery_metrics.GalleryCollector(
                servers=lambda: _visitor_server_states(app.users.values()),
                results=verification.results().all,
            )
        )
        # The stopped-example page first: it stands in front of JupyterHub's /user/ handler.
        handlers[:0] = stopped_example_handlers(context)
        handlers.extend(example_handlers(context))
        handlers.extend(gallery_handlers(context))
        return handlers

    def add_user(self, user):
        """Visitors never join `allowed_users` (JupyterHub would give them the `user` role)."""
        if is_visitor(user) or is_system_visitor(user):
            return None
        return super().add_user(user)

    def check_blocked_users(self, username, authentication=None):
        """Nobody logs in as a visitor or the system visitor through an identity provider."""
        if username == SYSTEM_VISITOR or VISITOR_NAME.fullmatch(username or ""):
            return False
        return super().check_blocked_users(username, authentication)


def _visitor_server_states(users):
    """(example, state) of every visitor's server, for the metrics."""
    for user in users:
        if not is_visitor(user):
            continue
        warm = is_warm(user)
        for name, spawner in user.spawners.items():
            if spawner.ready:
                yield name, "warm" if warm else "ready"
            elif spawner.active:
                yield name, "starting"


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
