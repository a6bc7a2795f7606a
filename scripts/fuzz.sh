#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a bounded time and prints a summary
# line per target (executions, new findings).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#
# TARGETS="a b" runs only those targets (two runs with different targets
# can share the machine's cores).
#
# Needs cargo-fuzz (`cargo install --locked cargo-fuzz`) and a nightly
# toolchain, which libFuzzer's sanitizer flags require.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
read -r -a targets <<<"${TARGETS:-frame_header server_connection client_connection request_parser response_parser}"
mkdir -p artifacts corpus
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log="artifacts/$target.log"
    # 2 GiB RSS and 256 MiB per allocation: an allocation over that is a
    # finding ("bounded allocation").
    if cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=256 \
        >"$log" 2>&1; then
        status=ok
    else
        status=FINDING
    fi
    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 | grep -Eo '[0-9]+' || echo '?')
    printf '%-20s %-8s %s executions in %ss\n' "$target" "$status" "$runs" "$seconds"
done
