"""A user container's own firewall rules."""

import pytest

from gallery_hub.network_seal import seal_rules


def rules(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("-A")]


def test_only_replies_loopback_and_the_own_network_but_never_the_host():
    v4, v6 = seal_rules("172.27.0.0/16", "172.27.0.1")
    assert ":OUTPUT DROP [0:0]" in v4 and v4.rstrip().endswith("COMMIT")
    assert rules(v4) == [
        "-A OUTPUT -o lo -j ACCEPT",
        "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A OUTPUT -d 172.27.0.1/32 -j REJECT",
        "-A OUTPUT -d 172.27.0.0/16 -j ACCEPT",
        "-A OUTPUT -j REJECT",
    ]
    # IPv6: nothing but loopback and replies (the host has a link-local address too).
    assert rules(v6) == [
        "-A OUTPUT -o lo -j ACCEPT",
        "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A OUTPUT -j REJECT",
    ]


def test_a_network_without_a_gateway():
    v4, _ = seal_rules("10.5.0.0/24", "")
    assert "-A OUTPUT -d 10.5.0.0/24 -j ACCEPT" in rules(v4)
    assert not [r for r in rules(v4) if "/32" in r]


@pytest.mark.parametrize(("subnet", "gateway"), [("fd00::/64", ""), ("10.0.0.0/24", "10.9.9.1")])
def test_unexpected_networks_are_refused(subnet, gateway):
    with pytest.raises(ValueError):
        seal_rules(subnet, gateway)
