#!/usr/bin/env bash
# Samples where a server spends its time under load, kernel included, with
# `perf record` on the software clock (`cpu-clock`), which needs no hardware
# counters and so works on virtual machines that have none. Where
# `scripts/instructions.sh` counts work, this shows time: it catches what
# instruction counts miss (an atomic instruction, a stalled load, the
# kernel's share).
#
#   scripts/profile.sh [SERVER] [WS-LOAD MODE AND OPTIONS...]
#
# SERVER is echo_server (the default), broadcast_server, tt-echo, fws-echo,
# tt-broadcast or raw-echo. The load defaults to the 1-in-flight echo
# profile (64 connections, 5-byte text); anything after SERVER replaces it,
# e.g. `scripts/profile.sh echo_server echo --connections 64 --depth 16
# --size 5`. The server is sampled for 3 s in the middle of a 5 s run, and
# the script prints the split between the kernel, the server's own code and
# its libraries, then the functions that took the most samples.
#
# With PERF_DATA=PATH the samples are kept there, for `perf annotate -i PATH
# --stdio -s FUNCTION` (which instructions of a function took them).
#
# Needs `perf` and permission to profile another process (root, or
# kernel.perf_event_paranoid at 1 or below).
set -euo pipefail
cd "$(dirname "$0")/.."

server=${1:-echo_server}
shift || true
if [ $# -eq 0 ]; then
    set -- echo --connections 64 --depth 1 --size 5
fi
command -v perf >/dev/null || { echo "perf not found" >&2; exit 2; }
port=9378
cargo build --release --quiet -p ws-bench --bins
cargo build --release --quiet -p ws-examples --example echo_server --example broadcast_server
case "$server" in
    echo_server | broadcast_server) bin=target/release/examples/$server ;;
    tt-echo | fws-echo | tt-broadcast | raw-echo) bin=target/release/$server ;;
    *) echo "unknown server $server" >&2; exit 2 ;;
esac

out=$(mktemp -d)
"$bin" "127.0.0.1:$port" >/dev/null 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$out"' EXIT
sleep 0.5
target/release/ws-load "$@" --addr "127.0.0.1:$port" --duration 5 --warmup 1 \
    >"$out/load.json" &
load_pid=$!
sleep 2
perf record -e cpu-clock -F 4999 -p "$server_pid" -o "$out/perf.data" -- sleep 3 \
    >/dev/null 2>"$out/perf.log" || { cat "$out/perf.log" >&2; exit 1; }
wait "$load_pid"
if [ -n "${PERF_DATA:-}" ]; then
    cp "$out/perf.data" "$PERF_DATA"
fi
cat "$out/load.json"
echo "-- share of samples by object (kernel, server, libraries)"
perf report -i "$out/perf.data" --stdio --no-children --sort dso 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -8
echo "-- functions, most samples first ([k] kernel, [.] user space)"
perf report -i "$out/perf.data" --stdio --no-children --sort sym 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -"${TOP:-30}"
