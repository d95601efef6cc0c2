#!/bin/bash
# demoapp-service start|stop|restart|status
#
# Runs the demo app of the deploy root this script is installed in (<root>/bin/demoapp-service),
# detached from the calling session so it outlives the SSH connection that started it.
# Layout: <root>/current -> releases/<build> (app.py, VERSION), <root>/etc/service.env (optional:
# PORT, BIND, PYTHON), <root>/run/app.pid, <root>/log/app.log.
set -u

# The deploy root is the parent of this script's directory (never resolved through `current`),
# so local mode, with a different root per node, works the same as the netns nodes.
ROOT=$(cd "$(dirname "$0")/.." && pwd -P) || exit 1
PORT=8080
BIND=0.0.0.0
PYTHON=/usr/bin/python3
# shellcheck source=/dev/null
[ -f "$ROOT/etc/service.env" ] && . "$ROOT/etc/service.env"
APP=$ROOT/current/app.py
PIDFILE=$ROOT/run/app.pid
LOG=$ROOT/log/app.log
START_TIMEOUT=10
STOP_TIMEOUT=5

say() { echo "demoapp-service: $*" >&2; }

# True if process $1 exists and is not a zombie.
live() {
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    case $state in '' | Z | X) return 1 ;; esac
}

# True if $1 is a live process running this root's app.py.
alive() {
    live "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$APP"
}

# Prints the pid from the pidfile if that process is alive.
running_pid() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    alive "$pid" && echo "$pid"
}

listening() {
    local host=$BIND
    case $host in 0.0.0.0 | '') host=127.0.0.1 ;; esac
    (exec 3<>"/dev/tcp/$host/$PORT") 2>/dev/null
}

do_start() {
    local pid deadline
    if pid=$(running_pid); then
        echo "already running pid $pid"
        return 0
    fi
    [ -f "$APP" ] || { say "no app at $APP"; return 1; }
    # Otherwise the readiness probe below could be answered by whoever holds the port.
    if listening; then
        say "port $BIND:$PORT is already in use by another process"
        return 1
    fi
    mkdir -p "$ROOT/run" "$ROOT/log"
    # A subshell that execs all the way down, so $! is the app's pid. It is not a process-group
    # leader (no job control in scripts), so setsid does not fork. Descriptors beyond 0-2 are
    # closed so that no pipe of the caller (an SSH channel) is held open by the app.
    (
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
        done
        exec setsid nohup "$PYTHON" "$APP" --host "$BIND" --port "$PORT" </dev/null >>"$LOG" 2>&1
    ) &
    pid=$!
    echo "$pid" >"$PIDFILE"
    deadline=$((SECONDS + START_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        # live, not alive: until the exec, the child's command line is still this script's.
        if ! live "$pid"; then
            wait "$pid"
            say "app exited (status $?) during start: $(tail -n 1 "$LOG" 2>/dev/null)"
            rm -f "$PIDFILE"
            return 1
        fi
        if listening && alive "$pid"; then
            echo "started pid $pid on $BIND:$PORT"
            return 0
        fi
        sleep 0.1
    done
    say "app not listening on $BIND:$PORT after ${START_TIMEOUT}s; stopping it"
    do_stop >/dev/null
    return 1
}

do_stop() {
    local pid i
    if ! pid=$(running_pid); then
        rm -f "$PIDFILE"
        echo "stopped"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null
        for ((i = 0; i < 20; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
    fi
    if alive "$pid"; then
        say "pid $pid survived SIGKILL"
        return 1
    fi
    rm -f "$PIDFILE"
    echo "stopped pid $pid"
}

do_status() {
    local pid
    if pid=$(running_pid); then
        echo "running pid $pid version $(cat "$ROOT/current/VERSION" 2>/dev/null || echo unknown)"
        return 0
    fi
    echo "stopped"
    return 3
}

case ${1:-} in
start) do_start ;;
stop) do_stop ;;
restart) do_stop && do_start ;;
status) do_status ;;
*)
    echo "usage: $0 start|stop|restart|status" >&2
    exit 2
    ;;
esac
