"""Validate an admin's build request before git or repo2docker ever see it.

Every check raises `ValidationError` naming the form/API field, so the UI can show the message
next to the right input. Nothing here runs git or talks to Docker; the only I/O is DNS
resolution through an injectable `resolve` callable (tests pass a fake one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import math
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from gallery_common.gallery_file import NAME_PATTERN

# Same call shape as socket.getaddrinfo(host, None): entries whose [4][0] is an address string.
Resolver = Callable[..., Iterable[tuple[Any, ...]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ValidationError(ValueError):
    """One field of a build request is unusable; `field` says which, `message` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[ValidationError], tuple[str, str]]:
        # ValueError would pickle only the joined text, which __init__ cannot take back.
        return (type(self), (self.field, self.message))


# --- repository URL -------------------------------------------------------------------------

_REPOSITORY = "repository"
_MAX_URL_LENGTH = 2048
_ALLOWED_SCHEMES = frozenset({"https", "http", "git", "ssh"})
# git's own rule for "<transport>::<address>" (remote helpers such as ext:: run commands).
_TRANSPORT = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*::")
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)", re.S)
# scp-like syntax as git reads it: no "/" before the first ":".
_SCP = re.compile(r"(?P<user>[^@/:\[\]]*)@(?P<host>\[[^\]/]*\]|[^@/:\[\]]*):(?P<path>.*)", re.S)
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


def _repo_error(message: str) -> ValidationError:
    return ValidationError(_REPOSITORY, message)


def _has_bad_characters(text: str) -> bool:
    """Whitespace or any control/format/separator character anywhere in `text`."""
    return any(ch.isspace() or not ch.isprintable() for ch in text)


def _check_user(user: str) -> None:
    if not _USER.fullmatch(user) or user.startswith("-"):
        raise _repo_error("the user name in the URL contains characters that are not allowed")


def _split_authority(authority: str) -> tuple[str, bool]:
    """The raw host of a URL authority and whether it was in [brackets]; refuses passwords."""
    if authority.count("@") > 1:
        raise _repo_error("the URL contains more than one '@'")
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        if colon:
            # Secrets in the URL end up in logs and image labels; they have their own field.
            raise _repo_error("do not put a password in the URL; use the credentials fields")
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
    return host, bracketed


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
    ip: IPAddress, *, allow_private: bool, blocked_addresses: set[IPAddress]
) -> str | None:
    """Why a build may not fetch from `ip`, or None when it may."""
    for candidate in _embedded_ipv4(ip):
        for reason, networks in _REFUSED_RANGES:
            if any(candidate in network for network in networks):
                return reason
        if candidate in blocked_addresses:
            return "the address of one of this server's own services"
        if not allow_private and any(candidate in network for network in _PRIVATE_RANGES):
            return "a private address (private networks are not allowed here)"
    return None


def _parse_location(url: str) -> tuple[str, str, bool]:
    """(scheme, raw host, bracketed) of an accepted URL form; scp-like syntax counts as ssh."""
    if _TRANSPORT.match(url):
        raise _repo_error("git transport syntax ('name::address') is not allowed")
    if _has_bad_characters(url):
        raise _repo_error("the URL must not contain spaces or control characters")
    if "\\" in url:
        raise _repo_error("the URL must not contain backslashes")
    if url_match := _URL.fullmatch(url):
        scheme = url_match["scheme"].lower()
        if scheme not in _ALLOWED_SCHEMES:
            raise _repo_error(f"scheme {scheme!r} is not allowed; use https, http, git or ssh")
        host, bracketed = _split_authority(url_match["authority"])
        return scheme, host, bracketed
    if scp_match := _SCP.fullmatch(url):
        _check_user(scp_match["user"])
        path = scp_match["path"]
        if not path or path.startswith("-"):
            raise _repo_error("the repository path after ':' is missing or starts with '-'")
        host = scp_match["host"]
        if host.startswith("["):
            return "ssh", host[1:-1], True
        return "ssh", host, False
    raise _repo_error("expected an https://, http://, git://, ssh:// or user@host:path URL")


def validate_repository_url(
    url: str,
    *,
    allow_private: bool = True,
    blocked_hosts: frozenset[str] = frozenset(),
    resolve: Resolver = socket.getaddrinfo,
) -> str:
    """The URL without surrounding whitespace, if git may fetch from it; else ValidationError.

    Refuses local paths, transports other than https/http/git/ssh, embedded passwords, and
    hosts that are, or resolve to, loopback, link-local/metadata, unspecified, multicast or
    reserved addresses, this stack's own services (`blocked_hosts`, matched by name and by
    address) and, with `allow_private=False`, private networks.
    """
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
    _scheme, raw_host, bracketed = _parse_location(url)
    if raw_host.startswith("-"):
        raise _repo_error("the host must not start with '-'")
    host, literal = _normalize_host(raw_host, bracketed=bracketed)
    # curl answers *.localhost itself, without asking DNS.
    if host == "localhost" or host.endswith(".localhost"):
        raise _repo_error(f"host {raw_host!r} is a loopback address")
    blocked_names, blocked_addresses = _blocked(blocked_hosts, resolve)
    if host in blocked_names:
        raise _repo_error(f"host {raw_host!r} is one of this server's own services")
    addresses = [literal] if literal is not None else _resolve_addresses(host, resolve)
    if addresses is None:
        raise _repo_error(f"cannot resolve host {raw_host!r}")
    for ip in addresses:
        problem = _address_problem(
            ip, allow_private=allow_private, blocked_addresses=blocked_addresses
        )
        if problem is not None:
            where = f"host {raw_host!r}" if literal is not None else f"host {raw_host!r} ({ip})"
            raise _repo_error(f"{where} is {problem}")
    return url


def _url_scheme(url: str) -> str:
    """Scheme of an already validated repository URL; scp-like syntax is ssh."""
    match = _URL.fullmatch(url)
    return match["scheme"].lower() if match else "ssh"


# --- ref, name, image tag -------------------------------------------------------------------

_MAX_REF_LENGTH = 255
_REF_FORBIDDEN = " ~^:?*[\\"
_NAME_INVALID = re.compile(r"[^a-z0-9_.-]+")
_NAME_SEPARATOR_RUN = re.compile(r"[._-]{2,}")
_FULL_COMMIT = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_TAG_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_TAG_LENGTH = 128


def _ref_problem(ref: str) -> str | None:
    """The first `git check-ref-format` rule that `ref` breaks, or None."""
    if len(ref) > _MAX_REF_LENGTH:
        return f"must be at most {_MAX_REF_LENGTH} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in ref):
        return "must not contain control characters"
    for ch in _REF_FORBIDDEN:
        if ch in ref:
            return f"must not contain {ch!r}"
    checks = (
        (".." in ref, "must not contain '..'"),
        ("@{" in ref, "must not contain '@{'"),
        (ref == "@", "must not be '@'"),
        (ref.startswith("-"), "must not start with '-'"),
        (ref.startswith("/"), "must not start with '/'"),
        (ref.endswith("/"), "must not end with '/'"),
        ("//" in ref, "must not contain '//'"),
        (ref.endswith("."), "must not end with '.'"),
    )
    for broken, message in checks:
        if broken:
            return message
    for component in ref.split("/"):
        if component.startswith("."):
            return "no part between '/' may start with '.'"
        if component.endswith(".lock"):
            return "no part between '/' may end with '.lock'"
    return None


def validate_ref(ref: str | None) -> str | None:
    """The branch, tag or commit to build; None (or blank) means the default branch."""
    if ref is None:
        return None
    if not isinstance(ref, str):
        raise ValidationError("ref", "must be a string")
    ref = ref.strip()
    if not ref:
        return None
    problem = _ref_problem(ref)
    if problem is not None:
        raise ValidationError("ref", problem)
    return ref


def validate_name(name: str) -> str:
    """The environment name without surrounding whitespace, if it fits the name pattern."""
    if not isinstance(name, str):
        raise ValidationError("name", "must be a string")
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            "name",
            "use 1-63 lower-case letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return name


def derive_name(url: str) -> str:
    """A default environment name: the repository's last path part, made to fit the pattern."""
    text = url.strip() if isinstance(url, str) else ""
    if url_match := _URL.fullmatch(text):
        path = re.split(r"[?#]", url_match["rest"], maxsplit=1)[0]
    elif scp_match := _SCP.fullmatch(text):
        path = scp_match["path"]
    else:
        path = text
    last = unquote(path.rstrip("/").rsplit("/", 1)[-1])
    if last.lower().endswith(".git"):
        last = last[: -len(".git")]
    candidate = _NAME_INVALID.sub("-", last.lower())
    # Runs like ".." or "-_" are legal names but not legal Docker image names.
    candidate = _NAME_SEPARATOR_RUN.sub("-", candidate)
    candidate = candidate[:63].strip("._-")
    return candidate or "environment"


def image_tag_for_ref(ref: str) -> str:
    """A Docker tag for `ref`: full commit ids shorten to 7 hex digits, other refs are sanitized.

    An empty ref gives "latest"; refs longer than a tag allows keep a hash suffix so that two
    long branch names with the same beginning still get different tags.
    """
    if _FULL_COMMIT.fullmatch(ref):
        return ref[:7].lower()
    tag = _TAG_INVALID.sub("-", ref).lstrip(".-")
    if not tag:
        return "latest"
    if len(tag) > _MAX_TAG_LENGTH:
        digest = hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        tag = f"{tag[: _MAX_TAG_LENGTH - len(digest) - 1]}-{digest}"
    return tag


def image_name(name: str, ref: str) -> str:
    """The image reference "name:tag" for an environment built from `ref`."""
    return f"{validate_name(name)}:{image_tag_for_ref(ref)}"


# --- resources ------------------------------------------------------------------------------

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def _positive_number(field: str, value: object, maximum: float, unit: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        # bool is an int subclass; true would silently mean 1.
        raise ValidationError(field, "must be a number, not true or false")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if not _DECIMAL.fullmatch(text):
            raise ValidationError(field, "must be a number like 2 or 0.5")
        number = float(text)
    elif isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            raise ValidationError(field, f"must be at most {maximum:g}{unit}") from None
    else:
        raise ValidationError(field, "must be a number like 2 or 0.5")
    if not math.isfinite(number):
        raise ValidationError(field, "must be a finite number")
    if number <= 0:
        raise ValidationError(field, "must be greater than 0")
    if number > maximum:
        raise ValidationError(field, f"must be at most {maximum:g}{unit}")
    return number


def validate_memory_gb(value: object, *, maximum: float) -> float | None:
    """Memory limit in GB (number or numeric string); None/"" means no explicit limit."""
    return _positive_number("memory", value, maximum, " GB")


def validate_cpu(value: object, *, maximum: float) -> float | None:
    """CPU limit in cores (number or numeric string); None/"" means no explicit limit."""
    return _positive_number("cpu", value, maximum, " CPUs")


# --- credentials ----------------------------------------------------------------------------

_MAX_USERNAME_LENGTH = 256
_MAX_PASSWORD_LENGTH = 4096


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Username and password/token for fetching a private repository over https."""

    username: str
    password: str = dataclasses.field(repr=False)

    def __repr__(self) -> str:
        # Requests get logged; the secret must never be.
        return f"Credentials(username={self.username!r}, password='***')"


def _optional_text(field: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    return value


def validate_credentials(username: str | None, password: str | None) -> Credentials | None:
    """Credentials when both parts are given, None when neither is; never echoes the password."""
    user = _optional_text("username", username).strip()
    secret = _optional_text("password", password)
    if not user and not secret:
        return None
    if not user:
        raise ValidationError("username", "is required when a password is given")
    if not secret:
        raise ValidationError("password", "is required when a username is given")
    if len(user) > _MAX_USERNAME_LENGTH:
        raise ValidationError("username", f"must be at most {_MAX_USERNAME_LENGTH} characters")
    if not user.isprintable():
        raise ValidationError("username", "must not contain control characters")
    if ":" in user:
        # HTTP basic auth joins "user:password"; a colon in the user name would split wrongly.
        raise ValidationError("username", "must not contain ':'")
    if len(secret) > _MAX_PASSWORD_LENGTH:
        raise ValidationError("password", f"must be at most {_MAX_PASSWORD_LENGTH} characters")
    if not secret.isprintable():
        raise ValidationError("password", "must not contain line breaks or control characters")
    return Credentials(user, secret)


# --- whole request --------------------------------------------------------------------------

_BODY_KEYS = frozenset({"repository", "ref", "name", "memory", "cpu", "credentials"})
_CREDENTIAL_KEYS = frozenset({"username", "password"})


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    """A fully validated build: safe to hand to git and repo2docker."""

    repository: str
    ref: str | None
    name: str
    memory_gb: float | None
    cpu: float | None
    credentials: Credentials | None = None


def _refuse_unknown_keys(body: Mapping[Any, Any], known: frozenset[str], prefix: str) -> None:
    unknown = sorted(str(key) for key in body if key not in known)
    if unknown:
        expected = ", ".join(sorted(known))
        raise ValidationError(f"{prefix}{unknown[0]}", f"unknown field; expected: {expected}")


def _parse_credentials(value: object, repository: str) -> Credentials | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError("credentials", "must be an object with username and password")
    _refuse_unknown_keys(value, _CREDENTIAL_KEYS, prefix="credentials.")
    credentials = validate_credentials(value.get("username"), value.get("password"))
    if credentials is None:
        return None
    # Plain http is allowed for self-hosted servers on a LAN; the README advises https.
    if _url_scheme(repository) not in {"https", "http"}:
        raise ValidationError(
            "credentials", "a username and password only work with https:// (or http://)"
        )
    return credentials


def parse_build_request(
    body: Mapping[str, Any],
    *,
    max_memory_gb: float,
    max_cpu: float,
    allow_private: bool = True,
    blocked_hosts: frozenset[str] = frozenset(),
    resolve: Resolver = socket.getaddrinfo,
) -> BuildRequest:
    """Validate a submitted build (form or JSON body) into a BuildRequest; else ValidationError."""
    if not isinstance(body, Mapping):
        raise ValidationError("body", "must be a JSON object")
    _refuse_unknown_keys(body, _BODY_KEYS, prefix="")
    repository = body.get("repository")
    if repository is None:
        raise ValidationError("repository", "is required")
    repository = validate_repository_url(
        repository, allow_private=allow_private, blocked_hosts=blocked_hosts, resolve=resolve
    )
    ref = validate_ref(body.get("ref"))
    raw_name = body.get("name")
    # A blank name means "pick one for me", like a missing one.
    if raw_name is None or (isinstance(raw_name, str) and not raw_name.strip()):
        name = derive_name(repository)
    else:
        name = validate_name(raw_name)
    return BuildRequest(
        repository=repository,
        ref=ref,
        name=name,
        memory_gb=validate_memory_gb(body.get("memory"), maximum=max_memory_gb),
        cpu=validate_cpu(body.get("cpu"), maximum=max_cpu),
        credentials=_parse_credentials(body.get("credentials"), repository),
    )
