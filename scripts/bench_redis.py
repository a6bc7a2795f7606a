#!/usr/bin/env python3
"""Fan-out across processes through Redis, side by side with one process:
1 000 receivers, one publisher keeping 16 messages in flight, 16 B and
4 KiB messages; and the publication rate, with 10 receivers and 256
messages of 16 B in flight. Interleaved (one process, then two, then the
other way round) in one run, each run with fresh processes.

- one process: `broadcast_server` alone, every receiver on it;
- two processes: a `redis-server` of its own (free port, no persistence)
  and two `broadcast_server --redis`, the receivers spread over both and
  the publisher on the first, so half the deliveries cross Redis.

Reports deliveries/s, dropped (sequence gaps seen by the receivers),
p50/p99 publish-to-receive latency, the servers' CPU and Redis' CPU.

    python3 scripts/bench_redis.py [ROUNDS]     (default 3)

Needs `cargo build --release -p ws-bench -p ws-examples --example
broadcast_server` (or `scripts/bench.py`'s build) and redis-server.
"""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from bench import RELEASE, raise_fd_limit, wait_listening

# (receivers, size, window)
PROFILES = [(1000, 16, 16), (1000, 4096, 16), (10, 16, 256)]
MODES = ["one process", "two processes + Redis"]


def start(args, port):
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, RUST_LOG="warn"))
    if not wait_listening(port):
        raise RuntimeError(f"{args[0]} did not start")
    return proc


def run(mode, profile, port):
    receivers, size, window = profile
    server = os.path.join(RELEASE, "examples", "broadcast_server")
    procs, tmp = [], tempfile.mkdtemp(prefix="ws-bench-redis-")
    try:
        if mode == "one process":
            procs.append(start([server, f"127.0.0.1:{port}"], port))
            receivers_at, pids, redis_pid = f"127.0.0.1:{port}", str(procs[0].pid), None
        else:
            redis_port = port + 2
            redis = start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--dir", tmp], redis_port)
            procs.append(redis)
            url = f"redis://127.0.0.1:{redis_port}"
            for p in (port, port + 1):
                procs.append(start([server, f"127.0.0.1:{p}", "--redis", url], p))
            receivers_at = f"127.0.0.1:{port},127.0.0.1:{port + 1}"
            pids = f"{procs[1].pid},{procs[2].pid}"
            redis_pid = str(redis.pid)
        args = [os.path.join(RELEASE, "ws-load"), "fanout", "--addr", f"127.0.0.1:{port}",
                "--receivers-at", receivers_at, "--receivers", str(receivers), "--size", str(size),
                "--window", str(window), "--duration", "5", "--server-pid", pids]
        if redis_pid:
            args += ["--broker-pid", redis_pid]
        out = subprocess.run(args, capture_output=True, text=True, timeout=120)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if redis_pid:
            # The PUBLISH commands Redis executed over the whole run
            # (warm-up included): what crossed between the processes.
            stats = subprocess.run(["redis-cli", "-p", str(redis_port), "info", "commandstats"],
                                   capture_output=True, text=True).stdout
            for line in stats.splitlines():
                if line.startswith("cmdstat_publish:"):
                    result["redis_publish_calls"] = int(line.split("calls=")[1].split(",")[0])
        return result
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        time.sleep(0.5)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    raise_fd_limit()
    port = 9700
    results = {(m, p): [] for m in MODES for p in PROFILES}
    for r in range(rounds):
        order = MODES if r % 2 == 0 else list(reversed(MODES))
        for profile in PROFILES:
            for mode in order:
                port += 3
                results[(mode, profile)].append(run(mode, profile, port))
    for profile in PROFILES:
        line = dict(zip(("receivers", "size", "window"), profile))
        for mode in MODES:
            runs = [x for x in results[(mode, profile)] if "deliveries_per_sec" in x]
            line[mode] = {key: [x.get(key) for x in runs] for key in
                          ("deliveries_per_sec", "published", "dropped", "p50_us", "p99_us",
                           "server_cpu_s", "broker_cpu_s", "redis_publish_calls")}
            line[mode]["median"] = (statistics.median(line[mode]["deliveries_per_sec"])
                                    if runs else None)
        one, two = line[MODES[0]]["median"], line[MODES[1]]["median"]
        line["two / one"] = round(two / one, 2) if one and two else None
        print(json.dumps(line))


if __name__ == "__main__":
    main()
