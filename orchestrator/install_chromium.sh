#!/usr/bin/env bash
# Install a headless browser for the report's test (Debian's package chromium): `convsweep report` writes
# one HTML page, and the test opens it in a real Chromium (screenshot, DOM dump). Idempotent and instant
# when chromium is on the PATH.
# On success: prints the browser's path as its last line. On failure: exits non-zero and prints ONE line
# "install_chromium.sh: <reason>" (the test fixture shows it as the skip reason); apt's output goes to
# ${TMPDIR:-/tmp}/convsweep-chromium-install.log.
set -u

fail() { echo "install_chromium.sh: $*"; exit 1; }

found() { command -v chromium || command -v chromium-browser; }

if found >/dev/null 2>&1; then
    found
    exit 0
fi
[ "$(id -u)" = 0 ] || fail "needs root to apt-get install chromium (running as $(id -un))"
command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: needs a Debian/Ubuntu system (or chromium on the PATH)"
LOG="${TMPDIR:-/tmp}/convsweep-chromium-install.log"
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >"$LOG" 2>&1; then
    # a fresh machine has no package lists yet: fetch them once and try again
    apt-get update -q >>"$LOG" 2>&1 || fail "apt-get update failed (see $LOG)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >>"$LOG" 2>&1 \
        || fail "apt-get install chromium failed (see $LOG)"
fi
found || fail "chromium installed but not on the PATH"
