#!/usr/bin/env bash
# Install the real Fashion-MNIST (Debian's package dataset-fashion-mnist: the four original
# *-idx?-ubyte.gz files, 70,000 images) under /usr/share/datasets/fashion-mnist, where `pipelines` reads it
# when FASHION_MNIST_ROOT is unset. Idempotent and instant when the files are there.
# On failure: exits non-zero and prints ONE line "install_fashion_mnist.sh: <reason>" (the test fixture shows
# it as the skip reason); apt's output goes to ${TMPDIR:-/tmp}/convsweep-fashion-mnist-install.log.
set -u

DIR=/usr/share/datasets/fashion-mnist
FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

fail() { echo "install_fashion_mnist.sh: $*"; exit 1; }

present() {
    local f
    for f in "${FILES[@]}"; do [ -s "$DIR/$f" ] || return 1; done
}

if present; then
    echo "install_fashion_mnist.sh: Fashion-MNIST already in $DIR"
    exit 0
fi
[ "$(id -u)" = 0 ] || fail "needs root to apt-get install dataset-fashion-mnist (running as $(id -un))"
command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: needs a Debian/Ubuntu system (or set FASHION_MNIST_ROOT)"
LOG="${TMPDIR:-/tmp}/convsweep-fashion-mnist-install.log"
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >"$LOG" 2>&1; then
    # a fresh machine has no package lists yet: fetch them once and try again
    apt-get update -q >>"$LOG" 2>&1 || fail "apt-get update failed (see $LOG)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >>"$LOG" 2>&1 \
        || fail "apt-get install dataset-fashion-mnist failed (see $LOG)"
fi
present || fail "dataset-fashion-mnist installed but $DIR lacks ${FILES[*]}"
echo "install_fashion_mnist.sh: installed Fashion-MNIST in $DIR"
