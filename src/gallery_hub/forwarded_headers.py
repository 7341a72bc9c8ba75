"""Only the hub's own proxy may say who the client is.

JupyterHub's HTTP server trusts `X-Real-Ip`, `X-Forwarded-For` and `X-Forwarded-Proto`
from any peer (tornado's `xheaders=True`). Browsers reach it through Traefik and
configurable-http-proxy, which runs in the hub's container and connects over loopback;
user containers reach it directly on port 8081. Left as is, code in a user container
could choose the client address the hub logs and the per-address launch limit counts.

`trust_forwarded_headers_only_from_loopback()` keeps tornado's header handling for
requests whose TCP peer is loopback (the proxy) and ignores the headers from everyone
else. It patches one private tornado method; tests/unit/test_forwarded_headers.py pins
the behaviour so a tornado upgrade that changes it fails loudly.
"""

from __future__ import annotations

import ipaddress

from tornado import httpserver


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a unix socket has no address
        return False


def trust_forwarded_headers_only_from_loopback() -> None:
    """Install the rule for this process (idempotent)."""
    context = httpserver._HTTPRequestContext
    if getattr(context, "_gallery_loopback_only", False):
        return
    apply_any = context._apply_xheaders

    def apply_from_loopback(self, headers) -> None:
        if is_loopback(self._orig_remote_ip):
            apply_any(self, headers)

    context._apply_xheaders = apply_from_loopback
    context._gallery_loopback_only = True
