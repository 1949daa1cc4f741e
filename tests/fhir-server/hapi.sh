#!/usr/bin/env bash
# Control the HAPI FHIR test server in the background, for humans and CI.
#
#   hapi.sh start    build if needed, start on 127.0.0.1:$HAPI_PORT (default: a free port),
#                    wait for GET /fhir/metadata == 200, print the base URL on stdout
#   hapi.sh wait     wait for an already started server, print the base URL
#   hapi.sh status   print the base URL and exit 0 if running, else exit 3
#   hapi.sh stop     SIGTERM the recorded pid only, wait up to 30 s, then SIGKILL
#   hapi.sh url      print the base URL of the recorded server (no checks)
#
# State lives in target/run/: hapi.pid, hapi.port, hapi.log. Only the base URL goes to stdout,
# so `BASE=$(tests/fhir-server/hapi.sh start)` works. Environment: HAPI_PORT, HAPI_XMX,
# HAPI_DB_URL, HAPI_JAVA_OPTS (see run.sh), HAPI_START_TIMEOUT (default 300 s), MAVEN_REPO_LOCAL.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rundir="$here/target/run"
pidfile="$rundir/hapi.pid"
portfile="$rundir/hapi.port"
logfile="$rundir/hapi.log"
main_class=org.fhirscreen.testserver.TestServer

say() { echo "hapi.sh: $*" >&2; }

base_url() { echo "http://127.0.0.1:$(cat "$portfile")/fhir"; }

# True when the recorded pid is alive and is our run.sh or the JVM it execs (guards against a
# recycled pid).
running() {
    [[ -s $pidfile ]] || return 1
    local pid
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE "$main_class|fhir-server/run\.sh"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

log_tail() {
    say "last lines of $logfile:"
    tail -n 40 "$logfile" >&2 || true
}

do_wait() {
    [[ -s $pidfile && -s $portfile ]] || { say "no server recorded in $rundir"; return 1; }
    local timeout=${HAPI_START_TIMEOUT:-300} url start now
    url="$(base_url)/metadata"
    start=$(date +%s)
    while true; do
        if ! running; then
            say "server process $(cat "$pidfile") exited before it was ready"
            log_tail
            return 1
        fi
        if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$url" || true) == 200 ]]; then
            say "ready after $(( $(date +%s) - start )) s of waiting (pid $(cat "$pidfile"))"
            base_url
            return 0
        fi
        now=$(date +%s)
        if (( now - start >= timeout )); then
            say "not ready after ${timeout} s"
            log_tail
            return 1
        fi
        sleep 1
    done
}

do_start() {
    if running; then
        say "already running (pid $(cat "$pidfile"))"
        do_wait
        return
    fi
    "$here/build.sh"
    mkdir -p "$rundir"
    local port=${HAPI_PORT:-}
    [[ -n $port ]] || port=$(free_port)
    echo "$port" >"$portfile"
    : >"$logfile"
    HAPI_PORT=$port nohup "$here/run.sh" >>"$logfile" 2>&1 </dev/null &
    echo $! >"$pidfile"
    say "started pid $! on port $port, log $logfile"
    do_wait
}

do_stop() {
    if ! running; then
        say "not running"
        rm -f "$pidfile"
        return 0
    fi
    local pid start
    pid=$(cat "$pidfile")
    start=$(date +%s)
    kill -TERM "$pid"
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid still alive after 30 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    say "stopped pid $pid in $(( $(date +%s) - start )) s"
}

case "${1:-}" in
    start) do_start ;;
    wait) do_wait ;;
    stop) do_stop ;;
    status)
        if running; then say "running (pid $(cat "$pidfile"))"; base_url; else say "not running"; exit 3; fi ;;
    url) base_url ;;
    *) echo "usage: $0 start|stop|status|wait|url" >&2; exit 2 ;;
esac
