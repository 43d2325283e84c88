#!/usr/bin/env bash
# Boots Debian's packaged kernel under qemu (TCG: no KVM needed) with an initramfs holding
# <payload-dir> and runs <script-in-vm> (a path relative to <payload-dir>, run by busybox sh
# as root inside the VM, cwd /payload). Exits 0 only if the VM printed this run's PASS line.
#
#   lab/vm/run.sh <payload-dir> <script-in-vm>
#
# In the VM: busybox applets in /bin and /sbin (but no `ip` applet: /usr/sbin/ip is the host's
# iproute2), the ESP/XFRM/crypto/veth modules already loaded, /proc /sys /dev /tmp /run
# mounted, no network but loopback. Every ELF file in the payload gets its shared libraries
# (from the host's `ldd`) copied in, so ordinary glibc binaries run unchanged. Files the script
# writes to /out come back into $VM_OUT (base64 over the serial console).
#
# Environment:
#   VM_CACHE     kernel cache (default <repo>/target/vm-cache; see build-kernel.sh)
#   VM_WORK      where the initramfs is built (default $VM_CACHE/run)
#   VM_LOG       serial log path (default $VM_WORK/serial.log)
#   VM_OUT       directory receiving the files of /out (default $VM_WORK/out)
#   VM_TIMEOUT   hard timeout of the boot+run in seconds (default 300)
#   VM_MEM       memory in MiB (default 512)
#   VM_LOAD_MODULES  modules to load, in order (default: the IPsec set below)
#   VM_EXTRA_BINS  extra host programs to copy with their libraries (space separated paths)
#   VM_QUIET     1 = do not echo the serial console to stderr while it runs
set -euo pipefail
export LC_ALL=C

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

die() { echo "vm/run: ERROR: $*" >&2; exit 2; }
[ $# -eq 2 ] || die "usage: $0 <payload-dir> <script-in-vm>"
payload="$(cd "$1" && pwd)" || die "no payload dir $1"
script="$2"
[ -f "$payload/$script" ] || die "no script $payload/$script"

for t in qemu-system-x86_64 busybox cpio gzip ldd timeout; do
    command -v "$t" >/dev/null || die "missing host tool: $t"
done
[ -x /usr/sbin/ip ] || die "missing /usr/sbin/ip (iproute2)"

export VM_CACHE="${VM_CACHE:-$repo/target/vm-cache}"
t_start=$(date +%s.%N)
kenv="$("$here/build-kernel.sh" | tail -n 3)"
eval "$kenv"
if [ -z "${VM_KERNEL:-}" ] || [ ! -f "$VM_KERNEL" ]; then die "build-kernel.sh gave no kernel"; fi

work="${VM_WORK:-$VM_CACHE/run}"
log="${VM_LOG:-$work/serial.log}"
outdir="${VM_OUT:-$work/out}"
timeout_s="${VM_TIMEOUT:-300}"
mem="${VM_MEM:-512}"
# Order matters: the DRBG (with its hash and entropy source) before anything instantiates
# echainiv; the algorithm modules before esp4/esp6 so the first SA does not wait on modprobe.
modules="${VM_LOAD_MODULES:-jitterentropy_rng sha3_generic sha512_generic drbg echainiv seqiv authenc \
crypto_null ecb cbc aes_generic libdes des_generic md5 sha1_generic hmac xfrm_algo xfrm_user \
esp4 esp6 af_key veth}"

rm -rf "$work/root"
mkdir -p "$work/root" "$outdir" "$(dirname "$log")"
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,proc,sys,dev,tmp,run,root,out,etc}

# busybox and its applets, except `ip` (iproute2's is needed for xfrm and netns).
cp /bin/busybox "$root/bin/busybox"
for a in $(busybox --list); do
    case "$a" in ip|busybox) continue ;; esac
    ln -s busybox "$root/bin/$a"
done
ln -s ../bin/busybox "$root/sbin/modprobe"

# Copies an ELF and its shared libraries (same paths as on the host).
copy_libs() {
    ldd "$1" 2>/dev/null | awk '/=> \// {print $3} /^[ \t]*\/[^ ]+ \(/ {print $1}' | while read -r lib; do
        [ -e "$root$lib" ] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}
copy_bin() {
    mkdir -p "$root$(dirname "$1")"
    cp -L "$1" "$root$1"
    copy_libs "$1"
}
copy_bin /usr/sbin/ip
for b in ${VM_EXTRA_BINS:-}; do copy_bin "$b"; done

cp -a "$payload" "$root/payload"
while IFS= read -r -d '' f; do
    if [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')" = "7f454c46" ]; then
        copy_libs "$f"
    fi
done < <(find "$root/payload" -type f -print0)

cp -a "$VM_MODULES/lib/modules" "$root/lib/"

nonce="$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
sed -e "s|@NONCE@|$nonce|g" -e "s|@MODULES@|$modules|g" -e "s|@SCRIPT@|$script|g" \
    "$here/init.sh" >"$root/init"
chmod +x "$root/init"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"

(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$work/initrd.gz"
t_built=$(date +%s.%N)

echo "vm/run: kernel $VM_KVER, initramfs $(du -h "$work/initrd.gz" | cut -f1), timeout ${timeout_s}s, log $log" >&2
qemu_rc=0
t_boot=$(date +%s.%N)
if [ "${VM_QUIET:-0}" = 1 ]; then
    timeout -k 5 "$timeout_s" qemu-system-x86_64 -accel tcg -m "$mem" -smp 1 -nic none \
        -nographic -no-reboot -kernel "$VM_KERNEL" -initrd "$work/initrd.gz" \
        -append "console=ttyS0 panic=-1 quiet" </dev/null >"$log" 2>&1 || qemu_rc=$?
else
    timeout -k 5 "$timeout_s" qemu-system-x86_64 -accel tcg -m "$mem" -smp 1 -nic none \
        -nographic -no-reboot -kernel "$VM_KERNEL" -initrd "$work/initrd.gz" \
        -append "console=ttyS0 panic=-1 quiet" </dev/null 2>&1 | tee "$log" >&2 || qemu_rc=$?
fi
t_end=$(date +%s.%N)

# Files handed back from /out.
tr -d '\r' <"$log" | awk -v n="$nonce" -v dir="$outdir" '
    $1 == "IMSLAB-VM-FILE-BEGIN" && $2 == n { f = dir "/" $3; printf "" > f; inside = 1; next }
    $1 == "IMSLAB-VM-FILE-END" && $2 == n { close(f); inside = 0; next }
    inside { print > (f ".b64") }' || true
for b in "$outdir"/*.b64; do
    [ -f "$b" ] || continue
    base64 -d "$b" >"${b%.b64}" && rm -f "$b"
done

result="$(tr -d '\r' <"$log" | grep -a "^IMSLAB-VM-RESULT $nonce " | tail -n 1 || true)"
boot="$(tr -d '\r' <"$log" | grep -a "^IMSLAB-VM-READY $nonce " | sed 's/.*uptime=//' || true)"
awk -v a="$t_start" -v b="$t_built" -v c="$t_boot" -v d="$t_end" -v up="${boot:-?}" -v rc="$qemu_rc" \
    'BEGIN { printf "vm/run: build %.1fs, qemu %.1fs (guest ready at %ss uptime), total %.1fs, qemu rc %s\n", b - a, d - c, up, d - a, rc }' >&2
if [ -z "$result" ]; then
    [ "$qemu_rc" = 124 ] && die "VM timed out after ${timeout_s}s without a result line (log: $log)"
    die "VM printed no result line (qemu rc $qemu_rc; log: $log)"
fi
echo "vm/run: $result" >&2
case "$result" in
    *" PASS "*) exit 0 ;;
    *) exit 1 ;;
esac
