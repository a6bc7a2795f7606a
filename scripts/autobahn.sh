#!/usr/bin/env bash
# Runs the Autobahn|Testsuite against this project and compares the results
# with the expected results checked in under autobahn/.
#
#   scripts/autobahn.sh server     wstest's fuzzing client against echo_server
#                                  with permessage-deflate on (--deflate), as a
#                                  handler future and (--inline) as a message
#                                  handler its driver calls
#   scripts/autobahn.sh client     autobahn_client against wstest's fuzzing server
#   scripts/autobahn.sh all        both, side by side
#
# The suite runs only on Python 2.7, which Debian 12 no longer ships. The
# script installs it, once, into .tools/autobahn from Debian 11's packages
# (unpacked into a private prefix with a private apt state; the system's apt
# sources are not touched), then installs autobahntestsuite with its pip.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mode="${1:-server}"
tools="$root/.tools/autobahn"
prefix="$tools/py27"
py="$prefix/usr/bin/python2.7"

py27_env() {
    export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export PYTHONHOME="$prefix/usr"
    unset PIP_FIND_LINKS
}

# Runs in a subshell: the Python 2.7 environment it sets up must not leak
# into the Python 3 that checks the results.
install_suite() (
    if [ -x "$tools/bin/wstest" ]; then
        return
    fi
    echo "installing Python 2.7 and autobahntestsuite into $tools"
    local apt_dir="$tools/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$tools/debs" "$tools/wheels"
    echo "deb http://deb.debian.org/debian bullseye main" >"$apt_dir/sources.list"
    local apt_opts=(
        -o "Dir::Etc::SourceList=$apt_dir/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::Cache=$apt_dir/cache"
        -o "Debug::NoLocking=1"
    )
    apt-get "${apt_opts[@]}" update -qq
    (cd "$tools/debs" && apt-get "${apt_opts[@]}" download \
        python2.7 python2.7-minimal libpython2.7 libpython2.7-minimal \
        libpython2.7-stdlib libpython2.7-dev python2.7-dev libssl1.1 libffi7)
    for deb in "$tools/debs"/*.deb; do
        dpkg -x "$deb" "$prefix"
    done
    python3 -m pip download --quiet --no-deps -d "$tools/wheels" \
        pip==20.3.4 setuptools==44.1.1 wheel==0.37.1
    py27_env
    # Debian's Python looks in dist-packages; pip installs into
    # site-packages. A .pth file joins them.
    local dist="$prefix/usr/lib/python2.7/dist-packages"
    local site="$prefix/usr/lib/python2.7/site-packages"
    mkdir -p "$dist" "$site"
    echo "import site; site.addsitedir('$site')" >"$dist/autobahn-site.pth"
    "$py" "$tools/wheels/pip-20.3.4-py2.py3-none-any.whl/pip" install --quiet \
        --no-index --find-links "$tools/wheels" --prefix "$prefix/usr" \
        pip==20.3.4 setuptools==44.1.1 wheel==0.37.1
    CFLAGS="-I$prefix/usr/include -I$prefix/usr/include/python2.7 -I$prefix/usr/include/x86_64-linux-gnu/python2.7" \
        "$py" -m pip install --quiet --no-warn-script-location --prefix "$prefix/usr" autobahntestsuite
    mkdir -p "$tools/bin"
    cat >"$tools/bin/wstest" <<WRAP
#!/usr/bin/env bash
export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu"
export PYTHONHOME="$prefix/usr"
exec "$py" "$prefix/usr/bin/wstest" "\$@"
WRAP
    chmod +x "$tools/bin/wstest"
)

# Waits up to $2 tenths of a second for something to listen on port $1.
wait_for_port() {
    for _ in $(seq "$2"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return; fi
        sleep 0.1
    done
}

run_server_suite() {
    local port=9001 inline_port=9003
    local reports="$root/reports/server"
    rm -rf "$reports"
    mkdir -p "$reports"
    cargo build --release --example echo_server --quiet
    "$root/target/release/examples/echo_server" "127.0.0.1:$port" --deflate &
    server_pid=$!
    "$root/target/release/examples/echo_server" "127.0.0.1:$inline_port" --inline --deflate &
    inline_pid=$!
    trap 'kill "${server_pid:-}" "${inline_pid:-}" 2>/dev/null || true' EXIT
    wait_for_port "$port" 50
    wait_for_port "$inline_port" 50
    cat >"$reports/spec.json" <<SPEC
{
  "outdir": "$reports",
  "servers": [
    {"agent": "ws-server", "url": "ws://127.0.0.1:$port"},
    {"agent": "ws-server-inline", "url": "ws://127.0.0.1:$inline_port"}
  ],
  "cases": ["*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
SPEC
    (cd "$reports" && timeout 2700 "$tools/bin/wstest" -m fuzzingclient -s spec.json >wstest.log 2>&1) || {
        tail -20 "$reports/wstest.log"
        echo "wstest failed" >&2
        exit 1
    }
    kill "$server_pid" "$inline_pid" 2>/dev/null || true
    # Both servers are held to the same expected results.
    local failed=0
    for agent in ws-server ws-server-inline; do
        python3 "$root/scripts/autobahn_check.py" "$reports/index.json" \
            "$root/autobahn/expected-server.json" "$agent" || failed=1
    done
    return "$failed"
}

run_client_suite() {
    local port=9002
    local reports="$root/reports/client"
    rm -rf "$reports"
    mkdir -p "$reports"
    cargo build --release --example autobahn_client --quiet
    cat >"$reports/spec.json" <<SPEC
{
  "url": "ws://127.0.0.1:$port",
  "outdir": "$reports",
  "cases": ["*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
SPEC
    (cd "$reports" && exec "$tools/bin/wstest" -m fuzzingserver -s spec.json >wstest.log 2>&1) &
    wstest_pid=$!
    trap 'kill "${wstest_pid:-}" 2>/dev/null || true' EXIT
    wait_for_port "$port" 100
    timeout 2700 "$root/target/release/examples/autobahn_client" "ws://127.0.0.1:$port" ws-client || {
        tail -20 "$reports/wstest.log"
        echo "autobahn_client failed" >&2
        exit 1
    }
    kill "$wstest_pid" 2>/dev/null || true
    python3 "$root/scripts/autobahn_check.py" "$reports/index.json" "$root/autobahn/expected-client.json" ws-client
}

install_suite
case "$mode" in
    server) run_server_suite ;;
    client) run_client_suite ;;
    all)
        # The two suites use different ports and report directories: run
        # them side by side (each wstest is one Python process), which
        # halves the wall time now that the compression sections run.
        run_client_suite &
        client_pid=$!
        server_status=0
        run_server_suite || server_status=$?
        client_status=0
        wait "$client_pid" || client_status=$?
        [ "$server_status" -eq 0 ] && [ "$client_status" -eq 0 ]
        ;;
    *) echo "usage: $0 server|client|all" >&2; exit 2 ;;
esac
