#!/usr/bin/env bash
# The soak and fault run: the echo server and the broadcast server, each in
# turn, under many connections with a 1 s heartbeat, clients closing
# cleanly or reset at random and reconnecting, a tenth of them slow
# readers, every message numbered (crates/ws-bench/src/bin/ws-soak.rs):
# one message a second per connection on the echo server; on the
# broadcast server (rooms of 10) one every CONNECTIONS / 2 ms once that
# is over a second.
#
#   scripts/soak.sh [MINUTES] [CONNECTIONS]     (default 10 and 10000)
#
# MODES="echo" or MODES="broadcast" runs one of the two.
# MINUTES may be a fraction (0.5 is 30 s, what CI runs). For each server
# it prints one line of JSON: what the clients counted (connections at
# once, connects, clean closes, resets, messages sent, received, lost,
# reordered, and abandoned: in flight on a connection the client reset)
# and the server's resident memory and open descriptors before the
# clients came, at their peak, and 3 s after they left. It fails if a
# message was lost or reordered, if a connection failed without the
# client causing it, or if the server kept descriptors once the clients
# had gone.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes="${1:-10}"
connections="${2:-10000}"
seconds=$(python3 -c "print(max(5, round(float('$minutes') * 60)))")
# Each connection is a descriptor on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
limit=$(ulimit -n)
if [ "$limit" != unlimited ] && [ "$((connections + 200))" -gt "$limit" ]; then
    connections=$((limit - 200))
    echo "open files limit $limit: $connections connections" >&2
fi

cargo build --release --quiet -p ws-bench --bin ws-soak
cargo build --release --quiet -p ws-examples --example echo_server --example broadcast_server

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }

status=0
port=9480
for mode in ${MODES:-echo broadcast}; do
    port=$((port + 1))
    server="target/release/examples/${mode}_server"
    RUST_LOG=warn "$server" "127.0.0.1:$port" --ping-interval-ms 1000 >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.5
    rss_start=$(rss_kib "$pid")
    fds_start=$(fds "$pid")
    # The peak, sampled every second while the clients run.
    sampler() {
        local rss=0 fd=0 r f
        while kill -0 "$pid" 2>/dev/null; do
            r=$(rss_kib "$pid" || echo 0)
            f=$(fds "$pid" || echo 0)
            [ "$r" -gt "$rss" ] && rss=$r
            [ "$f" -gt "$fd" ] && fd=$f
            echo "$rss $fd" >"$peak_file"
            sleep 1
        done
    }
    peak_file=$(mktemp)
    echo "0 0" >"$peak_file"
    sampler &
    sampler_pid=$!
    # A broadcast fans each message out to a room of 10: its senders slow
    # down as connections grow, to about 20 000 deliveries a second at
    # 10 000 connections, which the clients (on the same two cores as the
    # server) read while answering the heartbeat.
    interval=1000
    if [ "$mode" = broadcast ] && [ "$((connections / 2))" -gt 1000 ]; then
        interval=$((connections / 2))
    fi
    result=$(target/release/ws-soak "$mode" --addr "127.0.0.1:$port" \
        --connections "$connections" --duration "$seconds" --interval-ms "$interval" \
        --room-size 10)
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    read -r rss_peak fds_peak <"$peak_file"
    rm -f "$peak_file"
    # The clients are gone: the server's connections end, and an idle
    # connection's buffers go half a second after its socket went quiet.
    sleep 3
    rss_end=$(rss_kib "$pid")
    fds_end=$(fds "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    line=$(python3 - "$result" "$rss_start" "$rss_peak" "$rss_end" "$fds_start" "$fds_peak" "$fds_end" "$seconds" <<'EOF'
import json, sys
result = json.loads(sys.argv[1])
names = ["rss_kib_start", "rss_kib_peak", "rss_kib_end", "fds_start", "fds_peak", "fds_end"]
result.update({name: int(value) for name, value in zip(names, sys.argv[2:8])})
result["seconds"] = int(sys.argv[8])
print(json.dumps(result))
EOF
)
    echo "$line"
    if ! python3 - "$line" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
problems = []
if r["lost"] or r["reordered"]:
    problems.append(f"lost {r['lost']}, reordered {r['reordered']}")
if r["failures"]:
    problems.append(f"{r['failures']} connections failed without the client causing it")
# The heartbeat closes a client that fell half a second behind in reading:
# right, but on a run sized for the clients to keep up, a sign of overload.
if r["heartbeat_closes"] * 100 > r["connects"]:
    problems.append(f"{r['heartbeat_closes']} heartbeat closes in {r['connects']} connections")
if r["fds_end"] > r["fds_start"] + 2:
    problems.append(f"descriptors {r['fds_start']} before, {r['fds_end']} after")
if r["received"] == 0:
    problems.append("nothing was received")
for problem in problems:
    print(f"{r['mode']}: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
    then
        status=1
    fi
done
exit "$status"
