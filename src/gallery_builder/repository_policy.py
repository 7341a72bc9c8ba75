"""Which repository URLs a build may fetch from: the builder's guard against SSRF.

Accepts https://, http://, git://, ssh:// and scp-like `user@host:path` URLs; refuses local
paths, other transports (file://, ext::), embedded passwords, and hosts that are, or resolve
to, loopback, link-local/metadata, unspecified, multicast or reserved addresses, this stack's
own services and (when so configured) private networks. The only I/O is DNS resolution,
through an injectable `resolve` callable (tests pass a fake one).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Same call shape as socket.getaddrinfo(host, None): entries whose [4][0] is an address string.
Resolver = Callable[..., Iterable[tuple[Any, ...]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAX_URL_LENGTH = 2048
_ALLOWED_SCHEMES = frozenset({"https", "http", "git", "ssh"})
# git's own rule for "<transport>::<address>" (remote helpers such as ext:: run commands).
_TRANSPORT = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*::")
URL_SYNTAX = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)", re.S
)
# scp-like syntax as git reads it: no "/" before the first ":".
SCP_SYNTAX = re.compile(
    r"(?P<user>[^@/:\[\]]*)@(?P<host>\[[^\]/]*\]|[^@/:\[\]]*):(?P<path>.*)", re.S
)
# RFC 3986 userinfo characters; anything else invites parser differences between us and git/curl.
_USER = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]+")
_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# A last label like "1" or "0x7f" means an IPv4 shorthand (127.1, 2130706433) that resolvers expand.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")


def _networks(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Explicit ranges rather than ipaddress.is_* flags, whose coverage changes between Python versions.
_REFUSED_RANGES: tuple[tuple[str, tuple[IPNetwork, ...]], ...] = (
    ("a loopback address", _networks("127.0.0.0/8", "::1/128")),
    ("a cloud metadata address", _networks("100.100.100.200/32", "fd00:ec2::254/128")),
    ("a link-local (metadata) address", _networks("169.254.0.0/16", "fe80::/10")),
    ("an unspecified address", _networks("0.0.0.0/8", "::/128")),
    ("a multicast address", _networks("224.0.0.0/4", "ff00::/8")),
    ("a reserved address", _networks("240.0.0.0/4")),
)
_PRIVATE_RANGES = _networks(
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10"
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


CREDENTIALS_IN_URL = "put credentials in the credentials fields, not in the URL"
_DEFAULT_PORTS = {"https": 443, "http": 80, "git": 9418, "ssh": 22}


class RepositoryRefused(ValueError):
    """git may not fetch from this repository URL; the message says why."""


@dataclass(frozen=True)
class CheckedRepository:
    """A repository URL that passed the policy, with the addresses its host had then.

    git must connect to exactly these addresses (see `git_access.pinned_git_config`), so
    a name that resolves elsewhere later changes nothing.
    """

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]
    user: str = ""


def _repo_error(message: str) -> RepositoryRefused:
    return RepositoryRefused(message)


def _has_bad_characters(text: str) -> bool:
    """Whitespace or any control/format/separator character anywhere in `text`."""
    return any(ch.isspace() or not ch.isprintable() for ch in text)


def _check_user(user: str) -> None:
    if not _USER.fullmatch(user) or user.startswith("-"):
        raise _repo_error("the user name in the URL contains characters that are not allowed")


def _split_authority(authority: str, scheme: str) -> tuple[str, bool, str, str]:
    """(raw host, whether it was in [brackets], port, user) of a URL authority.

    Refuses passwords everywhere, and any user info but ssh's user name ("git@"): over
    http(s) a user name is usually a token, and secrets in the URL end up in logs.
    """
    if authority.count("@") > 1:
        raise _repo_error("the URL contains more than one '@'")
    userinfo, at, hostport = authority.rpartition("@")
    user = ""
    if at:
        user, colon, _password = userinfo.partition(":")
        if colon or scheme != "ssh":
            raise _repo_error(CREDENTIALS_IN_URL)
        _check_user(user)
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise _repo_error("an IPv6 host must be written as [address] or [address]:port")
        port = after.removeprefix(":")
        bracketed = True
    else:
        host, _colon, port = hostport.partition(":")
        bracketed = False
    if port and not (_PORT.fullmatch(port) and int(port) <= 65535):
        raise _repo_error("the port must be a number from 0 to 65535")
    return host, bracketed, port, user


def _normalize_host(raw: str, *, bracketed: bool) -> tuple[str, IPAddress | None]:
    """Lower-cased host without a trailing dot, plus its address when it is an IP literal."""
    if bracketed:
        # A zone suffix (fe80::1%25eth0) does not change which range the address is in.
        address = raw.partition("%")[0]
        try:
            ip = ipaddress.IPv6Address(address)
        except ValueError:
            raise _repo_error("[brackets] may only hold an IPv6 address") from None
        return str(ip), ip
    host = raw.lower().removesuffix(".")
    if not host:
        raise _repo_error("the URL has no host")
    if not host.isascii():
        raise _repo_error("write international host names in their ASCII (xn--) form")
    try:
        ip4 = ipaddress.IPv4Address(host)
    except ValueError:
        pass
    else:
        return host, ip4
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        raise _repo_error(f"{raw!r} is not an IPv4 address in dotted-decimal form (like 192.0.2.1)")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise _repo_error(f"{raw!r} is not a valid host name")
    return host, None


def _parse_address(text: object) -> IPAddress | None:
    try:
        return ipaddress.ip_address(str(text).partition("%")[0])
    except ValueError:
        return None


def _embedded_ipv4(ip: IPAddress) -> list[IPAddress]:
    """The address itself plus any IPv4 address carried inside an IPv6 one (::ffff:127.0.0.1)."""
    found: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            found.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            found.append(ip.sixtofour)
        if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
            found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _resolve_addresses(host: str, resolve: Resolver) -> list[IPAddress] | None:
    """Every address `host` resolves to; None when it does not resolve."""
    try:
        infos = list(resolve(host, None))
    except (OSError, UnicodeError):
        return None
    addresses: list[IPAddress] = []
    for info in infos:
        try:
            ip = _parse_address(info[4][0])
        except (IndexError, TypeError):
            ip = None
        if ip is None:
            return None
        addresses.append(ip)
    return addresses or None


def _blocked(blocked_hosts: Iterable[str], resolve: Resolver) -> tuple[set[str], set[IPAddress]]:
    """Normalized blocked names, and the addresses they have (so aliases and raw IPs match too)."""
    names: set[str] = set()
    addresses: set[IPAddress] = set()
    for entry in blocked_hosts:
        name = entry.strip().lower().removesuffix(".")
        literal = _parse_address(name.removeprefix("[").removesuffix("]"))
        if literal is not None:
            addresses.update(_embedded_ipv4(literal))
            continue
        names.add(name)
        for ip in _resolve_addresses(name, resolve) or ():
            addresses.update(_embedded_ipv4(ip))
    return names, addresses


def _address_problem(
    ip: IPAddress,
    *,
    allow_private: bool,
    blocked_addresses: set[IPAddress],
    host_addresses: set[IPAddress] = frozenset(),  # type: ignore[assignment]
) -> str | None:
    """Why a build may not fetch from `ip`, or None when it may."""
    for candidate in _embedded_ipv4(ip):
        for reason, networks in _REFUSED_RANGES:
            if any(candidate in network for network in networks):
                return reason
        if candidate in blocked_addresses:
            return "the address of one of this server's own services"
        if candidate in host_addresses:
            # The host answers on its bridges' gateways like on loopback, private or not.
            return "an address of this Docker host (a bridge network's gateway)"
        if not allow_private and any(candidate in network for network in _PRIVATE_RANGES):
            return "a private address (private networks are not allowed here)"
    return None


def _parse_location(url: str) -> tuple[str, str, bool, str, str]:
    """(scheme, raw host, bracketed, port, user) of an accepted URL form; scp-like is ssh."""
    if _TRANSPORT.match(url):
        raise _repo_error("git transport syntax ('name::address') is not allowed")
    if _has_bad_characters(url):
        raise _repo_error("the URL must not contain spaces or control characters")
    if "\\" in url:
        raise _repo_error("the URL must not contain backslashes")
    if url_match := URL_SYNTAX.fullmatch(url):
        scheme = url_match["scheme"].lower()
        if scheme not in _ALLOWED_SCHEMES:
            raise _repo_error(f"scheme {scheme!r} is not allowed; use https, http, git or ssh")
        return scheme, *_split_authority(url_match["authority"], scheme)
    if scp_match := SCP_SYNTAX.fullmatch(url):
        if ":" in url.partition("@")[0]:
            raise _repo_error(CREDENTIALS_IN_URL)
        _check_user(scp_match["user"])
        path = scp_match["path"]
        if not path or path.startswith("-"):
            raise _repo_error("the repository path after ':' is missing or starts with '-'")
        host = scp_match["host"]
        if host.startswith("["):
            return "ssh", host[1:-1], True, "", scp_match["user"]
        return "ssh", host, False, "", scp_match["user"]
    raise _repo_error("expected an https://, http://, git://, ssh:// or user@host:path URL")


def check_repository_url(
    url: str,
    *,
    allow_private: bool = True,
    blocked_hosts: frozenset[str] = frozenset(),
    host_addresses: frozenset[str] = frozenset(),
    resolve: Resolver = socket.getaddrinfo,
) -> str:
    """The URL without surrounding whitespace, if git may fetch from it; else RepositoryRefused.

    Refuses local paths, transports other than https/http/git/ssh, credentials in the URL,
    and hosts that are, or resolve to, loopback, link-local/metadata, unspecified, multicast
    or reserved addresses, this stack's own services (`blocked_hosts`, matched by name and
    by address), this Docker host's own addresses (`host_addresses`: its bridge gateways,
    refused whatever `allow_private` says) and, with `allow_private=False`, private networks.
    """
    return check_repository(
        url,
        allow_private=allow_private,
        blocked_hosts=blocked_hosts,
        host_addresses=host_addresses,
        resolve=resolve,
    ).url


def check_repository(
    url: object,
    *,
    allow_private: bool = True,
    blocked_hosts: frozenset[str] = frozenset(),
    host_addresses: frozenset[str] = frozenset(),
    resolve: Resolver = socket.getaddrinfo,
) -> CheckedRepository:
    """`check_repository_url`, keeping what git must be pinned to: host, port, addresses."""
    if not isinstance(url, str):
        raise _repo_error("must be a string")
    url = url.strip()
    if not url:
        raise _repo_error("is required")
    if len(url) > _MAX_URL_LENGTH:
        raise _repo_error(f"must be at most {_MAX_URL_LENGTH} characters")
    if url.startswith("-"):
        # git would read it as a command-line option.
        raise _repo_error("must not start with '-'")
    scheme, raw_host, bracketed, port, user = _parse_location(url)
    if raw_host.startswith("-"):
        raise _repo_error("the host must not start with '-'")
    host, literal = _normalize_host(raw_host, bracketed=bracketed)
    # curl answers *.localhost itself, without asking DNS.
    if host == "localhost" or host.endswith(".localhost"):
        raise _repo_error(f"host {raw_host!r} is a loopback address")
    blocked_names, blocked_addresses = _blocked(blocked_hosts, resolve)
    if host in blocked_names:
        raise _repo_error(f"host {raw_host!r} is one of this server's own services")
    own_addresses = {ip for text in host_addresses if (ip := _parse_address(text)) is not None}
    addresses = [literal] if literal is not None else _resolve_addresses(host, resolve)
    if addresses is None:
        raise _repo_error(f"cannot resolve host {raw_host!r}")
    for ip in addresses:
        problem = _address_problem(
            ip,
            allow_private=allow_private,
            blocked_addresses=blocked_addresses,
            host_addresses=own_addresses,
        )
        if problem is not None:
            where = f"host {raw_host!r}" if literal is not None else f"host {raw_host!r} ({ip})"
            raise _repo_error(f"{where} is {problem}")
    return CheckedRepository(
        url=url,
        scheme=scheme,
        host=host,
        port=int(port) if port else _DEFAULT_PORTS[scheme],
        addresses=tuple(dict.fromkeys(str(ip) for ip in addresses)),
        user=user,
    )


def url_scheme(url: str) -> str:
    """Scheme of an already validated repository URL; scp-like syntax is ssh."""
    match = URL_SYNTAX.fullmatch(url)
    return match["scheme"].lower() if match else "ssh"
