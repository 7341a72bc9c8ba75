"""The hub container's own address on one of its networks, asked of Docker."""

from __future__ import annotations

import socket
import sys

import docker


def address_on_network(network: str) -> str:
    """This container's IPv4 address on `network`; "" (every interface) if Docker can't say.

    The hub sits on two networks; its public proxy port must listen only on the stack's.
    """
    try:
        client = docker.from_env(timeout=10)
        try:
            me = client.api.inspect_container(socket.gethostname())
        finally:
            client.close()
        address = me["NetworkSettings"]["Networks"][network]["IPAddress"]
        if address:
            return address
        problem = f"no address on {network}"
    except Exception as e:  # not in a container, no socket, another network name
        problem = f"{type(e).__name__}: {e}"
    print(
        f"WARNING: the proxy listens on every interface ({problem}); user containers can "
        "then reach it directly",
        file=sys.stderr,
        flush=True,
    )
    return ""
