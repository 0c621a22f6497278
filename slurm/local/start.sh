#!/usr/bin/env bash
# Start convsweep's single-host SLURM test cluster: munge, MariaDB + slurmdbd (so sacct works), slurmctld and
# two slurmd (node1, node2) on loopback, each with fake GPUs through GRES, partitions "debug" (default) and
# "urgent" (higher PriorityTier, preempts debug jobs by requeue).
# Idempotent: a daemon whose recorded PID is alive is left alone; if everything is up it says so, exits 0.
# All state lives in $CONVSWEEP_SLURM_DIR (default /tmp/convsweep-slurm); PIDs in $DIR/pids for stop.sh.
# The last line printed is the `export SLURM_CONF=...` line that points the SLURM tools at this cluster.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ "$(id -u)" = 0 ] || die "needs root (the daemons run as root, munged as munge, mariadbd as mysql)"
for b in munged mungekey slurmctld slurmd slurmdbd mariadbd mariadb-install-db sinfo scontrol sacctmgr; do
    command -v "$b" >/dev/null 2>&1 || die "$b not found: run $HERE/install.sh first"
done
id munge >/dev/null 2>&1 && id mysql >/dev/null 2>&1 || die "users munge/mysql missing: run $HERE/install.sh"

mkdir -p "$CONF_DIR" "$PID_DIR" "$LOG_DIR" "$DIR/run" "$DIR/state/ctld" "$DIR/dev"
for n in "${NODES[@]}"; do mkdir -p "$DIR/state/slurmd-$n"; done
started=0

# record NAME PIDFILE: copy the daemon's own pid file into $PID_DIR once it exists.
record() {
    local i
    for ((i = 0; i < 50; i++)); do
        if [ -s "$2" ]; then tr -dc '0-9' <"$2" >"$PID_DIR/$1.pid"; alive "$1" && return 0; fi
        sleep 0.2
    done
    die "$1 did not stay up (see $3)"
}

render() {  # render TEMPLATE OUT: substitute @VARS@
    local mem cpus
    cpus="${CONVSWEEP_SLURM_CPUS:-$(nproc)}"  # more than the machine has: a load test's fake CPUs
    # 90% of what slurmd detects: a node configured with more memory than it has is drained.
    mem="$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
    mem=$((mem * 9 / 10))
    sed -e "s|@DIR@|$DIR|g" -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@MUNGE_SOCKET@|$MUNGE_SOCKET|g" \
        -e "s|@CTLD_PORT@|$PORT_BASE|g" -e "s|@DBD_PORT@|$((PORT_BASE + 1))|g" \
        -e "s|@NODE_PORTS@|$((PORT_BASE + 2))-$((PORT_BASE + 3))|g" -e "s|@CPUS@|$cpus|g" \
        -e "s|@REAL_MEMORY@|$mem|g" -e "s|@GPUS@|$GPUS_PER_NODE|g" -e "s|@LAST_GPU@|$((GPUS_PER_NODE - 1))|g" \
        "$HERE/$1" >"$2"
}

# --- configuration (rewritten only while slurmctld is down, so running daemons never disagree with it)
if ! alive slurmctld; then
    render slurm.conf.in "$CONF_DIR/slurm.conf"
    render gres.conf.in "$CONF_DIR/gres.conf"
    render slurmdbd.conf.in "$CONF_DIR/slurmdbd.conf"
    chmod 600 "$CONF_DIR/slurmdbd.conf"
fi
# Fake GPUs: character devices (copies of /dev/null); regular files would drain the node.
for ((g = 0; g < GPUS_PER_NODE; g++)); do
    [ -c "$DIR/dev/nvidia$g" ] || { rm -f "$DIR/dev/nvidia$g"; mknod "$DIR/dev/nvidia$g" c 1 3; }
done

# --- node names resolve (to loopback), as on a real cluster: DDP's MASTER_ADDR is the first node's name.
# The line is marked so stop.sh removes exactly it, and only if this script added it.
if ! getent hosts "${NODES[@]}" >/dev/null 2>&1 || [ "$(getent hosts "${NODES[@]}" | wc -l)" != "${#NODES[@]}" ]; then
    echo "127.0.0.1 ${NODES[*]} $HOSTS_MARK" >>/etc/hosts || die "cannot add ${NODES[*]} to /etc/hosts"
fi

# --- munge (private key and socket: does not touch a system munged)
munge_ok() { t munge -n -S "$MUNGE_SOCKET" | t unmunge -S "$MUNGE_SOCKET"; }
if ! alive munged; then
    mkdir -p "$MUNGE_DIR"
    # Clients reach the socket through this directory: munged wants it executable by all.
    chown munge:munge "$MUNGE_DIR" && chmod 711 "$MUNGE_DIR"
    if [ ! -s "$MUNGE_DIR/munge.key" ]; then
        mungekey --create --keyfile="$MUNGE_DIR/munge.key"
    fi
    chown munge:munge "$MUNGE_DIR/munge.key" && chmod 600 "$MUNGE_DIR/munge.key"
    rm -f "$MUNGE_DIR/munged.pid"
    runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_DIR/munge.key" \
        --log-file="$MUNGE_DIR/munged.log" --pid-file="$MUNGE_DIR/munged.pid" \
        --seed-file="$MUNGE_DIR/munged.seed" \
        || die "munged failed to start (see $MUNGE_DIR/munged.log)"
    record munged "$MUNGE_DIR/munged.pid" "$MUNGE_DIR/munged.log"
    started=1
fi
wait_for 10 munge_ok || die "munge does not answer on $MUNGE_SOCKET (see $MUNGE_DIR/munged.log)"

# --- MariaDB on a private unix socket (no TCP), for slurmdbd
mysql_ok() { t mariadb --no-defaults --socket="$MYSQL_SOCKET" -u root -e 'SELECT 1'; }
if ! alive mariadbd; then
    mkdir -p "$MYSQL_DIR/data" "$MYSQL_DIR/run"
    # mariadbd segfaults silently at start-up if it cannot write its log/pid directory.
    chown -R mysql:mysql "$MYSQL_DIR"
    if [ ! -d "$MYSQL_DIR/data/mysql" ]; then
        mariadb-install-db --no-defaults --user=mysql --datadir="$MYSQL_DIR/data" \
            --auth-root-authentication-method=socket --skip-test-db >"$LOG_DIR/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed (see $LOG_DIR/mariadb-install.log)"
    fi
    rm -f "$MYSQL_DIR/run/mysqld.pid"
    setsid mariadbd --no-defaults --user=mysql --datadir="$MYSQL_DIR/data" --socket="$MYSQL_SOCKET" \
        --pid-file="$MYSQL_DIR/run/mysqld.pid" --skip-networking --log-error="$MYSQL_DIR/run/error.log" \
        --innodb-buffer-pool-size=32M --performance-schema=OFF </dev/null >/dev/null 2>&1 &
    record mariadbd "$MYSQL_DIR/run/mysqld.pid" "$MYSQL_DIR/run/error.log"
    started=1
fi
wait_for 30 mysql_ok || die "MariaDB does not answer on $MYSQL_SOCKET (see $MYSQL_DIR/run/error.log)"

# --- slurmdbd (finds MariaDB through MYSQL_UNIX_PORT, its config next to $SLURM_CONF)
if ! alive slurmdbd; then
    rm -f "$DIR/run/slurmdbd.pid"
    slurmdbd || die "slurmdbd failed to start (see $LOG_DIR/slurmdbd.log)"
    record slurmdbd "$DIR/run/slurmdbd.pid" "$LOG_DIR/slurmdbd.log"
    started=1
fi
dbd_ok() { t sacctmgr -n list cluster; }
wait_for 30 dbd_ok || die "slurmdbd does not answer (see $LOG_DIR/slurmdbd.log)"
if ! t sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    t sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
fi

# --- slurmctld
ctld_ok() { t scontrol ping | grep -q 'is UP'; }
if ! alive slurmctld; then
    # Job ids must never repeat within the accounting database: `sacct -j ID` answers with the job of that id
    # whose submit time is latest, so a reused id (ctld state lost, database kept, or a clock that moved back)
    # would report another job. slurmctld takes max(saved sequence, FirstJobId), so this is safe every start.
    last_id="$(mariadb --no-defaults --socket="$MYSQL_SOCKET" -u root -N -e \
        "SELECT COALESCE(MAX(id_job), 0) FROM \`${CLUSTER}_acct_db\`.\`${CLUSTER}_job_table\`" 2>/dev/null || echo 0)"
    sed -i '/^FirstJobId=/d' "$CONF_DIR/slurm.conf"
    echo "FirstJobId=$((${last_id:-0} + 1))" >>"$CONF_DIR/slurm.conf"
    rm -f "$DIR/run/slurmctld.pid"
    slurmctld || die "slurmctld failed to start (see $LOG_DIR/slurmctld.log)"
    record slurmctld "$DIR/run/slurmctld.pid" "$LOG_DIR/slurmctld.log"
    started=1
fi
wait_for 30 ctld_ok || die "slurmctld is not UP (see $LOG_DIR/slurmctld.log)"

# --- two slurmd on loopback
for n in "${NODES[@]}"; do
    if ! alive "slurmd-$n"; then
        rm -f "$DIR/run/slurmd-$n.pid"
        slurmd -N "$n" || die "slurmd -N $n failed to start (see $LOG_DIR/slurmd-$n.log)"
        record "slurmd-$n" "$DIR/run/slurmd-$n.pid" "$LOG_DIR/slurmd-$n.log"
        started=1
    fi
done

# --- every node idle (or busy with jobs); a node left drained/down by an earlier run is resumed
nodes_ready() {
    local bad
    bad="$(t sinfo -h -N -o '%N %t' | sort -u | awk '$2 !~ /^(idle|mix|alloc|comp)$/ {print $1}')"
    [ -z "$bad" ] && return 0
    for n in $bad; do
        case "$(t sinfo -h -n "$n" -N -o '%t' | head -n 1)" in
            drain* | drng | down* | fail*) t scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true ;;
        esac
    done
    return 1
}
wait_for 60 nodes_ready || die "nodes not idle: $(sinfo -h -N -o '%N=%t' | sort -u | tr '\n' ' ')(see $LOG_DIR/)"

if [ "$started" = 0 ]; then
    say "already up ($DIR)"
else
    say "up: $(sinfo -h -N -o '%N=%t' | sort -u | tr '\n' ' ')($DIR)"
fi
echo "export SLURM_CONF=$SLURM_CONF" | tee "$DIR/env.sh"
