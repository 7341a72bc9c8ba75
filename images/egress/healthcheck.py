"""Healthy when squid answers, and refuses a request for its own loopback address."""

import socket
import sys

with socket.create_connection(("127.0.0.1", 3128), timeout=4) as proxy:
    proxy.sendall(b"GET http://127.0.0.1/ HTTP/1.0\r\n\r\n")
    status = proxy.recv(64).split(b"\r\n", 1)[0]
sys.exit(0 if b" 403 " in status else f"unexpected answer: {status!r}")
