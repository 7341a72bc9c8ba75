"""A user container's own firewall: its network reaches the hub and the egress proxy only.

Docker's bridge networks give the host an address on every network (the gateway), and the
host answers on it for everything that listens on all its interfaces: an `internal`
network stops forwarding, not that. So right after a user container starts, a short-lived
helper joins its network namespace (with NET_ADMIN, which the user container itself never
has) and loads these rules: nothing leaves the container but replies, loopback and
connections to its own network (the hub, the egress proxy), and never the gateway.
The rules live and die with the container's namespace; the host's firewall is untouched.
"""

from __future__ import annotations

import ipaddress

# What the helper runs (its image has iptables): IPv6 only where the namespace has it.
SEAL_COMMAND = [
    "sh",
    "-c",
    'printf "%s" "$RULES4" | iptables-restore '
    '&& if [ -e /proc/net/if_inet6 ]; then printf "%s" "$RULES6" | ip6tables-restore; fi',
]


# Both families: nothing leaves but loopback and replies, unless a later rule allows it.
_FIRST_RULES = (
    "*filter",
    ":INPUT ACCEPT [0:0]",
    ":FORWARD DROP [0:0]",
    ":OUTPUT DROP [0:0]",
    "-A OUTPUT -o lo -j ACCEPT",
    "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
)


def seal_rules(subnet: str, gateway: str) -> tuple[str, str]:
    """iptables-restore input (IPv4, IPv6) for a container on `subnet` (host at `gateway`)."""
    network = ipaddress.ip_network(subnet, strict=False)
    host = ipaddress.ip_address(gateway) if gateway else None
    if network.version != 4 or (host is not None and host not in network):
        raise ValueError(f"unexpected network {subnet} with gateway {gateway!r}")
    v4 = list(_FIRST_RULES)
    if host is not None:
        v4.append(f"-A OUTPUT -d {host}/32 -j REJECT")
    v4 += [f"-A OUTPUT -d {network} -j ACCEPT", "-A OUTPUT -j REJECT", "COMMIT", ""]
    v6 = [*_FIRST_RULES, "-A OUTPUT -j REJECT", "COMMIT", ""]
    return "\n".join(v4), "\n".join(v6)
