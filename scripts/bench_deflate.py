#!/usr/bin/env python3
"""Compressed echo, side by side: this project's echo_server --deflate
against Python's websockets (compression on, as by default), interleaved
(A B, then B A) in one run, each run with a fresh server process.

The load is `ws-load echo --deflate`: 16 connections, 1 in flight each,
JSON-like text of 1 KiB and 16 KiB, offered permessage-deflate without
context takeover either way (the load sends one precompressed frame). It
reports messages/s and the bytes on the wire per message each way.

    python3 scripts/bench_deflate.py [ROUNDS]     (default 3)

Needs `cargo build --release -p ws-bench -p ws-examples --example
echo_server` and websockets in target/pypeers (the e2e tests install it;
or `python3 -m pip install --target target/pypeers websockets`).
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import time

from bench import ROOT, RELEASE, wait_listening

PYPEERS = os.path.join(ROOT, "target", "pypeers")
SERVERS = {
    "ws": lambda addr: [os.path.join(RELEASE, "examples", "echo_server"), addr, "--deflate"],
    "python websockets": lambda addr: [sys.executable,
                                       os.path.join(ROOT, "scripts", "py_echo_server.py"), addr],
}
SIZES = [1024, 16384]


def run(server, size, port):
    addr = f"127.0.0.1:{port}"
    env = dict(os.environ, RUST_LOG="warn", PYTHONPATH=PYPEERS)
    proc = subprocess.Popen(SERVERS[server](addr), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        if not wait_listening(port):
            return {"error": "server did not start"}
        out = subprocess.run(
            [os.path.join(RELEASE, "ws-load"), "echo", "--addr", addr, "--connections", "16",
             "--depth", "1", "--size", str(size), "--deflate", "--duration", "4",
             "--warmup", "1"], capture_output=True, text=True, timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(0.3)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    port = 9500
    results = {(s, size): [] for s in SERVERS for size in SIZES}
    for r in range(rounds):
        order = list(SERVERS) if r % 2 == 0 else list(reversed(SERVERS))
        for size in SIZES:
            for server in order:
                port += 1
                results[(server, size)].append(run(server, size, port))
    for size in SIZES:
        line = {"size": size}
        for server in SERVERS:
            runs = [x for x in results[(server, size)] if "msgs_per_sec" in x]
            line[server] = {
                "msgs_per_sec": [x["msgs_per_sec"] for x in runs],
                "median": statistics.median([x["msgs_per_sec"] for x in runs]) if runs else None,
                "wire_sent": runs[0]["wire_bytes_sent_per_msg"] if runs else None,
                "wire_received": runs[0]["wire_bytes_received_per_msg"] if runs else None,
            }
        ours, theirs = line["ws"]["median"], line["python websockets"]["median"]
        line["ratio"] = round(ours / theirs, 2) if ours and theirs else None
        print(json.dumps(line))


if __name__ == "__main__":
    main()
