# Shared by start.sh and stop.sh (sourced, not run): where the test cluster keeps its state, and how a
# daemon that start.sh started is recognised again (recorded PID + process name, never a name alone).
# shellcheck shell=bash

DIR="${CONVSWEEP_SLURM_DIR:-/tmp/convsweep-slurm}"
CLUSTER="${CONVSWEEP_SLURM_CLUSTER:-convsweep}"
PORT_BASE="${CONVSWEEP_SLURM_PORT_BASE:-16817}"   # slurmctld, slurmdbd, node1, node2 = base .. base+3
GPUS_PER_NODE="${CONVSWEEP_SLURM_GPUS:-4}"
# CPUs per node: CONVSWEEP_SLURM_CPUS (default: this machine's, nproc), read by start.sh
NODES=(node1 node2)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PATH="$PATH:/usr/sbin:/sbin"

CONF_DIR="$DIR/etc"
PID_DIR="$DIR/pids"
LOG_DIR="$DIR/log"
MUNGE_DIR="$DIR/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket"
MYSQL_DIR="$DIR/mysql"
MYSQL_SOCKET="$MYSQL_DIR/run/mysqld.sock"
HOSTS_MARK="# convsweep-slurm $DIR"
export SLURM_CONF="$CONF_DIR/slurm.conf"
export MYSQL_UNIX_PORT="$MYSQL_SOCKET"

say() { echo "$(basename "$0"): $*"; }
die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# The process name (/proc/PID/comm) each recorded daemon must have; guards against a recycled PID.
comm_of() {
    case "$1" in
        munged) echo munged ;; mariadbd) echo mariadbd ;; slurmdbd) echo slurmdbd ;;
        slurmctld) echo slurmctld ;; slurmd-*) echo slurmd ;;
        *) return 1 ;;
    esac
}

# recorded_pid NAME: the PID start.sh recorded for NAME if that process is still alive with the right name.
recorded_pid() {
    local f="$PID_DIR/$1.pid" pid
    [ -r "$f" ] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(comm_of "$1")" ] || return 1
    echo "$pid"
}

alive() { recorded_pid "$1" >/dev/null; }

# t CMD...: run a SLURM/munge client with a bound, so a daemon that hangs cannot hang the scripts.
t() { timeout 10 "$@"; }

# wait_for SECONDS CMD...: poll CMD (quietly) until it succeeds or SECONDS pass. CMD bounds its own tries.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    while ((SECONDS < deadline)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}
