"""Unit tests of build request validation; DNS is always a fake resolver, never the network."""

from __future__ import annotations

import dataclasses
import pickle
import re
import socket

import pytest

from gallery_builder.build_request import (
    BuildRequest,
    Credentials,
    ValidationError,
    derive_name,
    image_name,
    image_tag_for_ref,
    parse_build_request,
    validate_cpu,
    validate_credentials,
    validate_memory_gb,
    validate_name,
    validate_ref,
    validate_repository_url,
)
from gallery_builder.repository_policy import CREDENTIALS_IN_URL

FAKE_DNS: dict[str, list[str]] = {
    "git.example.org": ["93.184.216.34"],
    "github.com": ["140.82.121.3"],
    "v6.example": ["2606:2800:220:1:248:1893:25c8:1946"],
    "internal.example": ["10.0.0.5"],
    "ula.example": ["fd12:3456::1"],
    "evil.example": ["169.254.169.254"],
    "localhost": ["127.0.0.1"],
    "mixed.example": ["93.184.216.34", "127.0.0.1"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "linklocal6.example": ["fe80::1%eth0"],
    "multicast.example": ["224.0.0.251"],
    "zero.example": ["0.0.0.0"],  # noqa: S104 -- a DNS answer, nothing binds to it
    "hub": ["172.18.0.3"],
    "hub-alias.example": ["172.18.0.3"],
    "traefik": ["172.18.0.4"],
}

DOCKER_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
SHA1 = "0123456789abcdef0123456789abcdef01234567"


def fake_resolve(host: str, port: object, *args: object, **kwargs: object) -> list[tuple]:
    """getaddrinfo look-alike answering from FAKE_DNS; unknown names fail like real DNS."""
    try:
        addresses = FAKE_DNS[host]
    except KeyError:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
    return [
        (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
        for a in addresses
    ]


class RecordingResolver:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def __call__(self, host: str, port: object) -> list[tuple]:
        self.calls.append((host, port))
        return fake_resolve(host, port)


def check_url(url: object, **kwargs: object) -> str:
    kwargs.setdefault("resolve", fake_resolve)
    return validate_repository_url(url, **kwargs)  # type: ignore[arg-type]


def refused(call, field: str, match: str | None = None) -> ValidationError:
    """Run `call`, require a ValidationError for `field` (and message text), return it."""
    with pytest.raises(ValidationError) as info:
        call()
    assert info.value.field == field
    if match is not None:
        assert match in info.value.message
    return info.value


# --- ValidationError ------------------------------------------------------------------------


def test_validation_error_carries_field_and_message():
    error = ValidationError("ref", "must not contain '..'")
    assert isinstance(error, ValueError)
    assert error.field == "ref"
    assert error.message == "must not contain '..'"
    assert str(error) == "ref: must not contain '..'"


def test_validation_error_survives_pickling():
    # Our own freshly pickled object, not untrusted data.
    copy = pickle.loads(pickle.dumps(ValidationError("cpu", "must be greater than 0")))  # noqa: S301
    assert (copy.field, copy.message) == ("cpu", "must be greater than 0")
    assert str(copy) == "cpu: must be greater than 0"


# --- repository URL: accepted forms ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://git.example.org/org/repo",
        "https://git.example.org/org/repo.git",
        "https://git.example.org:8443/org/repo.git",
        "HTTPS://git.example.org/org/repo",
        "http://git.example.org/repo",
        "git://git.example.org/repo.git",
        "ssh://git@git.example.org/org/repo.git",
        "ssh://git@git.example.org:2222/org/repo.git",
        "git@github.com:org/repo.git",
        "git@github.com:~user/repo.git",
        "https://GIT.Example.ORG./repo",
        "https://93.184.216.34/repo.git",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/repo",
        "https://v6.example/repo",
        "https://git.example.org/org/repo?tab=readme#top",
    ],
)
def test_accepts_supported_urls(url):
    assert check_url(url) == url


def test_returns_url_without_surrounding_whitespace():
    assert check_url("  https://git.example.org/repo\n") == "https://git.example.org/repo"


def test_resolves_normalized_host_name():
    resolve = RecordingResolver()
    check_url("https://GIT.Example.ORG./repo", resolve=resolve)
    assert resolve.calls == [("git.example.org", None)]


@pytest.mark.parametrize("url", ["https://93.184.216.34/repo", "https://[2606:2800:220:1::1]/repo"])
def test_ip_literals_are_not_sent_to_the_resolver(url):
    resolve = RecordingResolver()
    assert check_url(url, resolve=resolve) == url
    assert resolve.calls == []


# --- repository URL: refused forms ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("", "is required"),
        ("   ", "is required"),
        ("/srv/git/repo.git", "expected an https://"),
        ("./repo", "expected an https://"),
        ("../repo", "expected an https://"),
        ("repo", "expected an https://"),
        ("~/repo", "expected an https://"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("FILE:///etc/passwd", "scheme 'file' is not allowed"),
        ("file:/etc/passwd", "expected an https://"),
        ("ftp://git.example.org/repo", "scheme 'ftp' is not allowed"),
        ("ext::sh -c touch% /tmp/pwned", "transport syntax"),
        ("fd::17/repo", "transport syntax"),
        ("git.example.org::repo", "transport syntax"),
        ("-oProxyCommand=touch /tmp/x", "must not start with '-'"),
        ("--upload-pack=touch /tmp/x", "must not start with '-'"),
        ("https://git.example.org/my repo", "spaces or control characters"),
        ("https://git.example.org/repo\nhttps://other", "spaces or control characters"),
        ("https://git.example.org/\trepo", "spaces or control characters"),
        ("https://git.example.org/re\x00po", "spaces or control characters"),
        ("https://git.example.org/re\u200bpo", "spaces or control characters"),
        ("https://git.example.org\\@hub/repo", "backslashes"),
        ("https://user:secret@git.example.org/repo", CREDENTIALS_IN_URL),
        ("https://user:@git.example.org/repo", CREDENTIALS_IN_URL),
        ("ssh://git:secret@git.example.org/repo", CREDENTIALS_IN_URL),
        ("https://user@git.example.org/repo", CREDENTIALS_IN_URL),
        ("http://token@git.example.org/repo", CREDENTIALS_IN_URL),
        ("git://user@git.example.org/repo", CREDENTIALS_IN_URL),
        ("https://a@b@git.example.org/repo", "more than one '@'"),
        ("https://@git.example.org/repo", CREDENTIALS_IN_URL),
        ("ssh://@git.example.org/repo", "user name"),
        ("ssh://-oProxyCommand=x@git.example.org/repo", "user name"),
        ("https:///repo", "no host"),
        ("https://", "no host"),
        ("ssh://user@/repo", "no host"),
        ("git@:repo", "no host"),
        ("ssh://-oProxyCommand=touch/repo", "host must not start with '-'"),
        ("https://git.example.org:99999/repo", "port"),
        ("https://git.example.org:https/repo", "port"),
        ("https://[::1/repo", "IPv6 host"),
        ("https://[::1]x/repo", "IPv6 host"),
        ("https://[hub]/repo", "IPv6"),
        ("https://[127.0.0.1]/repo", "IPv6"),
        ("https://127.1/repo", "dotted-decimal"),
        ("https://2130706433/repo", "dotted-decimal"),
        ("https://0x7f000001/repo", "dotted-decimal"),
        ("https://0177.0.0.1/repo", "dotted-decimal"),
        ("https://%6cocalhost/repo", "not a valid host name"),
        ("https://-bad.example/repo", "host must not start with '-'"),
        ("https://bad-.example/repo", "not a valid host name"),
        ("https://bad..example/repo", "not a valid host name"),
        ("https://b\u00fccher.example/repo", "xn--"),
        ("git@github.com:", "path after ':'"),
        ("git@github.com:-oProxyCommand", "path after ':'"),
        ("@github.com:org/repo", "user name"),
        ("https://git.example.org/" + "a" * 2048, "at most 2048"),
    ],
)
def test_refuses_unsupported_or_unsafe_urls(url, match):
    refused(lambda: check_url(url), "repository", match)


@pytest.mark.parametrize("value", [None, 42, b"https://git.example.org/repo", ["https://x"]])
def test_refuses_non_string_repository(value):
    refused(lambda: check_url(value), "repository", "must be a string")


# --- repository URL: where the host points ----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("https://localhost/repo", "loopback"),
        ("https://LOCALHOST./repo", "loopback"),
        ("https://app.localhost/repo", "loopback"),
        ("git@localhost:repo.git", "loopback"),
        ("https://127.0.0.1/repo", "loopback"),
        ("https://127.5.5.5:8080/repo", "loopback"),
        ("https://[::1]/repo", "loopback"),
        ("https://[::ffff:127.0.0.1]/repo", "loopback"),
        ("https://[::ffff:7f00:1]/repo", "loopback"),
        ("https://[::127.0.0.1]/repo", "loopback"),
        ("https://[64:ff9b::127.0.0.1]/repo", "loopback"),
        ("https://[2002:7f00:1::]/repo", "loopback"),
        ("https://mapped.example/repo", "loopback"),
        ("https://mixed.example/repo", "loopback"),
        ("https://evil.example/latest/meta-data", "link-local"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://169.254.1.1/repo", "link-local"),
        ("https://[fe80::1]/repo", "link-local"),
        ("https://[fe80::1%25eth0]/repo", "link-local"),
        ("https://linklocal6.example/repo", "link-local"),
        ("http://100.100.100.200/latest/meta-data", "metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data", "metadata"),
        ("https://0.0.0.0/repo", "unspecified"),
        ("https://0.1.2.3/repo", "unspecified"),
        ("https://[::]/repo", "unspecified"),
        ("https://zero.example/repo", "unspecified"),
        ("https://224.0.0.1/repo", "multicast"),
        ("https://[ff02::1]/repo", "multicast"),
        ("https://multicast.example/repo", "multicast"),
        ("https://255.255.255.255/repo", "reserved"),
    ],
)
def test_refuses_hosts_that_point_at_this_machine_or_metadata(url, match):
    refused(lambda: check_url(url), "repository", match)


def test_names_the_resolved_address_in_the_error():
    error = refused(lambda: check_url("https://evil.example/repo"), "repository")
    assert error.message == (
        "host 'evil.example' (169.254.169.254) is a link-local (metadata) address"
    )


PRIVATE_URLS = [
    "https://internal.example/repo",
    "https://10.0.0.5/repo",
    "https://172.16.0.1/repo",
    "https://172.31.255.254/repo",
    "https://192.168.1.10/repo",
    "https://100.64.0.1/repo",
    "https://[fd12:3456::1]/repo",
    "https://ula.example/repo",
    "git@internal.example:org/repo.git",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_networks_allowed_by_default(url):
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [*PRIVATE_URLS, "https://[::ffff:10.0.0.5]/repo", "https://[2002:a00:5::]/repo"],
)
def test_private_networks_refused_when_not_allowed(url):
    refused(lambda: check_url(url, allow_private=False), "repository", "private address")


@pytest.mark.parametrize(
    "url", ["https://git.example.org/repo", "https://172.32.0.1/repo", "https://11.0.0.1/repo"]
)
def test_public_hosts_accepted_when_private_not_allowed(url):
    assert check_url(url, allow_private=False) == url


SERVICES = frozenset({"hub", "builder", "traefik"})


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://hub/repo", "own services"),
        ("http://HUB:8081/repo", "own services"),
        ("http://hub./repo", "own services"),
        ("https://Builder/repo", "own services"),
        ("ssh://git@traefik/repo", "own services"),
        ("git@hub:repo.git", "own services"),
        ("http://172.18.0.3/repo", "own services"),
        ("http://[::ffff:172.18.0.3]/repo", "own services"),
        ("http://hub-alias.example/repo", "own services"),
        ("http://172.18.0.4:8080/repo", "own services"),
    ],
)
def test_refuses_the_stacks_own_services(url, match):
    refused(lambda: check_url(url, blocked_hosts=SERVICES), "repository", match)


def test_blocked_hosts_are_normalized():
    blocked = frozenset({" Hub. ", "172.18.0.9", "[fd00::9]"})
    refused(lambda: check_url("http://hub/repo", blocked_hosts=blocked), "repository")
    refused(lambda: check_url("http://172.18.0.9/repo", blocked_hosts=blocked), "repository")
    refused(lambda: check_url("http://[fd00::9]/repo", blocked_hosts=blocked), "repository")
    assert check_url("http://172.18.0.10/repo", blocked_hosts=blocked) == "http://172.18.0.10/repo"


def test_unresolvable_blocked_host_does_not_break_validation():
    # "builder" is not in FAKE_DNS: it must simply not match anything.
    url = "https://git.example.org/repo"
    assert check_url(url, blocked_hosts=frozenset({"builder"})) == url


def test_blocked_host_name_is_not_a_prefix_match():
    url = "https://hub.example.org/repo"
    FAKE_DNS["hub.example.org"] = ["93.184.216.35"]
    try:
        assert check_url(url, blocked_hosts=SERVICES) == url
    finally:
        del FAKE_DNS["hub.example.org"]


def test_unresolvable_host_is_refused():
    refused(
        lambda: check_url("https://nowhere.example/repo"),
        "repository",
        "cannot resolve host 'nowhere.example'",
    )


@pytest.mark.parametrize(
    "resolve",
    [
        lambda host, port: [],
        lambda host, port: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("not-an-ip", 0))],
        lambda host, port: [()],
    ],
)
def test_empty_or_odd_resolver_answers_are_refused(resolve):
    refused(
        lambda: check_url("https://git.example.org/repo", resolve=resolve),
        "repository",
        "cannot resolve host",
    )


@pytest.mark.parametrize("exception", [socket.gaierror(-2, "no"), OSError("down"), UnicodeError()])
def test_resolver_failures_are_refused(exception):
    def resolve(host, port):
        raise exception

    refused(
        lambda: check_url("https://git.example.org/repo", resolve=resolve),
        "repository",
        "cannot resolve host",
    )


# --- ref --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", [None, "", "   "])
def test_missing_ref_means_default_branch(ref):
    assert validate_ref(ref) is None


@pytest.mark.parametrize(
    "ref",
    [
        "main",
        "v1.2.3",
        "feature/login-form",
        "release/2024.01",
        "refs/heads/main",
        "foo@bar",
        "caf\u00e9",
        SHA1,
        "a" * 255,
    ],
)
def test_accepts_valid_refs(ref):
    assert validate_ref(ref) == ref


def test_ref_is_stripped():
    assert validate_ref("  main\n") == "main"


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("a..b", "'..'"),
        ("a b", "' '"),
        ("a\tb", "control characters"),
        ("a\x00b", "control characters"),
        ("a\x7fb", "control characters"),
        ("main~1", "'~'"),
        ("main^", "'^'"),
        ("a:b", "':'"),
        ("a?", "'?'"),
        ("a*", "'*'"),
        ("a[b", "'['"),
        ("a\\b", "'\\\\'"),
        ("-main", "start with '-'"),
        ("/main", "start with '/'"),
        ("main/", "end with '/'"),
        ("a//b", "'//'"),
        ("main.", "end with '.'"),
        ("main.lock", "'.lock'"),
        ("feature/x.lock/y", "'.lock'"),
        ("a@{1}", "'@{'"),
        ("@", "must not be '@'"),
        (".hidden", "start with '.'"),
        ("feature/.hidden", "start with '.'"),
        ("a" * 256, "at most 255"),
    ],
)
def test_refuses_invalid_refs(ref, match):
    refused(lambda: validate_ref(ref), "ref", match)


@pytest.mark.parametrize("ref", [5, ["main"], b"main"])
def test_refuses_non_string_ref(ref):
    refused(lambda: validate_ref(ref), "ref", "must be a string")


# --- name -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "7", "repo", "my-repo_1.0", "0abc", "a" * 63])
def test_accepts_valid_names(name):
    assert validate_name(name) == name


def test_name_is_stripped():
    assert validate_name(" repo ") == "repo"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "  ",
        "-repo",
        "_repo",
        ".repo",
        "Repo",
        "my repo",
        "re\npo",
        "repo/x",
        "a:b",
        "r\u00e9po",
        "a" * 64,
    ],
)
def test_refuses_invalid_names(name):
    refused(lambda: validate_name(name), "name", "lower-case")


@pytest.mark.parametrize("name", [None, 3, ["repo"]])
def test_refuses_non_string_name(name):
    refused(lambda: validate_name(name), "name", "must be a string")


# --- derive_name ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/org/Repo.git", "repo"),
        ("https://github.com/org/repo", "repo"),
        ("https://github.com/org/repo/", "repo"),
        ("https://github.com/org/repo.git/", "repo"),
        ("https://github.com/org/REPO.GIT", "repo"),
        ("git@github.com:org/My_Repo.git", "my_repo"),
        ("git@github.com:repo.git", "repo"),
        ("ssh://git@host:2222/org/repo.git", "repo"),
        ("https://host/org/repo?ref=main#readme", "repo"),
        ("https://host/org/my%20cool%20repo", "my-cool-repo"),
        ("https://host/org/Cool Repo!", "cool-repo"),
        ("https://host/org/--weird..name--", "weird-name"),
        ("https://host/org/a._b", "a-b"),
        ("https://host/org/v1.2", "v1.2"),
        ("https://host/org/\u00fcber", "ber"),
        ("https://host/", "environment"),
        ("https://host", "environment"),
        ("https://host/.git", "environment"),
        ("https://host/org/!!!", "environment"),
        ("", "environment"),
        ("https://host/" + "a" * 100, "a" * 63),
        ("https://host/" + "a" * 62 + "-b", "a" * 62),
    ],
)
def test_derive_name(url, expected):
    assert derive_name(url) == expected


@pytest.mark.parametrize(
    "url",
    ["https://x/Ab--Cd", "https://x/._-a-_.", "git@x:o/9" + "_" * 70 + "z", "https://x/a b/c d"],
)
def test_derived_names_are_valid_names_and_docker_repositories(url):
    name = derive_name(url)
    assert validate_name(name) == name
    assert NAME.fullmatch(name)
    assert DOCKER_REPOSITORY.fullmatch(name)


# --- image tags -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (SHA1, "0123456"),
        (SHA1.upper(), "0123456"),
        ("ab" * 32, "ababab" + "a"),
        (SHA1[:-1], SHA1[:-1]),
        ("main", "main"),
        ("v1.2.3", "v1.2.3"),
        ("Feature_X", "Feature_X"),
        ("feature/login", "feature-login"),
        ("release/2024.01", "release-2024.01"),
        ("a@b", "a-b"),
        ("caf\u00e9", "caf-"),
        ("", "latest"),
        ("///", "latest"),
    ],
)
def test_image_tag_for_ref(ref, expected):
    assert image_tag_for_ref(ref) == expected


def test_long_refs_get_distinct_valid_tags():
    first = image_tag_for_ref("feature/" + "x" * 200 + "/one")
    second = image_tag_for_ref("feature/" + "x" * 200 + "/two")
    assert len(first) == 128
    assert DOCKER_TAG.fullmatch(first)
    assert DOCKER_TAG.fullmatch(second)
    assert first != second
    assert first == image_tag_for_ref("feature/" + "x" * 200 + "/one")


def test_image_name():
    assert image_name("repo", SHA1) == "repo:0123456"
    assert image_name("my-env", "feature/x") == "my-env:feature-x"


def test_image_name_refuses_invalid_name():
    refused(lambda: image_name("Bad Name", "main"), "name")


# --- memory and cpu ---------------------------------------------------------------------------

RESOURCES = [(validate_memory_gb, "memory"), (validate_cpu, "cpu")]


@pytest.mark.parametrize(("validate", "field"), RESOURCES)
@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1.0), (0.5, 0.5), ("2", 2.0), (" 2.5 ", 2.5), (".5", 0.5), ("8", 8.0), (8, 8.0)],
)
def test_accepts_resource_limits(validate, field, value, expected):
    result = validate(value, maximum=8)
    assert result == expected
    assert isinstance(result, float)


@pytest.mark.parametrize(("validate", "field"), RESOURCES)
@pytest.mark.parametrize("value", [None, "", "  "])
def test_missing_resource_limit_is_none(validate, field, value):
    assert validate(value, maximum=8) is None


@pytest.mark.parametrize(("validate", "field"), RESOURCES)
@pytest.mark.parametrize(
    ("value", "match"),
    [
        (True, "not true or false"),
        (False, "not true or false"),
        (0, "greater than 0"),
        (0.0, "greater than 0"),
        (-1, "greater than 0"),
        ("-1", "greater than 0"),
        ("0", "greater than 0"),
        (8.01, "at most 8"),
        ("9", "at most 8"),
        (10**400, "at most 8"),
        ("9" * 400, "finite"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ("nan", "number like"),
        ("inf", "number like"),
        ("1e3", "number like"),
        ("1,5", "number like"),
        ("1_0", "number like"),
        ("two", "number like"),
        ([1], "number like"),
        ({"gb": 1}, "number like"),
    ],
)
def test_refuses_bad_resource_limits(validate, field, value, match):
    refused(lambda: validate(value, maximum=8), field, match)


def test_resource_maximum_in_message():
    error = refused(lambda: validate_memory_gb(64, maximum=16), "memory")
    assert error.message == "must be at most 16 GB"
    error = refused(lambda: validate_cpu(4, maximum=2.5), "cpu")
    assert error.message == "must be at most 2.5 CPUs"


# --- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize(("username", "password"), [(None, None), ("", ""), ("  ", None)])
def test_no_credentials(username, password):
    assert validate_credentials(username, password) is None


def test_valid_credentials():
    assert validate_credentials(" alice ", "s3cret token") == Credentials("alice", "s3cret token")


@pytest.mark.parametrize(
    ("username", "password", "field", "match"),
    [
        (None, "s3cret", "username", "required"),
        ("", "s3cret", "username", "required"),
        ("alice", None, "password", "required"),
        ("alice", "", "password", "required"),
        ("al\nice", "s3cret", "username", "control"),
        ("al\x00ice", "s3cret", "username", "control"),
        ("alice:admin", "s3cret", "username", "':'"),
        ("a" * 257, "s3cret", "username", "at most 256"),
        (42, "s3cret", "username", "must be a string"),
        ("alice", "s3cret\n", "password", "control"),
        ("alice", "s3\rcret", "password", "control"),
        ("alice", "s3\x00cret", "password", "control"),
        ("alice", "s" * 4097, "password", "at most 4096"),
        ("alice", 12345, "password", "must be a string"),
    ],
)
def test_refuses_bad_credentials(username, password, field, match):
    error = refused(lambda: validate_credentials(username, password), field, match)
    assert "s3cret" not in str(error)


def test_credentials_repr_hides_password():
    credentials = Credentials("alice", "hunter2")
    assert repr(credentials) == "Credentials(username='alice', password='***')"
    assert "hunter2" not in str(credentials)
    assert "hunter2" not in f"{credentials}"


def test_credentials_are_frozen():
    credentials = Credentials("alice", "hunter2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        credentials.password = "other"  # type: ignore[misc]


# --- parse_build_request ----------------------------------------------------------------------

LIMITS = {"max_memory_gb": 16, "max_cpu": 4, "resolve": fake_resolve}


def parse(body: object, **kwargs: object) -> BuildRequest:
    return parse_build_request(body, **{**LIMITS, **kwargs})  # type: ignore[arg-type]


def test_minimal_request():
    assert parse({"repository": "https://git.example.org/org/Analysis.git"}) == BuildRequest(
        repository="https://git.example.org/org/Analysis.git",
        ref=None,
        name="analysis",
        memory_gb=None,
        cpu=None,
        credentials=None,
    )


def test_full_request():
    body = {
        "repository": " https://git.example.org/org/repo.git ",
        "ref": "feature/x",
        "name": "my-env",
        "memory": "4",
        "cpu": 1.5,
        "credentials": {"username": "alice", "password": "hunter2"},
    }
    assert parse(body) == BuildRequest(
        repository="https://git.example.org/org/repo.git",
        ref="feature/x",
        name="my-env",
        memory_gb=4.0,
        cpu=1.5,
        credentials=Credentials("alice", "hunter2"),
    )


@pytest.mark.parametrize(
    "body",
    [
        {"repository": "https://git.example.org/repo", "name": ""},
        {"repository": "https://git.example.org/repo", "name": None},
        {"repository": "https://git.example.org/repo", "name": "  "},
        {"repository": "https://git.example.org/repo", "ref": "", "memory": "", "cpu": None},
        {"repository": "https://git.example.org/repo", "credentials": {}},
        {"repository": "git@github.com:org/repo.git", "credentials": None},
        {"repository": "https://git.example.org/repo", "credentials": {"username": ""}},
    ],
)
def test_blank_optional_fields(body):
    request = parse(body)
    assert (request.name, request.ref, request.memory_gb, request.cpu) == ("repo", None, None, None)
    assert request.credentials is None


def test_build_request_repr_hides_password():
    request = parse(
        {
            "repository": "https://git.example.org/repo",
            "credentials": {"username": "alice", "password": "hunter2"},
        }
    )
    assert "hunter2" not in repr(request)
    assert "Credentials(username='alice', password='***')" in repr(request)


@pytest.mark.parametrize("body", [None, [], "repository", 5, [("repository", "x")]])
def test_refuses_non_object_body(body):
    refused(lambda: parse(body), "body", "JSON object")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"repository": "https://git.example.org/repo", "repo": "x"}, "repo"),
        ({"repository": "https://git.example.org/repo", "memory_gb": 2}, "memory_gb"),
        ({"repo": "x"}, "repo"),
        (
            {
                "repository": "https://git.example.org/repo",
                "credentials": {"username": "a", "password": "b", "token": "c"},
            },
            "credentials.token",
        ),
    ],
)
def test_refuses_unknown_keys(body, field):
    refused(lambda: parse(body), field, "unknown field")


@pytest.mark.parametrize(
    ("body", "field", "match"),
    [
        ({}, "repository", "is required"),
        ({"repository": None}, "repository", "is required"),
        ({"repository": ""}, "repository", "is required"),
        ({"repository": 42}, "repository", "must be a string"),
        ({"repository": ["https://git.example.org/repo"]}, "repository", "must be a string"),
        ({"repository": "file:///srv/repo"}, "repository", "scheme 'file'"),
        ({"repository": "https://git.example.org/repo", "ref": 3}, "ref", "must be a string"),
        ({"repository": "https://git.example.org/repo", "ref": "a..b"}, "ref", "'..'"),
        ({"repository": "https://git.example.org/repo", "name": 3}, "name", "must be a string"),
        ({"repository": "https://git.example.org/repo", "name": "Bad"}, "name", "lower-case"),
        ({"repository": "https://git.example.org/repo", "memory": 32}, "memory", "at most 16"),
        ({"repository": "https://git.example.org/repo", "memory": True}, "memory", "true"),
        ({"repository": "https://git.example.org/repo", "cpu": "8"}, "cpu", "at most 4"),
        ({"repository": "https://git.example.org/repo", "cpu": "x"}, "cpu", "number like"),
        (
            {"repository": "https://git.example.org/repo", "credentials": "a:b"},
            "credentials",
            "must be an object",
        ),
        (
            {"repository": "https://git.example.org/repo", "credentials": {"password": "p"}},
            "username",
            "required",
        ),
        (
            {
                "repository": "git@github.com:org/repo",
                "credentials": {"username": "a", "password": "p"},
            },
            "credentials",
            "only work with https",
        ),
        (
            {
                "repository": "git://git.example.org/repo",
                "credentials": {"username": "a", "password": "p"},
            },
            "credentials",
            "only work with https",
        ),
    ],
)
def test_refuses_bad_fields(body, field, match):
    refused(lambda: parse(body), field, match)


def test_credentials_work_with_http_and_https():
    for scheme in ("http", "https"):
        body = {
            "repository": f"{scheme}://git.example.org/repo",
            "credentials": {"username": "a", "password": "p"},
        }
        assert parse(body).credentials.username == "a"


def test_passes_network_policy_to_url_check():
    private = {"repository": "https://internal.example/repo"}
    assert parse(private).repository == "https://internal.example/repo"
    refused(lambda: parse(private, allow_private=False), "repository", "private")
    hub = {"repository": "http://hub-alias.example/repo"}
    assert parse(hub).name == "repo"
    refused(lambda: parse(hub, blocked_hosts=SERVICES), "repository", "own services")


def test_repository_error_comes_before_other_fields():
    body = {"repository": "https://localhost/repo", "ref": "a..b", "cpu": -1}
    refused(lambda: parse(body), "repository", "loopback")
