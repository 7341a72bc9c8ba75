"""The build box: limits of every step, and a sandbox whose firewall lets out only the proxy."""

from __future__ import annotations

from typing import Any

import pytest

from gallery_builder.build_box import (
    BOX_LABEL,
    BoxError,
    BoxSettings,
    BuildBoxes,
    box_rules,
    build_limits,
    proxy_build_args,
)


def test_limits_are_memory_without_swap_and_a_cpu_quota() -> None:
    assert build_limits(0.5, 1.5) == {
        "memory": 512 * 1024**2,
        "memswap": 512 * 1024**2,
        "cpuperiod": 100_000,
        "cpuquota": 150_000,
    }


def test_the_firewall_lets_out_only_the_proxys_port_and_loopback() -> None:
    v4, v6 = box_rules("192.168.80.2")
    lines = v4.splitlines()
    assert ":OUTPUT DROP [0:0]" in lines
    accepted = [line for line in lines if line.endswith("-j ACCEPT")]
    assert accepted == [
        "-A OUTPUT -o lo -j ACCEPT",
        "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A OUTPUT -d 192.168.80.2/32 -p tcp --dport 3128 -j ACCEPT",
    ]
    assert lines[-2:] == ["-A OUTPUT -j REJECT", "COMMIT"]
    assert "-A OUTPUT -j REJECT" in v6 and "3128" not in v6
    with pytest.raises(ValueError):
        box_rules("not-an-address")


def test_steps_get_the_proxy_as_build_args() -> None:
    args = proxy_build_args("192.168.80.2")
    assert args["HTTP_PROXY"] == args["https_proxy"] == "http://192.168.80.2:3128"
    assert "localhost" in args["NO_PROXY"]


class FakeAPI:
    def __init__(self, *, proxy: str | None = "192.168.80.2", seal_output: bytes = b"sealed\n"):
        self.proxy = proxy
        self.seal_output = seal_output
        self.created: list[dict[str, Any]] = []
        self.removed: list[str] = []

    def containers(self, **kwargs: Any) -> list[dict[str, Any]]:
        if "all" in kwargs:  # the leftovers
            return [{"Id": "left-1"}]
        # Boxes are made from the egress image: without a project they keep its compose
        # labels, and may come first.
        box = {"Labels": {BOX_LABEL: "spare"}, "NetworkSettings": {"Networks": {"p-builds": {}}}}
        box["NetworkSettings"]["Networks"]["p-builds"]["IPAddress"] = "192.168.80.77"
        if self.proxy is None:
            return [box]
        networks = {"p-builds": {"IPAddress": self.proxy}}
        return [box, {"Id": "egress", "NetworkSettings": {"Networks": networks}}]

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        self.created.append(kwargs)
        return {"Id": "box-1"}

    def start(self, container: str) -> None:
        pass

    def logs(self, container: str, stream: bool = False, follow: bool = False) -> Any:
        assert stream and follow  # followed, not polled
        # as the daemon streams it: in pieces, the marker perhaps cut in two
        return iter([self.seal_output[:3], self.seal_output[3:]])

    def inspect_container(self, container: str) -> dict[str, Any]:
        return {"State": {"Running": False}}

    def remove_container(self, container: str, force: bool = False) -> None:
        self.removed.append(container)


SETTINGS = BoxSettings(memory_gb=1, cpu=1, network="p-builds", project="p", seal_image="egress:hrd")


def test_a_box_is_a_sealed_sandbox_the_steps_join() -> None:
    api = FakeAPI()
    boxes = BuildBoxes(lambda: api, SETTINGS)
    box = boxes.open("0123456789abcdef")
    assert box.network_mode == "container:box-1"
    assert box.build_args["HTTP_PROXY"] == "http://192.168.80.2:3128"
    created = api.created[0]
    assert created["name"] == "p-buildbox-0123456789ab"
    assert created["labels"][BOX_LABEL] == "0123456789abcdef"
    # One of the stack's helpers (`--profile user-servers down` removes a leftover), not
    # the egress service whose image it runs.
    assert created["labels"]["com.docker.compose.project"] == "p"
    assert created["labels"]["com.docker.compose.service"] == "user-servers"
    assert created["user"] == "root" and created["image"] == "egress:hrd"
    host = created["host_config"]
    assert host["network_mode"] == "p-builds" and host["cap_drop"] == ["ALL"]
    assert set(host["cap_add"]) == {"NET_ADMIN", "NET_RAW"}
    assert "192.168.80.2/32" in created["environment"]["RULES4"]
    boxes.close(box)
    assert api.removed == ["box-1"]
    assert boxes.remove_leftovers() == 1


def test_no_box_without_a_proxy_or_a_firewall() -> None:
    with pytest.raises(BoxError, match="egress proxy"):
        BuildBoxes(lambda: FakeAPI(proxy=None), SETTINGS).open("b1")
    api = FakeAPI(seal_output=b"iptables-restore: permission denied\n")
    with pytest.raises(BoxError, match="firewall could not be loaded"):
        BuildBoxes(lambda: api, SETTINGS).open("b2")
    assert api.removed == ["box-1"]  # nothing is left behind


def test_without_a_builds_network_only_the_limits() -> None:
    boxes = BuildBoxes(lambda: FakeAPI(), BoxSettings(memory_gb=2, cpu=1))
    box = boxes.open("b3")
    assert (box.network_mode, box.build_args, box.container_id) == ("", {}, None)
    assert box.limits["memory"] == 2 * 1024**3
