"""Fill once, read everywhere: run each example of an image once with its data writable.

Examples that download their data on first use (NeuroLang's atlases and databases) would
otherwise download it again in every visitor's container, and fail on the read-only mount
visitors get. So after a build (and on demand) the builder runs each gallery example of
the image once, as a system job outside the visitors' caps, with the image's data folder
mounted read-write at its data path; visitors then find everything there, read-only.

How one fill goes:
1. The folder: `images/<name>/` of the gallery data volume, seeded with the image's own
   files at the data path exactly as the hub does (gallery_common.data_folders), or the
   image's own volume when gallery.yaml names one (Docker copies the image's files in).
2. The network: a holder container joins the users network, and the hub's network seal
   (gallery_hub.network_seal: same rules, same helper command, same egress image) is
   loaded into its namespace before anything runs; every example then runs in that sealed
   namespace (`network_mode: container:<holder>`), with HTTP(S)_PROXY set to the egress
   proxy, so its downloads leave only through the proxy and its rules, as a visitor's would.
3. Each example: `FILL_SCRIPT` in a container of the image, from the example's folder, as
   the user servers' uid. A notebook (.ipynb, or a .py that jupytext reads) runs cell by
   cell through nbclient, as Voila runs it (a kernel, so `display()` and magics work); a
   .py without jupytext or nbclient runs as `python file.py`. Each finished cell and its
   printed output go to the log.

Synchronous docker-py calls: the async caller runs them in a thread. The log goes to `say`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from docker.errors import NotFound
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout

from gallery_builder.docker_images import DockerImages
from gallery_common.compose_labels import user_server_labels
from gallery_common.data_folders import SEED_MOUNT, image_folder, seed_script
from gallery_common.gallery_file import DataSpec, Example, Gallery
from gallery_common.image_compatibility import ImageFacts, image_problems, path_problems
from gallery_common.image_labels import parse_labels
from gallery_common.settings import SettingError, env_bool, env_float, env_str
from gallery_hub.network_seal import SEAL_COMMAND, seal_rules

# Runs inside the image, in the example's folder: python3 -c FILL_SCRIPT <file>.
FILL_SCRIPT = r"""
import os, re, sys, time
path = sys.argv[1]
start = time.monotonic()
def say(text):
    print(text, flush=True)
try:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
except ImportError:
    NotebookClient = None
notebook = None
if path.endswith(".ipynb"):
    if NotebookClient is None:
        say("nbclient is not installed in the image: cannot run a notebook")
        sys.exit(2)
    notebook = nbformat.read(path, as_version=4)
elif NotebookClient is not None:
    try:
        import jupytext
        notebook = jupytext.read(path)
    except ImportError:
        notebook = None
if notebook is None:
    say("running: python " + path)
    os.execvp(sys.executable, [sys.executable, path])
code = [c for c in notebook.cells if c.cell_type == "code"]
kernel = (notebook.metadata.get("kernelspec") or {}).get("name") or "python3"
say("running %s: %d code cells, kernel %s" % (path, len(code), kernel))
done = [0]
def on_cell_executed(cell=None, cell_index=None, **_):
    # After the cell's outputs are in (nbclient 0.6+; older ones just say less).
    if cell is None or cell.cell_type != "code":
        return
    done[0] += 1
    say("cell %d/%d ran (%.1f s)" % (done[0], len(code), time.monotonic() - start))
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            for line in str(output.get("text", "")).splitlines()[-20:]:
                say("  | " + line[:300])
client = NotebookClient(notebook, timeout=None, kernel_name=kernel,
                        resources={"metadata": {"path": os.getcwd()}})
client.on_cell_executed = on_cell_executed
try:
    client.execute()
except CellExecutionError as error:
    # IPython colours its tracebacks; the log is plain text.
    say(re.sub(r"\x1b\[[0-9;]*m", "", str(error))[-3000:])
    sys.exit(1)
say("finished %s in %.1f s" % (path, time.monotonic() - start))
"""
FILL_COMMAND = [
    "sh",
    "-c",
    'if command -v python3 >/dev/null 2>&1; then exec python3 -c "$GALLERY_FILL_SCRIPT" "$0"; '
    'else exec python -c "$GALLERY_FILL_SCRIPT" "$0"; fi',
]
DEFAULT_MEMORY = "2g"
# Every container of a fill carries it (value: the stack's project), for leftover removal.
FILL_LABEL = "org.neurolang-gallery.data-fill"


class FillError(Exception):
    """The fill could not go on; the message is for the admin."""


@dataclass(frozen=True)
class FillSettings:
    """Where fills run: the stack's users network, egress proxy and data volume."""

    project: str
    network: str
    data_volume: str
    seal_image: str
    egress_proxy: str  # "" with GALLERY_USER_EGRESS=none: no internet at all
    after_build: bool
    timeout_s: float  # of one example
    uid: str = "1000"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FillSettings:
        """The settings compose gives the builder (the same names the hub reads)."""
        project = env_str(env, "GALLERY_PROJECT", "neurolang-gallery")
        egress = env_str(env, "GALLERY_USER_EGRESS", "proxy")
        if egress not in ("proxy", "none"):
            raise SettingError("GALLERY_USER_EGRESS", "use proxy or none")
        return cls(
            project=project,
            network=env_str(env, "GALLERY_USER_NETWORK", f"{project}-users"),
            data_volume=env_str(env, "GALLERY_DATA_VOLUME", f"{project}-gallery-data"),
            seal_image=env_str(env, "GALLERY_EGRESS_IMAGE", "neurolang-gallery/egress:latest"),
            egress_proxy="http://egress:3128" if egress == "proxy" else "",
            after_build=env_bool(env, "GALLERY_FILL_AFTER_BUILD", True),
            timeout_s=env_float(env, "GALLERY_FILL_TIMEOUT", 1800, minimum=10),
        )


@dataclass(frozen=True)
class FillOutcome:
    """How a fill ended: ok, or the examples that failed (each with why)."""

    ran: int
    failures: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        text = f"data fill: {self.ran - len(self.failures)} of {self.ran} example(s) ran"
        if self.failures:
            text += "; failed: " + "; ".join(self.failures)
        if self.skipped:
            text += "; skipped: " + "; ".join(self.skipped)
        return text


def examples_of(gallery: Gallery, image: str) -> list[Example]:
    """The gallery's examples that run `image`, in the file's order."""
    return [e for e in gallery.examples.values() if e.image_name == image]


def example_folder(facts: ImageFacts | None, path: str) -> str:
    """The folder an example runs from: its own, under the image's working directory."""
    workdir = PurePosixPath(facts.workdir if facts and facts.workdir else "/home/jovyan")
    return str((workdir / path).parent)


def proxy_environment(proxy: str) -> dict[str, str]:
    """What a user container gets for the egress proxy (the hub is reached directly)."""
    if not proxy:
        return {}
    env = {name: proxy for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "hub,localhost,127.0.0.1,::1"
    return env


class DataFiller:
    """Fills the data folder of an image by running its examples (see the module doc)."""

    def __init__(self, images: DockerImages, settings: FillSettings) -> None:
        self.images = images
        self.settings = settings

    @property
    def api(self):
        return self.images.api

    def _name(self, what: str) -> str:
        return f"{self.settings.project}-fill-{what}-{secrets.token_hex(4)}"

    def _create(self, **create) -> str:
        """A container of the fill: labelled as the stack's user servers (so the README's
        remove command takes it) and as the fill's (so the next builder start does)."""
        labels = {**user_server_labels(self.settings.project), FILL_LABEL: self.settings.project}
        return self.api.create_container(labels=labels, **create)["Id"]

    def remove_leftovers(self) -> int:
        """Remove the containers of fills cut off by a restart of the builder; how many."""
        mine = f"{FILL_LABEL}={self.settings.project}"
        leftovers = self.api.containers(all=True, filters={"label": mine})
        for container in leftovers:
            self._remove(container["Id"])
        return len(leftovers)

    # --- the whole fill -------------------------------------------------------------------

    def fill(
        self,
        image: str,
        gallery: Gallery,
        facts: ImageFacts | None,
        hub_major: int | None,
        say: Callable[[str], None],
        cancelled: threading.Event | None = None,
    ) -> FillOutcome:
        """Run every example of `image` once with its data writable; never raises FillError."""
        data = gallery.data_for(image)
        if data is None:
            say(f"Data fill: gallery.yaml gives images.{image.split(':')[0]} no `data:`; skipped")
            return FillOutcome(0)
        problems = image_problems(facts, hub_major)
        if problems:
            say(f"Data fill: skipped, the hub cannot run this image: {'; '.join(problems)}")
            return FillOutcome(0, skipped=tuple(problems))
        runnable, skipped = [], []
        for example in examples_of(gallery, image):
            missing = path_problems(facts, example.path)
            if missing:
                skipped.append(f"{example.id}: {missing[0]}")
            else:
                runnable.append(example)
        for reason in skipped:
            say(f"Data fill: skipping {reason}")
        if not runnable:
            say("Data fill: no example to run")
            return FillOutcome(0, skipped=tuple(skipped))
        try:
            mount = self.prepare_folder(image, data, say)
            holder = self.sealed_network(image, say)
        except FillError as e:
            say(f"Data fill failed: {e}")
            return FillOutcome(len(runnable), failures=(str(e),), skipped=tuple(skipped))
        failures = []
        try:
            for example in runnable:
                if cancelled is not None and cancelled.is_set():
                    failures.append(f"{example.id}: cancelled")
                    break
                error = self.run_example(image, example, data, mount, holder, facts, say, cancelled)
                if error:
                    failures.append(f"{example.id}: {error}")
        finally:
            self._remove(holder)
        outcome = FillOutcome(len(runnable), tuple(failures), tuple(skipped))
        say(("Data filled: " if outcome.ok else "Data fill failed: ") + outcome.summary())
        return outcome

    # --- the pieces -----------------------------------------------------------------------

    def prepare_folder(self, image: str, data: DataSpec, say: Callable[[str], None]) -> str:
        """The bind source of the data path: a volume name, or the image's host folder."""
        if data.volume:
            say(f"Data fill: the image's own volume {data.volume} at {data.path}")
            return data.volume
        try:
            volume = self.api.inspect_volume(self.settings.data_volume)
        except NotFound:
            raise FillError(
                f"no volume {self.settings.data_volume}: start the stack first "
                "(docker compose up -d)"
            ) from None
        host = str(PurePosixPath(volume["Mountpoint"]) / image_folder(image))
        say(f"Data fill: {image_folder(image)}/ of {self.settings.data_volume} at {data.path}")
        status, output = self._run_to_end(
            image=image,
            command=["sh", "-c", seed_script(self.settings.uid)],
            environment={"SOURCE": data.path},
            user="root",
            network_disabled=True,
            name=self._name("seed"),
            host_config=self.api.create_host_config(
                binds={host: {"bind": SEED_MOUNT, "mode": "rw"}},
                cap_drop=["ALL"],
                cap_add=["CHOWN", "DAC_OVERRIDE", "FOWNER"],
                security_opt=["no-new-privileges"],
            ),
            timeout_s=600,
        )
        if status != 0:
            raise FillError(f"could not copy the image's own data: {output[-300:]}")
        return host

    def sealed_network(self, image: str, say: Callable[[str], None]) -> str:
        """A holder container on the users network with the user containers' firewall."""
        settings = self.settings
        try:
            network = self.api.inspect_network(settings.network)
        except NotFound:
            raise FillError(
                f"no network {settings.network}: the fill runs on the stack's users network "
                "(start the stack first: docker compose up -d)"
            ) from None
        ipam = (network.get("IPAM") or {}).get("Config") or [{}]
        rules4, rules6 = seal_rules(ipam[0].get("Subnet", ""), ipam[0].get("Gateway", ""))
        holder = self._create(
            image=settings.seal_image,
            command=["sleep", "86400"],
            name=self._name("net"),
            host_config=self.api.create_host_config(
                network_mode=settings.network,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                mem_limit="32m",
                pids_limit=16,
            ),
        )
        try:
            self.api.start(holder)
            status, output = self._run_to_end(
                image=settings.seal_image,
                command=SEAL_COMMAND,
                environment={"RULES4": rules4, "RULES6": rules6},
                user="root",
                name=self._name("seal"),
                host_config=self.api.create_host_config(
                    network_mode=f"container:{holder}",
                    cap_drop=["ALL"],
                    cap_add=["NET_ADMIN", "NET_RAW"],
                    security_opt=["no-new-privileges"],
                ),
                timeout_s=60,
            )
            if status != 0:
                raise FillError(f"could not seal the fill's network: {output[-300:]}")
            via = (
                f"the egress proxy {settings.egress_proxy}" if settings.egress_proxy else "nothing"
            )
            say(f"Data fill: network {settings.network}, sealed; the internet through {via}")
        except BaseException:
            self._remove(holder)
            raise
        return holder

    def run_example(
        self,
        image: str,
        example: Example,
        data: DataSpec,
        mount: str,
        holder: str,
        facts: ImageFacts | None,
        say: Callable[[str], None],
        cancelled: threading.Event | None = None,
    ) -> str | None:
        """Run one example to its end; None when it succeeded, else why not."""
        folder = example_folder(facts, example.path)
        say(f"Data fill: running {example.id} ({example.path}) in {folder}")
        started = time.monotonic()
        labels = parse_labels(
            ((self.images.inspect(image) or {}).get("Config") or {}).get("Labels")
        )
        memory = f"{labels.memory_limit_gb:g}g" if labels and labels.memory_limit_gb else None
        cpu = labels.cpu_limit if labels and labels.cpu_limit else None
        container = self._create(
            image=image,
            command=[*FILL_COMMAND, os.path.basename(example.path)],
            environment={
                "GALLERY_FILL_SCRIPT": FILL_SCRIPT,
                **proxy_environment(self.settings.egress_proxy),
            },
            user=self.settings.uid,
            working_dir=folder,
            name=self._name(example.id),
            host_config=self.api.create_host_config(
                network_mode=f"container:{holder}",
                binds={mount: data.path_mount(read_only=False)},
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                mem_limit=memory or DEFAULT_MEMORY,
                nano_cpus=int(cpu * 1e9) if cpu else None,
                pids_limit=512,
                tmpfs={"/tmp": "rw,exec,nosuid,nodev,size=1g,mode=1777"},  # noqa: S108
            ),
        )
        try:
            self.api.start(container)
            status = self._follow(container, say, self.settings.timeout_s, cancelled)
        finally:
            self._remove(container)
        seconds = time.monotonic() - started
        if status is None and cancelled is not None and cancelled.is_set():
            return "cancelled"
        if status is None:
            return f"did not finish in {self.settings.timeout_s:g} s"
        if status != 0:
            say(f"Data fill: {example.id} failed (exit status {status}) after {seconds:.1f} s")
            return f"exit status {status}"
        say(f"Data fill: {example.id} done in {seconds:.1f} s")
        return None

    # --- containers -----------------------------------------------------------------------

    def _follow(
        self,
        container: str,
        say: Callable[[str], None],
        timeout_s: float,
        cancelled: threading.Event | None = None,
    ) -> int | None:
        """Stream the container's output into the log; its exit status (None: timed out or
        cancelled, and killed)."""
        reader = threading.Thread(
            target=self._copy_log, args=(container, say), daemon=True, name="fill-log"
        )
        reader.start()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                result = self.api.wait(
                    container, timeout=max(1, min(5, deadline - time.monotonic()))
                )
                break
            except (ReadTimeout, RequestsConnectionError) as e:  # a read timeout: still running
                if not isinstance(e, ReadTimeout) and "timed out" not in str(e):
                    raise
                if time.monotonic() >= deadline or (cancelled is not None and cancelled.is_set()):
                    with contextlib.suppress(Exception):
                        self.api.kill(container)
                    reader.join(5)
                    return None
        reader.join(10)
        return result.get("StatusCode")

    def _copy_log(self, container: str, say: Callable[[str], None]) -> None:
        pending = b""
        with contextlib.suppress(Exception):  # the container went away: nothing more to read
            for chunk in self.api.logs(container, stream=True, follow=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    say("  " + line.decode(errors="replace").rstrip()[:1000])
        if pending.strip():
            say("  " + pending.decode(errors="replace").rstrip()[:1000])

    def _run_to_end(self, *, timeout_s: float, **create) -> tuple[int | None, str]:
        container = self._create(**create)
        try:
            self.api.start(container)
            try:
                status = self.api.wait(container, timeout=timeout_s).get("StatusCode")
            except Exception:
                status = None
            output = self.api.logs(container, stdout=True, stderr=True).decode(errors="replace")
            return status, output
        finally:
            self._remove(container)

    def _remove(self, container: str) -> None:
        with contextlib.suppress(NotFound):
            self.api.remove_container(container, force=True)
