"""Forwarded client headers count only when they come over loopback (the hub's proxy)."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from tornado import httpserver
from tornado.httputil import HTTPHeaders

from gallery_hub.forwarded_headers import is_loopback, trust_forwarded_headers_only_from_loopback

FORGED = HTTPHeaders(
    {"X-Real-Ip": "203.0.113.9", "X-Forwarded-For": "198.51.100.1", "X-Forwarded-Proto": "https"}
)


@pytest.fixture(autouse=True, scope="module")
def installed():
    trust_forwarded_headers_only_from_loopback()
    trust_forwarded_headers_only_from_loopback()  # twice is harmless


def request_context(peer: str):
    # What tornado's HTTPServer makes for each connection (a TCP stream from `peer`).
    stream = SimpleNamespace(socket=SimpleNamespace(family=socket.AF_INET))
    return httpserver._HTTPRequestContext(stream, (peer, 40000), None)


def test_headers_from_another_container_are_ignored():
    context = request_context("172.20.0.5")
    context._apply_xheaders(FORGED)
    assert (context.remote_ip, context.protocol) == ("172.20.0.5", "http")


def test_headers_from_the_proxy_on_loopback_are_used():
    context = request_context("127.0.0.1")
    context._apply_xheaders(FORGED)
    assert (context.remote_ip, context.protocol) == ("203.0.113.9", "https")
    context._unapply_xheaders()
    assert context.remote_ip == "127.0.0.1"


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("")
