"""squid's configuration for the egress proxy, written at container start.

GALLERY_USER_EGRESS   proxy: HTTP and HTTPS (ports 80 and 443) to public addresses;
                      none: every request refused.
GALLERY_EGRESS_ALLOW  host names or CIDRs reachable although not public (an internal
                      mirror; the end-to-end tests' "outside" server). Comma-separated.
GALLERY_EGRESS_DENY   more CIDRs to refuse, e.g. the host's own public addresses.

Whatever the settings: loopback, private, link-local/metadata, shared, multicast and
reserved ranges, and every network this container is on (the stack's own addresses)
are refused. squid checks the address a name resolves to, and connects to that address.
Standard library only: it runs with the image's python3.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import struct
import sys
from pathlib import Path

NON_PUBLIC = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/3",
    "::/127",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
]
# squid runs as its own user: /tmp (a tmpfs of this container only) is its writable place.
CONFIG = "/tmp/squid.conf"  # noqa: S108
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")


class ConfigError(ValueError):
    pass


def split_list(name: str, value: str) -> tuple[list[str], list[str]]:
    """(CIDRs, host names) of a comma-separated setting; bad entries name the setting."""
    networks, hosts = [], []
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            if not _HOST.match(item):
                raise ConfigError(f"{name}: not a host name or CIDR: {item!r}") from None
            hosts.append(item.lower())
    return networks, hosts


def own_networks(route_table: str) -> list[str]:
    """The IPv4 networks of this container's interfaces, from /proc/net/route."""
    found = []
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[1] == "00000000":  # the default route
            continue
        destination = socket.inet_ntoa(struct.pack("<L", int(fields[1], 16)))
        mask = socket.inet_ntoa(struct.pack("<L", int(fields[7], 16)))
        found.append(str(ipaddress.ip_network(f"{destination}/{mask}", strict=False)))
    return found


def render(mode: str, allow: str = "", deny: str = "", own: list[str] | None = None) -> str:
    if mode not in ("proxy", "none"):
        raise ConfigError(f"GALLERY_USER_EGRESS: expected proxy or none, got {mode!r}")
    allow_networks, allow_hosts = split_list("GALLERY_EGRESS_ALLOW", allow)
    deny_networks, deny_hosts = split_list("GALLERY_EGRESS_DENY", deny)
    refused = NON_PUBLIC + [n for n in deny_networks + list(own or []) if not _covered(n)]
    lines = [
        "# Written by squid_config.py at container start; edits are lost.",
        "http_port 3128",
        "pid_filename /tmp/squid.pid",
        "coredump_dir /tmp",
        "cache deny all",
        "cache_mem 8 MB",
        "via off",
        "forwarded_for delete",
        "httpd_suppress_version_string on",
        "shutdown_lifetime 2 seconds",
        "logfile_rotate 0",
        "pinger_enable off",
        # Which client went where (host only: a URL may carry a token).
        "logformat egress %ts %>a %Ss/%03>Hs %rm %>rd",
        "access_log stdio:/dev/stdout egress",
        "cache_log stdio:/dev/stderr",
        "acl SSL_ports port 443",
        "acl Safe_ports port 80 443",
        "acl CONNECT method CONNECT",
        "http_access deny manager",
    ]
    if mode == "none":
        lines.append("http_access deny all")
        return "\n".join(lines) + "\n"
    lines += [
        "http_access deny !Safe_ports",
        "http_access deny CONNECT !SSL_ports",
        # IPv6 literals: no IPv6 egress (and squid 5 asserts on some of them).
        "acl ipv6_literal dstdom_regex :",
        "http_access deny ipv6_literal",
        "acl refused_dst dst " + " ".join(refused),
    ]
    lines += _rule("deny", "refused_host", "dstdomain", deny_hosts)
    lines += _rule("allow", "allowed_host", "dstdomain", allow_hosts)
    lines += _rule("allow", "allowed_dst", "dst", allow_networks)
    lines += ["http_access deny refused_dst", "http_access allow all"]
    return "\n".join(lines) + "\n"


def _rule(action: str, name: str, kind: str, values: list[str]) -> list[str]:
    if not values:
        return []
    return [f"acl {name} {kind} {' '.join(values)}", f"http_access {action} {name}"]


def _covered(network: str) -> bool:
    """Already inside one of NON_PUBLIC (squid warns about, and drops, such entries)."""
    net = ipaddress.ip_network(network)
    return any(
        net.version == big.version and net.subnet_of(big)
        for big in map(ipaddress.ip_network, NON_PUBLIC)
    )


def main() -> None:
    try:
        config = render(
            os.environ.get("GALLERY_USER_EGRESS", "proxy").strip().lower() or "proxy",
            os.environ.get("GALLERY_EGRESS_ALLOW", ""),
            os.environ.get("GALLERY_EGRESS_DENY", ""),
            own_networks(Path("/proc/net/route").read_text()),
        )
    except ConfigError as e:
        sys.exit(str(e))
    Path(CONFIG).write_text(config)
    print(config, flush=True)
    if "--run" in sys.argv:
        os.execvp("squid", ["squid", "-N", "-f", CONFIG])  # noqa: S606


if __name__ == "__main__":
    main()
