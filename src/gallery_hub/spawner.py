"""DockerSpawner for gallery environments: the image is chosen from the built ones.

Every user container is unprivileged and bounded (memory, CPU, processes, /tmp, logs and,
where the storage driver allows, its writable layer), gets the gallery data volume
(read-only by default), reaches the internet only through the egress proxy, and never
the Docker socket.

Every start passes `start()`, however it was asked for (the gallery's launch button,
JupyterHub's REST API, `/hub/spawn`, a restart): that is where gallery visitors are held
to their examples and to the gallery's caps, and kept from examples that are broken
(their last verification failed). The system visitor (system_visitor.py) is not a
visitor: no caps, and its servers show tracebacks to the verification.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from dockerspawner import DockerSpawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Float, Integer, Unicode, default

from gallery_common.compose_labels import USER_SERVERS_SERVICE, user_server_labels
from gallery_common.data_folders import SEED_MOUNT, SEEDED, image_folder, seed_script
from gallery_common.gallery_file import DataSpec, Example
from gallery_common.image_compatibility import (
    example_problems,
    facts_from_labels,
    image_problems,
    local_jupyterhub_major,
)
from gallery_common.image_labels import MARKER_FILTER, parse_labels
from gallery_hub import gallery_metrics, spare_kernel
from gallery_hub.admission import visitor_servers
from gallery_hub.environments import (
    Environment,
    Limits,
    environments_from_images,
    limits_for,
    render_options_form,
)
from gallery_hub.gallery_limits import GalleryLimits
from gallery_hub.gallery_source import gallery_source
from gallery_hub.gallery_verification import GalleryVerification
from gallery_hub.launch_limits import Refusal
from gallery_hub.network_seal import SEAL_COMMAND, seal_rules
from gallery_hub.system_visitor import is_system_visitor
from gallery_hub.verification_results import VerificationResult
from gallery_hub.visitors import is_visitor, is_warm

# CPU weight of a warm server while it starts and renders once (Docker's default is 1024);
# the pool restores the default once it is ready (warm_pool.WarmPool._make_ready).
WARM_CPU_SHARES = 128
DEFAULT_CPU_SHARES = 1024

_seed_locks: dict[str, asyncio.Lock] = {}


def _seed_lock(name: str) -> asyncio.Lock:
    return _seed_locks.setdefault(name, asyncio.Lock())


class LaunchRefused(web.HTTPError):
    """A start the gallery's caps do not allow now (429 with Retry-After)."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.status, refusal.message)
        self.refusal = refusal
        # JupyterHub's spawn page copies these onto its answer.
        self.headers = {"Retry-After": str(refusal.retry_after_s)}


def broken_refusal(example: Example, result: VerificationResult | None) -> Refusal:
    """Why a visitor may not launch a broken example (503: it is being fixed)."""
    found = f" Its last check found {result.error.summary()}." if result and result.error else ""
    return Refusal(
        503,
        f"{example.title} is being fixed: it does not run as it should right now.{found} "
        "Please try another example, or come back later.",
        600,
        "broken",
    )


class GallerySpawner(DockerSpawner):
    """Users pick one of the built environments; its labels set the container's limits."""

    # Docker calls of all servers share this pool (DockerSpawner's default is one thread).
    _executor = ThreadPoolExecutor(4, thread_name_prefix="docker")

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
    tmp_size = Unicode(
        "256m",
        config=True,
        help="Size of the tmpfs at /tmp (it counts toward the container's memory limit).",
    )
    log_max_size = Unicode(
        "10m", config=True, help="Largest container log file before Docker rotates it."
    )
    log_max_files = Integer(2, config=True, help="Container log files Docker keeps.")
    disk_quota = Unicode(
        "10G",
        config=True,
        help="Quota of a container's writable layer (Docker --storage-opt size=). Applied "
        "only where the storage driver supports it (overlay2 on xfs with pquota); empty: off.",
    )
    egress_proxy = Unicode(
        "",
        config=True,
        help="URL of the egress proxy user containers reach the internet through "
        "(HTTP_PROXY/HTTPS_PROXY); empty: no internet at all.",
    )
    max_memory_gb = Float(
        16, config=True, help="Largest memory limit an environment's labels may ask for."
    )
    max_cpu = Float(8, config=True, help="Largest CPU limit an environment's labels may ask for.")
    compose_project = Unicode(
        "",
        config=True,
        help="The stack's compose project: user containers are labelled as its service "
        f"`{USER_SERVERS_SERVICE}` (gallery_common.compose_labels). Empty: no compose labels.",
    )
    network_seal_image = Unicode(
        "",
        config=True,
        help="Image with iptables that seals each user container's network right after it "
        "starts (see gallery_hub.network_seal). Empty: not sealed (not for the internet).",
    )
    gallery_file = Unicode(
        "/srv/gallery/gallery.yaml",
        config=True,
        help="The gallery file; temporary visitors may start only its examples.",
    )
    data_volume = Unicode(
        "",
        config=True,
        help="The gallery data volume. An image with `data:` in gallery.yaml gets its own "
        "folder of it (images/<name>/) at its data path, read-only; others the whole volume.",
    )
    data_volume_mount = Unicode(
        "/srv/gallery-data",
        config=True,
        help="Where the hub's own container has the gallery data volume (read-write).",
    )

    # Whether the storage driver takes a writable-layer quota: asked of Docker once.
    _quota_supported: bool | None = None
    # Set by the gallery's launch handler: when the visitor clicked (for the metrics).
    launch_clicked_at: float | None = None
    # The image's own environment (`KEY=value` items), read at each start.
    image_env: tuple[str, ...] = ()

    @default("remove")
    def _default_remove(self):
        return True

    @default("pull_policy")
    def _default_pull_policy(self):
        return "never"  # environments are built here; nothing is ever pulled

    @default("extra_host_config")
    def _default_extra_host_config(self):
        return lambda spawner: spawner.host_config()

    @default("extra_create_kwargs")
    def _default_extra_create_kwargs(self):
        return {"user": self.container_user, "labels": self.compose_labels()}

    @default("allowed_images")
    def _default_allowed_images(self):
        # Checked against Docker in check_allowed, at every start.
        return []

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return lambda spawner, options: None  # `image` is handled in start()

    @default("options_form")
    def _default_options_form(self):
        return lambda spawner: spawner.render_options_form()

    # -- what the container gets -----------------------------------------------------

    async def host_config(self) -> dict:
        """Docker host settings of every user container (merged over DockerSpawner's)."""
        config = {
            "security_opt": ["no-new-privileges"],
            "pids_limit": self.pids_limit,
            "cap_drop": ["ALL"],
            "tmpfs": {"/tmp": f"rw,exec,nosuid,nodev,size={self.tmp_size},mode=1777"},  # noqa: S108
            "log_config": {
                "type": "json-file",
                "config": {"max-size": self.log_max_size, "max-file": str(self.log_max_files)},
            },
        }
        if self.disk_quota and await self.quota_supported():
            config["storage_opt"] = {"size": self.disk_quota}
        if is_warm(self.user):
            # Warm servers start and render once at a low CPU priority: visitors first.
            config["cpu_shares"] = WARM_CPU_SHARES
        return config

    async def quota_supported(self) -> bool:
        cls = type(self)
        if cls._quota_supported is None:
            info = await self.docker("info")
            status = dict(info.get("DriverStatus") or [])
            cls._quota_supported = (
                info.get("Driver") == "overlay2" and status.get("Backing Filesystem") == "xfs"
            )
            if not cls._quota_supported:
                self.log.info(
                    "No writable-layer quota for user containers: the %s storage driver on %s "
                    "does not support one",
                    info.get("Driver"),
                    status.get("Backing Filesystem", "this filesystem"),
                )
        return cls._quota_supported

    def compose_labels(self) -> dict[str, str]:
        return user_server_labels(self.compose_project)

    def get_args(self) -> list[str]:
        args = super().get_args()
        if is_system_visitor(self.user):
            # The verification reads what raised, and where, from the rendered page.
            args.append("--VoilaConfiguration.show_tracebacks=True")
        if is_warm(self.user):
            args.append(spare_kernel.SERVER_ARG)
        return args

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        if self.egress_proxy:
            hub_host = urlsplit(self.hub_connect_url or "").hostname or "hub"
            no_proxy = ",".join(dict.fromkeys([hub_host, "localhost", "127.0.0.1", "::1"]))
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
                env[name] = self.egress_proxy
            env["NO_PROXY"] = env["no_proxy"] = no_proxy
        if is_warm(self.user):
            env["PYTHONPATH"] = spare_kernel.python_path(self.image_env)
        return env

    async def create_object(self):
        created = await super().create_object()
        if is_warm(self.user):  # before it starts: the module its command line names
            await self.docker("put_archive", created["Id"], "/", spare_kernel.module_archive())
        return created

    async def start_object(self):
        await super().start_object()
        if self.network_seal_image:
            await self.seal_network()

    async def seal_network(self) -> None:
        """Load the container's own firewall, through a helper in its network namespace."""
        network = await self.docker("inspect_network", self.network_name)
        ipam = (network.get("IPAM") or {}).get("Config") or [{}]
        rules4, rules6 = seal_rules(ipam[0].get("Subnet", ""), ipam[0].get("Gateway", ""))
        host_config = self.client.create_host_config(
            network_mode=f"container:{self.container_id}",
            cap_drop=["ALL"],
            cap_add=["NET_ADMIN", "NET_RAW"],
            security_opt=["no-new-privileges"],
        )
        await self.run_helper(
            "seal the network",
            timeout=60,
            image=self.network_seal_image,
            command=SEAL_COMMAND,
            environment={"RULES4": rules4, "RULES6": rules6},
            host_config=host_config,
        )

    async def run_helper(self, what: str, *, timeout: float, **create) -> None:
        """Run a short-lived root helper container to its end; raise with its output if it fails."""
        helper = await self.docker(
            "create_container", user="root", labels=self.compose_labels(), **create
        )
        try:
            await self.docker("start", helper["Id"])
            result = await self.docker("wait", helper["Id"], timeout=timeout)
            if result.get("StatusCode") != 0:
                output = await self.docker("logs", helper["Id"])
                raise RuntimeError(f"could not {what}: {output.decode()[-500:]}")
        finally:
            await self.docker("remove_container", helper["Id"], force=True)

    # -- environments --------------------------------------------------------------

    async def environments(self) -> list[Environment]:
        """The built environments, read from the images' labels (off the event loop)."""
        images = await self.docker("images", filters={"label": MARKER_FILTER})
        return environments_from_images(images)

    async def render_options_form(self) -> str:
        if is_visitor(self.user):
            return ""  # visitors start only their example; they never see the list
        return render_options_form(
            await self.environments(),
            is_admin=bool(self.user and self.user.admin),
            default=self.default_limits(),
        )

    def default_limits(self) -> Limits:
        """The configured limits, before any environment's labels changed them."""
        if not hasattr(self, "_configured_limits"):
            self._configured_limits = Limits(
                mem_bytes=int(self.mem_limit or 0), cpu=float(self.cpu_limit or 0)
            )
        return self._configured_limits

    async def check_allowed(self, image):
        """Only built environments; the error says so and lists them."""
        built = {env.image for env in await self.environments()}
        if image not in built:
            names = ", ".join(sorted(built)) or "none yet"
            raise web.HTTPError(400, f"Image {image} is not a built environment (built: {names})")
        return image

    # -- the gate every start passes ---------------------------------------------------

    def visitor_example(self) -> Example:
        """The example a visitor's server runs: its server name must be an example's id."""
        example = gallery_source(Path(self.gallery_file)).current().examples.get(self.name)
        if example is None:
            raise web.HTTPError(
                403, "Gallery visitors may start only the gallery's examples, from the gallery"
            )
        return example

    def admission_key(self) -> tuple[str, str]:
        return (self.user.name, self.name)

    def client_address(self) -> str | None:
        handler = getattr(self, "handler", None)
        request = getattr(handler, "request", None)
        return getattr(request, "remote_ip", None)

    def refuse_if_broken(self, example: Example) -> None:
        """Visitors never start an example whose last verification failed."""
        result = GalleryVerification.instance(config=self.config).result_for(example.id)
        if result is not None and not result.passed:
            refusal = broken_refusal(example, result)
            gallery_metrics.REFUSALS.labels(refusal.reason).inc()
            self.log.info("Refused to start %s: the example is broken", self._log_name)
            raise LaunchRefused(refusal)

    def admit(self) -> None:
        """Raise unless the gallery's caps allow this start now."""
        admission = GalleryLimits.instance(config=self.config).admission()
        if is_visitor(self.user):
            refusal = admission.admit(
                self.admission_key(),
                visitor_servers(self.user.settings["users"].values(), is_visitor),
                address=self.client_address(),
            )
        else:
            refusal = admission.disk_refusal()
        if refusal:
            self.log.info("Refused to start %s: %s", self._log_name, refusal.message)
            gallery_metrics.REFUSALS.labels(refusal.reason).inc()
            raise LaunchRefused(refusal)

    def release(self) -> None:
        if is_visitor(self.user):
            GalleryLimits.instance(config=self.config).admission().release(self.admission_key())

    async def start(self):
        clicked, self.launch_clicked_at = self.launch_clicked_at, None
        if is_visitor(self.user):
            # The example decides the image, whatever the request carried.
            example = self.visitor_example()
            self.refuse_if_broken(example)
            self.user_options = {"image": example.image_name}
        self.admit()
        queue = GalleryLimits.instance(config=self.config).start_queue()
        try:
            self.phase = "queued"
            async with queue.turn(self.admission_key()):
                self.phase = "starting"
                url = await self.start_environment()
                self.phase = "connecting"
                await self.wait_until_answering(url)
        except BaseException:
            self.release()
            if clicked is not None:
                gallery_metrics.launch_ended(self.name, "failed")
            raise
        if clicked is not None:
            gallery_metrics.launch_ended(self.name, "ready", time.monotonic() - clicked)
        return url

    async def wait_until_answering(self, url: str | tuple[str, int]) -> None:
        """Return as soon as the server answers (JupyterHub's own check then passes at once).

        JupyterHub polls a new server with a backoff that adds up to a second or more; this
        asks every 50 ms, within the same time limit.
        """
        if isinstance(url, tuple):  # DockerSpawner answers (ip, port)
            url = f"http://{url[0]}:{url[1]}"
        target = f"{url.rstrip('/')}{self.server.base_url if self.server else '/'}api"
        client = AsyncHTTPClient()
        deadline = time.monotonic() + self.http_timeout
        while time.monotonic() < deadline:
            try:
                answer = await client.fetch(target, request_timeout=2, raise_error=False)
                if answer.code < 500 and answer.code != 599:
                    return
            except (OSError, HTTPClientError):
                pass  # not up yet, or a busy hub asked too late (timeouts): ask again
            await asyncio.sleep(0.05)

    async def progress(self):
        """Events for JupyterHub's progress page: place in line, then what is happening."""
        queue = GalleryLimits.instance(config=self.config).start_queue()
        shown = None
        while self._spawn_pending or self._start_pending:
            place = queue.position(self.admission_key())
            phase = getattr(self, "phase", "queued")
            if place and place > 0:
                event = {
                    "progress": 10,
                    "message": f"Waiting for a free slot: {place} "
                    f"{'launch' if place == 1 else 'launches'} ahead of yours",
                }
            elif phase == "connecting":
                event = {"progress": 70, "message": "Starting the app"}
            else:
                event = {"progress": 40, "message": "Starting your example's container"}
            if event != shown:
                shown = event
                yield event
            await asyncio.sleep(0.25)

    async def start_environment(self):
        image = self.user_options.get("image")
        if not image:
            environments = await self.environments()
            if len(environments) != 1:
                raise web.HTTPError(
                    400,
                    "Choose an environment: send {'image': '<image name>'} "
                    f"({len(environments)} are built)",
                )
            image = environments[0].image
            self.user_options = {**self.user_options, "image": image}
        defaults = self.default_limits()  # read before this start changes mem/cpu_limit
        self.image = await self.check_allowed(image)
        image_config = (await self.docker("inspect_image", self.image)).get("Config") or {}
        self.image_env = tuple(image_config.get("Env") or ())
        self.refuse_incompatible(image_config.get("Labels"))
        data = gallery_source(Path(self.gallery_file)).current().data_for(self.image)
        if data is not None:
            self.volumes = {await self.data_folder(self.image, data): data.path_mount()}
        labels = parse_labels(image_config.get("Labels"))
        limits = limits_for(labels, defaults, maximum=self.maximum_limits())
        self.mem_limit = limits.mem_bytes
        self.cpu_limit = limits.cpu
        return await super().start()

    def refuse_incompatible(self, image_labels: dict | None) -> None:
        """Refuse (409, with the reason) an image the builder's check found unfit to run:
        jupyterhub of another major version, no jupyterhub-singleuser, and for a visitor
        its example's file missing. Unchecked images (built before the check) start."""
        facts = facts_from_labels(image_labels)
        if is_visitor(self.user):
            problems = example_problems(
                facts, local_jupyterhub_major(), self.visitor_example().path
            )
        else:
            problems = image_problems(facts, local_jupyterhub_major())
        if problems:
            self.log.info("Refused to start %s: %s", self._log_name, "; ".join(problems))
            raise web.HTTPError(409, f"{self.image} cannot run here: {'; '.join(problems)}")

    async def data_folder(self, image: str, data: DataSpec) -> str:
        """The volume (or host folder) holding this image's data, seeded on first use.

        Its own volume when gallery.yaml names one (Docker copies the image's files into a
        new named volume); otherwise images/<name>/ in the gallery data volume, into which
        the image's own files at the data path are copied once, as Docker would.
        """
        if data.volume:
            return data.volume
        name = image.split(":", 1)[0]
        folder = Path(self.data_volume_mount) / image_folder(image)
        if not (folder / SEEDED).exists():
            async with _seed_lock(name):
                if not (folder / SEEDED).exists():
                    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
                    await self.seed_data(image, data, await self.host_path(folder))
                    await asyncio.to_thread((folder / SEEDED).touch)
        return await self.host_path(folder)

    async def host_path(self, folder: Path) -> str:
        """`folder` (inside the hub's mount of the data volume) as the Docker host sees it."""
        volume = await self.docker("inspect_volume", self.data_volume)
        return str(Path(volume["Mountpoint"]) / folder.relative_to(self.data_volume_mount))

    async def seed_data(self, image: str, data: DataSpec, host_folder: str) -> None:
        """Copy what the image has at the data path into the (empty) folder."""
        script = seed_script(self.container_user)
        await self.run_helper(
            "copy the image's data",
            timeout=600,
            image=image,
            command=["sh", "-c", script],
            environment={"SOURCE": data.path},
            network_disabled=True,
            host_config=self.client.create_host_config(
                binds={host_folder: {"bind": SEED_MOUNT, "mode": "rw"}},
                cap_drop=["ALL"],
                cap_add=["CHOWN", "DAC_OVERRIDE", "FOWNER"],
                security_opt=["no-new-privileges"],
            ),
        )
        self.log.info("Seeded the data of %s from the image's %s", image, data.path)

    def maximum_limits(self) -> Limits:
        return Limits(mem_bytes=int(self.max_memory_gb * 1024**3), cpu=self.max_cpu)

    async def stop(self, now=False):
        try:
            return await super().stop(now=now)
        finally:
            self.release()
