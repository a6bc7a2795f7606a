#!/usr/bin/env python3
"""Measures a WebSocket server's resident memory per idle connection.

Opens N connections to the server at HOST:PORT, completes the opening
handshake on each, leaves them idle, and reports the growth of the server's
resident set (VmRSS of PID) divided by N. Linux only.

Usage: scripts/idle_memory.py PID HOST:PORT [N]   (N defaults to 2000)
"""

import base64
import os
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def handshake(sock, host):
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("closed during handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.split(b"\r\n")[0].decode())


def main():
    pid = int(sys.argv[1])
    host, port = sys.argv[2].rsplit(":", 1)
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    before = rss_kib(pid)
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)))
        handshake(sock, sys.argv[2])
        sockets.append(sock)
    time.sleep(1.0)
    after = rss_kib(pid)
    per = (after - before) * 1024 / count
    print(f"{count} idle connections: server RSS {before} KiB -> {after} KiB, "
          f"{per:.0f} bytes per connection")
    for sock in sockets:
        sock.close()


if __name__ == "__main__":
    main()
