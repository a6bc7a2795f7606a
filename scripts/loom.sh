#!/usr/bin/env bash
# Model-checks ws-tokio's hand-written synchronisation (the link between a
# connection's halves and its driver, and the signal that wakes the driver)
# with loom: every interleaving of the threads in each test, up to
# LOOM_MAX_PREEMPTIONS preemptions (default 3, which keeps the run to a few
# minutes; raise it for a deeper search).
#
#   scripts/loom.sh
#
# The tests are built with `--cfg ws_loom`, which swaps std's mutexes and
# atomics for loom's models, in a target directory of their own; only the
# `model` modules run (the ordinary unit tests need the real primitives).
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-3}
RUSTFLAGS="--cfg ws_loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p ws-tokio --release --lib -- ::model:: --test-threads=1 "$@"
