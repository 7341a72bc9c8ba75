"""DockerSpawner for gallery environments: the image is chosen from the built ones.

Every user container is unprivileged and limited, gets the gallery data volume
(read-only by default) and never the Docker socket.
"""

from __future__ import annotations

from pathlib import Path

from dockerspawner import DockerSpawner
from tornado import web
from traitlets import Integer, Unicode, default

from gallery_common.image_labels import MARKER_FILTER, parse_labels
from gallery_hub.environments import (
    Environment,
    Limits,
    environments_from_images,
    limits_for,
    render_options_form,
)
from gallery_hub.gallery_handlers import is_visitor
from gallery_hub.gallery_source import gallery_source


class GallerySpawner(DockerSpawner):
    """Users pick one of the built environments; its labels set the container's limits."""

    pids_limit = Integer(
        512,
        config=True,
        help="Most processes a user container may run (Docker --pids-limit).",
    )
    container_user = Unicode(
        "1000",
        config=True,
        help="User the container runs as (never root); repo2docker images use uid 1000.",
    )

    @default("remove")
    def _default_remove(self):
        return True

    @default("pull_policy")
    def _default_pull_policy(self):
        return "never"  # environments are built here; nothing is ever pulled

    @default("extra_host_config")
    def _default_extra_host_config(self):
        return {
            "security_opt": ["no-new-privileges"],
            "pids_limit": self.pids_limit,
            "cap_drop": ["ALL"],
        }

    @default("extra_create_kwargs")
    def _default_extra_create_kwargs(self):
        return {"user": self.container_user}

    @default("allowed_images")
    def _default_allowed_images(self):
        # A callable, so the list is read from Docker each time it is needed.
        return lambda spawner: {env.image: env.image for env in spawner.environments()}

    @default("options_form")
    def _default_options_form(self):
        return lambda spawner: render_options_form(
            spawner.environments(),
            is_admin=bool(spawner.user and spawner.user.admin),
            default=spawner.default_limits(),
        )

    gallery_file = Unicode(
        "/srv/gallery/gallery.yaml",
        config=True,
        help="The gallery file; temporary visitors may start only its examples' images.",
    )

    def gallery_images(self) -> set[str]:
        gallery = gallery_source(Path(self.gallery_file)).current()
        return {example.image_name for example in gallery.examples.values()}

    def environments(self) -> list[Environment]:
        """The built environments, read from the images' labels."""
        return environments_from_images(self.client.images(filters={"label": MARKER_FILTER}))

    def default_limits(self) -> Limits:
        """The configured limits, before any environment's labels changed them."""
        if not hasattr(self, "_configured_limits"):
            self._configured_limits = Limits(
                mem_bytes=int(self.mem_limit or 0), cpu=float(self.cpu_limit or 0)
            )
        return self._configured_limits

    async def check_allowed(self, image):
        """Only built environments; the error says so and lists them."""
        allowed = self._get_allowed_images()
        if image not in allowed:
            built = ", ".join(sorted(allowed)) or "none yet"
            raise web.HTTPError(400, f"Image {image} is not a built environment (built: {built})")
        return allowed[image]

    async def start(self):
        image = self.user_options.get("image")
        if not image:
            environments = self.environments()
            if len(environments) != 1:
                raise web.HTTPError(
                    400,
                    "Choose an environment: send {'image': '<image name>'} "
                    f"({len(environments)} are built)",
                )
            image = environments[0].image
            self.user_options = {**self.user_options, "image": image}
        if is_visitor(self.user) and image not in self.gallery_images():
            raise web.HTTPError(403, "Gallery visitors may start only the gallery's examples")
        defaults = self.default_limits()  # read before this start changes mem/cpu_limit
        self.image = await self.check_allowed(image)
        inspect = await self.docker("inspect_image", self.image)
        labels = parse_labels((inspect.get("Config") or {}).get("Labels"))
        limits = limits_for(labels, defaults)
        self.mem_limit = limits.mem_bytes
        self.cpu_limit = limits.cpu
        return await super().start()
