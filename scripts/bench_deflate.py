#!/usr/bin/env python3
"""Compressed echo, side by side: this project's echo_server --deflate
against sockudo-ws (the Rust peer with permessage-deflate, `ws-bench --bin
sockudo-echo`) and Python's websockets (compression on, as by default),
interleaved (the order rotates each round) in one run, each run with a
fresh server process.

The load is `ws-load echo --deflate`: 16 connections, 1 in flight each,
JSON-like text of 1 KiB and 16 KiB, offered permessage-deflate without
context takeover either way (the load sends one precompressed frame). It
reports messages/s and the bytes on the wire per message each way.

    python3 scripts/bench_deflate.py [ROUNDS]     (default 3)
    python3 scripts/bench_deflate.py --fanout [ROUNDS]

--fanout runs the broadcast instead: `broadcast_server --deflate` (no
server context takeover, each publication compressed once for everyone)
against plain `broadcast_server`, 1 000 receivers of 4 KiB, interleaved;
deliveries/s, dropped, and the server's CPU per delivery.

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

from bench import ROOT, RELEASE, raise_fd_limit, wait_listening

PYPEERS = os.path.join(ROOT, "target", "pypeers")
SERVERS = {
    "ws": lambda addr: [os.path.join(RELEASE, "examples", "echo_server"), addr, "--deflate"],
    "sockudo-ws": lambda addr: [os.path.join(RELEASE, "sockudo-echo"), addr],
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


FANOUT = {
    "compressed": ["--deflate"],
    "plain": [],
}


def run_fanout(mode, port):
    addr = f"127.0.0.1:{port}"
    proc = subprocess.Popen([os.path.join(RELEASE, "examples", "broadcast_server"), addr]
                            + FANOUT[mode], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    try:
        if not wait_listening(port):
            return {"error": "server did not start"}
        out = subprocess.run(
            [os.path.join(RELEASE, "ws-load"), "fanout", "--addr", addr, "--receivers", "1000",
             "--size", "4096", "--window", "16", "--duration", "5",
             "--server-pid", str(proc.pid)] + FANOUT[mode],
            capture_output=True, text=True, timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(0.5)


def fanout(rounds):
    raise_fd_limit()
    port = 9600
    results = {mode: [] for mode in FANOUT}
    for r in range(rounds):
        for mode in (list(FANOUT) if r % 2 == 0 else list(reversed(FANOUT))):
            port += 1
            results[mode].append(run_fanout(mode, port))
    line = {}
    for mode, runs in results.items():
        runs = [x for x in runs if "deliveries_per_sec" in x]
        line[mode] = {key: [x[key] for x in runs] for key in
                      ("deliveries_per_sec", "dropped", "published", "server_cpu_ns_per_delivery",
                       "p50_us", "p99_us")}
        line[mode]["median"] = statistics.median(line[mode]["deliveries_per_sec"]) if runs else None
    plain, compressed = line["plain"]["median"], line["compressed"]["median"]
    line["compressed / plain"] = round(compressed / plain, 2) if plain and compressed else None
    print(json.dumps(line))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--fanout":
        fanout(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
        return
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    port = 9500
    results = {(s, size): [] for s in SERVERS for size in SIZES}
    for r in range(rounds):
        names = list(SERVERS)
        order = names[r % len(names):] + names[:r % len(names)]
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
        ours = line["ws"]["median"]
        for peer in SERVERS:
            theirs = line[peer]["median"]
            if peer != "ws":
                line[f"ratio vs {peer}"] = round(ours / theirs, 2) if ours and theirs else None
        print(json.dumps(line))


if __name__ == "__main__":
    main()
