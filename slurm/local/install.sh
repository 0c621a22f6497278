#!/usr/bin/env bash
# Install the Debian packages for a single-host SLURM with accounting (munge, slurmctld, slurmd, slurmdbd,
# MariaDB). Idempotent and fast when everything is there already. Package scripts are kept from starting
# services (a policy-rc.d that exits 101): start.sh starts exactly what it needs, by PID.
# On failure: exits non-zero and prints ONE line "install.sh: <reason>" on stdout (the test fixture shows it
# as the skip reason); apt's full output is in $CONVSWEEP_SLURM_DIR/install.log.
set -u

PACKAGES=(munge slurmctld slurmd slurm-client slurm-wlm-basic-plugins slurmdbd slurm-wlm-mysql-plugin
          mariadb-server mariadb-client)
# What start.sh runs; if all of it is present there is nothing to do.
NEEDED=(munged mungekey munge unmunge slurmctld slurmd slurmdbd sbatch srun squeue sinfo scontrol sacct
        sacctmgr scancel mariadbd mariadb-install-db mariadb)
STATE_DIR="${CONVSWEEP_SLURM_DIR:-/tmp/convsweep-slurm}"
MYSQL_PLUGIN_GLOB="/usr/lib/*/slurm-wlm/accounting_storage_mysql.so"

fail() { echo "install.sh: $*"; exit 1; }

all_present() {
    local b
    for b in "${NEEDED[@]}"; do
        PATH="$PATH:/usr/sbin:/sbin" command -v "$b" >/dev/null 2>&1 || return 1
    done
    compgen -G "$MYSQL_PLUGIN_GLOB" >/dev/null || return 1
    id munge >/dev/null 2>&1 && id mysql >/dev/null 2>&1
}

if all_present; then
    echo "install.sh: SLURM, munge and MariaDB already installed"
    exit 0
fi

[ "$(uname -s)" = Linux ] || fail "needs Linux with apt-get (this is $(uname -s))"
[ "$(id -u)" = 0 ] || fail "needs root to apt-get install ${PACKAGES[*]} (running as $(id -un))"
command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: needs a Debian/Ubuntu system"
mkdir -p "$STATE_DIR" || fail "cannot create $STATE_DIR"
LOG="$STATE_DIR/install.log"

# Block service starts during the install; put back whatever policy was there before.
POLICY=/usr/sbin/policy-rc.d
BACKUP=""
if ! { [ -x "$POLICY" ] && grep -q 'exit 101' "$POLICY"; }; then
    if [ -e "$POLICY" ]; then BACKUP="$(mktemp)"; cp -p "$POLICY" "$BACKUP"; fi
    printf '#!/bin/sh\nexit 101\n' >"$POLICY" && chmod 755 "$POLICY"
    restore_policy() { if [ -n "$BACKUP" ]; then mv -f "$BACKUP" "$POLICY"; else rm -f "$POLICY"; fi; }
    trap restore_policy EXIT
fi

export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef
     -o Dpkg::Options::=--force-confold)
: >"$LOG"
if ! "${APT[@]}" install --no-install-recommends "${PACKAGES[@]}" >>"$LOG" 2>&1; then
    # Stale or missing package lists are the usual cause: refresh once and retry.
    "${APT[@]}" update >>"$LOG" 2>&1 \
        || fail "apt-get update failed: $(grep -E '^(E|W):' "$LOG" | tail -n 1) (log: $LOG)"
    "${APT[@]}" install --no-install-recommends "${PACKAGES[@]}" >>"$LOG" 2>&1 \
        || fail "apt-get install failed: $(grep -E '^E:' "$LOG" | tail -n 1) (log: $LOG)"
fi
all_present || fail "packages installed but a needed program is missing (one of: ${NEEDED[*]}) (log: $LOG)"
echo "install.sh: installed ${PACKAGES[*]}"
