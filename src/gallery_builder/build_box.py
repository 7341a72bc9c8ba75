"""The box a build's steps run in: memory and CPU limits, and a network with one way out.

Docker creates the containers of a Dockerfile's RUN steps itself, so they cannot be sealed
one by one as user containers are. Instead each build gets a sandbox container on the
stack's internal `builds` network, which loads its own firewall (the egress image has
iptables; the sandbox holds NET_ADMIN, the build steps never do) and then only waits;
every build step joins its network namespace (`network_mode=container:<sandbox>`). The
firewall lets out replies, loopback (Docker's DNS) and connections to the egress proxy's
port, nothing else: not the host (an `internal` network still gives the host an address,
the gateway, that answers for everything it listens on), not metadata or private
addresses, not the stack. Steps reach the internet through the proxy, which Docker hands
them as the HTTP(S)_PROXY build args (kept out of the image's history). Without a
`builds` network (build-image on a plain host) builds run on Docker's default bridge,
with the limits only.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from docker.errors import DockerException, NotFound
from requests.exceptions import RequestException

from gallery_common.compose_labels import user_server_labels

log = logging.getLogger(__name__)

BOX_LABEL = "org.neurolang-gallery.build-box"
BOX_STACK_LABEL = "org.neurolang-gallery.build-box-stack"
PROXY_PORT = 3128
SEALED = "sealed"
_SEAL_COMMAND = (
    'printf "%s" "$RULES4" | iptables-restore '
    '&& if [ -e /proc/net/if_inet6 ]; then printf "%s" "$RULES6" | ip6tables-restore; fi '
    f"&& echo {SEALED} && exec sleep infinity"
)


class BoxError(Exception):
    """The build's box cannot be set up; the message is for the admin."""


def build_limits(memory_gb: float, cpu: float) -> dict[str, int]:
    """container_limits of every build step: memory without swap, and a CPU quota."""
    memory = int(memory_gb * 1024**3)
    period = 100_000
    return {
        "memory": memory,
        "memswap": memory,
        "cpuperiod": period,
        "cpuquota": max(int(cpu * period), 1000),
    }


def box_rules(proxy_address: str) -> tuple[str, str]:
    """iptables-restore input (IPv4, IPv6): out only to the proxy's port, and loopback."""
    proxy = ipaddress.IPv4Address(proxy_address)
    common = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT DROP [0:0]",
        "-A OUTPUT -o lo -j ACCEPT",
        "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ]
    v4 = [
        *common,
        f"-A OUTPUT -d {proxy}/32 -p tcp --dport {PROXY_PORT} -j ACCEPT",
        "-A OUTPUT -j REJECT",
        "COMMIT",
        "",
    ]
    v6 = [*common, "-A OUTPUT -j REJECT", "COMMIT", ""]
    return "\n".join(v4), "\n".join(v6)


def proxy_build_args(proxy_address: str) -> dict[str, str]:
    """The build args that send a step's HTTP(S) through the egress proxy."""
    url = f"http://{proxy_address}:{PROXY_PORT}"
    args = {}
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):
        args[name] = args[name.lower()] = url
    args["NO_PROXY"] = args["no_proxy"] = "localhost,127.0.0.1"
    return args


@dataclass(frozen=True)
class BoxSettings:
    """Where boxes go: the internal builds network, the egress proxy's service, the image."""

    memory_gb: float
    cpu: float
    network: str = ""  # empty: no sandbox (default bridge, limits only)
    project: str = ""
    seal_image: str = ""
    proxy_service: str = "egress"


@dataclass(frozen=True)
class Box:
    """One build's box: what the engine's build options become."""

    limits: dict[str, int]
    network_mode: str = ""
    build_args: dict[str, str] = field(default_factory=dict)
    container_id: str | None = None
    name: str = ""  # the sandbox container's
    proxy: str = ""  # the egress proxy's address its firewall lets out


class BuildBoxes:
    """Opens and closes boxes (synchronous Docker calls: run them in a thread)."""

    def __init__(
        self, api: Callable[[], Any], settings: BoxSettings, *, seal_timeout_s: float = 60
    ) -> None:
        self._api = api
        self.settings = settings
        self.seal_timeout_s = seal_timeout_s

    @property
    def sealed(self) -> bool:
        """True when builds get a sandbox (a builds network is configured)."""
        return bool(self.settings.network)

    def open(self, build_id: str) -> Box:
        """A sealed sandbox for `build_id` (or limits only); BoxError if it cannot be made."""
        return self._make(build_id[:12], build_id)

    def make_spare(self) -> None:
        """Make a box ahead of the next build: boxes made on demand keep none (SpareBoxes)."""

    def remove_spare(self) -> None:
        """Remove the box made ahead, if any: here there is none (SpareBoxes)."""

    def _make(self, suffix: str, label: str) -> Box:
        """A box named "<project>-buildbox-<suffix>", its build-box label `label`."""
        limits = build_limits(self.settings.memory_gb, self.settings.cpu)
        if not self.sealed:
            return Box(limits)
        try:
            return self._open(suffix, label, limits)
        except DockerException as e:
            raise BoxError(f"cannot set up the build's network: {e}") from None

    def _open(self, suffix: str, label: str, limits: dict[str, int]) -> Box:
        api = self._api()
        proxy = self.proxy_address(api)
        rules4, rules6 = box_rules(proxy)
        host_config = api.create_host_config(
            network_mode=self.settings.network,
            cap_drop=["ALL"],
            cap_add=["NET_ADMIN", "NET_RAW"],
            security_opt=["no-new-privileges"],
            mem_limit="64m",
            pids_limit=16,
        )
        name = f"{self.settings.project or 'gallery'}-buildbox-{suffix}"
        container = api.create_container(
            image=self.settings.seal_image,
            command=["sh", "-c", _SEAL_COMMAND],
            environment={"RULES4": rules4, "RULES6": rules6},
            user="root",
            name=name,
            # Listed (and removed by `down`) with the stack's other helpers, not as the
            # egress service whose image (and compose labels) it runs.
            labels={
                **user_server_labels(self.settings.project),
                BOX_LABEL: label,
                BOX_STACK_LABEL: self.settings.project,
            },
            host_config=host_config,
        )
        box = Box(
            limits,
            network_mode=f"container:{container['Id']}",
            build_args=proxy_build_args(proxy),
            container_id=container["Id"],
            name=name,
            proxy=proxy,
        )
        try:
            api.start(container["Id"])
            self._wait_sealed(api, container["Id"])
        except BaseException:
            self.close(box)
            raise
        return box

    def proxy_address(self, api: Any) -> str:
        """The egress proxy's address on the builds network; BoxError when it is not running.

        Boxes are made from the egress image; without a project they keep its compose labels
        (project, service): they are on the builds network too, and never the proxy.
        """
        labels = [f"com.docker.compose.service={self.settings.proxy_service}"]
        if self.settings.project:
            labels.append(f"com.docker.compose.project={self.settings.project}")
        for container in api.containers(filters={"label": labels, "status": "running"}):
            if BOX_LABEL in (container.get("Labels") or {}):
                continue
            networks = (container.get("NetworkSettings") or {}).get("Networks") or {}
            address = (networks.get(self.settings.network) or {}).get("IPAddress")
            if address:
                return address
        raise BoxError(
            f"the egress proxy ({self.settings.proxy_service}) is not running on "
            f"{self.settings.network}: builds have no way out"
        )

    def _wait_sealed(self, api: Any, container_id: str) -> None:
        """Until the sandbox says its firewall is loaded (its output, followed as it comes)."""
        deadline = time.monotonic() + self.seal_timeout_s
        output = ""
        try:
            for chunk in api.logs(container_id, stream=True, follow=True):
                output += chunk.decode("utf-8", "replace")
                if SEALED in output.split():
                    return
                if time.monotonic() > deadline:
                    break
        except (DockerException, RequestException) as e:  # the read timed out, or Docker went
            raise BoxError(f"the build's firewall was not loaded in time ({e})") from None
        state = api.inspect_container(container_id).get("State") or {}
        if not state.get("Running"):
            raise BoxError(f"the build's firewall could not be loaded: {output[-300:]}")
        raise BoxError("the build's firewall was not loaded in time")

    def close(self, box: Box) -> None:
        """Remove the box's sandbox, if it has one (safe to call twice)."""
        if box.container_id is None:
            return
        try:
            self._api().remove_container(box.container_id, force=True)
        except NotFound:
            pass
        except DockerException as e:
            log.warning("could not remove build box %s: %s", box.container_id[:12], e)

    def remove_leftovers(self) -> int:
        """Remove every sandbox left by builds cut off by a restart; how many."""
        api = self._api()
        mine = f"{BOX_STACK_LABEL}={self.settings.project}"
        leftovers = api.containers(all=True, filters={"label": [BOX_LABEL, mine]})
        for container in leftovers:
            self.close(Box({}, container_id=container["Id"]))
        return len(leftovers)
