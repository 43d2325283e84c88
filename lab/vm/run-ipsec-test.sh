#!/usr/bin/env bash
# One command for the real-kernel IPsec test (issue 4): builds the in-VM driver
# (lab/vm/driver, its own cargo workspace), fetches/caches Debian's kernel, boots it under qemu
# TCG and runs lab/vm/scenarios/ipsec.sh. Exit 0 only if every in-VM check passed.
#
#   lab/vm/run-ipsec-test.sh
#
# Environment: VM_CACHE (kernel cache, default <repo>/target/vm-cache), VM_DRIVER_TARGET
# (cargo target dir of the driver, default <repo>/target/vm-driver), VM_DRIVER_BIN and
# VM_DRIVER_ARGS (use a prebuilt driver binary with these arguments instead of building
# lab/vm/driver), and everything run.sh
# reads (VM_TIMEOUT, VM_LOG, VM_QUIET...). Needs root only inside the VM; on the host:
# qemu-system-x86_64, busybox (static), cpio, iproute2, apt-get/dpkg-deb, xz, cargo.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export VM_CACHE="${VM_CACHE:-$repo/target/vm-cache}"
driver_target="${VM_DRIVER_TARGET:-$repo/target/vm-driver}"
cargo="${CARGO:-cargo}"

t0=$(date +%s)
# The driver is outside the main workspace; start from the workspace's lock so it builds with
# the same dependency versions (and offline when the registry cache has them).
if [ -n "${VM_DRIVER_BIN:-}" ]; then
    # A driver built elsewhere (e.g. an `imslab` subcommand): no nested cargo build.
    bin="$VM_DRIVER_BIN"
else
    if [ ! -f "$here/driver/Cargo.lock" ] && [ -f "$repo/Cargo.lock" ]; then
        cp "$repo/Cargo.lock" "$here/driver/Cargo.lock"
    fi
    echo "run-ipsec-test: building the in-VM driver" >&2
    CARGO_TARGET_DIR="$driver_target" "$cargo" build --release --quiet \
        --manifest-path "$here/driver/Cargo.toml" >&2
    bin="$driver_target/release/vm-ipsec"
fi
[ -x "$bin" ] || { echo "run-ipsec-test: no driver binary at $bin" >&2; exit 2; }

payload="${VM_WORK:-$VM_CACHE/run-ipsec}/payload"
rm -rf "$payload"
mkdir -p "$payload"
cp "$bin" "$payload/vm-ipsec"
cp "$here/scenarios/ipsec.sh" "$payload/ipsec.sh"
printf '%s\n' "${VM_DRIVER_ARGS:-}" >"$payload/driver.args"
t1=$(date +%s)
echo "run-ipsec-test: driver ready in $((t1 - t0))s" >&2
VM_WORK="${VM_WORK:-$VM_CACHE/run-ipsec}" exec "$here/run.sh" "$payload" ipsec.sh
