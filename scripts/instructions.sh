#!/usr/bin/env bash
# Counts the instructions an echo server executes per message, under
# valgrind's callgrind: a measure that does not move with the machine's
# load, unlike time, so two builds (or two servers) can be compared from
# single runs. It also counts the locked instructions (x86's atomic
# read-modify-writes: a mutex's lock and unlock, a reference count's
# update, a waker's registration), which cost tens of cycles each where an
# ordinary instruction costs one.
#
#   scripts/instructions.sh [SERVER] [DEPTH]
#
# SERVER is echo_server (the default), echo_server-inline (the same with
# `--inline`: a message handler its driver calls), tt-echo, fws-echo or
# raw-echo (the bare loop); DEPTH is the
# number of messages in flight per connection (default 1). 64 connections
# send 5-byte text for 5 seconds; the count covers the whole server process
# (start-up and the 64 handshakes included, a small share) divided by the
# messages echoed. Needs valgrind. Under callgrind the server runs tens of
# times slower, so with 1 in flight each read carries one message, and with
# 16 in flight reads carry more than they would at full speed.
#
# RELEASE_DIR=DIR takes the binaries from DIR (another build's
# target/release, laid out as compare_builds.py wants) instead of building
# this tree.
set -euo pipefail
cd "$(dirname "$0")/.."

server=${1:-echo_server}
depth=${2:-1}
port=9377
release=${RELEASE_DIR:-target/release}
if [ -z "${RELEASE_DIR:-}" ]; then
    cargo build --release --quiet -p ws-bench --bins
    cargo build --release --quiet -p ws-examples --example echo_server
fi
args=()
case "$server" in
    echo_server) bin=$release/examples/echo_server ;;
    echo_server-inline) bin=$release/examples/echo_server args=(--inline) ;;
    tt-echo | fws-echo | raw-echo) bin=$release/$server ;;
    *) echo "unknown server $server" >&2; exit 2 ;;
esac

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
valgrind --tool=callgrind --collect-bus=yes --callgrind-out-file="$out/callgrind.out" \
    "$bin" "127.0.0.1:$port" "${args[@]}" >/dev/null 2>"$out/valgrind.log" &
server_pid=$!
sleep 3
"$release/ws-load" echo --addr "127.0.0.1:$port" --connections 64 \
    --depth "$depth" --size 5 --duration 5 --warmup 0 >"$out/load.json"
# Ask callgrind to write its counts, then stop the server.
callgrind_control --dump "$server_pid" >/dev/null 2>&1
sleep 2
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true

python3 - "$out" "$server" "$depth" <<'EOF'
import glob, json, re, sys
out, server, depth = sys.argv[1:]
total, locked = 0, 0
for path in glob.glob(out + "/callgrind.out*"):
    with open(path) as f:
        for line in f:
            m = re.match(r"(?:summary|totals): (\d+) (\d+)", line)
            if m:
                if int(m.group(1)) > total:
                    total, locked = int(m.group(1)), int(m.group(2))
                break
load = json.load(open(out + "/load.json"))
messages = load["msgs_per_sec"] * 5
print(json.dumps({"server": server, "depth": int(depth), "messages": round(messages),
                  "instructions_per_message": round(total / messages),
                  "locked_per_message": round(locked / messages, 1)}))
EOF
