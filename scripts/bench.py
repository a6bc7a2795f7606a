#!/usr/bin/env python3
"""Runs every benchmark profile against every server, interleaved, and
writes the medians and ratios into docs/benchmarks.md (between the
`<!-- results -->` markers) and a plot into docs/benchmarks.svg.

    scripts/bench.py [--rounds N] [--duration S] [--only PROFILE,...] [--smoke]

Each run starts a fresh server process, runs `ws-load` against it, and stops
it. Within a round the servers take turns profile by profile (A, B, C, then
the next profile), and the order rotates from round to round, so that a
neighbour's load on this shared machine falls on every server alike. The
claim is the ratio of medians, never an absolute figure.

--smoke runs each profile once, briefly, and writes nothing: CI uses it to
check that the harness works on a fresh machine.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
OURS = "ws"
TT = "tokio-tungstenite"
FWS = "fastwebsockets"
# Not a WebSocket server: a bare loop that unmasks what it reads and answers
# each read with one write (crates/ws-bench/src/bin/raw-echo.rs). It shows
# the ceiling the load generator and the kernel allow on this machine.
RAW = "bare loop"

ECHO_SERVERS = {
    OURS: ["examples/echo_server"],
    TT: ["tt-echo"],
    FWS: ["fws-echo"],
}
# The plain echo profiles also run the bare loop, for the ceiling.
ECHO_AND_CEILING = dict(ECHO_SERVERS, **{RAW: ["raw-echo"]})
# The same, with ws's echo as a message handler its driver calls
# (`echo_server --inline`, `ServerBuilder::serve_inline`).
INLINE_AND_CEILING = dict(ECHO_AND_CEILING, **{OURS: ["examples/echo_server", "--inline"]})
BROADCAST_SERVERS = {
    OURS: ["examples/broadcast_server"],
    TT: ["tt-broadcast"],
}
TLS_DIR = os.path.join(ROOT, "target", "bench-tls")
TLS_FILES = ["--tls-cert", os.path.join(TLS_DIR, "cert.pem"),
             "--tls-key", os.path.join(TLS_DIR, "key.pem")]
TLS_CA = ["--tls-ca", os.path.join(TLS_DIR, "ca.pem")]
WSS_SERVERS = {
    OURS: ["examples/echo_server"] + TLS_FILES,
    TT: ["tt-echo"] + TLS_FILES,
}

# name, servers, ws-load arguments, metric, higher is better, goal text,
# goal check on (our median, ours / tt, ours / fws), or None: no goal.
PROFILES = [
    (f"echo 64 conn x {depth} in flight, 5 B text{label}", servers,
     ["echo", "--connections", "64", "--depth", str(depth), "--size", "5"],
     "msgs_per_sec", True, goal, check)
    for servers, label in ((ECHO_AND_CEILING, ""), (INLINE_AND_CEILING, ", inline handler"))
    for depth, goal, check in (
        (1, ">= 1.3x tokio-tungstenite and >= fastwebsockets",
         lambda ours, tt, fws: tt >= 1.3 and fws >= 1.0),
        (16, ">= 8x tokio-tungstenite", lambda ours, tt, fws: tt >= 8.0),
    )
] + [
    ("echo 16 conn, 64 KiB binary", ECHO_AND_CEILING,
     ["echo", "--connections", "16", "--depth", "1", "--size", "65536", "--binary"],
     "mb_per_sec", True, ">= 1.5x tokio-tungstenite",
     lambda ours, tt, fws: tt >= 1.5),
    ("echo 16 conn, 1 MiB binary", ECHO_AND_CEILING,
     ["echo", "--connections", "16", "--depth", "1", "--size", "1048576", "--binary"],
     "mb_per_sec", True, ">= 1.5x tokio-tungstenite",
     lambda ours, tt, fws: tt >= 1.5),
    ("handshake, 10 messages, close (16 workers)", ECHO_SERVERS,
     ["handshake", "--connections", "16", "--messages", "10"],
     "handshakes_per_sec", True, ">= 1.3x tokio-tungstenite",
     lambda ours, tt, fws: tt >= 1.3),
    ("5 000 idle connections: bytes each", ECHO_SERVERS,
     ["idle", "--connections", "5000"],
     "bytes_per_connection", False, "<= 2 KiB per connection",
     lambda ours, tt, fws: ours <= 2048),
    ("wss echo 64 conn x 1 in flight, 5 B text", WSS_SERVERS,
     ["echo", "--connections", "64", "--depth", "1", "--size", "5"] + TLS_CA,
     "msgs_per_sec", True, "ratio reported", None),
    ("wss echo 16 conn, 64 KiB binary", WSS_SERVERS,
     ["echo", "--connections", "16", "--depth", "1", "--size", "65536", "--binary"] + TLS_CA,
     "mb_per_sec", True, "ratio reported", None),
] + [
    (f"fan-out to {n} receivers, {label}", BROADCAST_SERVERS,
     ["fanout", "--receivers", str(n), "--size", str(size), "--window", "16"],
     "deliveries_per_sec", True, ">= 3x tokio-tungstenite",
     lambda ours, tt, fws: tt >= 3.0)
    for n in (100, 1000, 10000)
    for size, label in ((16, "16 B"), (4096, "4 KiB"))
]


def make_certificates():
    """A CA and a certificate for localhost it signed, for the wss profiles.
    Returns False (and the wss profiles are skipped) without openssl."""
    if shutil.which("openssl") is None:
        print("openssl not found: skipping the wss profiles")
        return False
    os.makedirs(TLS_DIR, exist_ok=True)
    if os.path.exists(os.path.join(TLS_DIR, "cert.pem")):
        return True
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run = lambda *args: subprocess.run(["openssl", *args], cwd=TLS_DIR, check=True,
                                       capture_output=True)
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
        "-subj", "/CN=ws bench CA")
    run("req", *ec, "-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=localhost")
    with open(os.path.join(TLS_DIR, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost\n")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "cert.pem", "-days", "30", "-extfile", "san.ext")
    return True

PORT = 9300


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "ws-bench"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "ws-examples",
                    "--example", "echo_server", "--example", "broadcast_server"], cwd=ROOT, check=True)


def wait_listening(port, deadline=10.0):
    end = time.time() + deadline
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def run_once(server_cmd, load_args, duration, warmup):
    global PORT
    PORT += 1
    port = PORT
    addr = f"127.0.0.1:{port}"
    env = dict(os.environ, RUST_LOG="warn")
    server = subprocess.Popen([os.path.join(RELEASE, server_cmd[0]), addr] + server_cmd[1:],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        if not wait_listening(port):
            return {"error": "server did not start"}
        args = [os.path.join(RELEASE, "ws-load")] + load_args + [
            "--addr", addr, "--duration", str(duration), "--warmup", str(warmup),
            "--server-pid", str(server.pid)]
        out = subprocess.run(args, capture_output=True, text=True, timeout=600)
        line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
        return json.loads(line)
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as error:
        return {"error": str(error)}
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
        time.sleep(0.3)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--only", default="")
    parser.add_argument("--smoke", action="store_true")
    opts = parser.parse_args()
    if opts.smoke:
        opts.rounds, opts.duration, opts.warmup = 1, 0.5, 0.2

    limit = raise_fd_limit()
    build()
    profiles = PROFILES
    if not make_certificates():
        profiles = [p for p in profiles if p[1] is not WSS_SERVERS]
    if opts.only:
        wanted = opts.only.split(",")
        profiles = [p for p in profiles if any(w in p[0] for w in wanted)]
    if opts.smoke:
        # Small versions of each kind of profile.
        profiles = [p for p in profiles if "10000" not in p[2] and "1048576" not in p[2]
                    and "5000" not in p[2]]

    results = {p[0]: {name: [] for name in p[1]} for p in profiles}
    for round_no in range(opts.rounds):
        for profile in profiles:
            name, servers, load_args, metric = profile[:4]
            if opts.smoke:
                load_args = [a if a not in ("1000",) else "50" for a in load_args]
            # The server and the load generator are separate processes:
            # each needs a descriptor per connection.
            needed = int(next((load_args[i + 1] for i, a in enumerate(load_args)
                               if a in ("--connections", "--receivers")), "1")) + 100
            if needed > limit:
                print(f"skipping {name}: needs {needed} file descriptors, limit {limit}")
                continue
            order = list(servers)
            shift = round_no % len(order)
            order = order[shift:] + order[:shift]
            for server in order:
                result = run_once(servers[server], load_args, opts.duration, opts.warmup)
                value = result.get(metric)
                print(f"round {round_no + 1} | {name} | {server}: {metric}={value} {json.dumps(result)}",
                      flush=True)
                if value is not None:
                    results[name][server].append(result)

    if opts.smoke:
        failed = [n for n, by in results.items() for s, runs in by.items() if not runs]
        if failed:
            print("no result for: " + ", ".join(sorted(set(failed))))
            sys.exit(1)
        print("smoke run complete")
        return
    # A partial run (--only) replaces its profiles in the last full results
    # and reports them all.
    saved = os.path.join(ROOT, "target", "bench-results.json")
    if opts.only and os.path.exists(saved):
        with open(saved) as f:
            previous = json.load(f)
        previous.update(results)
        results = previous
        names = set(results)
        profiles = [p for p in PROFILES if p[0] in names]
    write_report(profiles, results, opts)


def median_of(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(value, metric):
    if value is None:
        return "n/a"
    if metric == "mb_per_sec":
        return f"{value:,.0f} MB/s"
    if metric == "bytes_per_connection":
        return f"{value / 1024:,.1f} KiB"
    return f"{value:,.0f}/s"


def write_report(profiles, results, opts):
    rows = []
    plot = []
    for name, servers, _, metric, higher, goal, check in profiles:
        medians = {s: median_of(results[name][s], metric) for s in servers}
        ours = medians.get(OURS)

        def ratio(other):
            theirs = medians.get(other)
            if not ours or not theirs:
                return None
            return ours / theirs if higher else theirs / ours

        r_tt, r_fws = ratio(TT), ratio(FWS)
        if check is None:
            met = None
        else:
            met = ours is not None and r_tt is not None and check(
                ours, r_tt, r_fws if r_fws is not None else 0.0)
        extra = ""
        if metric in ("msgs_per_sec", "deliveries_per_sec"):
            p50 = median_of(results[name][OURS], "p50_us")
            p99 = median_of(results[name][OURS], "p99_us")
            tt50 = median_of(results[name].get(TT, []), "p50_us")
            tt99 = median_of(results[name].get(TT, []), "p99_us")
            if p50 is not None and tt50 is not None:
                extra = f"p50/p99 {p50:,.0f}/{p99:,.0f} us vs {tt50:,.0f}/{tt99:,.0f} us"
        if metric == "deliveries_per_sec":
            rss = median_of(results[name][OURS], "server_rss_kib")
            tt_rss = median_of(results[name][TT], "server_rss_kib")
            if rss and tt_rss:
                extra += f"; server RSS {rss / 1024:,.0f} vs {tt_rss / 1024:,.0f} MiB"
        ceiling = medians.get(RAW)
        ceiling_text = ""
        if ceiling and ours:
            ceiling_text = f"{fmt(ceiling, metric)} (ws at {100 * ours / ceiling:.0f}%)"
        rows.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            name, fmt(ours, metric), fmt(medians.get(TT), metric),
            fmt(medians.get(FWS), metric) if FWS in servers else "", ceiling_text,
            f"{r_tt:.2f}x" if r_tt else "n/a",
            (f"{r_fws:.2f}x" if r_fws else "n/a") if FWS in servers else "",
            goal if met is None else f"{goal}: {'met' if met else 'not met'}", extra))
        plot.append((name, r_tt, r_fws if FWS in servers else None))

    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    table = "\n".join([
        f"Measured {time.strftime('%Y-%m-%d')} on {machine}, {rustc}; "
        f"{opts.rounds} rounds of {opts.duration:g} s (after {opts.warmup:g} s of warm-up), "
        "medians; load generator on the same machine.",
        "",
        "Ratios are ws / peer for rates and peer / ws for memory: above 1 means ws is better.",
        "",
        "| profile | ws | tokio-tungstenite | fastwebsockets | bare loop (ceiling) | vs tokio-tungstenite | vs fastwebsockets | goal | latency, memory (ws vs tokio-tungstenite) |",
        "|---|---|---|---|---|---|---|---|---|",
    ] + rows + ["", "![ratios](benchmarks.svg)"])

    path = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(path) as f:
        doc = f.read()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin) + len(begin)] + "\n" + table + "\n" + doc[doc.index(end):]
    else:
        doc += f"\n{begin}\n{table}\n{end}\n"
    with open(path, "w") as f:
        f.write(doc)
    with open(os.path.join(ROOT, "docs", "benchmarks.svg"), "w") as f:
        f.write(svg(plot))
    with open(os.path.join(ROOT, "target", "bench-results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(table)


def svg(plot):
    """A horizontal bar chart of the ratios, on a log scale, 1x marked."""
    import math
    width, left, row, top = 900, 330, 34, 40
    height = top + row * len(plot) + 40
    lo, hi = math.log10(0.25), math.log10(16)

    def x(ratio):
        r = min(max(ratio, 0.25), 16)
        return left + (math.log10(r) - lo) / (hi - lo) * (width - left - 20)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14">ws throughput (memory: inverse) relative to '
             '<tspan fill="#4477aa">tokio-tungstenite</tspan> and '
             '<tspan fill="#ee7733">fastwebsockets</tspan>, log scale</text>']
    for tick in (0.25, 0.5, 1, 2, 4, 8, 16):
        tx = x(tick)
        parts.append(f'<line x1="{tx:.1f}" y1="{top - 5}" x2="{tx:.1f}" y2="{height - 30}" '
                     f'stroke="{"#000" if tick == 1 else "#ddd"}"/>')
        parts.append(f'<text x="{tx:.1f}" y="{height - 14}" text-anchor="middle">{tick:g}x</text>')
    for i, (name, r_tt, r_fws) in enumerate(plot):
        y = top + i * row
        parts.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{name}</text>')
        for j, (ratio, color) in enumerate(((r_tt, "#4477aa"), (r_fws, "#ee7733"))):
            if ratio is None:
                continue
            x0, x1 = x(1), x(ratio)
            parts.append(f'<rect x="{min(x0, x1):.1f}" y="{y + 3 + j * 13}" width="{abs(x1 - x0):.1f}" '
                         f'height="11" fill="{color}"/>')
            parts.append(f'<text x="{max(x0, x1) + 4:.1f}" y="{y + 12 + j * 13}" font-size="10">'
                         f'{ratio:.2f}x</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    main()
