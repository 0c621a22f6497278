#!/usr/bin/env bash
# Stop convsweep's single-host SLURM test cluster: only the daemons start.sh started, found by the PIDs it
# recorded in $CONVSWEEP_SLURM_DIR/pids (and checked by process name, so a recycled PID is never hit).
# Jobs still in the queue are cancelled first so no job step outlives its slurmd. State (accounting
# database, munge key, configs) stays in the directory for the next start.sh; delete it for a clean slate.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# stop NAME: SIGTERM the recorded PID, wait up to 20 s, then SIGKILL.
stop() {
    local pid i
    if ! pid="$(recorded_pid "$1")"; then
        rm -f "$PID_DIR/$1.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
        [ -d "/proc/$pid" ] || break
        sleep 0.2
    done
    if [ -d "/proc/$pid" ]; then
        say "$1 (pid $pid) ignored SIGTERM for 20 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$PID_DIR/$1.pid"
    stopped+=("$1")
}

stopped=()
if alive slurmctld; then
    jobs="$(t squeue -h -o %A 2>/dev/null | tr '\n' ' ')"
    if [ -n "${jobs// /}" ]; then
        # shellcheck disable=SC2086
        t scancel $jobs 2>/dev/null
        deadline=$((SECONDS + 20))
        while ((SECONDS < deadline)) && [ -n "$(t squeue -h -o %A 2>/dev/null)" ]; do sleep 0.5; done
    fi
fi
for n in "${NODES[@]}"; do stop "slurmd-$n"; done
for name in slurmctld slurmdbd mariadbd munged; do stop "$name"; done
# The /etc/hosts line start.sh added for this directory (rewritten in place: /etc/hosts may be a bind mount).
if grep -qF -- "$HOSTS_MARK" /etc/hosts 2>/dev/null; then
    kept="$(grep -vF -- "$HOSTS_MARK" /etc/hosts)"
    printf '%s\n' "$kept" >/etc/hosts
    stopped+=("/etc/hosts:${NODES[*]}")
fi

if [ "${#stopped[@]}" = 0 ]; then
    say "nothing running ($DIR)"
else
    say "stopped ${stopped[*]} ($DIR)"
fi
