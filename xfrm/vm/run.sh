#!/bin/bash
# Real-kernel smoke test of the xfrm crate: boots Debian's packaged kernel under qemu (TCG) and
# runs the sa_echo example in two network namespaces joined by veth: kernel <-> kernel for
# every algorithm, IPv4/IPv6, UDP and TCP; userspace <-> kernel interop both ways; auto.
# Usage: xfrm/vm/run.sh [workdir]   (root; needs qemu-system-x86, busybox-static, cpio, xz)
# Prints one VMCASE line per case and exits non-zero unless all are ok.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-/tmp/xfrm-vm}
mkdir -p "$work"
cd "$work"
target=${CARGO_TARGET_DIR:-$here/../../target}
(cd "$here/.." && cargo build --release --example sa_echo)
deb=$(ls linux-image-*-amd64_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
  apt-get download "$pkg"
  deb=$(ls linux-image-*-amd64_*.deb | head -1)
fi
[ -d kpkg ] || dpkg-deb -x "$deb" kpkg
K=$(ls kpkg/lib/modules | head -1)
if [ ! -f vmlinux ]; then
  # The ELF kernel boots faster than the compressed image: unpack the xz payload of vmlinuz.
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "kpkg/boot/vmlinuz-$K" | head -1 | cut -d: -f1)
  tail -c +$((off + 1)) "kpkg/boot/vmlinuz-$K" | xz -dc --single-stream > vmlinux 2>/dev/null || true
fi
rm -rf root && mkdir -p root/{bin,sbin,usr/sbin,proc,sys,run,tmp,dev,etc}
cp /bin/busybox root/bin/busybox
cp "$here/init.sh" root/init && chmod +x root/init
cp /usr/sbin/ip root/usr/sbin/ip
cp "$target/release/examples/sa_echo" root/sa_echo
for d in crypto lib/crypto net/xfrm net/key net/ipv4 net/ipv6 arch/x86/crypto; do
  mkdir -p "root/lib/modules/$K/kernel/$(dirname $d)"
  cp -r "kpkg/lib/modules/$K/kernel/$d" "root/lib/modules/$K/kernel/$d"
done
mkdir -p "root/lib/modules/$K/kernel/drivers/net"
cp "kpkg/lib/modules/$K/kernel/drivers/net/veth.ko" "root/lib/modules/$K/kernel/drivers/net/"
cp kpkg/lib/modules/$K/modules.builtin* "root/lib/modules/$K/"
busybox depmod -b root "$K"
for bin in /usr/sbin/ip root/sa_echo; do
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do mkdir -p "root$(dirname "$lib")"; cp -L "$lib" "root$lib"; done
done
(cd root && find . | cpio -o -H newc 2>/dev/null | gzip -1 > ../initrd.gz)
timeout 280 qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nic none -nographic -no-reboot \
  -kernel vmlinux -initrd initrd.gz -append "console=ttyS0 panic=-1 quiet" > vm.log 2>&1 || true
# qemu exits 0 whatever happened inside: judge by the result lines (the first one may share
# its line with the firmware's "Booting from ROM..").
grep -ao 'VMCASE .*' vm.log > cases.txt || true
cat cases.txt
total=$(grep -c . cases.txt || true)
ok=$(grep -c 'P: XFRM-ECHO RESULT ok.*U: XFRM-ECHO RESULT ok' cases.txt || true)
echo "vm: $ok passed, $((total - ok)) failed"
grep -aq VMDONE vm.log && [ "$total" -gt 0 ] && [ "$ok" = "$total" ]
