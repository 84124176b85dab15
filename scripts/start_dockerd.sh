#!/usr/bin/env bash
# Start a Docker engine if none answers; idempotent.
#
# Usage: bash scripts/start_dockerd.sh
# Env:   DOCKERD_LOG   where dockerd writes its log (default /var/log/agent-rl-dockerd.log)
#        DOCKERD_WAIT  seconds to wait for the engine to answer (default 30)
#
# Exits 0 once `docker info` answers; non-zero with the reason otherwise.
set -euo pipefail

log="${DOCKERD_LOG:-/var/log/agent-rl-dockerd.log}"
wait_s="${DOCKERD_WAIT:-30}"

# Several docker clients can be installed side by side (Debian's 20.10 in /usr/bin and a newer
# one in /usr/local/bin here). Any one that can talk to the engine will do for a liveness check.
clients=()
for c in "$(command -v docker 2>/dev/null || true)" /usr/bin/docker /usr/local/bin/docker; do
    [[ -n "$c" && -x "$c" ]] || continue
    [[ " ${clients[*]-} " == *" $c "* ]] || clients+=("$c")
done

engine_answers() {
    local c
    for c in "${clients[@]-}"; do
        [[ -n "$c" ]] || continue
        if timeout 10 "$c" info >/dev/null 2>&1; then
            return 0
        fi
    done
    # No client at all (or all of them broken): ask the socket directly.
    if command -v curl >/dev/null 2>&1 && [[ -S /var/run/docker.sock ]]; then
        [[ "$(timeout 5 curl -s --unix-socket /var/run/docker.sock http://localhost/_ping 2>/dev/null)" == "OK" ]] && return 0
    fi
    return 1
}

if engine_answers; then
    echo "docker engine already answers"
    exit 0
fi

if [[ ${#clients[@]} -eq 0 ]]; then
    echo "warning: no docker client found; checking the engine through its socket only" >&2
fi

dockerd_bin="$(command -v dockerd 2>/dev/null || true)"
if [[ -z "$dockerd_bin" ]]; then
    echo "error: dockerd is not installed. Install the engine first: apt-get install docker.io" >&2
    exit 1
fi
if [[ "$(id -u)" -ne 0 ]]; then
    echo "error: no docker engine answers and starting dockerd needs root (run this script as root, or start the engine with: sudo systemctl start docker)" >&2
    exit 1
fi

# A dockerd killed uncleanly leaves its pid file behind and refuses to start again.
pidfile=/var/run/docker.pid
if [[ -f "$pidfile" ]]; then
    oldpid="$(cat "$pidfile" 2>/dev/null || true)"
    if [[ -n "$oldpid" ]] && kill -0 "$oldpid" 2>/dev/null; then
        echo "dockerd (pid $oldpid) is running but not answering yet; waiting for it" >&2
    else
        rm -f "$pidfile"
        oldpid=""
    fi
fi

if [[ -z "${oldpid:-}" ]]; then
    mkdir -p "$(dirname "$log")"
    echo "starting $dockerd_bin (log: $log)"
    # setsid + nohup: the engine must outlive this shell and the session that ran it.
    setsid nohup "$dockerd_bin" >>"$log" 2>&1 </dev/null &
fi

for ((i = 0; i < wait_s * 2; i++)); do
    if engine_answers; then
        echo "docker engine is up"
        exit 0
    fi
    sleep 0.5
done

echo "error: dockerd did not answer within ${wait_s}s. Last lines of $log:" >&2
tail -n 20 "$log" >&2 || true
exit 1
