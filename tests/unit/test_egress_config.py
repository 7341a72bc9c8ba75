"""The egress proxy's squid configuration: what user containers may reach."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "images/egress/squid_config.py"
spec = importlib.util.spec_from_file_location("squid_config", PATH)
squid_config = importlib.util.module_from_spec(spec)
spec.loader.exec_module(squid_config)

ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth1\t0000A8C6\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


def access_rules(config: str) -> list[str]:
    return [line for line in config.splitlines() if line.startswith("http_access")]


def test_proxy_mode_refuses_every_non_public_range_and_odd_ports():
    config = squid_config.render("proxy")
    refused = next(line for line in config.splitlines() if line.startswith("acl refused_dst"))
    for network in ("10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12"):
        assert f" {network}" in refused
    for network in ("192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fe80::/10", "::ffff:0:0/96"):
        assert f" {network}" in refused
    assert access_rules(config) == [
        "http_access deny manager",
        "http_access deny !Safe_ports",
        "http_access deny CONNECT !SSL_ports",
        "http_access deny ipv6_literal",
        "http_access deny refused_dst",
        "http_access allow all",
    ]
    assert "acl Safe_ports port 80 443" in config


def test_none_mode_refuses_everything():
    assert access_rules(squid_config.render("none")) == [
        "http_access deny manager",
        "http_access deny all",
    ]


def test_allowed_and_denied_entries_come_before_the_general_rules():
    config = squid_config.render(
        "proxy", allow="outside, 10.20.0.0/16", deny="203.0.114.7, mirror.example.org"
    )
    assert access_rules(config) == [
        "http_access deny manager",
        "http_access deny !Safe_ports",
        "http_access deny CONNECT !SSL_ports",
        "http_access deny ipv6_literal",
        "http_access deny refused_host",
        "http_access allow allowed_host",
        "http_access allow allowed_dst",
        "http_access deny refused_dst",
        "http_access allow all",
    ]
    assert "acl allowed_host dstdomain outside" in config
    assert "acl allowed_dst dst 10.20.0.0/16" in config
    assert "203.0.114.7/32" in config


def test_the_containers_own_networks_are_refused_unless_already_covered():
    own = squid_config.own_networks(ROUTES)
    assert own == ["172.18.0.0/16", "198.168.0.0/16"]
    refused = next(
        line
        for line in squid_config.render("proxy", own=own).splitlines()
        if line.startswith("acl refused_dst")
    )
    assert "198.168.0.0/16" in refused
    assert "172.18.0.0/16" not in refused  # inside 172.16.0.0/12 already


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"mode": "open"}, "GALLERY_USER_EGRESS"),
        ({"mode": "proxy", "allow": "bad host!"}, "GALLERY_EGRESS_ALLOW"),
        ({"mode": "proxy", "deny": "a b"}, "GALLERY_EGRESS_DENY"),
    ],
)
def test_bad_settings_name_the_variable(kwargs, name):
    with pytest.raises(squid_config.ConfigError, match=f"^{name}: "):
        squid_config.render(**kwargs)
