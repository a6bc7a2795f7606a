#!/usr/bin/env python3
"""Holds two builds of this project against each other, interleaved.

Each profile runs once per round on each build, in alternating order (A B,
then B A), each run with a fresh server process, and reports every pair and
the median of the ratios B / A. Used to check that a change costs nothing:
build the old tree and the new one in release mode, then

    scripts/compare_builds.py OLD/target/release NEW/target/release [ROUNDS]

Each directory needs examples/echo_server, examples/broadcast_server and
ws-load (`cargo build --release -p ws-bench --bins -p ws-examples
--examples`). ws-load is taken from the first directory for both, so the
load is the same. ROUNDS defaults to 5. ONLY=word[,word...] in the
environment keeps the profiles whose name contains one of the words (for
example ONLY=echo,idle).
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

from bench import wait_listening

PROFILES = [
    ("echo 64 x 1 in flight, 5 B", ["examples/echo_server"],
     ["echo", "--connections", "64", "--depth", "1", "--size", "5"], "msgs_per_sec"),
    ("echo 64 x 16 in flight, 5 B", ["examples/echo_server"],
     ["echo", "--connections", "64", "--depth", "16", "--size", "5"], "msgs_per_sec"),
    ("inline echo 64 x 1 in flight, 5 B", ["examples/echo_server", "--inline"],
     ["echo", "--connections", "64", "--depth", "1", "--size", "5"], "msgs_per_sec"),
    ("inline echo 64 x 16 in flight, 5 B", ["examples/echo_server", "--inline"],
     ["echo", "--connections", "64", "--depth", "16", "--size", "5"], "msgs_per_sec"),
    ("echo 16 x 64 KiB binary", ["examples/echo_server"],
     ["echo", "--connections", "16", "--depth", "1", "--size", "65536", "--binary"],
     "mb_per_sec"),
    ("handshakes, 10 messages, close", ["examples/echo_server"],
     ["handshake", "--connections", "16", "--messages", "10"], "handshakes_per_sec"),
    ("5 000 idle connections: bytes each", ["examples/echo_server"],
     ["idle", "--connections", "5000"], "bytes_per_connection"),
    ("fan-out 100 x 16 B", ["examples/broadcast_server"],
     ["fanout", "--receivers", "100", "--size", "16", "--window", "16"],
     "deliveries_per_sec"),
]

PORT = 9600


def run(release, load, server_cmd, load_args):
    global PORT
    PORT += 1
    addr = f"127.0.0.1:{PORT}"
    env = dict(os.environ, RUST_LOG="warn")
    server = subprocess.Popen([os.path.join(release, server_cmd[0]), addr] + server_cmd[1:],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        if not wait_listening(PORT):
            return None
        args = [load] + load_args + ["--addr", addr, "--duration", "3", "--warmup", "1",
                                     "--server-pid", str(server.pid)]
        out = subprocess.run(args, capture_output=True, text=True, timeout=300)
        lines = out.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else None
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
        time.sleep(0.3)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    a, b = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    load = os.path.join(a, "ws-load")
    only = [w for w in os.environ.get("ONLY", "").split(",") if w]
    for name, server, load_args, metric in PROFILES:
        if only and not any(w in name for w in only):
            continue
        pairs = []
        for r in range(rounds):
            order = [(a, "a"), (b, "b")] if r % 2 == 0 else [(b, "b"), (a, "a")]
            got = {}
            for release, which in order:
                result = run(release, load, server, load_args) or {}
                got[which] = result.get(metric)
            if got.get("a") and got.get("b"):
                pairs.append((got["a"], got["b"]))
        ratios = [y / x for x, y in pairs]
        shown = ", ".join(f"{x:.0f}/{y:.0f}" for x, y in pairs)
        median = statistics.median(ratios) if ratios else float("nan")
        print(json.dumps({"profile": name, "metric": metric, "pairs_a_b": shown,
                          "median_b_over_a": round(median, 3)}), flush=True)


if __name__ == "__main__":
    main()
